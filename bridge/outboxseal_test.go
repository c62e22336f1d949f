package bridge

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
)

// storedOutbox reads the outbox table as an attacker with the database
// file would: every text column of every row.
func storedOutbox(t *testing.T, e *testEnv) []string {
	t.Helper()
	rows, err := e.br.DB.RawDB.QueryContext(e.ctx, `SELECT text, html, COALESCE(sealed, '') FROM sfb_outbox`)
	require.NoError(t, err)
	defer rows.Close()
	var stored []string
	for rows.Next() {
		var text, html string
		var sealed []byte
		require.NoError(t, rows.Scan(&text, &html, &sealed))
		stored = append(stored, text, html, string(sealed))
	}
	require.NoError(t, rows.Err())
	return stored
}

func TestOutboxStoresMessageSealed(t *testing.T) {
	e := newTestEnv(t)
	ul, client, session := e.mustLogin()
	release := holdSends(t, e)
	_, err := client.HandleMatrixMessage(e.ctx, matrixMessage(e.portalFor(ul.ID, bob), "$secret", &event.MessageEventContent{
		MsgType: event.MsgText, Body: "the merger is off", Format: event.FormatHTML, FormattedBody: "the merger is <b>off</b>",
	}))
	require.NoError(t, err)

	stored := storedOutbox(t, e)
	require.Len(t, stored, 3, "one row while SfB holds the message")
	for _, column := range stored {
		assert.NotContains(t, column, "merger", "message text stored in clear")
	}
	entry, err := e.conn.db.NextOutbox(e.ctx, string(ul.ID), string(bob))
	require.NoError(t, err)
	require.NotEmpty(t, entry.Sealed)
	// Bound to its row: another login's or event's entry does not open it.
	moved := entry
	moved.EventID = "$other"
	_, err = e.conn.outboxMessage(moved)
	assert.ErrorIs(t, err, errUnreadableOutbox)

	close(release)
	e.waitEcho("$secret")
	requireOutboxEmpty(t, e, ul.ID)
	sent := session.sentMessages()
	require.Len(t, sent, 1)
	assert.Equal(t, "the merger is off", sent[0].Msg.Text)
	assert.Contains(t, sent[0].Msg.HTML, "<b>off</b>")
}

// Without a secret key (keep_password off) there is nothing to seal with:
// the message is stored in clear rather than not at all, so that a crash
// loses nothing (docs/operator-guide.md says so).
func TestOutboxWithoutKeyStoresMessageInClear(t *testing.T) {
	e := newTestEnv(t, withKeepPassword(false), func(_ *testEnv, c *Config) { c.SecretKey = "" })
	ul, client, session := e.mustLogin()
	release := holdSends(t, e)
	_, err := client.HandleMatrixMessage(e.ctx, matrixMessage(e.portalFor(ul.ID, bob), "$clear",
		&event.MessageEventContent{MsgType: event.MsgText, Body: "plain words"}))
	require.NoError(t, err)
	assert.Contains(t, storedOutbox(t, e), "plain words")
	close(release)
	e.waitEcho("$clear")
	require.Len(t, session.sentMessages(), 1)
	assert.Equal(t, "plain words", session.sentMessages()[0].Msg.Text)
}

// A message sealed under a key the bridge no longer has cannot be sent:
// its sender is told, and it leaves the outbox.
func TestOutboxSealedWithAnotherKey(t *testing.T) {
	e := newTestEnv(t)
	ul, _, _ := e.mustLogin()
	portal := e.portalFor(ul.ID, bob)
	ul.Client.Disconnect()
	entry := database.OutboxEntry{
		LoginID: string(ul.ID), Peer: string(bob), EventID: "$old-key", RoomID: portal.MXID.String(),
		SenderMXID: "@alice:example.org", MsgType: string(event.MsgText), TxnID: "$old-key", Text: "sealed before the key changed",
	}
	require.NoError(t, e.conn.sealOutbox(&entry))
	_, _, err := e.conn.db.AddOutbox(e.ctx, entry)
	require.NoError(t, err)

	e2 := newTestEnv(t, withDB(e.dbPath), withTransport(e.transport), func(e *testEnv, c *Config) {
		e.key = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
		c.SecretKey = e.key
	})
	// The stored credentials do not open either: the user logs in again.
	_, err = e2.login("alice@contoso.com", "", "alice-pw")
	require.NoError(t, err)
	e2.waitState(status.StateConnected)
	require.Eventually(t, func() bool { return len(e2.matrix.messageStatuses()) == 1 }, waitFor, time.Millisecond)
	requireOutboxEmpty(t, e2, ul.ID)
	st := e2.matrix.messageStatuses()[0]
	assert.Equal(t, id.EventID("$old-key"), st.Info.SourceEventID)
	assert.Equal(t, event.MessageStatusFail, st.Status.Status)
	assert.True(t, st.Status.SendNotice)
	assert.Contains(t, st.Status.Message, "secret key was changed")
	assert.Empty(t, e.transport.lastSession().sentMessages(), "nothing was sent")
}
