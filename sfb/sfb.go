// Package sfb models Skype for Business as the bridge sees it, independent of
// the wire protocol that reaches the server. Transports (sfb/ucwa today,
// sfb/sip later) implement Transport and Session; the connector in bridge/
// uses nothing else, so no transport's types ever reach Matrix code.
package sfb

import (
	"context"
	"time"
)

// Transport signs users in to Skype for Business. One Transport serves every
// login of a bridge process and is safe for concurrent use.
type Transport interface {
	// SignIn authenticates and opens a session that delivers events to
	// handler until it is closed or ends by itself (see SessionEnded).
	//
	// When req.Token is still valid it is used and the password is only
	// needed to renew it; when req.Credentials.Password is empty the session
	// ends with ErrCredentialsRequired once the token can no longer be used.
	SignIn(ctx context.Context, req SignInRequest, handler EventHandler) (Session, error)
}

// SignInRequest carries what a transport needs to sign a user in.
type SignInRequest struct {
	Credentials Credentials
	// Token, when not nil, is a token from an earlier session of the same
	// user (kept across bridge restarts); the transport tries it first.
	Token *Token
	// Resume, when not empty, is Session.ResumeState of an earlier session
	// of the same user (kept across bridge restarts). The transport tries
	// to continue that session, so that the server delivers again what the
	// earlier session had not finished handling and what arrived while no
	// session ran; when it cannot, it signs in afresh. Opaque to callers.
	Resume string
	// Turn, when not nil, bounds the wait for the sign-in's turn towards
	// the pool (the sign-in ramp, a pause of the pool), the part of a
	// sign-in that leaves nothing behind on the server: when it ends
	// first, SignIn returns at once with its error (wrapping
	// ErrLocalTimeout for a deadline). After the turn, only SignIn's ctx
	// bounds the sign-in. For a caller that runs SignIn in a context of
	// its own, so that a sign-in under way is finished rather than
	// abandoned, while its own request may give up.
	Turn context.Context
	// OnTurn, when not nil, is called once, when the sign-in got its turn
	// and starts signing in; a SignIn that returns before never calls it.
	OnTurn func()
}

// Credentials identify a user to Skype for Business.
type Credentials struct {
	// SignInAddress is the user's SIP address without scheme
	// (alice@contoso.com); its domain drives autodiscovery.
	SignInAddress string
	// Username is what the server authenticates, often the sign-in address
	// itself or DOMAIN\alice. Empty means the sign-in address.
	Username string
	// Password is never logged. Empty when the operator chose not to keep
	// passwords and only a token is available.
	Password string
}

// Token is an opaque bearer credential with its expiry.
type Token struct {
	Value     string
	ExpiresAt time.Time
}

// Valid reports whether the token can still be used at now with margin to
// spare.
func (t *Token) Valid(now time.Time, margin time.Duration) bool {
	return t != nil && t.Value != "" && now.Add(margin).Before(t.ExpiresAt)
}

// EventHandler receives a session's events one at a time, in the order the
// server produced them. The session does not read further events until it
// returns, and acknowledges an event to the server only after that: a
// handler that returns once the event is safely stored elsewhere loses
// nothing when the process dies. It should return when ctx ends.
type EventHandler func(ctx context.Context, evt Event)

// Session is one signed-in user. All methods are safe for concurrent use.
type Session interface {
	// Self is the signed-in user.
	Self() Person
	// Token is the token currently in use, for the caller to keep across
	// restarts. It changes when the session renews it.
	Token() Token

	// SendMessage delivers msg to the peer of a 1:1 conversation, starting
	// or restarting the conversation as needed (SfB conversations expire
	// when idle; the caller never sees that). It returns once the server
	// confirmed delivery, or with an error wrapping ErrDeliveryFailed when
	// it refused it.
	SendMessage(ctx context.Context, to URI, msg Message) (SentMessage, error)
	// SetTyping tells the peer of a 1:1 conversation whether the user is
	// typing. It does nothing when no conversation with the peer is active.
	SetTyping(ctx context.Context, to URI, typing bool) error
	// LookupPerson returns what the directory knows about uri.
	LookupPerson(ctx context.Context, uri URI) (Person, error)

	PresenceSession
	GroupSession
	MeetingSession

	// ResumeState is opaque transport state for SignInRequest.Resume. It
	// only ever covers events whose handler call has returned: continuing
	// from it may deliver again what the handler already saw (with the
	// same MessageReceived.ID), never skips what it did not. It changes as
	// events are handled; empty when there is nothing to resume.
	ResumeState() string

	// Close signs out and releases server-side resources. The handler gets
	// no events after Close returns.
	Close(ctx context.Context) error
	// Detach stops the session like Close but keeps it on the server, so
	// that a later SignIn with ResumeState continues it (a bridge restart):
	// what arrives meanwhile waits on the server. The handler gets no
	// events after Detach returns.
	Detach(ctx context.Context) error
}

// Person is a Skype for Business user.
type Person struct {
	URI         URI
	DisplayName string
}

// Message is the content of an instant message.
type Message struct {
	// Text is the plain-text form; always set, except in a message
	// whose sender sent RTF only.
	Text string
	// HTML is the formatted form when the sender sent one, else empty.
	HTML string
	// RTF is the text/rtf form some Lync and SfB clients send, as the
	// transport received it; UCWA never carries it.
	RTF string
}

// SentMessage is what the server said about a message it accepted.
type SentMessage struct {
	// ID is unique for the user across conversations.
	ID   string
	Time time.Time
}

// Conversation names an SfB conversation from the point of view of the
// signed-in user. SfB conversation IDs are short-lived (a conversation
// expires after idle time and comes back with new IDs), so the connector
// keys 1:1 rooms by Peer and multi-party ones by ThreadID, which SfB
// clients keep when they continue a conversation.
type Conversation struct {
	// ThreadID is the server's thread identifier, stable while the
	// conversation lives and kept when it is continued. It may be empty
	// for a 1:1 conversation, never for a multi-party one.
	ThreadID string
	// Peer is the other party of a 1:1 conversation; empty when Group.
	Peer URI
	// Group is set for a multi-party conversation (see GroupSession).
	Group bool
	// Subject is the conversation's subject when the server gave one.
	Subject string
}

// Event is one thing that happened in a session: one of the types below.
type Event interface{ sfbEvent() }

// MessageReceived is an instant message from another user.
type MessageReceived struct {
	// ID identifies the message for deduplication: delivering the same
	// message twice (for example after the event channel was resumed)
	// yields the same ID.
	ID           string
	Conversation Conversation
	From         Person
	Message      Message
	Time         time.Time
}

// TypingChanged reports that a peer started or stopped typing.
type TypingChanged struct {
	Conversation Conversation
	From         URI
	Typing       bool
}

// ConversationEnded reports that the server ended a conversation (idle
// expiry, the peer left). The next message to the peer starts a new one.
type ConversationEnded struct {
	Conversation Conversation
}

// SessionEnded is the last event of a session that ended by itself. Err says
// why; errors.Is(Err, ErrBadCredentials) and ErrCredentialsRequired mean the
// user must sign in again.
type SessionEnded struct {
	Err error
}

// SessionState reports a transient change in the session's connection, for
// bridge state: the session recovers by itself.
type SessionState struct {
	Connected bool
	// Err is why the session is not connected; nil when Connected.
	Err error
}

func (MessageReceived) sfbEvent()   {}
func (TypingChanged) sfbEvent()     {}
func (ConversationEnded) sfbEvent() {}
func (SessionEnded) sfbEvent()      {}
func (SessionState) sfbEvent()      {}
