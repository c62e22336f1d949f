package database

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Wave is a named group of people who change mode together.
type Wave struct {
	Name         string
	PlannedStart time.Time // zero when not planned yet
	Mode         string    // "" when the wave sets no mode
	CreatedAt    time.Time
}

// Person is someone the migration team assigned: their SfB address
// (lower-case, without "sip:"), Matrix user ID, wave ("" for none) and mode
// override ("" for none).
type Person struct {
	Address    string
	MatrixUser string
	Wave       string
	Mode       string
	UpdatedAt  time.Time
}

// ModeTables is everything the mode tables hold, read in one transaction.
type ModeTables struct {
	DefaultMode string
	// Generation grows with every change to the tables.
	Generation int64
	Waves      []Wave
	People     []Person
}

// ImportChange is what a CSV import writes: the waves it names that do
// not exist yet, and the people it assigns (replacing their rows).
type ImportChange struct {
	NewWaves []string
	People   []Person
}

// ModeGeneration returns the counter that every change to modes and waves
// increments: a process compares it with the one it read last to know
// whether it must read the tables again.
func (db *DB) ModeGeneration(ctx context.Context) (int64, error) {
	var gen int64
	if err := db.raw.QueryRowContext(ctx, `SELECT generation FROM sfb_migration_state WHERE id = 1`).Scan(&gen); err != nil {
		return 0, fmt.Errorf("read mode generation: %w", err)
	}
	return gen, nil
}

