package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Group is what the bridge keeps of a multi-party conversation.
type Group struct {
	ThreadID string
	Subject  string
	// Participants are the URIs of the people in it, the bridge's users
	// included, sorted.
	Participants []string
}

// GetGroup returns the stored conversation threadID, or an error wrapping
// ErrNotFound.
func (db *DB) GetGroup(ctx context.Context, threadID string) (Group, error) {
	g := Group{ThreadID: threadID}
	err := db.raw.QueryRowContext(ctx, `SELECT subject FROM sfb_group WHERE thread_id = $1`, threadID).Scan(&g.Subject)
	if errors.Is(err, sql.ErrNoRows) {
		return g, fmt.Errorf("get group %s: %w", threadID, ErrNotFound)
	} else if err != nil {
		return g, fmt.Errorf("get group %s: %w", threadID, err)
	}
	rows, err := db.raw.QueryContext(ctx, `SELECT uri FROM sfb_group_participant WHERE thread_id = $1 ORDER BY uri`, threadID)
	if err != nil {
		return g, fmt.Errorf("get participants of group %s: %w", threadID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var uri string
		if err := rows.Scan(&uri); err != nil {
			return g, fmt.Errorf("get participants of group %s: %w", threadID, err)
		}
		g.Participants = append(g.Participants, uri)
	}
	if err := rows.Err(); err != nil {
		return g, fmt.Errorf("get participants of group %s: %w", threadID, err)
	}
	return g, nil
}

// EnsureGroup stores the conversation threadID with subject unless it is
// stored already; it reports whether it added it.
func (db *DB) EnsureGroup(ctx context.Context, threadID, subject string) (bool, error) {
	if threadID == "" {
		return false, errors.New("ensure group: empty thread ID")
	}
	res, err := db.raw.ExecContext(ctx, `INSERT INTO sfb_group (thread_id, subject, updated_at_ms) VALUES ($1, $2, $3)
		ON CONFLICT (thread_id) DO NOTHING`, threadID, subject, time.Now().UnixMilli())
	if err != nil {
		return false, fmt.Errorf("ensure group %s: %w", threadID, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// SetGroupSubject stores the subject of the conversation threadID (adding
// the conversation when needed) and reports whether it changed.
func (db *DB) SetGroupSubject(ctx context.Context, threadID, subject string) (bool, error) {
	if threadID == "" {
		return false, errors.New("set group subject: empty thread ID")
	}
	res, err := db.raw.ExecContext(ctx, `INSERT INTO sfb_group (thread_id, subject, updated_at_ms) VALUES ($1, $2, $3)
		ON CONFLICT (thread_id) DO UPDATE SET subject = excluded.subject, updated_at_ms = excluded.updated_at_ms
		WHERE sfb_group.subject <> excluded.subject`, threadID, subject, time.Now().UnixMilli())
	if err != nil {
		return false, fmt.Errorf("set subject of group %s: %w", threadID, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// AddGroupParticipant records uri in the conversation threadID and
// reports whether it was new there.
func (db *DB) AddGroupParticipant(ctx context.Context, threadID, uri string) (bool, error) {
	if _, err := db.EnsureGroup(ctx, threadID, ""); err != nil {
		return false, err
	}
	res, err := db.raw.ExecContext(ctx, `INSERT INTO sfb_group_participant (thread_id, uri) VALUES ($1, $2)
		ON CONFLICT (thread_id, uri) DO NOTHING`, threadID, uri)
	if err != nil {
		return false, fmt.Errorf("add %s to group %s: %w", uri, threadID, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// RemoveGroupParticipant forgets uri in the conversation threadID and
// reports whether it was there.
func (db *DB) RemoveGroupParticipant(ctx context.Context, threadID, uri string) (bool, error) {
	res, err := db.raw.ExecContext(ctx, `DELETE FROM sfb_group_participant WHERE thread_id = $1 AND uri = $2`, threadID, uri)
	if err != nil {
		return false, fmt.Errorf("remove %s from group %s: %w", uri, threadID, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// GroupCopy is one login's copy of a group message.
type GroupCopy struct {
	LoginID   string
	MessageID string // the login's own SfB message ID
	ThreadID  string
	Sender    string
	// Fingerprint identifies the text; equal for every copy of a message.
	Fingerprint string
	SentAt      time.Time // stored with millisecond precision
}

// MatchGroupCopy returns the bridged message c is a copy of, and whether
// it was already matched before (the same login delivered the same
// message again). A message is new when no other login's copy with the
// same sender and fingerprint, sent within window of c, waits for a copy
// from c's login; then newID is its ID. Of several, the nearest in time is
// taken. The match is recorded; the caller serialises calls for one
// thread.
func (db *DB) MatchGroupCopy(ctx context.Context, c GroupCopy, window time.Duration, newID string) (canonical string, again bool, err error) {
	if c.LoginID == "" || c.MessageID == "" || c.ThreadID == "" {
		return "", false, fmt.Errorf("match group message %q of %q in %q: empty login, message or thread", c.MessageID, c.LoginID, c.ThreadID)
	}
	err = db.raw.QueryRowContext(ctx, `SELECT canonical_id FROM sfb_group_seen WHERE login_id = $1 AND message_id = $2`,
		c.LoginID, c.MessageID).Scan(&canonical)
	switch {
	case err == nil:
		return canonical, true, nil
	case !errors.Is(err, sql.ErrNoRows):
		return "", false, fmt.Errorf("look up group message %s of %s: %w", c.MessageID, c.LoginID, err)
	}
	at := c.SentAt.UnixMilli()
	err = db.raw.QueryRowContext(ctx, `SELECT s.canonical_id FROM sfb_group_seen s
		WHERE s.thread_id = $1 AND s.sender = $2 AND s.fingerprint = $3
		  AND s.sent_at_ms BETWEEN $4 AND $5 AND s.login_id <> $6
		  AND NOT EXISTS (SELECT 1 FROM sfb_group_seen o
		      WHERE o.login_id = $6 AND o.thread_id = s.thread_id AND o.canonical_id = s.canonical_id)
		ORDER BY ABS(s.sent_at_ms - $7), s.canonical_id LIMIT 1`,
		c.ThreadID, c.Sender, c.Fingerprint, at-window.Milliseconds(), at+window.Milliseconds(), c.LoginID, at).Scan(&canonical)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		canonical = newID
	case err != nil:
		return "", false, fmt.Errorf("match group message %s of %s: %w", c.MessageID, c.LoginID, err)
	}
	if _, err := db.raw.ExecContext(ctx, `INSERT INTO sfb_group_seen
		(login_id, message_id, thread_id, canonical_id, sender, fingerprint, sent_at_ms, seen_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		c.LoginID, c.MessageID, c.ThreadID, canonical, c.Sender, c.Fingerprint, at, time.Now().UnixMilli()); err != nil {
		return "", false, fmt.Errorf("record group message %s of %s: %w", c.MessageID, c.LoginID, err)
	}
	return canonical, false, nil
}

// PruneGroupCopies forgets the copies recorded before before; a copy
// delivered again after that is bridged again.
func (db *DB) PruneGroupCopies(ctx context.Context, before time.Time) (int64, error) {
	res, err := db.raw.ExecContext(ctx, `DELETE FROM sfb_group_seen WHERE seen_at_ms < $1`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune group messages: %w", err)
	}
	return res.RowsAffected()
}

// RecordGroupCopy stores c as a copy of the bridged message canonical
// without matching it. A copy stored already takes c's text and time: a
// message sent again after a restart is matched around its new time.
func (db *DB) RecordGroupCopy(ctx context.Context, c GroupCopy, canonical string) error {
	if c.LoginID == "" || c.MessageID == "" || c.ThreadID == "" || canonical == "" {
		return fmt.Errorf("record group message %q of %q in %q: empty login, message, thread or bridged ID", c.MessageID, c.LoginID, c.ThreadID)
	}
	if _, err := db.raw.ExecContext(ctx, `INSERT INTO sfb_group_seen
		(login_id, message_id, thread_id, canonical_id, sender, fingerprint, sent_at_ms, seen_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (login_id, message_id) DO UPDATE SET fingerprint = excluded.fingerprint, sent_at_ms = excluded.sent_at_ms, seen_at_ms = excluded.seen_at_ms`,
		c.LoginID, c.MessageID, c.ThreadID, canonical, c.Sender, c.Fingerprint, c.SentAt.UnixMilli(), time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("record group message %s of %s: %w", c.MessageID, c.LoginID, err)
	}
	return nil
}
