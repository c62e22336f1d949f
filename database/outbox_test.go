package database

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func outboxEntry(login, peer, eventID, text string) OutboxEntry {
	return OutboxEntry{
		LoginID: login, Peer: peer, EventID: eventID, RoomID: "!room:example.org", SenderMXID: "@alice:example.org",
		MsgType: "m.text", TxnID: eventID, Text: text, HTML: "<b>" + text + "</b>",
		CreatedAt: time.UnixMilli(1700000000123),
	}
}

func TestOutbox(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		const alice, carol = "alice@contoso.com", "carol@contoso.com"
		const bob, dave = "sip:bob@contoso.com", "sip:dave@contoso.com"

		_, err := db.NextOutbox(ctx, alice, bob)
		require.ErrorIs(t, err, ErrNotFound)

		var ids []int64
		for _, e := range []OutboxEntry{
			outboxEntry(alice, bob, "$1", "one"),
			outboxEntry(alice, dave, "$2", "to dave"),
			outboxEntry(alice, bob, "$3", "two"),
			outboxEntry(carol, bob, "$1", "carol's"), // same event ID, other login
		} {
			got, added, err := db.AddOutbox(ctx, e)
			require.NoError(t, err)
			assert.True(t, added, "%s %s", e.LoginID, e.EventID)
			assert.NotZero(t, got.ID)
			e.ID = got.ID
			assert.Equal(t, e, got, "read back as stored")
			ids = append(ids, got.ID)
		}
		assert.IsIncreasing(t, ids)

		// Synapse pushes $1 again: stored once, the first entry returned.
		again, added, err := db.AddOutbox(ctx, outboxEntry(alice, bob, "$1", "changed"))
		require.NoError(t, err)
		assert.False(t, added)
		assert.Equal(t, ids[0], again.ID)
		assert.Equal(t, "one", again.Text)

		peers, err := db.OutboxPeers(ctx, alice)
		require.NoError(t, err)
		assert.Equal(t, []string{bob, dave}, peers, "by oldest entry")

		// A deleted (settled) entry is not remembered: the same event is
		// stored again.
		require.NoError(t, db.DeleteOutbox(ctx, ids[1]))
		again, added, err = db.AddOutbox(ctx, outboxEntry(alice, dave, "$2", "to dave"))
		require.NoError(t, err)
		assert.True(t, added)
		assert.Greater(t, again.ID, ids[3])

		// Each peer's entries come in order; deleting one reveals the next.
		var texts []string
		for {
			e, err := db.NextOutbox(ctx, alice, bob)
			if err != nil {
				require.ErrorIs(t, err, ErrNotFound)
				break
			}
			texts = append(texts, e.Text)
			require.NoError(t, db.DeleteOutbox(ctx, e.ID))
		}
		assert.Equal(t, []string{"one", "two"}, texts)
		require.NoError(t, db.DeleteOutbox(ctx, ids[0]), "deleting a gone entry")

		e, err := db.NextOutbox(ctx, carol, bob)
		require.NoError(t, err)
		assert.Equal(t, "carol's", e.Text, "other logins untouched")

		_, _, err = db.AddOutbox(ctx, outboxEntry(alice, bob, "$4", "three"))
		require.NoError(t, err)
		gone, err := db.DeleteOutboxOfLogin(ctx, alice)
		require.NoError(t, err)
		var goneTexts []string
		for _, e := range gone {
			assert.Equal(t, alice, e.LoginID)
			assert.NotZero(t, e.ID)
			goneTexts = append(goneTexts, e.Text)
		}
		assert.Equal(t, []string{"to dave", "three"}, goneTexts, "what was left, oldest first, for the senders' notices")
		peers, err = db.OutboxPeers(ctx, alice)
		require.NoError(t, err)
		assert.Empty(t, peers)
		peers, err = db.OutboxPeers(ctx, carol)
		require.NoError(t, err)
		assert.Equal(t, []string{bob}, peers)

		for _, bad := range []OutboxEntry{
			outboxEntry("", bob, "$9", "x"),
			outboxEntry(alice, "", "$9", "x"),
			outboxEntry(alice, bob, "", "x"),
		} {
			_, _, err := db.AddOutbox(ctx, bad)
			assert.Error(t, err, "%+v", bad)
		}
	})
}

// Upgrading from version 2 adds the outbox and keeps the resume state;
// downgrading to 2 removes only the outbox.
func TestOutboxMigrationFromVersion2(t *testing.T) {
	forEachBackend(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		require.NoError(t, db.Upgrade(ctx))
		require.NoError(t, db.Downgrade(ctx, 2))
		assert.False(t, tableExists(t, raw, db.Dialect(), "sfb_outbox"))
		require.NoError(t, db.PutResumeState(ctx, "a@contoso.com", "s"))

		require.NoError(t, db.Upgrade(ctx))
		assert.True(t, tableExists(t, raw, db.Dialect(), "sfb_outbox"))
		got, err := db.GetResumeState(ctx, "a@contoso.com")
		require.NoError(t, err)
		assert.Equal(t, "s", got)
		_, _, err = db.AddOutbox(ctx, outboxEntry("a@contoso.com", "sip:b@contoso.com", "$1", "x"))
		require.NoError(t, err)

		require.NoError(t, db.Downgrade(ctx, 2))
		assert.False(t, tableExists(t, raw, db.Dialect(), "sfb_outbox"))
		assert.True(t, tableExists(t, raw, db.Dialect(), "sfb_resume_state"))
	})
}

