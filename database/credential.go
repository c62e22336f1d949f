package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Credential is what the bridge keeps to sign a login in again without the
// user: the address and user name, and the password and token sealed by the
// caller (internal/secret, with the login ID as associated data). This
// package never sees a plaintext secret.
//
// Times are stored with millisecond precision.
type Credential struct {
	LoginID       string // the bridge login ID (lower-case SfB address); matched exactly
	SignInAddress string
	Username      string
	Password      []byte // sealed; nil when the password is not kept
	Token         []byte // sealed; nil when there is none
	TokenExpiry   time.Time
	UpdatedAt     time.Time // set to now by PutCredential when zero
}

// PutCredential stores c, replacing what was stored for c.LoginID. An empty
// Password or Token is stored as none (NULL), a zero TokenExpiry as unknown.
func (db *DB) PutCredential(ctx context.Context, c Credential) error {
	if c.LoginID == "" {
		return errors.New("put credential: empty login ID")
	}
	if c.SignInAddress == "" {
		return fmt.Errorf("put credential for %s: empty sign-in address", c.LoginID)
	}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = time.Now()
	}
	_, err := db.raw.ExecContext(ctx, `
		INSERT INTO sfb_credential (login_id, sign_in_address, username, password, token, token_expiry_ms, updated_at_ms)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (login_id) DO UPDATE SET
			sign_in_address = excluded.sign_in_address,
			username = excluded.username,
			password = excluded.password,
			token = excluded.token,
			token_expiry_ms = excluded.token_expiry_ms,
			updated_at_ms = excluded.updated_at_ms`,
		c.LoginID, c.SignInAddress, c.Username, nullBytes(c.Password), nullBytes(c.Token),
		nullMillis(c.TokenExpiry), c.UpdatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("put credential for %s: %w", c.LoginID, err)
	}
	return nil
}

// GetCredential returns the credential of a login, or an error wrapping
// ErrNotFound when none is stored.
func (db *DB) GetCredential(ctx context.Context, loginID string) (*Credential, error) {
	c := Credential{LoginID: loginID}
	var expiry sql.NullInt64
	var updated int64
	err := db.raw.QueryRowContext(ctx, `
		SELECT sign_in_address, username, password, token, token_expiry_ms, updated_at_ms
		FROM sfb_credential WHERE login_id = $1`, loginID).
		Scan(&c.SignInAddress, &c.Username, &c.Password, &c.Token, &expiry, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("get credential for %s: %w", loginID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get credential for %s: %w", loginID, err)
	}
	if len(c.Password) == 0 {
		c.Password = nil
	}
	if len(c.Token) == 0 {
		c.Token = nil
	}
	if expiry.Valid {
		c.TokenExpiry = time.UnixMilli(expiry.Int64)
	}
	c.UpdatedAt = time.UnixMilli(updated)
	return &c, nil
}

// DeleteCredential forgets the credential of a login. Deleting one that is
// not stored is not an error, so logout can always call it.
func (db *DB) DeleteCredential(ctx context.Context, loginID string) error {
	if _, err := db.raw.ExecContext(ctx, `DELETE FROM sfb_credential WHERE login_id = $1`, loginID); err != nil {
		return fmt.Errorf("delete credential for %s: %w", loginID, err)
	}
	return nil
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// nullMillis is t in Unix milliseconds, NULL for the zero time.
func nullMillis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}
