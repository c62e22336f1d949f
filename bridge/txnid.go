package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// An SfB message reaches Matrix before bridgev2 records it (message table),
// and the session acknowledges it to SfB only after that. A crash between
// the homeserver accepting the message and the record makes SfB deliver it
// again, and bridgev2, finding no record, sends it again. Synapse drops a
// repeated PUT /send/{type}/{txnId} when the transaction ID is the same
// (it keeps an appservice's transaction IDs in memory for 30 to 60
// minutes, per request path), so the transaction ID of each part is
// derived from what identifies it on the SfB side instead of being random.
//
// bridgev2 sends a remote message through the sender's MatrixAPI with a
// MatrixSendExtra that carries the message row about to be stored, but
// leaves MatrixSendExtra.TransactionID empty; WithDerivedTxnIDs wraps a
// ghost's intent (every message from an SfB peer is sent by one) to fill
// it in. The Matrix connector the process installs (matrixapp) applies it
// in GhostIntent.

// WithDerivedTxnIDs returns intent, a ghost's intent from mautrix's
// appservice Matrix connector, sending new message parts with derived
// transaction IDs. Any other intent is returned as it is.
func WithDerivedTxnIDs(intent bridgev2.MatrixAPI) bridgev2.MatrixAPI {
	if as, ok := intent.(*matrix.ASIntent); ok {
		return &txnIntent{ASIntent: as}
	}
	return intent
}

// replaceDiscardMegolmSession replaces the Matrix connector's
// discard-megolm-session command, which finds the connector by asserting
// bridgev2's to *matrix.Connector: the process installs a wrapper of it
// (matrixapp), which that assertion does not accept.
func replaceDiscardMegolmSession(br *bridgev2.Bridge, mc *matrix.Connector) {
	proc, ok := br.Commands.(*commands.Processor)
	if !ok {
		return
	}
	discard := *matrix.CommandDiscardMegolmSession
	discard.Func = func(ce *commands.Event) {
		if mc.Crypto == nil {
			ce.Reply("This bridge instance doesn't have end-to-bridge encryption enabled")
			return
		}
		mc.Crypto.ResetSession(ce.Ctx, ce.RoomID)
		ce.Reply("Successfully reset Megolm session in this room. New decryption keys will be shared the next time a message is sent from the remote network.")
	}
	proc.AddHandler(&discard)
}

// txnIntent is a ghost's intent that sends new message parts with a
// derived transaction ID. Code that needs a ghost's *matrix.ASIntent (to
// set presence, say) finds it embedded here.
type txnIntent struct {
	*matrix.ASIntent
}

// SendMessage implements bridgev2.MatrixAPI.
func (i *txnIntent) SendMessage(ctx context.Context, roomID id.RoomID, eventType event.Type, content *event.Content, extra *bridgev2.MatrixSendExtra) (*mautrix.RespSendEvent, error) {
	return i.ASIntent.SendMessage(ctx, roomID, eventType, content, withDerivedTxnID(eventType, extra))
}

// withDerivedTxnID returns extra with the transaction ID derived from the
// message part it sends, when it sends a new one: bridgev2 passes the row
// of the part (MessageMeta) before it has an event ID. An edit passes the
// row of the part it edits, which has one; its transaction ID must differ
// from the original's, so it stays random, as do redactions and whatever
// comes without a row. A transaction ID the caller chose is kept.
func withDerivedTxnID(eventType event.Type, extra *bridgev2.MatrixSendExtra) *bridgev2.MatrixSendExtra {
	if extra == nil || extra.TransactionID != "" || extra.MessageMeta == nil ||
		extra.MessageMeta.MXID != "" || eventType == event.EventRedaction {
		return extra
	}
	derived := *extra
	derived.TransactionID = messageTxnID(extra.MessageMeta)
	return &derived
}

// messageTxnID derives the transaction ID of a message part from the
// login that received it (the portal's receiver), the portal, the sender,
// the SfB message ID and the part: distinct parts and the same message
// bridged for two receivers never share one. Synapse keys transactions by
// request path (room, event type, transaction ID) and appservice, not by
// ghost, so a collision would make it answer a new message with an old
// event's ID and drop it.
func messageTxnID(msg *mxdb.Message) string {
	h := sha256.New()
	for _, s := range []string{
		string(msg.Room.Receiver), string(msg.Room.ID), msg.SenderMXID.String(), string(msg.ID), string(msg.PartID),
	} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "sfb-" + hex.EncodeToString(h.Sum(nil)[:16])
}
