package database

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

// OutboxEntry is a Matrix message the bridge accepted for SfB and has not
// yet settled: the converted text and what is needed to report the outcome
// in the room later, possibly after a restart.
//
// CreatedAt is stored with millisecond precision.
type OutboxEntry struct {
	ID         int64 // assigned by AddOutbox; orders a login's and peer's entries
	LoginID    string
	Peer       string // the SfB address the message goes to
	EventID    string // the Matrix event
	RoomID     string
	SenderMXID string
	MsgType    string
	TxnID      string // what the bridge matches the outcome with
	Text       string
	HTML       string
	CreatedAt  time.Time // set to now by AddOutbox when zero

	// SentID is the SfB message ID, set by MarkOutboxAccepted once SfB
	// took the message (its outcome not yet known) or by MarkOutboxSent;
	// SentAt is set by MarkOutboxSent once SfB confirmed delivery.
	SentID string
	SentAt time.Time

	// Sealed is the message as the bridge sealed it with its secret key;
	// Text and HTML are then empty. The database keeps it as it is.
	Sealed []byte
}

// AddOutbox stores e and returns it with its ID. The same Matrix event
// (login and event ID) is stored once: adding it again returns the stored
// entry and added false, or, when that one was deleted in the meantime,
// e with ID 0. A deleted entry is not remembered: adding its event later
// stores it again.
func (db *DB) AddOutbox(ctx context.Context, e OutboxEntry) (stored OutboxEntry, added bool, err error) {
	switch {
	case e.LoginID == "":
		return e, false, errors.New("add outbox entry: empty login ID")
	case e.Peer == "":
		return e, false, fmt.Errorf("add outbox entry for %s: empty peer", e.LoginID)
	case e.EventID == "":
		return e, false, fmt.Errorf("add outbox entry for %s: empty event ID", e.LoginID)
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = time.Now()
	}
	err = db.raw.QueryRowContext(ctx, `
		INSERT INTO sfb_outbox (login_id, peer, event_id, room_id, sender_mxid, msg_type, txn_id, text, html, sealed, created_at_ms)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (login_id, event_id) DO NOTHING
		RETURNING id`,
		e.LoginID, e.Peer, e.EventID, e.RoomID, e.SenderMXID, e.MsgType, e.TxnID, e.Text, e.HTML, e.Sealed, e.CreatedAt.UnixMilli()).Scan(&e.ID)
	switch {
	case err == nil:
		e.CreatedAt = time.UnixMilli(e.CreatedAt.UnixMilli())
		return e, true, nil
	case !errors.Is(err, sql.ErrNoRows):
		return e, false, fmt.Errorf("add outbox entry %s for %s: %w", e.EventID, e.LoginID, err)
	}
	// Stored before. It may be settled and gone by now: then ID is 0.
	row := db.raw.QueryRowContext(ctx, `SELECT `+outboxColumns+` FROM sfb_outbox WHERE login_id = $1 AND event_id = $2`, e.LoginID, e.EventID)
	got, err := scanOutbox(row)
	if errors.Is(err, sql.ErrNoRows) {
		e.ID = 0
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("add outbox entry %s for %s: read the stored one: %w", e.EventID, e.LoginID, err)
	}
	return got, false, nil
}

// NextOutbox returns the oldest entry of a login for peer, or an error
// wrapping ErrNotFound when there is none.
func (db *DB) NextOutbox(ctx context.Context, loginID, peer string) (OutboxEntry, error) {
	row := db.raw.QueryRowContext(ctx, `SELECT `+outboxColumns+` FROM sfb_outbox
		WHERE login_id = $1 AND peer = $2 ORDER BY id LIMIT 1`, loginID, peer)
	e, err := scanOutbox(row)
	if errors.Is(err, sql.ErrNoRows) {
		return OutboxEntry{}, fmt.Errorf("next outbox entry of %s for %s: %w", loginID, peer, ErrNotFound)
	}
	if err != nil {
		return OutboxEntry{}, fmt.Errorf("next outbox entry of %s for %s: %w", loginID, peer, err)
	}
	return e, nil
}

