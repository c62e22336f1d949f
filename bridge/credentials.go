package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// The associated data binds each sealed value to its login and its column:
// a password copied into another row, or into the token column, does not
// open.
func passwordAD(loginID networkid.UserLoginID) []byte { return []byte("password:" + loginID) }
func tokenAD(loginID networkid.UserLoginID) []byte    { return []byte("token:" + loginID) }

// errUnreadableCredentials: the stored secrets do not open with the
// configured key (it changed, or the row was tampered with).
var errUnreadableCredentials = errors.New("stored credentials cannot be decrypted with the configured secret key")

// saveCredentials stores what a later Connect needs: the password only when
// the operator keeps passwords, the token when there is a key to seal it.
func (c *Connector) saveCredentials(ctx context.Context, loginID networkid.UserLoginID, creds sfb.Credentials, tok sfb.Token) error {
	row := database.Credential{
		LoginID:       string(loginID),
		SignInAddress: creds.SignInAddress,
		Username:      creds.Username,
	}
	if c.box != nil {
		if c.Config.KeepPassword && creds.Password != "" {
			sealed, err := c.box.Seal([]byte(creds.Password), passwordAD(loginID))
			if err != nil {
				return fmt.Errorf("seal password of %s: %w", loginID, err)
			}
			row.Password = sealed
		}
		if tok.Value != "" {
			sealed, err := c.box.Seal([]byte(tok.Value), tokenAD(loginID))
			if err != nil {
				return fmt.Errorf("seal token of %s: %w", loginID, err)
			}
			row.Token = sealed
			row.TokenExpiry = tok.ExpiresAt
		}
	}
	if err := c.db.PutCredential(ctx, row); err != nil {
		return fmt.Errorf("store credentials of %s: %w", loginID, err)
	}
	return nil
}

// saveToken replaces the stored token of a login, keeping the rest. A login
// whose credentials were deleted meanwhile (logout) stays deleted.
func (c *Connector) saveToken(ctx context.Context, loginID networkid.UserLoginID, tok sfb.Token) error {
	if c.box == nil || tok.Value == "" {
		return nil
	}
	row, err := c.db.GetCredential(ctx, string(loginID))
	if errors.Is(err, database.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	sealed, err := c.box.Seal([]byte(tok.Value), tokenAD(loginID))
	if err != nil {
		return fmt.Errorf("seal token of %s: %w", loginID, err)
	}
	row.Token = sealed
	row.TokenExpiry = tok.ExpiresAt
	row.UpdatedAt = time.Time{}
	if err := c.db.PutCredential(ctx, *row); err != nil {
		return fmt.Errorf("store token of %s: %w", loginID, err)
	}
	return nil
}

// loadSignInRequest reads and opens what is stored for a login. A stored
// password is dropped (and erased) when the operator has since turned
// keep_password off.
func (c *Connector) loadSignInRequest(ctx context.Context, loginID networkid.UserLoginID) (sfb.SignInRequest, error) {
	row, err := c.db.GetCredential(ctx, string(loginID))
	if errors.Is(err, database.ErrNotFound) {
		return sfb.SignInRequest{}, fmt.Errorf("no stored credentials for %s: %w", loginID, sfb.ErrCredentialsRequired)
	} else if err != nil {
		return sfb.SignInRequest{}, fmt.Errorf("load credentials of %s: %w", loginID, err)
	}
	req := sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: row.SignInAddress, Username: row.Username}}
	if req.Resume, err = c.db.GetResumeState(ctx, string(loginID)); err != nil {
		// Only costs what the server holds for the user: sign in afresh.
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to load SfB resume state, signing in without it")
		req.Resume = ""
	}
	if (row.Password != nil || row.Token != nil) && c.box == nil {
		return sfb.SignInRequest{}, fmt.Errorf("%w (no key is configured): %w", errUnreadableCredentials, sfb.ErrCredentialsRequired)
	}
	if row.Password != nil {
		if !c.Config.KeepPassword {
			row.Password = nil
			row.UpdatedAt = time.Time{}
			if err := c.db.PutCredential(ctx, *row); err != nil {
				return sfb.SignInRequest{}, fmt.Errorf("erase stored password of %s: %w", loginID, err)
			}
			zerolog.Ctx(ctx).Info().Msg("Erased stored password because keep_password is off")
		} else {
			pw, err := c.box.Open(row.Password, passwordAD(loginID))
			if err != nil {
				return sfb.SignInRequest{}, fmt.Errorf("%w: %w", errUnreadableCredentials, sfb.ErrCredentialsRequired)
			}
			req.Credentials.Password = string(pw)
		}
	}
	if row.Token != nil {
		tok, err := c.box.Open(row.Token, tokenAD(loginID))
		if err != nil {
			if req.Credentials.Password == "" {
				return sfb.SignInRequest{}, fmt.Errorf("%w: %w", errUnreadableCredentials, sfb.ErrCredentialsRequired)
			}
			// The password still works; a new token replaces this one.
			zerolog.Ctx(ctx).Warn().Msg("Stored token cannot be decrypted, signing in with the password")
		} else {
			req.Token = &sfb.Token{Value: string(tok), ExpiresAt: row.TokenExpiry}
		}
	}
	return req, nil
}

// audit records an event in the audit log. A failure to write it is
// logged, never fatal: the audit log must not block logins.
func (c *Connector) audit(ctx context.Context, loginID networkid.UserLoginID, user id.UserID, action, detail string) {
	if c.db == nil {
		return
	}
	err := c.db.AddAudit(ctx, database.AuditEvent{
		LoginID:    string(loginID),
		MatrixUser: string(user),
		Action:     action,
		Detail:     detail,
	})
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Str("action", action).Msg("Failed to write audit log")
	}
}
