// Package dbtest gives tests a bridge database of their own.
package dbtest

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	_ "github.com/mattn/go-sqlite3" // the sqlite3 driver
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
)

// SQLite returns a migrated database in a file under t's temporary
// directory, opened with the settings the bridge uses for SQLite
// (immediate transactions, WAL, a busy timeout), closed when t ends.
func SQLite(t testing.TB) *database.DB {
	t.Helper()
	raw, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "bridge.db")+"?_txlock=immediate&_journal_mode=WAL&_busy_timeout=5000")
	require.NoError(t, err)
	t.Cleanup(func() { _ = raw.Close() })
	db, err := database.New(raw, database.SQLite, zerolog.Nop())
	require.NoError(t, err, "open the database")
	require.NoError(t, db.Upgrade(context.Background()), "migrate the database")
	return db
}