func TestOutboxMarkSent(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		const alice, bob = "alice@contoso.com", "sip:bob@contoso.com"
		first, _, err := db.AddOutbox(ctx, outboxEntry(alice, bob, "$1", "one"))
		require.NoError(t, err)
		second, _, err := db.AddOutbox(ctx, outboxEntry(alice, bob, "$2", "two"))
		require.NoError(t, err)
		assert.True(t, first.SentAt.IsZero(), "not sent when added")
		assert.Empty(t, first.SentID)

		require.NoError(t, db.MarkOutboxAccepted(ctx, first.ID, "/messages/1"))
		got, err := db.NextOutbox(ctx, alice, bob)
		require.NoError(t, err)
		assert.Equal(t, "/messages/1", got.SentID, "accepted: the ID is known")
		assert.True(t, got.SentAt.IsZero(), "accepted: delivery not confirmed")

		sentAt := time.UnixMilli(1700000001234)
		require.NoError(t, db.MarkOutboxSent(ctx, first.ID, "/messages/1", sentAt.Add(567*time.Microsecond)))
		got, err = db.NextOutbox(ctx, alice, bob)
		require.NoError(t, err)
		assert.Equal(t, first.ID, got.ID, "a sent entry stays until it is deleted")
		assert.Equal(t, "/messages/1", got.SentID)
		assert.True(t, sentAt.Equal(got.SentAt), "millisecond precision: %s", got.SentAt)

		again, added, err := db.AddOutbox(ctx, outboxEntry(alice, bob, "$1", "one"))
		require.NoError(t, err)
		assert.False(t, added)
		assert.Equal(t, "/messages/1", again.SentID, "a repeat of a sent entry sees the mark")

		require.NoError(t, db.DeleteOutbox(ctx, first.ID))
		got, err = db.NextOutbox(ctx, alice, bob)
		require.NoError(t, err)
		assert.Equal(t, second.ID, got.ID)
		assert.True(t, got.SentAt.IsZero(), "the mark is per entry")

		assert.Error(t, db.MarkOutboxSent(ctx, second.ID, "", sentAt), "a sent message has an ID")
		assert.Error(t, db.MarkOutboxAccepted(ctx, second.ID, ""))
	})
}

// Downgrading to 3 drops the sent mark and keeps the entries.
func TestOutboxMigrationFromVersion3(t *testing.T) {
	forEachBackend(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		require.NoError(t, db.Upgrade(ctx))
		_, _, err := db.AddOutbox(ctx, outboxEntry("a@contoso.com", "sip:b@contoso.com", "$1", "x"))
		require.NoError(t, err)
		require.NoError(t, db.Downgrade(ctx, 3))
		var n int
		require.NoError(t, raw.QueryRowContext(ctx, `SELECT count(*) FROM sfb_outbox`).Scan(&n))
		assert.Equal(t, 1, n)
		require.NoError(t, db.Upgrade(ctx))
		got, err := db.NextOutbox(ctx, "a@contoso.com", "sip:b@contoso.com")
		require.NoError(t, err)
		assert.Equal(t, "x", got.Text)
		assert.True(t, got.SentAt.IsZero())
	})
}

// A sealed message is kept byte for byte; rows written before the sealed
// column existed read back with none.
func TestOutboxSealedMessage(t *testing.T) {
	forEachBackend(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		require.NoError(t, db.Upgrade(ctx))
		require.NoError(t, db.Downgrade(ctx, 4))
		_, err := raw.ExecContext(ctx, `INSERT INTO sfb_outbox (login_id, peer, event_id, room_id, sender_mxid, msg_type, txn_id, text, html, created_at_ms)
			VALUES ('a@contoso.com', 'sip:b@contoso.com', '$old', '!r:example.org', '@a:example.org', 'm.text', '$old', 'clear', '', 1)`)
		require.NoError(t, err)
		require.NoError(t, db.Upgrade(ctx))

		sealed := outboxEntry("a@contoso.com", "sip:b@contoso.com", "$new", "")
		sealed.HTML = ""
		sealed.Sealed = []byte{0, 1, 2, 0xff, 0xfe, 'x'}
		stored, added, err := db.AddOutbox(ctx, sealed)
		require.NoError(t, err)
		require.True(t, added)
		assert.Equal(t, sealed.Sealed, stored.Sealed)

		old, err := db.NextOutbox(ctx, "a@contoso.com", "sip:b@contoso.com")
		require.NoError(t, err)
		assert.Equal(t, "clear", old.Text)
		assert.Nil(t, old.Sealed)
		require.NoError(t, db.DeleteOutbox(ctx, old.ID))
		got, err := db.NextOutbox(ctx, "a@contoso.com", "sip:b@contoso.com")
		require.NoError(t, err)
		assert.Equal(t, sealed.Sealed, got.Sealed)
		assert.Empty(t, got.Text)
		assert.Empty(t, got.HTML)
		gone, err := db.DeleteOutboxOfLogin(ctx, "a@contoso.com")
		require.NoError(t, err)
		require.Len(t, gone, 1)
		assert.Equal(t, sealed.Sealed, gone[0].Sealed)
	})
}
