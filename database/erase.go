package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// PseudonymPrefix starts every pseudonym of an erased person in the audit
// log, so that nobody takes one for an address.
const PseudonymPrefix = "erased:"

// Erasure says whose data ErasePerson removes and how the audit log is to
// remember it.
type Erasure struct {
	// Address is the person's canonical SfB address (their login ID).
	Address string
	// MatrixUser is their Matrix user ID, if known.
	MatrixUser string
	// Pseudonym maps an identifier to its one-way pseudonym (a keyed
	// hash, so that nobody without the key can test a guessed address
	// against the log). It must be deterministic: the same person gets the
	// same pseudonym in every row.
	Pseudonym func(identifier string) string
	// Record is the erasure's own audit entry: Actor, Origin and Detail
	// (which must not name the person); LoginID and MatrixUser are set
	// here to the pseudonyms.
	Record AuditEvent
}

// Erased counts what ErasePerson removed or anonymised.
type Erased struct {
	Credentials  int64 `json:"credentials"`
	ResumeStates int64 `json:"resume_states"`
	Outbox       int64 `json:"outbox"`
	People       int64 `json:"people"`
	// Announcements are the bridge bot's messages about their wave.
	Announcements int64 `json:"announcements"`
	GroupRows     int64 `json:"group_memberships"`
	GroupSeen     int64 `json:"group_message_copies"`
	AuditRows     int64 `json:"audit_rows_anonymised"`
}

