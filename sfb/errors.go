package sfb

import "errors"

// Errors every transport reports, wrapped with its own detail, so the
// connector can decide without knowing the transport.
var (
	// ErrBadCredentials: the server rejected the user name or password.
	ErrBadCredentials = errors.New("sfb: credentials rejected")
	// ErrCredentialsRequired: the token expired and no password is kept to
	// renew it.
	ErrCredentialsRequired = errors.New("sfb: sign-in required")
	// ErrDeliveryFailed: the server could not deliver a message (peer
	// offline, declined, not found).
	ErrDeliveryFailed = errors.New("sfb: message not delivered")
	// ErrRecipientUnavailable wraps ErrDeliveryFailed when the recipient
	// exists but none of their endpoints took the message (offline,
	// unreachable, not answering in time).
	ErrRecipientUnavailable = errors.New("sfb: recipient unavailable")
	// ErrDeclined wraps ErrDeliveryFailed when the recipient, or their
	// settings (do not disturb, privacy), refused the message.
	ErrDeclined = errors.New("sfb: declined by the recipient")
	// ErrUnsupported: the message or action cannot be carried by SfB.
	ErrUnsupported = errors.New("sfb: not supported")
	// ErrNotCarried wraps ErrUnsupported when SfB has the feature but the
	// transport in use does not carry it (group chats and meetings over
	// SIP): people are told it is this bridge, not their message.
	ErrNotCarried = errors.New("sfb: not carried by this transport")
	// ErrServerUnavailable: the server is temporarily unavailable (503,
	// network); the operation may succeed later.
	ErrServerUnavailable = errors.New("sfb: server unavailable")
	// ErrNotFound: the user or resource does not exist.
	ErrNotFound = errors.New("sfb: not found")
	// ErrLocalTimeout: the deadline passed while the operation waited in
	// this process (for a sign-in slot, one of the user's request slots,
	// a pooled connection) before anything reached the server. It says
	// nothing about the server: the client is overloaded or its limits
	// are too tight. Errors that wrap it also wrap
	// context.DeadlineExceeded.
	ErrLocalTimeout = errors.New("sfb: timed out waiting in the client")
)
