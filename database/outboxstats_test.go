package database

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOutboxSummary(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		n, oldest, err := db.OutboxSummary(ctx)
		require.NoError(t, err)
		assert.Zero(t, n)
		assert.True(t, oldest.IsZero())

		older := outboxEntry("alice@contoso.com", "sip:bob@contoso.com", "$1", "one")
		older.CreatedAt = time.UnixMilli(1700000000123)
		newer := outboxEntry("carol@contoso.com", "sip:bob@contoso.com", "$2", "two")
		newer.CreatedAt = time.UnixMilli(1700000099000)
		var ids []int64
		for _, e := range []OutboxEntry{newer, older} {
			got, _, err := db.AddOutbox(ctx, e)
			require.NoError(t, err)
			ids = append(ids, got.ID)
		}
		n, oldest, err = db.OutboxSummary(ctx)
		require.NoError(t, err)
		assert.Equal(t, 2, n, "entries of every login")
		assert.True(t, older.CreatedAt.Equal(oldest), "oldest %s", oldest)

		require.NoError(t, db.DeleteOutbox(ctx, ids[1]))
		n, oldest, err = db.OutboxSummary(ctx)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		assert.True(t, newer.CreatedAt.Equal(oldest))
	})
}
