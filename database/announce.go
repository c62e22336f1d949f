package database

import (
	"context"
	"fmt"
	"time"
)

// Announcement is what the bridge bot told one person about their wave.
type Announcement struct {
	Address    string
	Wave       string
	MatrixUser string
	// RoomID is the room the messages went to (the management room).
	RoomID string
	// Sent counts the messages that went out: the announcement, then
	// the reminders. Pending is the number of the message being sent (0:
	// none): one whose sending a crash may have cut short.
	Sent, Pending int
	// FirstSent, LastSent and SignedIn are zero for "not yet".
	FirstSent, LastSent, SignedIn time.Time
}

// ListAnnouncements returns every announcement row.
func (db *DB) ListAnnouncements(ctx context.Context) ([]Announcement, error) {
	rows, err := db.raw.QueryContext(ctx, `
		SELECT address, wave, matrix_user, room_id, sent, pending, first_sent_ms, last_sent_ms, signed_in_ms
		FROM sfb_announcement ORDER BY address, wave`)
	if err != nil {
		return nil, fmt.Errorf("read announcements: %w", err)
	}
	defer rows.Close()
	var out []Announcement
	for rows.Next() {
		var a Announcement
		var first, last, signedIn int64
		if err := rows.Scan(&a.Address, &a.Wave, &a.MatrixUser, &a.RoomID, &a.Sent, &a.Pending, &first, &last, &signedIn); err != nil {
			return nil, fmt.Errorf("read announcements: %w", err)
		}
		a.FirstSent, a.LastSent, a.SignedIn = fromMillis(first), fromMillis(last), fromMillis(signedIn)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read announcements: %w", err)
	}
	return out, nil
}

// ClaimAnnouncement records that message number n to the person is about
// to be sent, before it is: a crash before AnnouncementSent leaves it
// pending, to be sent again under the same transaction ID.
func (db *DB) ClaimAnnouncement(ctx context.Context, address, wave, matrixUser string, n int) error {
	_, err := db.raw.ExecContext(ctx, `
		INSERT INTO sfb_announcement (address, wave, matrix_user, pending) VALUES ($1, $2, $3, $4)
		ON CONFLICT (address, wave) DO UPDATE SET matrix_user = excluded.matrix_user, pending = excluded.pending`,
		address, wave, matrixUser, n)
	if err != nil {
		return fmt.Errorf("claim announcement %d to %s: %w", n, address, err)
	}
	return nil
}

// AnnouncementSent records that message number n went out to room at.
func (db *DB) AnnouncementSent(ctx context.Context, address, wave, roomID string, n int, at time.Time) error {
	ms := at.UnixMilli()
	err := mustUpdate(db.raw.ExecContext(ctx, `
		UPDATE sfb_announcement SET sent = $1, pending = 0, room_id = $2, last_sent_ms = $3,
			first_sent_ms = CASE WHEN first_sent_ms = 0 THEN $3 ELSE first_sent_ms END
		WHERE address = $4 AND wave = $5`, n, roomID, ms, address, wave))
	if err != nil {
		return fmt.Errorf("record announcement %d to %s: %w", n, address, err)
	}
	return nil
}

// AnnouncementSignedIn records that the person had signed in by at
// (creating the row of someone who signed in before being told).
func (db *DB) AnnouncementSignedIn(ctx context.Context, address, wave, matrixUser string, at time.Time) error {
	_, err := db.raw.ExecContext(ctx, `
		INSERT INTO sfb_announcement (address, wave, matrix_user, signed_in_ms) VALUES ($1, $2, $3, $4)
		ON CONFLICT (address, wave) DO UPDATE SET signed_in_ms = excluded.signed_in_ms`,
		address, wave, matrixUser, at.UnixMilli())
	if err != nil {
		return fmt.Errorf("record sign-in of %s: %w", address, err)
	}
	return nil
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
