package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PutResumeState stores the transport's resume state of a login, replacing
// the previous one. An empty state deletes it.
func (db *DB) PutResumeState(ctx context.Context, loginID, state string) error {
	if loginID == "" {
		return errors.New("put resume state: empty login ID")
	}
	if state == "" {
		return db.DeleteResumeState(ctx, loginID)
	}
	_, err := db.raw.ExecContext(ctx, `
		INSERT INTO sfb_resume_state (login_id, state, updated_at_ms) VALUES ($1, $2, $3)
		ON CONFLICT (login_id) DO UPDATE SET state = excluded.state, updated_at_ms = excluded.updated_at_ms`,
		loginID, state, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("put resume state for %s: %w", loginID, err)
	}
	return nil
}

// GetResumeState returns the stored resume state of a login, or "" when
// none is stored.
func (db *DB) GetResumeState(ctx context.Context, loginID string) (string, error) {
	var state string
	err := db.raw.QueryRowContext(ctx, `SELECT state FROM sfb_resume_state WHERE login_id = $1`, loginID).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("get resume state for %s: %w", loginID, err)
	}
	return state, nil
}

// DeleteResumeState forgets the resume state of a login (logout). Deleting
// one that is not stored is not an error.
func (db *DB) DeleteResumeState(ctx context.Context, loginID string) error {
	if _, err := db.raw.ExecContext(ctx, `DELETE FROM sfb_resume_state WHERE login_id = $1`, loginID); err != nil {
		return fmt.Errorf("delete resume state for %s: %w", loginID, err)
	}
	return nil
}