// ErasePerson deletes everything the connector's tables hold of one
// person (sealed credentials, resume state, unsent Matrix messages, their
// wave membership and mode, the record of their wave's announcement, their
// place in group conversations) and
// replaces their address and Matrix ID in
// every audit row with pseudonyms, then appends the erasure's own record;
// all in one transaction. The migration generation is incremented so that
// every bridge process forgets the person's mode.
//
// Every table of this package must be handled here:
// TestErasePersonCoversEveryTable fails for a new one that is not.
func (db *DB) ErasePerson(ctx context.Context, e Erasure) (Erased, error) {
	var n Erased
	if e.Address == "" || e.Pseudonym == nil {
		return n, errors.New("erase person: address and pseudonym function are required")
	}
	what := "erase person " + e.Pseudonym(e.Address)
	tx, err := db.raw.BeginTx(ctx, nil)
	if err != nil {
		return n, fmt.Errorf("%s: %w", what, err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, d := range []struct {
		count *int64
		query string
		args  []any
	}{
		{&n.Credentials, `DELETE FROM sfb_credential WHERE login_id = $1`, []any{e.Address}},
		{&n.ResumeStates, `DELETE FROM sfb_resume_state WHERE login_id = $1`, []any{e.Address}},
		{&n.Outbox, `DELETE FROM sfb_outbox WHERE login_id = $1 OR (sender_mxid = $2 AND $2 <> '')`, []any{e.Address, e.MatrixUser}},
		{&n.People, `DELETE FROM sfb_person WHERE address = $1 OR (matrix_user = $2 AND $2 <> '')`, []any{e.Address, e.MatrixUser}},
		// What the bridge bot told them about their wave, and when.
		{&n.Announcements, `DELETE FROM sfb_announcement WHERE address = $1 OR (matrix_user = $2 AND $2 <> '')`, []any{e.Address, e.MatrixUser}},
		// Group conversations go on without them; the copies of group
		// messages their login received, or that they sent, are only
		// kept to match copies from other logins for a while.
		{&n.GroupRows, `DELETE FROM sfb_group_participant WHERE uri = $1 OR uri = $2`, []any{e.Address, "sip:" + e.Address}},
		{&n.GroupSeen, `DELETE FROM sfb_group_seen WHERE login_id = $1 OR sender = $1 OR sender = $2`, []any{e.Address, "sip:" + e.Address}},
	} {
		res, err := tx.ExecContext(ctx, d.query, d.args...)
		if err != nil {
			return n, fmt.Errorf("%s: %w", what, err)
		}
		if *d.count, err = res.RowsAffected(); err != nil {
			return n, fmt.Errorf("%s: count: %w", what, err)
		}
	}
	if n.People > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE sfb_migration_state SET generation = generation + 1 WHERE id = 1`); err != nil {
			return n, fmt.Errorf("%s: count the change: %w", what, err)
		}
	}
	if n.AuditRows, err = anonymiseAudit(ctx, tx, e); err != nil {
		return n, fmt.Errorf("%s: %w", what, err)
	}
	record := e.Record
	record.Action = AuditErased
	record.LoginID = e.Pseudonym(e.Address)
	record.MatrixUser = ""
	if e.MatrixUser != "" {
		record.MatrixUser = e.Pseudonym(e.MatrixUser)
	}
	if record.Time.IsZero() {
		record.Time = time.Now()
	}
	if err := addAudit(ctx, tx, record); err != nil {
		return n, fmt.Errorf("%s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return n, fmt.Errorf("%s: commit: %w", what, err)
	}
	return n, nil
}

// anonymiseAudit replaces the person's address and Matrix ID by their
// pseudonyms in every audit row that names them: as the login, the Matrix
// user, the actor of an admin action, or in the detail text. It is the
// only code that changes audit rows (TestAuditIsAppendOnly).
func anonymiseAudit(ctx context.Context, tx *sql.Tx, e Erasure) (int64, error) {
	names := []string{e.Address}
	if e.MatrixUser != "" {
		names = append(names, e.MatrixUser)
	}
	var where []string
	var args []any
	for _, name := range names {
		args = append(args, name, "%"+strings.ToLower(name)+"%")
		i := len(args)
		where = append(where, fmt.Sprintf(`login_id = $%d OR matrix_user = $%d OR actor = $%d OR LOWER(detail) LIKE $%d OR LOWER(origin) LIKE $%d`, i-1, i-1, i-1, i, i))
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, login_id, matrix_user, actor, origin, detail FROM sfb_audit WHERE `+strings.Join(where, " OR "), args...)
	if err != nil {
		return 0, fmt.Errorf("find audit rows: %w", err)
	}
	type row struct {
		id                                         int64
		loginID, matrixUser, actor, origin, detail string
	}
	var found []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.loginID, &r.matrixUser, &r.actor, &r.origin, &r.detail); err != nil {
			_ = rows.Close()
			return 0, fmt.Errorf("find audit rows: %w", err)
		}
		found = append(found, r)
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("find audit rows: %w", err)
	}
	replace := func(s string) string {
		for _, name := range names {
			s = replaceFold(s, name, e.Pseudonym(name))
		}
		return s
	}
	for _, r := range found {
		_, err := tx.ExecContext(ctx, `UPDATE sfb_audit SET login_id = $1, matrix_user = $2, actor = $3, origin = $4, detail = $5 WHERE id = $6`,
			replace(r.loginID), replace(r.matrixUser), replace(r.actor), replace(r.origin), cleanText(replace(r.detail), MaxAuditDetail), r.id)
		if err != nil {
			return 0, fmt.Errorf("anonymise audit row %d: %w", r.id, err)
		}
	}
	return int64(len(found)), nil
}

// replaceFold replaces every occurrence of old in s, in any letter case,
// by repl. Addresses are ASCII in practice; where lower-casing would change
// the length of s, only exact occurrences are replaced.
func replaceFold(s, old, repl string) string {
	lower, lowerOld := strings.ToLower(s), strings.ToLower(old)
	if old == "" || len(lower) != len(s) || len(lowerOld) != len(old) {
		return strings.ReplaceAll(s, old, repl)
	}
	var b strings.Builder
	for {
		i := strings.Index(lower, lowerOld)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(repl)
		s, lower = s[i+len(old):], lower[i+len(old):]
	}
}
