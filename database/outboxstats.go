package database

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// OutboxSummary counts the outbox's entries of every login and returns
// when the oldest was created (zero when there is none), for the metrics.
func (db *DB) OutboxSummary(ctx context.Context) (entries int, oldest time.Time, err error) {
	var first sql.NullInt64
	if err := db.raw.QueryRowContext(ctx, `SELECT COUNT(*), MIN(created_at_ms) FROM sfb_outbox`).Scan(&entries, &first); err != nil {
		return 0, time.Time{}, fmt.Errorf("summarise outbox: %w", err)
	}
	if first.Valid {
		oldest = time.UnixMilli(first.Int64)
	}
	return entries, oldest, nil
}
