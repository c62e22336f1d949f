package bridge

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
)

func newPart() *mxdb.Message {
	return &mxdb.Message{
		ID:         "msg-1",
		PartID:     "",
		Room:       networkid.PortalKey{ID: "sip:bob@contoso.com", Receiver: "sip:alice@contoso.com"},
		SenderMXID: "@sfb_bob=40contoso.com:example.org",
		Timestamp:  time.Unix(1700000000, 0),
	}
}

func TestMessageTxnIDIsStableAndDistinct(t *testing.T) {
	base := newPart()
	txn := messageTxnID(base)
	assert.Regexp(t, `^sfb-[0-9a-f]{32}$`, txn, "a transaction ID fit for a URL path")

	again := newPart()
	again.Timestamp = again.Timestamp.Add(time.Hour) // redelivered later
	assert.Equal(t, txn, messageTxnID(again), "the same part redelivered gets the same transaction ID")

	variants := map[string]func(*mxdb.Message){
		"another message":  func(m *mxdb.Message) { m.ID = "msg-2" },
		"another part":     func(m *mxdb.Message) { m.PartID = "1" },
		"another receiver": func(m *mxdb.Message) { m.Room.Receiver = "sip:carol@contoso.com" },
		"another portal":   func(m *mxdb.Message) { m.Room.ID = "sip:dave@contoso.com" },
		"another sender":   func(m *mxdb.Message) { m.SenderMXID = "@sfb_dave=40contoso.com:example.org" },
		// The separator keeps field boundaries: "ab"+"c" is not "a"+"bc".
		"shifted boundary": func(m *mxdb.Message) { m.ID, m.PartID = "msg-", "1" },
	}
	seen := map[string]string{txn: "base"}
	for name, change := range variants {
		m := newPart()
		change(m)
		got := messageTxnID(m)
		require.NotContains(t, seen, got, "%s collides with %s", name, seen[got])
		seen[got] = name
	}
}

func TestWithDerivedTxnID(t *testing.T) {
	newMsg := func() *bridgev2.MatrixSendExtra {
		return &bridgev2.MatrixSendExtra{Timestamp: time.Unix(1700000000, 0), MessageMeta: newPart(), PartIndex: 0}
	}

	extra := newMsg()
	got := withDerivedTxnID(event.EventMessage, extra)
	assert.Equal(t, messageTxnID(extra.MessageMeta), got.TransactionID, "a new message part gets the derived ID")
	assert.Equal(t, extra.Timestamp, got.Timestamp, "the rest of extra is kept")
	assert.Empty(t, extra.TransactionID, "the caller's extra is not changed")

	edit := newMsg()
	edit.MessageMeta.MXID = "$original"
	assert.Empty(t, withDerivedTxnID(event.EventMessage, edit).TransactionID,
		"an edit carries the edited part's row; reusing its transaction ID would make Synapse drop the edit")

	redaction := newMsg()
	assert.Empty(t, withDerivedTxnID(event.EventRedaction, redaction).TransactionID)

	chosen := newMsg()
	chosen.TransactionID = "disappear_$x"
	assert.Equal(t, "disappear_$x", withDerivedTxnID(event.EventMessage, chosen).TransactionID)

	assert.Empty(t, withDerivedTxnID(event.EventMessage, &bridgev2.MatrixSendExtra{}).TransactionID, "no row, nothing to derive from")
	assert.Nil(t, withDerivedTxnID(event.EventMessage, nil))
}

func TestWithDerivedTxnIDsWrapsOnlyAppserviceIntents(t *testing.T) {
	as := &matrix.ASIntent{}
	wrapped, ok := WithDerivedTxnIDs(as).(*txnIntent)
	require.True(t, ok, "a ghost's appservice intent is wrapped")
	assert.Same(t, as, wrapped.ASIntent)
	var other bridgev2.MatrixAPI = wrapped
	assert.Same(t, wrapped, WithDerivedTxnIDs(other), "anything else is left as it is")
}
