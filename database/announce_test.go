package database

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAnnouncementsClaimSendSignIn(t *testing.T) {
	upgraded(t, func(t *testing.T, _ *sql.DB, db *DB) {
		ctx := context.Background()
		at := time.Date(2027, 3, 1, 7, 0, 0, 0, time.UTC)
		require.NoError(t, db.ClaimAnnouncement(ctx, "alice@contoso.com", "Welle 1", "@alice:example.org", 1))
		rows, err := db.ListAnnouncements(ctx)
		require.NoError(t, err)
		require.Len(t, rows, 1)
		assert.Equal(t, Announcement{Address: "alice@contoso.com", Wave: "Welle 1", MatrixUser: "@alice:example.org", Pending: 1}, rows[0])

		require.NoError(t, db.AnnouncementSent(ctx, "alice@contoso.com", "Welle 1", "!dm:example.org", 1, at))
		require.NoError(t, db.ClaimAnnouncement(ctx, "alice@contoso.com", "Welle 1", "@alice:example.org", 2))
		require.NoError(t, db.AnnouncementSent(ctx, "alice@contoso.com", "Welle 1", "!dm:example.org", 2, at.Add(time.Hour)))
		require.NoError(t, db.AnnouncementSignedIn(ctx, "alice@contoso.com", "Welle 1", "@alice:example.org", at.Add(2*time.Hour)))
		// Someone who signed in before being told has a row too.
		require.NoError(t, db.AnnouncementSignedIn(ctx, "bob@contoso.com", "Welle 1", "@bob:example.org", at))
		rows, err = db.ListAnnouncements(ctx)
		require.NoError(t, err)
		require.Len(t, rows, 2)
		alice := rows[0]
		assert.Equal(t, 2, alice.Sent)
		assert.Zero(t, alice.Pending)
		assert.Equal(t, "!dm:example.org", alice.RoomID)
		assert.True(t, alice.FirstSent.Equal(at), "first sent stays the announcement's time")
		assert.True(t, alice.LastSent.Equal(at.Add(time.Hour)))
		assert.True(t, alice.SignedIn.Equal(at.Add(2*time.Hour)))
		assert.Zero(t, rows[1].Sent)
		assert.True(t, rows[1].FirstSent.IsZero())

		assert.ErrorIs(t, db.AnnouncementSent(ctx, "carol@contoso.com", "Welle 1", "!x:example.org", 1, at), ErrNotFound, "never claimed")
	})
}
