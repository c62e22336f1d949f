package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-migrate/migrate/v4"
	migratedb "github.com/golang-migrate/migrate/v4/database"
	"github.com/golang-migrate/migrate/v4/database/postgres"
	"github.com/golang-migrate/migrate/v4/database/sqlite3"
	"github.com/golang-migrate/migrate/v4/source"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/rs/zerolog"
)

// LatestVersion is the schema version Upgrade brings the tables to: the
// number of the newest file in migrations/<dialect>/.
const LatestVersion uint = 8

//go:embed migrations/postgres/*.sql migrations/sqlite3/*.sql
var migrations embed.FS

// unlockTimeout bounds releasing the PostgreSQL advisory lock; the
// connection is thrown away if it takes longer.
const unlockTimeout = 10 * time.Second

// Upgrade runs the migrations that have not run yet, so that the tables are
// at LatestVersion. It returns nil when there was nothing to do, and an
// error when the schema is dirty (a migration failed half-way and needs a
// human) or newer than this release knows.
//
// Concurrency. On PostgreSQL, Upgrade holds a session-level advisory lock
// (pg_advisory_lock, on one dedicated connection taken from the shared pool
// for the duration) while it reads the version and migrates, so an active
// and a standby bridge process starting at the same time on the same
// database run each migration once: the second waits for the first, then
// finds nothing to do. The wait ends when ctx ends; the connection is then
// discarded rather than returned to the pool, so no lock can stay behind on
// a pooled connection. Each migration file runs in one transaction.
//
// On SQLite, calls on one DB are serialised in the process; SQLite is a
// single-process deployment (no active/standby), and two processes must not
// upgrade the same file at once. Migrations run in transactions on the
// shared pool, so a connection opened with _txlock=immediate (as mautrix
// does) and WAL mode work as they are.
//
// Upgrade never closes the shared *sql.DB. It stops between two migrations
// when ctx ends; a migration already running is not interrupted.
func (db *DB) Upgrade(ctx context.Context) error {
	return db.withMigrate(ctx, func(m *migrate.Migrate) error {
		from, dirty, err := m.Version()
		if err != nil && !errors.Is(err, migrate.ErrNilVersion) {
			return fmt.Errorf("read schema version: %w", err)
		}
		if dirty {
			return dirtyError(from)
		}
		if from > LatestVersion {
			return fmt.Errorf("schema version %d is newer than this release knows (%d): refusing to run an older bridge on a newer database", from, LatestVersion)
		}
		err = m.Up()
		if errors.Is(err, migrate.ErrNoChange) {
			db.log.Debug().Uint("version", from).Msg("Connector schema is up to date")
			return nil
		}
		var dirtyErr migrate.ErrDirty
		if errors.As(err, &dirtyErr) {
			return dirtyError(uint(dirtyErr.Version))
		}
		if err != nil {
			return fmt.Errorf("upgrade schema from version %d: %w", from, err)
		}
		to, _, _ := m.Version()
		db.log.Info().Uint("from_version", from).Uint("to_version", to).Msg("Upgraded connector schema")
		return nil
	})
}

// Downgrade runs down migrations until the schema is at version (0 removes
// every table of this package, except the version table). It is for
// operators rolling back a release and for tests; the bridge never calls it.
func (db *DB) Downgrade(ctx context.Context, version uint) error {
	return db.withMigrate(ctx, func(m *migrate.Migrate) error {
		from, dirty, err := m.Version()
		if errors.Is(err, migrate.ErrNilVersion) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if dirty {
			return dirtyError(from)
		}
		if version >= from {
			return nil
		}
		if version == 0 {
			err = m.Down()
		} else {
			err = m.Migrate(version)
		}
		if err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return fmt.Errorf("downgrade schema from version %d to %d: %w", from, version, err)
		}
		db.log.Info().Uint("from_version", from).Uint("to_version", version).Msg("Downgraded connector schema")
		return nil
	})
}

// Version returns the schema version (0 before the first migration) and
// whether a migration failed half-way. On PostgreSQL it waits, like
// Upgrade, while another process holds the migration lock.
func (db *DB) Version(ctx context.Context) (version uint, dirty bool, err error) {
	err = db.withMigrate(ctx, func(m *migrate.Migrate) error {
		var err error
		version, dirty, err = m.Version()
		if errors.Is(err, migrate.ErrNilVersion) {
			version, dirty, err = 0, false, nil
		}
		return err
	})
	return version, dirty, err
}

func dirtyError(version uint) error {
	return fmt.Errorf("schema is dirty at version %d: a migration failed half-way; repair the tables by hand, then set dirty to false in %s", version, VersionTable)
}

