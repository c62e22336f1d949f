package bridge

import (
	"encoding/json"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// An outbox entry holds a Matrix message until SfB settled it: seconds
// normally, as long as the login is disconnected otherwise. With a secret
// key its text is sealed like the credentials, bound to its login and
// Matrix event; without one (keep_password off and no key) it is stored in
// clear, which docs/operator-guide.md says: losing messages across a crash
// would be worse.

func outboxAD(loginID, eventID string) []byte { return []byte("outbox:" + loginID + ":" + eventID) }

// sealedMessage is what an entry's sealed column holds.
type sealedMessage struct {
	Text string `json:"text"`
	HTML string `json:"html,omitempty"`
}

// errUnreadableOutbox: an entry's message does not open with the
// configured key (it changed since the message was stored).
var errUnreadableOutbox = errors.New("the stored message cannot be decrypted with the configured secret key")

// sealOutbox moves e's text and HTML into its sealed form when the bridge
// has a secret key.
func (c *Connector) sealOutbox(e *database.OutboxEntry) error {
	if c.box == nil {
		return nil
	}
	plain, err := json.Marshal(sealedMessage{Text: e.Text, HTML: e.HTML})
	if err != nil {
		return fmt.Errorf("encode outbox message %s: %w", e.EventID, err)
	}
	sealed, err := c.box.Seal(plain, outboxAD(e.LoginID, e.EventID))
	if err != nil {
		return fmt.Errorf("seal outbox message %s: %w", e.EventID, err)
	}
	e.Sealed, e.Text, e.HTML = sealed, "", ""
	return nil
}

// outboxMessage is the message an entry holds, sealed or not.
func (c *Connector) outboxMessage(e database.OutboxEntry) (sfb.Message, error) {
	if e.Sealed == nil {
		return sfb.Message{Text: e.Text, HTML: e.HTML}, nil
	}
	if c.box == nil {
		return sfb.Message{}, fmt.Errorf("outbox message %s: %w (no key is configured)", e.EventID, errUnreadableOutbox)
	}
	plain, err := c.box.Open(e.Sealed, outboxAD(e.LoginID, e.EventID))
	if err != nil {
		return sfb.Message{}, fmt.Errorf("outbox message %s: %w", e.EventID, errUnreadableOutbox)
	}
	var m sealedMessage
	if err := json.Unmarshal(plain, &m); err != nil {
		return sfb.Message{}, fmt.Errorf("decode outbox message %s: %w", e.EventID, err)
	}
	return sfb.Message{Text: m.Text, HTML: m.HTML}, nil
}

// errUnreadableOutboxStatus is the status of a message whose stored form
// does not open: it cannot be sent, and the sender is told.
func errUnreadableOutboxStatus(err error) error {
	return bridgev2.WrapErrorInStatus(err).
		WithStatus(event.MessageStatusFail).
		WithErrorReason(event.MessageStatusGenericError).
		WithIsCertain(true).
		WithSendNotice(true).
		WithMessage("The bridge could not read this message back from its database (its secret key was changed), so it was not sent to Skype for Business. Send it again.")
}
