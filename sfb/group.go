package sfb

import (
	"context"
	"io"
	"time"
)

// GroupSession carries multi-party conversations: SfB IM conferences,
// started with several people or escalated from a 1:1 conversation by
// adding a participant.
//
// A multi-party conversation is named by its thread ID, never by the
// server's conversation or conference IDs: a conference ends when the last
// participant leaves and comes back with new IDs, while SfB clients (and
// this interface) continue it under the same thread ID.
type GroupSession interface {
	// SendGroupMessage delivers msg to the multi-party conversation
	// g.ThreadID. When the user is not in it (it expired, it was never
	// started by this session, the user left), the session starts it
	// again under the same thread ID and subject and invites
	// g.Participants first. It returns once the server confirmed
	// delivery, or with an error wrapping ErrDeliveryFailed.
	SendGroupMessage(ctx context.Context, g Group, msg Message) (SentMessage, error)
	// AddParticipant invites uri into the multi-party conversation g,
	// starting it as SendGroupMessage does when needed. It returns once
	// the server accepted the invitation; the participant's answer
	// arrives later as ParticipantJoined, or as ParticipantLeft with
	// Declined set.
	AddParticipant(ctx context.Context, g Group, uri URI) error
	// LeaveGroup takes the user out of the multi-party conversation
	// threadID. It does nothing when the user is not in it.
	LeaveGroup(ctx context.Context, threadID string) error
	// SetGroupTyping tells the participants of the multi-party
	// conversation threadID whether the user is typing. It does nothing
	// when the user is not in it.
	SetGroupTyping(ctx context.Context, threadID string, typing bool) error
}

// Group is what a session needs to continue a multi-party conversation.
type Group struct {
	// ThreadID names the conversation; never empty.
	ThreadID string
	// Subject is the conversation's subject, empty for none.
	Subject string
	// Participants are the people to invite when the conversation has to
	// be started again, without the signed-in user.
	Participants []URI
}

// ParticipantJoined reports a person in a multi-party conversation. When
// the session joins a conversation (it accepted an invitation, or started
// it), it reports every participant already there, itself included; after
// that, each one who joins.
type ParticipantJoined struct {
	Conversation Conversation
	Person       Person
}

// ParticipantLeft reports that a person left a multi-party conversation,
// or declined or did not answer the invitation to it (Declined). When the
// signed-in user is the one who left (removed, or the conference ended),
// the session is no longer in the conversation.
type ParticipantLeft struct {
	Conversation Conversation
	URI          URI
	Declined     bool
}

// SubjectChanged reports a multi-party conversation's new subject.
type SubjectChanged struct {
	Conversation Conversation
	Subject      string
}

// FileOffered reports a file a participant sent or offered in a
// conversation: a file transfer, or an image sent alongside a message.
type FileOffered struct {
	// ID identifies the offer for deduplication, as MessageReceived.ID.
	ID           string
	Conversation Conversation
	From         Person
	File         File
	Time         time.Time
}

// File describes an offered file.
type File struct {
	// Name is the file name the sender gave, without any directory.
	Name string
	// ContentType is the MIME type when known, else empty.
	ContentType string
	// Size in bytes, -1 when unknown.
	Size int64
	// Open fetches the content. It is nil when the transport cannot
	// fetch the file (UCWA cannot accept a file transfer); the receiver
	// then says so to the user instead.
	Open func(ctx context.Context) (io.ReadCloser, error)
	// Location, when Open is nil, is a web address where people can get
	// the file themselves (an image a message shows from a web server
	// the transport does not fetch from); else empty.
	Location string
}

func (ParticipantJoined) sfbEvent() {}
func (ParticipantLeft) sfbEvent()   {}
func (SubjectChanged) sfbEvent()    {}
func (FileOffered) sfbEvent()       {}