// withMigrate runs fn with a Migrate on this DB's connection, holding the
// migration lock.
func (db *DB) withMigrate(ctx context.Context, fn func(*migrate.Migrate) error) error {
	db.upgradeMu.Lock()
	defer db.upgradeMu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("migrations not started: %w", err)
	}

	src, err := iofs.New(migrations, "migrations/"+string(db.dialect))
	if err != nil {
		return fmt.Errorf("read embedded %s migrations: %w", db.dialect, err)
	}
	defer src.Close()

	switch db.dialect {
	case Postgres:
		return db.withPostgresLock(ctx, func(conn *sql.Conn, cfg *postgres.Config) error {
			drv, err := postgres.WithConnection(ctx, conn, cfg)
			if err != nil {
				return fmt.Errorf("prepare PostgreSQL migrations: %w", err)
			}
			return db.run(ctx, src, drv, fn)
		})
	case SQLite:
		drv, err := sqlite3.WithInstance(db.raw, &sqlite3.Config{MigrationsTable: VersionTable})
		if err != nil {
			return fmt.Errorf("prepare SQLite migrations: %w", err)
		}
		return db.run(ctx, src, drv, fn)
	default:
		return fmt.Errorf("unsupported dialect %q", db.dialect)
	}
}

func (db *DB) run(ctx context.Context, src source.Driver, drv migratedb.Driver, fn func(*migrate.Migrate) error) error {
	m, err := migrate.NewWithInstance("iofs", src, string(db.dialect), sharedDriver{drv})
	if err != nil {
		return fmt.Errorf("prepare migrations: %w", err)
	}
	m.Log = migrateLogger{db.log}
	// A lock conflict cannot happen here (we already hold the lock), so
	// the timeout only guards against a hung driver.
	m.LockTimeout = time.Minute
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			m.GracefulStop <- true
		case <-done:
		}
	}()
	err = fn(m)
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("migrations interrupted: %w", ctx.Err())
	}
	return err
}

// withPostgresLock takes a dedicated connection from the pool and holds,
// on it, the advisory lock that golang-migrate's PostgreSQL driver also
// takes. Session advisory locks are re-entrant, so the driver's own Lock on
// the same connection succeeds at once, while any other process waits here,
// where the wait can be cancelled through ctx (the driver's own wait
// cannot).
func (db *DB) withPostgresLock(ctx context.Context, fn func(*sql.Conn, *postgres.Config) error) (err error) {
	conn, err := db.raw.Conn(ctx)
	if err != nil {
		return fmt.Errorf("get a connection for migrations: %w", err)
	}
	discard := false
	defer func() {
		if discard {
			// Returning ErrBadConn makes database/sql close the
			// connection instead of pooling it, which also ends any
			// advisory lock it may hold.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		_ = conn.Close()
	}()

	cfg := &postgres.Config{MigrationsTable: VersionTable}
	var schema sql.NullString
	if err := conn.QueryRowContext(ctx, `SELECT current_database(), current_schema()`).Scan(&cfg.DatabaseName, &schema); err != nil {
		return fmt.Errorf("read current database and schema: %w", err)
	}
	if !schema.Valid {
		return errors.New("no current schema: the search_path names no existing schema")
	}
	cfg.SchemaName = schema.String
	lockID, err := migratedb.GenerateAdvisoryLockId(cfg.DatabaseName, cfg.SchemaName, VersionTable)
	if err != nil {
		return fmt.Errorf("compute migration lock id: %w", err)
	}

	start := time.Now()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, lockID); err != nil {
		// Whether the lock was granted before the cancellation is unknown.
		discard = true
		return fmt.Errorf("wait for the migration lock: %w", err)
	}
	if waited := time.Since(start); waited > time.Second {
		db.log.Info().Dur("waited", waited).Msg("Got the migration lock after another process released it")
	}
	defer func() {
		unlockCtx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
		defer cancel()
		var released bool
		if uerr := conn.QueryRowContext(unlockCtx, `SELECT pg_advisory_unlock($1)`, lockID).Scan(&released); uerr != nil || !released {
			discard = true
			db.log.Warn().AnErr("unlock_error", uerr).Bool("released", released).
				Msg("Could not release the migration lock; dropping its connection instead")
		}
	}()
	return fn(conn, cfg)
}

// sharedDriver keeps golang-migrate from closing what it does not own:
// the SQLite driver's Close closes the whole *sql.DB (mautrix's), the
// PostgreSQL driver's closes the connection withPostgresLock manages.
type sharedDriver struct{ migratedb.Driver }

func (sharedDriver) Close() error { return nil }

// migrateLogger sends golang-migrate's messages to zerolog at debug level.
type migrateLogger struct{ log zerolog.Logger }

func (l migrateLogger) Printf(format string, v ...any) {
	l.log.Debug().Str("from", "golang-migrate").Msg(strings.TrimSpace(fmt.Sprintf(format, v...)))
}

func (l migrateLogger) Verbose() bool { return false }
