// Package database holds the connector's own tables (sealed credentials,
// audit log, transport resume state, the Matrix -> SfB outbox) and their
// typed queries, on PostgreSQL and SQLite.
//
// The tables live in the same database as mautrix's (portal, ghost,
// user_login, ...), which mautrix upgrades itself through dbutil and its
// `version` table. Ours are created by golang-migrate from the plain SQL
// files embedded from migrations/<dialect>/, which record their progress in
// their own table, sfb_schema_migrations, and all carry the prefix sfb_, so
// the two schemas never touch each other.
//
// The package knows nothing of SfB or Matrix types: it stores plain values.
package database

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/rs/zerolog"
)

// Dialect is the SQL dialect of the database.
type Dialect string

// The supported dialects. Their values are also the names of the migration
// directories.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite3"
)

// VersionTable is the table in which golang-migrate records which of our
// migrations ran. mautrix uses `version`; this name must never collide with
// it.
const VersionTable = "sfb_schema_migrations"

// ErrNotFound is wrapped by lookups that find no row; test with errors.Is.
var ErrNotFound = errors.New("not found")

// DialectFromDBUtil maps a mautrix dbutil database type or dialect name
// ("postgres", "pgx", "sqlite3", "sqlite3-fk-wal", "litestream", ... as in
// the bridge configuration's database.type, or dbutil.Dialect.String()) to
// a Dialect, with the same rules as dbutil.ParseDialect.
func DialectFromDBUtil(name string) (Dialect, error) {
	engine := strings.ToLower(strings.TrimSpace(name))
	switch {
	case strings.HasPrefix(engine, "postgres") || engine == "pgx":
		return Postgres, nil
	case strings.HasPrefix(engine, "sqlite") || strings.HasPrefix(engine, "litestream"):
		return SQLite, nil
	default:
		return "", fmt.Errorf("unknown database type %q: want a PostgreSQL (postgres, pgx) or SQLite (sqlite3, sqlite3-fk-wal, litestream) type", name)
	}
}

// DB runs the connector's queries on a *sql.DB it shares with mautrix.
type DB struct {
	raw     *sql.DB
	dialect Dialect
	log     zerolog.Logger

	// upgradeMu serialises Upgrade and Downgrade within this process; across
	// processes PostgreSQL's advisory lock does (see Upgrade).
	upgradeMu sync.Mutex
}

// New wraps db, which stays owned by the caller: nothing in this package
// closes it.
func New(db *sql.DB, dialect Dialect, log zerolog.Logger) (*DB, error) {
	if db == nil {
		return nil, errors.New("database: nil *sql.DB")
	}
	switch dialect {
	case Postgres, SQLite:
	default:
		return nil, fmt.Errorf("database: unsupported dialect %q", dialect)
	}
	return &DB{raw: db, dialect: dialect, log: log.With().Str("component", "database").Logger()}, nil
}

// Dialect returns the dialect the DB was created with.
func (db *DB) Dialect() Dialect { return db.dialect }