// ReadModeTables reads waves, people, the default mode and the generation
// as of one moment.
func (db *DB) ReadModeTables(ctx context.Context) (*ModeTables, error) {
	tx, err := db.raw.BeginTx(ctx, &sql.TxOptions{ReadOnly: db.dialect == Postgres, Isolation: db.snapshotIsolation()})
	if err != nil {
		return nil, fmt.Errorf("read mode tables: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var t ModeTables
	if err := tx.QueryRowContext(ctx, `SELECT default_mode, generation FROM sfb_migration_state WHERE id = 1`).Scan(&t.DefaultMode, &t.Generation); err != nil {
		return nil, fmt.Errorf("read mode tables: state: %w", err)
	}
	if t.Waves, err = queryWaves(ctx, tx, `SELECT name, planned_start_ms, mode, created_at_ms FROM sfb_wave ORDER BY name`); err != nil {
		return nil, err
	}
	if t.People, err = queryPeople(ctx, tx, `SELECT address, matrix_user, wave, mode, updated_at_ms FROM sfb_person ORDER BY address`); err != nil {
		return nil, err
	}
	return &t, nil
}

// snapshotIsolation: REPEATABLE READ gives PostgreSQL one snapshot for all
// three reads; SQLite's transactions are serialisable anyway and its
// driver refuses other levels.
func (db *DB) snapshotIsolation() sql.IsolationLevel {
	if db.dialect == Postgres {
		return sql.LevelRepeatableRead
	}
	return sql.LevelDefault
}

// GetWave returns the wave called name, or an error wrapping ErrNotFound.
func (db *DB) GetWave(ctx context.Context, name string) (Wave, error) {
	waves, err := queryWaves(ctx, db.raw, `SELECT name, planned_start_ms, mode, created_at_ms FROM sfb_wave WHERE name = $1`, name)
	if err != nil {
		return Wave{}, err
	}
	if len(waves) == 0 {
		return Wave{}, fmt.Errorf("wave %q: %w", name, ErrNotFound)
	}
	return waves[0], nil
}

// GetPerson returns the person with the address, or an error wrapping
// ErrNotFound.
func (db *DB) GetPerson(ctx context.Context, address string) (Person, error) {
	people, err := queryPeople(ctx, db.raw, `SELECT address, matrix_user, wave, mode, updated_at_ms FROM sfb_person WHERE address = $1`, address)
	if err != nil {
		return Person{}, err
	}
	if len(people) == 0 {
		return Person{}, fmt.Errorf("person %q: %w", address, ErrNotFound)
	}
	return people[0], nil
}

// ApplyImport writes an import in one transaction, with its audit entry:
// either all of it lands or nothing does.
func (db *DB) ApplyImport(ctx context.Context, change ImportChange, audit AuditEvent) error {
	return db.modeTx(ctx, "apply import", audit, func(tx *sql.Tx, now int64) error {
		for _, name := range change.NewWaves {
			if _, err := tx.ExecContext(ctx, `INSERT INTO sfb_wave (name, created_at_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, now); err != nil {
				return fmt.Errorf("create wave %q: %w", name, err)
			}
		}
		for _, p := range change.People {
			_, err := tx.ExecContext(ctx, `
				INSERT INTO sfb_person (address, matrix_user, wave, mode, updated_at_ms)
				VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (address) DO UPDATE SET
					matrix_user = excluded.matrix_user,
					wave = excluded.wave,
					mode = excluded.mode,
					updated_at_ms = excluded.updated_at_ms`,
				p.Address, p.MatrixUser, nullString(p.Wave), nullString(p.Mode), now)
			if err != nil {
				return fmt.Errorf("assign %s: %w", p.Address, err)
			}
		}
		return nil
	})
}

// PutWave creates the wave or changes its planned start.
func (db *DB) PutWave(ctx context.Context, name string, plannedStart time.Time, audit AuditEvent) error {
	return db.modeTx(ctx, "put wave "+name, audit, func(tx *sql.Tx, now int64) error {
		_, err := tx.ExecContext(ctx, `
			INSERT INTO sfb_wave (name, planned_start_ms, created_at_ms) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET planned_start_ms = excluded.planned_start_ms`,
			name, nullMillis(plannedStart), now)
		return err
	})
}

// SetWaveMode sets the mode of a wave's people ("" for none, so that they
// follow the default); the wave must exist.
func (db *DB) SetWaveMode(ctx context.Context, name, mode string, audit AuditEvent) error {
	return db.modeTx(ctx, "set mode of wave "+name, audit, func(tx *sql.Tx, _ int64) error {
		return mustUpdate(tx.ExecContext(ctx, `UPDATE sfb_wave SET mode = $1 WHERE name = $2`, nullString(mode), name))
	})
}

// SetPersonMode sets a person's own mode ("" for none, so that their
// wave's or the default applies); the person must exist.
func (db *DB) SetPersonMode(ctx context.Context, address, mode string, audit AuditEvent) error {
	return db.modeTx(ctx, "set mode of "+address, audit, func(tx *sql.Tx, now int64) error {
		return mustUpdate(tx.ExecContext(ctx, `UPDATE sfb_person SET mode = $1, updated_at_ms = $2 WHERE address = $3`, nullString(mode), now, address))
	})
}

// SetDefaultMode sets the mode of people whom neither they nor their wave
// give one.
func (db *DB) SetDefaultMode(ctx context.Context, mode string, audit AuditEvent) error {
	return db.modeTx(ctx, "set default mode", audit, func(tx *sql.Tx, _ int64) error {
		_, err := tx.ExecContext(ctx, `UPDATE sfb_migration_state SET default_mode = $1 WHERE id = 1`, mode)
		return err
	})
}

// modeTx runs fn, increments the generation and appends the audit entry in
// one transaction.
func (db *DB) modeTx(ctx context.Context, what string, audit AuditEvent, fn func(tx *sql.Tx, nowMS int64) error) error {
	if audit.Time.IsZero() {
		audit.Time = time.Now()
	}
	tx, err := db.raw.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx, audit.Time.UnixMilli()); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE sfb_migration_state SET generation = generation + 1 WHERE id = 1`); err != nil {
		return fmt.Errorf("%s: count the change: %w", what, err)
	}
	if err := addAudit(ctx, tx, audit); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", what, err)
	}
	return nil
}

func mustUpdate(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryWaves(ctx context.Context, q querier, query string, args ...any) ([]Wave, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read waves: %w", err)
	}
	defer rows.Close()
	var waves []Wave
	for rows.Next() {
		var w Wave
		var start sql.NullInt64
		var mode sql.NullString
		var created int64
		if err := rows.Scan(&w.Name, &start, &mode, &created); err != nil {
			return nil, fmt.Errorf("read waves: %w", err)
		}
		if start.Valid {
			w.PlannedStart = time.UnixMilli(start.Int64)
		}
		w.Mode = mode.String
		w.CreatedAt = time.UnixMilli(created)
		waves = append(waves, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read waves: %w", err)
	}
	return waves, nil
}

func queryPeople(ctx context.Context, q querier, query string, args ...any) ([]Person, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read people: %w", err)
	}
	defer rows.Close()
	var people []Person
	for rows.Next() {
		var p Person
		var wave, mode sql.NullString
		var updated int64
		if err := rows.Scan(&p.Address, &p.MatrixUser, &wave, &mode, &updated); err != nil {
			return nil, fmt.Errorf("read people: %w", err)
		}
		p.Wave, p.Mode = wave.String, mode.String
		p.UpdatedAt = time.UnixMilli(updated)
		people = append(people, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read people: %w", err)
	}
	return people, nil
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }
