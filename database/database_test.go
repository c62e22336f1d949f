package database

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	migratedb "github.com/golang-migrate/migrate/v4/database"
	_ "github.com/mattn/go-sqlite3"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // registers sqlite3-fk-wal, mautrix's SQLite driver

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// backend opens an empty database of one kind the bridge can run on.
type backend struct {
	name    string
	dialect Dialect
	open    func(t *testing.T) *sql.DB
}

func sqliteBackend(name, driver, query string, maxConns int) backend {
	return backend{name: name, dialect: SQLite, open: func(t *testing.T) *sql.DB {
		path := filepath.Join(t.TempDir(), "bridge.db")
		raw, err := sql.Open(driver, "file:"+path+"?"+query)
		require.NoError(t, err)
		raw.SetMaxOpenConns(maxConns)
		t.Cleanup(func() { _ = raw.Close() })
		return raw
	}}
}

func postgresBackend(name string, maxConns int) backend {
	return backend{name: name, dialect: Postgres, open: func(t *testing.T) *sql.DB {
		raw, err := sql.Open("postgres", pgtest.Start(t).NewDatabase(t))
		require.NoError(t, err)
		raw.SetMaxOpenConns(maxConns)
		t.Cleanup(func() { _ = raw.Close() })
		return raw
	}}
}

var backends = []backend{
	// What mautrix opens for database.type sqlite3-fk-wal with the URI of
	// its example config.
	sqliteBackend("sqlite3-fk-wal", "sqlite3-fk-wal", "_txlock=immediate", 5),
	// The same settings spelled as go-sqlite3 URI parameters.
	sqliteBackend("sqlite3-uri", "sqlite3", "_txlock=immediate&_journal_mode=WAL&_foreign_keys=on&_busy_timeout=5000", 5),
	// A pool of one connection: the migration must not need two at once.
	sqliteBackend("sqlite3-one-conn", "sqlite3", "_txlock=immediate&_journal_mode=WAL", 1),
	postgresBackend("postgres", 10),
	postgresBackend("postgres-one-conn", 1),
}

func forEachBackend(t *testing.T, fn func(t *testing.T, raw *sql.DB, db *DB)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			raw := b.open(t)
			db, err := New(raw, b.dialect, zerolog.Nop())
			require.NoError(t, err)
			fn(t, raw, db)
		})
	}
}

func upgraded(t *testing.T, fn func(t *testing.T, raw *sql.DB, db *DB)) {
	forEachBackend(t, func(t *testing.T, raw *sql.DB, db *DB) {
		require.NoError(t, db.Upgrade(context.Background()))
		fn(t, raw, db)
	})
}