// OutboxPeers returns the peers a login has entries for, in the order of
// their oldest entry.
func (db *DB) OutboxPeers(ctx context.Context, loginID string) ([]string, error) {
	rows, err := db.raw.QueryContext(ctx, `SELECT peer FROM sfb_outbox WHERE login_id = $1 GROUP BY peer ORDER BY MIN(id)`, loginID)
	if err != nil {
		return nil, fmt.Errorf("list outbox peers of %s: %w", loginID, err)
	}
	defer rows.Close()
	var peers []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("list outbox peers of %s: %w", loginID, err)
		}
		peers = append(peers, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list outbox peers of %s: %w", loginID, err)
	}
	return peers, nil
}

// MarkOutboxAccepted records that SfB took the entry with id as message
// messageID and has not said yet whether it delivered it.
func (db *DB) MarkOutboxAccepted(ctx context.Context, id int64, messageID string) error {
	if messageID == "" {
		return fmt.Errorf("mark outbox entry %d accepted: empty message ID", id)
	}
	if _, err := db.raw.ExecContext(ctx, `UPDATE sfb_outbox SET sent_message_id = $1 WHERE id = $2`, messageID, id); err != nil {
		return fmt.Errorf("mark outbox entry %d accepted: %w", id, err)
	}
	return nil
}

// MarkOutboxSent records that SfB confirmed delivery of the entry with id
// as message messageID at sentAt (stored with millisecond precision).
func (db *DB) MarkOutboxSent(ctx context.Context, id int64, messageID string, sentAt time.Time) error {
	if messageID == "" {
		return fmt.Errorf("mark outbox entry %d sent: empty message ID", id)
	}
	if _, err := db.raw.ExecContext(ctx, `UPDATE sfb_outbox SET sent_message_id = $1, sent_at_ms = $2 WHERE id = $3`,
		messageID, sentAt.UnixMilli(), id); err != nil {
		return fmt.Errorf("mark outbox entry %d sent: %w", id, err)
	}
	return nil
}

// DeleteOutbox removes the entry with id. Deleting one that is gone is not
// an error.
func (db *DB) DeleteOutbox(ctx context.Context, id int64) error {
	if _, err := db.raw.ExecContext(ctx, `DELETE FROM sfb_outbox WHERE id = $1`, id); err != nil {
		return fmt.Errorf("delete outbox entry %d: %w", id, err)
	}
	return nil
}

// DeleteOutboxOfLogin removes every entry of a login (logout) and returns
// them, oldest first, so that the caller can tell each sender that the
// message was not sent.
func (db *DB) DeleteOutboxOfLogin(ctx context.Context, loginID string) ([]OutboxEntry, error) {
	// DELETE ... RETURNING: PostgreSQL, and SQLite since 3.35.
	rows, err := db.raw.QueryContext(ctx, `DELETE FROM sfb_outbox WHERE login_id = $1 RETURNING `+outboxColumns, loginID)
	if err != nil {
		return nil, fmt.Errorf("delete outbox of %s: %w", loginID, err)
	}
	defer rows.Close()
	var entries []OutboxEntry
	for rows.Next() {
		e, err := scanOutbox(rows)
		if err != nil {
			return nil, fmt.Errorf("delete outbox of %s: %w", loginID, err)
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("delete outbox of %s: %w", loginID, err)
	}
	// RETURNING promises no order.
	slices.SortFunc(entries, func(a, b OutboxEntry) int { return cmp.Compare(a.ID, b.ID) })
	return entries, nil
}

const outboxColumns = `id, login_id, peer, event_id, room_id, sender_mxid, msg_type, txn_id, text, html, created_at_ms, sent_message_id, sent_at_ms, sealed`

func scanOutbox(row interface{ Scan(...any) error }) (OutboxEntry, error) {
	var e OutboxEntry
	var created int64
	var sentID sql.NullString
	var sentAt sql.NullInt64
	if err := row.Scan(&e.ID, &e.LoginID, &e.Peer, &e.EventID, &e.RoomID, &e.SenderMXID, &e.MsgType, &e.TxnID, &e.Text, &e.HTML, &created, &sentID, &sentAt, &e.Sealed); err != nil {
		return OutboxEntry{}, err
	}
	e.CreatedAt = time.UnixMilli(created)
	e.SentID = sentID.String
	if sentAt.Valid {
		e.SentAt = time.UnixMilli(sentAt.Int64)
	}
	return e, nil
}
