package sfb

import "context"

// DeliveryTracker is implemented by sessions whose server names a message
// as soon as it accepted it and can be asked later what became of it.
// Skype for Business has no idempotency key: a caller that sent a message
// and crashed before SendMessage returned cannot tell whether to send it
// again. With a tracker it records the accepted message's ID first and,
// after a restart, asks instead of sending again.
type DeliveryTracker interface {
	// SendMessageTracked is SendMessage that calls accepted with the
	// message's ID (the ID SentMessage will carry) once the server took
	// the message, before it confirmed delivery. accepted runs on the
	// calling goroutine and should return quickly.
	SendMessageTracked(ctx context.Context, to URI, msg Message, accepted func(id string)) (SentMessage, error)
	// DeliveryStatus reports what became of the message with id, which an
	// earlier session of the same user may have sent.
	DeliveryStatus(ctx context.Context, id string) (DeliveryStatus, error)
}

// DeliveryStatus is what the server says about a message it accepted.
type DeliveryStatus int

const (
	// DeliveryUnknown: the server no longer knows the message (its
	// conversation or application ended).
	DeliveryUnknown DeliveryStatus = iota
	// DeliveryPending: accepted, not yet delivered or refused.
	DeliveryPending
	// DeliveryDelivered: delivered to the recipient.
	DeliveryDelivered
	// DeliveryFailed: the server gave up delivering it.
	DeliveryFailed
)

func (d DeliveryStatus) String() string {
	switch d {
	case DeliveryPending:
		return "pending"
	case DeliveryDelivered:
		return "delivered"
	case DeliveryFailed:
		return "failed"
	}
	return "unknown"
}