func tableExists(t *testing.T, raw *sql.DB, dialect Dialect, table string) bool {
	t.Helper()
	var n int
	var err error
	if dialect == Postgres {
		err = raw.QueryRow(`SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1`, table).Scan(&n)
	} else {
		err = raw.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1`, table).Scan(&n)
	}
	require.NoError(t, err)
	return n == 1
}

func TestMigrationsUpDownAndMautrixTablesUntouched(t *testing.T) {
	forEachBackend(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		// mautrix's dbutil keeps its version in a table called version;
		// ours must neither read nor touch it.
		_, err := raw.Exec(`CREATE TABLE version (version INTEGER, compat INTEGER)`)
		require.NoError(t, err)
		_, err = raw.Exec(`INSERT INTO version (version, compat) VALUES (17, 12)`)
		require.NoError(t, err)
		_, err = raw.Exec(`CREATE TABLE portal (id TEXT PRIMARY KEY)`)
		require.NoError(t, err)
		_, err = raw.Exec(`INSERT INTO portal (id) VALUES ('room')`)
		require.NoError(t, err)
		mautrixIntact := func() {
			t.Helper()
			var version, compat int
			require.NoError(t, raw.QueryRow(`SELECT version, compat FROM version`).Scan(&version, &compat))
			assert.Equal(t, [2]int{17, 12}, [2]int{version, compat})
			var id string
			require.NoError(t, raw.QueryRow(`SELECT id FROM portal`).Scan(&id))
			assert.Equal(t, "room", id)
		}

		v, dirty, err := db.Version(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint(0), v)
		assert.False(t, dirty)

		require.NoError(t, db.Upgrade(ctx))
		v, dirty, err = db.Version(ctx)
		require.NoError(t, err)
		assert.Equal(t, LatestVersion, v)
		assert.False(t, dirty)
		assert.True(t, tableExists(t, raw, db.Dialect(), "sfb_credential"))
		assert.True(t, tableExists(t, raw, db.Dialect(), "sfb_audit"))
		assert.True(t, tableExists(t, raw, db.Dialect(), VersionTable))
		mautrixIntact()

		require.NoError(t, db.PutCredential(ctx, Credential{LoginID: "a@contoso.com", SignInAddress: "a@contoso.com"}))
		require.NoError(t, db.Upgrade(ctx), "second Upgrade")
		_, err = db.GetCredential(ctx, "a@contoso.com")
		require.NoError(t, err, "second Upgrade lost data")

		require.NoError(t, db.Downgrade(ctx, 0))
		v, _, err = db.Version(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint(0), v)
		assert.False(t, tableExists(t, raw, db.Dialect(), "sfb_credential"))
		assert.False(t, tableExists(t, raw, db.Dialect(), "sfb_audit"))
		mautrixIntact()
		require.NoError(t, db.Downgrade(ctx, 0), "Downgrade of an empty schema")

		require.NoError(t, db.Upgrade(ctx), "Upgrade after Downgrade")
		assert.True(t, tableExists(t, raw, db.Dialect(), "sfb_credential"))
		mautrixIntact()

		// The shared pool must still be open and usable.
		require.NoError(t, raw.Ping())
	})
}

func TestUpgradeRefusesDirtyAndNewerSchemas(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		_, err := raw.Exec(`UPDATE ` + VersionTable + ` SET dirty = true`)
		require.NoError(t, err)
		err = db.Upgrade(ctx)
		require.Error(t, err)
		assert.Contains(t, err.Error(), fmt.Sprintf("dirty at version %d", LatestVersion))

		_, err = raw.Exec(`UPDATE `+VersionTable+` SET version = $1, dirty = false`, 99)
		require.NoError(t, err)
		err = db.Upgrade(ctx)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "newer than this release")
	})
}

func TestUpgradeWithCancelledContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.ErrorIs(t, db.Upgrade(ctx), context.Canceled)
		assert.False(t, tableExists(t, raw, db.Dialect(), "sfb_credential"))
		require.NoError(t, db.Upgrade(context.Background()))
		assert.True(t, tableExists(t, raw, db.Dialect(), "sfb_credential"))
	})
}

func TestConcurrentUpgradeOnPostgres(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	// Separate pools stand for separate processes (active and standby).
	const processes = 4
	dbs := make([]*DB, processes)
	for i := range dbs {
		raw, err := sql.Open("postgres", dsn)
		require.NoError(t, err)
		t.Cleanup(func() { _ = raw.Close() })
		dbs[i], err = New(raw, Postgres, zerolog.Nop())
		require.NoError(t, err)
	}
	start := make(chan struct{})
	errs := make(chan error, processes*2)
	for _, db := range dbs {
		for range 2 { // and two calls within each process
			go func() {
				<-start
				errs <- db.Upgrade(context.Background())
			}()
		}
	}
	close(start)
	for range processes * 2 {
		select {
		case err := <-errs:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("concurrent Upgrade calls did not finish")
		}
	}
	v, dirty, err := dbs[0].Version(context.Background())
	require.NoError(t, err)
	assert.Equal(t, LatestVersion, v)
	assert.False(t, dirty)
}

func TestUpgradeWaitsForLockAndCanBeCancelled(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	raw, err := sql.Open("postgres", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = raw.Close() })
	db, err := New(raw, Postgres, zerolog.Nop())
	require.NoError(t, err)

	// Another "process" holds the migration lock.
	other, err := sql.Open("postgres", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	holder, err := other.Conn(context.Background())
	require.NoError(t, err)
	defer holder.Close()
	var dbName, schema string
	require.NoError(t, holder.QueryRowContext(context.Background(), `SELECT current_database(), current_schema()`).Scan(&dbName, &schema))
	lockID := advisoryLockID(t, dbName, schema)
	_, err = holder.ExecContext(context.Background(), `SELECT pg_advisory_lock($1)`, lockID)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = db.Upgrade(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "migration lock")
	assert.False(t, tableExists(t, raw, Postgres, "sfb_credential"))

	// Release it: the next Upgrade goes through, so no connection of the
	// pool was left holding or waiting for the lock.
	_, err = holder.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, lockID)
	require.NoError(t, err)
	require.NoError(t, db.Upgrade(context.Background()))
	var held int
	require.NoError(t, raw.QueryRow(`SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted`).Scan(&held))
	assert.Zero(t, held, "an advisory lock stayed behind")
}

func TestLatestVersionMatchesMigrationFiles(t *testing.T) {
	for _, dialect := range []Dialect{Postgres, SQLite} {
		ups, err := fs.Glob(migrations, "migrations/"+string(dialect)+"/*.up.sql")
		require.NoError(t, err)
		downs, err := fs.Glob(migrations, "migrations/"+string(dialect)+"/*.down.sql")
		require.NoError(t, err)
		// Numbers may have gaps (a number taken by a change that lands
		// later); the newest file must be LatestVersion.
		require.NotEmpty(t, ups)
		assert.Truef(t, strings.HasPrefix(filepath.Base(ups[len(ups)-1]), fmt.Sprintf("%06d_", LatestVersion)),
			"%s: newest up migration %s is not version %d", dialect, ups[len(ups)-1], LatestVersion)
		assert.Lenf(t, downs, len(ups), "%s down migrations", dialect)
		for i, up := range ups {
			assert.Equal(t, strings.TrimSuffix(up, ".up.sql"), strings.TrimSuffix(downs[i], ".down.sql"))
		}
	}
	// Both dialects must migrate through the same versions.
	pg, _ := fs.Glob(migrations, "migrations/postgres/*.up.sql")
	lite, _ := fs.Glob(migrations, "migrations/sqlite3/*.up.sql")
	for i := range pg {
		assert.Equal(t, filepath.Base(pg[i]), filepath.Base(lite[i]))
	}
}

func TestDialectFromDBUtil(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Dialect
	}{
		{"postgres", Postgres},
		{"Postgres", Postgres},
		{"postgresql", Postgres},
		{"pgx", Postgres},
		{"sqlite3", SQLite},
		{"sqlite3-fk-wal", SQLite},
		{"sqlite3-fk-wal-fullsync", SQLite},
		{"sqlite", SQLite},
		{"litestream", SQLite},
		{dbutil.Postgres.String(), Postgres},
		{dbutil.SQLite.String(), SQLite},
	} {
		got, err := DialectFromDBUtil(tc.name)
		require.NoErrorf(t, err, "%q", tc.name)
		assert.Equalf(t, tc.want, got, "%q", tc.name)
		// Agree with mautrix on every name it knows.
		mx, err := dbutil.ParseDialect(tc.name)
		require.NoError(t, err)
		assert.Equal(t, string(tc.want), mx.String())
	}
	for _, bad := range []string{"", "mysql", "mssql", "oracle"} {
		_, err := DialectFromDBUtil(bad)
		assert.Errorf(t, err, "%q accepted", bad)
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(nil, Postgres, zerolog.Nop())
	assert.Error(t, err)
	raw, err := sql.Open("sqlite3", ":memory:")
	require.NoError(t, err)
	defer raw.Close()
	_, err = New(raw, Dialect("mysql"), zerolog.Nop())
	assert.Error(t, err)
	db, err := New(raw, SQLite, zerolog.Nop())
	require.NoError(t, err)
	assert.Equal(t, SQLite, db.Dialect())
}

func advisoryLockID(t *testing.T, dbName, schema string) string {
	t.Helper()
	id, err := migratedb.GenerateAdvisoryLockId(dbName, schema, VersionTable)
	require.NoError(t, err)
	return id
}
