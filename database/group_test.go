package database

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGroupParticipantsAndSubject(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		_, err := db.GetGroup(ctx, "t1")
		require.ErrorIs(t, err, ErrNotFound)
		added, err := db.AddGroupParticipant(ctx, "t1", "sip:carol@contoso.com")
		require.NoError(t, err)
		assert.True(t, added)
		added, err = db.AddGroupParticipant(ctx, "t1", "sip:carol@contoso.com")
		require.NoError(t, err)
		assert.False(t, added, "once")
		_, err = db.AddGroupParticipant(ctx, "t1", "sip:alice@contoso.com")
		require.NoError(t, err)
		changed, err := db.SetGroupSubject(ctx, "t1", "Budget")
		require.NoError(t, err)
		assert.True(t, changed)
		changed, err = db.SetGroupSubject(ctx, "t1", "Budget")
		require.NoError(t, err)
		assert.False(t, changed)
		ensured, err := db.EnsureGroup(ctx, "t1", "Other")
		require.NoError(t, err)
		assert.False(t, ensured, "a stored subject stays")
		g, err := db.GetGroup(ctx, "t1")
		require.NoError(t, err)
		assert.Equal(t, Group{ThreadID: "t1", Subject: "Budget", Participants: []string{"sip:alice@contoso.com", "sip:carol@contoso.com"}}, g)
		removed, err := db.RemoveGroupParticipant(ctx, "t1", "sip:carol@contoso.com")
		require.NoError(t, err)
		assert.True(t, removed)
		g, err = db.GetGroup(ctx, "t1")
		require.NoError(t, err)
		assert.Equal(t, []string{"sip:alice@contoso.com"}, g.Participants)
	})
}

// Copies match across logins, never twice for one login, only within
// the window and nearest first; a copy delivered again keeps its match.
func TestMatchGroupCopy(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		t0 := time.UnixMilli(1700000000000)
		match := func(login, msg string, at time.Duration) (string, bool) {
			t.Helper()
			got, again, err := db.MatchGroupCopy(ctx, GroupCopy{LoginID: login, MessageID: msg, ThreadID: "t1", Sender: "sip:carol@contoso.com",
				Fingerprint: "ok", SentAt: t0.Add(at)}, 30*time.Second, login+"/"+msg)
			require.NoError(t, err)
			return got, again
		}
		a1, _ := match("alice", "a1", 0)
		a2, _ := match("alice", "a2", 10*time.Second)
		assert.Equal(t, "alice/a1", a1)
		assert.Equal(t, "alice/a2", a2, "a repeat from the same login is new")
		b2, _ := match("bob", "b2", 10*time.Second+300*time.Millisecond)
		assert.Equal(t, a2, b2, "nearest in time")
		b1, _ := match("bob", "b1", 200*time.Millisecond)
		assert.Equal(t, a1, b1)
		b3, _ := match("bob", "b3", 11*time.Second)
		assert.Equal(t, "bob/b3", b3, "both of alice's are taken by bob")
		c1, _ := match("carol", "c1", 5*time.Minute)
		assert.Equal(t, "carol/c1", c1, "outside the window")
		again, wasAgain := match("bob", "b2", 10*time.Second+300*time.Millisecond)
		assert.True(t, wasAgain)
		assert.Equal(t, a2, again)

		require.NoError(t, db.RecordGroupCopy(ctx, GroupCopy{LoginID: "alice", MessageID: "mx:$e", ThreadID: "t1", Sender: "sip:alice@contoso.com",
			Fingerprint: "hi", SentAt: t0}, "mx:$e"))
		got, _, err := db.MatchGroupCopy(ctx, GroupCopy{LoginID: "bob", MessageID: "b9", ThreadID: "t1", Sender: "sip:alice@contoso.com",
			Fingerprint: "hi", SentAt: t0.Add(time.Second)}, 30*time.Second, "bob/b9")
		require.NoError(t, err)
		assert.Equal(t, "mx:$e", got)

		// Sent again after a restart an hour later: matched around then.
		require.NoError(t, db.RecordGroupCopy(ctx, GroupCopy{LoginID: "alice", MessageID: "mx:$f", ThreadID: "t1", Sender: "sip:alice@contoso.com",
			Fingerprint: "again", SentAt: t0}, "mx:$f"))
		require.NoError(t, db.RecordGroupCopy(ctx, GroupCopy{LoginID: "alice", MessageID: "mx:$f", ThreadID: "t1", Sender: "sip:alice@contoso.com",
			Fingerprint: "again", SentAt: t0.Add(time.Hour)}, "mx:$f"))
		got, _, err = db.MatchGroupCopy(ctx, GroupCopy{LoginID: "bob", MessageID: "b10", ThreadID: "t1", Sender: "sip:alice@contoso.com",
			Fingerprint: "again", SentAt: t0.Add(time.Hour + time.Second)}, 30*time.Second, "bob/b10")
		require.NoError(t, err)
		assert.Equal(t, "mx:$f", got)

		n, err := db.PruneGroupCopies(ctx, time.Now().Add(time.Minute))
		require.NoError(t, err)
		assert.EqualValues(t, 10, n)
	})
}
