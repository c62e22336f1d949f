package database

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Audit actions.
const (
	AuditLogin              = "login"
	AuditLogout             = "logout"
	AuditReloginRequired    = "relogin_required"
	AuditTokenRenewed       = "token_renewed"
	AuditCredentialsDeleted = "credentials_deleted"
	AuditLoginFailed        = "login_failed"
	// AuditLoginState is a change of a login's bridge state (CONNECTED,
	// TRANSIENT_DISCONNECT, BAD_CREDENTIALS, ...); Detail names it.
	AuditLoginState = "login_state"

	// Admin actions of the migration team (API and commands); Actor and
	// Origin say who and from where.
	AuditImportDryRun   = "import_dry_run"
	AuditImport         = "import"
	AuditWaveSet        = "wave_set"
	AuditWaveModeSet    = "wave_mode_set"
	AuditPersonModeSet  = "person_mode_set"
	AuditDefaultModeSet = "default_mode_set"

	// AuditErased records that a person's bridge data was erased; its
	// LoginID and MatrixUser are pseudonyms (see ErasePerson).
	AuditErased = "erased"
)

var auditActions = map[string]bool{
	AuditLogin:              true,
	AuditLogout:             true,
	AuditReloginRequired:    true,
	AuditTokenRenewed:       true,
	AuditCredentialsDeleted: true,
	AuditLoginFailed:        true,
	AuditLoginState:         true,
	AuditImportDryRun:       true,
	AuditImport:             true,
	AuditWaveSet:            true,
	AuditWaveModeSet:        true,
	AuditPersonModeSet:      true,
	AuditDefaultModeSet:     true,
	AuditErased:             true,
}

// MaxAuditDetail is the longest Detail kept, in bytes; longer ones are cut.
const MaxAuditDetail = 4096

// MaxAuditList is the largest limit ListAudit accepts.
const MaxAuditList = 10000

// AuditEvent is one entry of the audit log. Detail is free text for people
// and must never contain a secret.
type AuditEvent struct {
	ID         int64 // assigned by AddAudit
	LoginID    string
	MatrixUser string
	Action     string // one of the Audit* constants
	Detail     string
	// Actor is who did an admin action (a Matrix user ID, or the
	// provisioning secret); Origin is from where (a remote address, a
	// management room). Both are empty for what the bridge did itself.
	Actor  string
	Origin string
	Time   time.Time // set to now by AddAudit when zero; millisecond precision
}

// AddAudit appends e to the audit log. Action must be one of the Audit*
// constants and at least one of LoginID, MatrixUser and Actor must be set.
// Detail is made valid UTF-8 without NUL bytes and cut to MaxAuditDetail
// bytes, because one odd message from outside must not lose the event.
func (db *DB) AddAudit(ctx context.Context, e AuditEvent) error {
	return addAudit(ctx, db.raw, e)
}

// execer is a *sql.DB or a *sql.Tx: an admin action's audit entry is
// written in the transaction of the change it records.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func addAudit(ctx context.Context, ex execer, e AuditEvent) error {
	if !auditActions[e.Action] {
		return fmt.Errorf("add audit event for %q: unknown action %q", e.LoginID, e.Action)
	}
	if e.LoginID == "" && e.MatrixUser == "" && e.Actor == "" {
		return fmt.Errorf("add %s audit event: neither login ID, Matrix user nor actor given", e.Action)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	_, err := ex.ExecContext(ctx, `
		INSERT INTO sfb_audit (login_id, matrix_user, action, detail, time_ms, actor, origin)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		cleanText(e.LoginID, MaxAuditDetail), cleanText(e.MatrixUser, MaxAuditDetail), e.Action,
		cleanText(e.Detail, MaxAuditDetail), e.Time.UnixMilli(),
		cleanText(e.Actor, MaxAuditDetail), cleanText(e.Origin, MaxAuditDetail))
	if err != nil {
		return fmt.Errorf("add %s audit event for %q: %w", e.Action, e.LoginID, err)
	}
	return nil
}

// ListAudit returns the newest events of a login (of every login when
// loginID is empty), newest first; events of the same millisecond come in
// reverse order of insertion. limit must be between 1 and MaxAuditList.
func (db *DB) ListAudit(ctx context.Context, loginID string, limit int) ([]AuditEvent, error) {
	if limit < 1 || limit > MaxAuditList {
		return nil, fmt.Errorf("list audit events: limit %d out of range 1..%d", limit, MaxAuditList)
	}
	query := `SELECT id, login_id, matrix_user, action, detail, time_ms, actor, origin FROM sfb_audit`
	args := []any{}
	if loginID != "" {
		query += ` WHERE login_id = $1 ORDER BY time_ms DESC, id DESC LIMIT $2`
		args = append(args, loginID, limit)
	} else {
		query += ` ORDER BY time_ms DESC, id DESC LIMIT $1`
		args = append(args, limit)
	}
	rows, err := db.raw.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit events of %q: %w", loginID, err)
	}
	defer rows.Close()
	var events []AuditEvent
	for rows.Next() {
		var e AuditEvent
		var ms int64
		if err := rows.Scan(&e.ID, &e.LoginID, &e.MatrixUser, &e.Action, &e.Detail, &ms, &e.Actor, &e.Origin); err != nil {
			return nil, fmt.Errorf("list audit events of %q: %w", loginID, err)
		}
		e.Time = time.UnixMilli(ms)
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit events of %q: %w", loginID, err)
	}
	return events, nil
}

// cleanText makes s storable as PostgreSQL text (valid UTF-8, no NUL) and
// cuts it to at most max bytes without splitting a character.
func cleanText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
