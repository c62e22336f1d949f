package bridge

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/secret"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// ErrNoPseudonymKey: erasure needs a key for the audit log's pseudonyms
// and the configuration offers none.
var ErrNoPseudonymKey = errors.New("no key for pseudonyms")

// ErasurePlan is what erasing a person would remove, for the admin to
// confirm.
type ErasurePlan struct {
	Address    string    `json:"sip_address"`
	MatrixUser id.UserID `json:"matrix_id,omitempty"`
	Wave       string    `json:"wave,omitempty"`
	// Login is whether the person has a bridge login (it is logged out
	// of SfB first).
	Login bool `json:"login"`
	// Portals are the person's own portal rooms, which are deleted.
	Portals int `json:"portals"`
	// Ghost is whether the bridge has a ghost of the person.
	Ghost bool `json:"ghost"`
	// Pseudonym replaces the address in the audit log.
	Pseudonym string `json:"pseudonym"`
}

// ErasureReport is what an erasure removed.
type ErasureReport struct {
	ErasurePlan
	database.Erased
	// UserRow is whether the bridge's row of their Matrix user went.
	UserRow bool `json:"matrix_user_row"`
}

// Known is whether the bridge knows anything of the person beyond the
// audit log.
func (p *ErasurePlan) Known() bool {
	return p.MatrixUser != "" || p.Login || p.Portals > 0 || p.Ghost
}

// PlanErasure says what ErasePerson would remove of address, changing
// nothing.
func (c *Connector) PlanErasure(ctx context.Context, address string) (*ErasurePlan, error) {
	if c.db == nil || c.br == nil {
		return nil, errors.New("the bridge is still starting")
	}
	uri, err := sfb.ParseURI(address)
	if err != nil {
		return nil, invalidAddress{fmt.Errorf("%q is not a SIP address (write it as name@domain): %w", address, err)}
	}
	key, err := c.pseudonymKey()
	if err != nil {
		return nil, err
	}
	plan := &ErasurePlan{Address: uri.Address(), Pseudonym: pseudonym(key, uri.Address())}
	if p, err := c.db.GetPerson(ctx, plan.Address); err == nil {
		plan.MatrixUser, plan.Wave = id.UserID(p.MatrixUser), p.Wave
	} else if !errors.Is(err, database.ErrNotFound) {
		return nil, err
	}
	login, err := c.br.GetExistingUserLoginByID(ctx, networkid.UserLoginID(plan.Address))
	if err != nil {
		return nil, fmt.Errorf("look up the login of %s: %w", plan.Pseudonym, err)
	}
	if login != nil {
		plan.Login = true
		if plan.MatrixUser == "" {
			plan.MatrixUser = login.UserMXID
		}
	}
	portals, err := c.ownPortals(ctx, networkid.UserLoginID(plan.Address))
	if err != nil {
		return nil, err
	}
	plan.Portals = len(portals)
	ghost, err := c.br.DB.Ghost.GetByID(ctx, networkid.UserID(plan.Address))
	if err != nil {
		return nil, fmt.Errorf("look up the ghost of %s: %w", plan.Pseudonym, err)
	}
	plan.Ghost = ghost != nil
	return plan, nil
}

// ErasePerson removes one person's bridge data: it logs their login out of
// SfB (which deletes their credentials, resume state and unsent
// messages), deletes their login, their own portals with their messages
// and rooms, their ghost (with the messages and reactions it sent in other
// people's portals), their Matrix user's row, and whatever the connector's
// tables hold of them; the audit log keeps a record of the erasure and of
// everything before it, with their address and Matrix ID replaced by
// pseudonyms. docs/erasure.md says what the homeserver keeps.
func (c *Connector) ErasePerson(ctx context.Context, address string, by migration.Actor) (*ErasureReport, error) {
	plan, err := c.PlanErasure(ctx, address)
	if err != nil {
		return nil, err
	}
	key, err := c.pseudonymKey()
	if err != nil {
		return nil, err
	}
	report := &ErasureReport{ErasurePlan: *plan}
	loginID := networkid.UserLoginID(plan.Address)
	log := c.log.With().Str("action", "erase person").Str("pseudonym", plan.Pseudonym).Logger()
	ctx = log.WithContext(ctx)

	if login, err := c.br.GetExistingUserLoginByID(ctx, loginID); err != nil {
		return nil, fmt.Errorf("look up the login of %s: %w", plan.Pseudonym, err)
	} else if login != nil {
		// Logged out of SfB first, so that no session of theirs lives on;
		// the portals go below, rooms and all.
		login.Delete(ctx, status.BridgeState{StateEvent: status.StateLoggedOut, Reason: "erased"},
			bridgev2.DeleteOpts{LogoutRemote: true, DontCleanupRooms: true, BlockingCleanup: true})
	}
	portals, err := c.ownPortals(ctx, loginID)
	if err != nil {
		return nil, err
	}
	var portalErr error
	bridgev2.DeleteManyPortals(ctx, portals, func(p *bridgev2.Portal, roomOnly bool, err error) {
		if !roomOnly {
			portalErr = errors.Join(portalErr, err)
		}
	})
	if portalErr != nil {
		return nil, fmt.Errorf("delete the portals of %s: %w", plan.Pseudonym, portalErr)
	}
	if _, err = c.execMautrix(ctx, `DELETE FROM ghost WHERE bridge_id = $1 AND id = $2`, plan.Address); err != nil {
		return nil, err
	}
	if _, err = c.execMautrix(ctx, `DELETE FROM backfill_task WHERE bridge_id = $1 AND user_login_id = $2`, plan.Address); err != nil {
		return nil, err
	}
	if err := c.eraseStateStore(ctx, plan); err != nil {
		return nil, err
	}
	if plan.MatrixUser != "" {
		if report.UserRow, err = c.deleteUserRow(ctx, plan.MatrixUser); err != nil {
			return nil, err
		}
		if c.presence != nil {
			c.presence.forgetUser(plan.MatrixUser)
		}
	}
	erased, err := c.db.ErasePerson(ctx, database.Erasure{
		Address:    plan.Address,
		MatrixUser: string(plan.MatrixUser),
		Pseudonym:  func(s string) string { return pseudonym(key, s) },
		Record: database.AuditEvent{Actor: by.Who, Origin: by.From,
			Detail: fmt.Sprintf("bridge data erased: login %t, %d portals, ghost %t, Matrix user row %t", plan.Login, len(portals), plan.Ghost, report.UserRow)},
	})
	if err != nil {
		return nil, err
	}
	report.Erased = erased
	if svc := c.Migration(); svc != nil {
		if err := svc.Refresh(ctx); err != nil {
			log.Warn().Err(err).Msg("Could not reread migration modes after an erasure; the next poll will")
		}
	}
	log.Info().Int("portals", len(portals)).Bool("login", plan.Login).Msg("Erased a person's bridge data")
	return report, nil
}

// ownPortals are the portals whose receiver is the login: only that
// person used them. Portals of other people with them stay: they are the
// other person's conversation.
func (c *Connector) ownPortals(ctx context.Context, loginID networkid.UserLoginID) ([]*bridgev2.Portal, error) {
	rows, err := c.br.DB.Query(ctx, `SELECT id FROM portal WHERE bridge_id = $1 AND receiver = $2`, c.br.ID, loginID)
	if err != nil {
		return nil, fmt.Errorf("list portals of a login: %w", err)
	}
	var ids []networkid.PortalID
	for rows.Next() {
		var pid networkid.PortalID
		if err := rows.Scan(&pid); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("list portals of a login: %w", err)
		}
		ids = append(ids, pid)
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list portals of a login: %w", err)
	}
	var portals []*bridgev2.Portal
	for _, pid := range ids {
		p, err := c.br.GetExistingPortalByKey(ctx, networkid.PortalKey{ID: pid, Receiver: loginID})
		if err != nil {
			return nil, fmt.Errorf("load portal of a login: %w", err)
		}
		if p != nil {
			portals = append(portals, p)
		}
	}
	return portals, nil
}

// eraseStateStore removes what mautrix's appservice state store (the mx_
// tables, a cache of room state the bridge fetches again when it needs
// it) holds of the person and their ghost: their memberships and profiles
// in every room, the ghost's registration, and the cached state of rooms
// whose creator or power levels name them.
func (c *Connector) eraseStateStore(ctx context.Context, plan *ErasurePlan) error {
	if c.matrix == nil {
		return nil // not the appservice (tests): no state store
	}
	ghost := c.br.Matrix.FormatGhostMXID(networkid.UserID(plan.Address))
	users := []string{string(ghost)}
	if plan.MatrixUser != "" {
		users = append(users, string(plan.MatrixUser))
	}
	for _, user := range users {
		for _, query := range []string{`DELETE FROM mx_user_profile WHERE user_id = $1`, `DELETE FROM mx_registrations WHERE user_id = $1`} {
			if _, err := c.br.DB.Exec(ctx, query, user); err != nil {
				return fmt.Errorf("erase: state store: %w", err)
			}
		}
	}
	rows, err := c.br.DB.Query(ctx, `SELECT room_id, power_levels, create_event FROM mx_room_state`)
	if err != nil {
		return fmt.Errorf("erase: read state store: %w", err)
	}
	var rooms []string
	for rows.Next() {
		var room string
		var powerLevels, create []byte
		if err := rows.Scan(&room, &powerLevels, &create); err != nil {
			_ = rows.Close()
			return fmt.Errorf("erase: read state store: %w", err)
		}
		text := strings.ToLower(string(powerLevels) + string(create))
		for _, user := range users {
			if strings.Contains(text, strings.ToLower(user)) {
				rooms = append(rooms, room)
				break
			}
		}
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("erase: read state store: %w", err)
	}
	for _, room := range rooms {
		if _, err := c.br.DB.Exec(ctx, `DELETE FROM mx_room_state WHERE room_id = $1`, room); err != nil {
			return fmt.Errorf("erase: state store: %w", err)
		}
	}
	return nil
}

// deleteUserRow deletes the bridge's row of a Matrix user (management
// room, double-puppet token), unless they still have logins.
func (c *Connector) deleteUserRow(ctx context.Context, user id.UserID) (bool, error) {
	var logins int
	if err := c.br.DB.QueryRow(ctx, `SELECT COUNT(*) FROM user_login WHERE bridge_id = $1 AND user_mxid = $2`, c.br.ID, user).Scan(&logins); err != nil {
		return false, fmt.Errorf("count logins of a Matrix user: %w", err)
	}
	if logins > 0 {
		return false, nil
	}
	return c.execMautrix(ctx, `DELETE FROM "user" WHERE bridge_id = $1 AND mxid = $2`, string(user))
}

func (c *Connector) execMautrix(ctx context.Context, query, arg string) (bool, error) {
	res, err := c.br.DB.Exec(ctx, query, c.br.ID, arg)
	if err != nil {
		return false, fmt.Errorf("erase: %s: %w", strings.Fields(query)[2], err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// invalidAddress is the caller's mistake (migration.ErrInvalid).
type invalidAddress struct{ error }

func (e invalidAddress) Unwrap() error      { return e.error }
func (invalidAddress) Is(target error) bool { return target == migration.ErrInvalid }

// pseudonymKey is the key of the audit log's pseudonyms, derived from the
// secret key (network.secret_key or its environment variable), else from
// the appservice's as_token: a secret the operator already keeps, so
// that nobody who reads only the database can test a guessed address
// against a pseudonym. The same key gives the same pseudonym to the same
// person in every erasure.
func (c *Connector) pseudonymKey() ([]byte, error) {
	material := strings.TrimSpace(c.Config.SecretKey)
	if material == "" {
		material = strings.TrimSpace(os.Getenv(secret.EnvKey))
	}
	if material == "" && c.matrix != nil && c.matrix.AS != nil && c.matrix.AS.Registration != nil {
		material = c.matrix.AS.Registration.AppToken
	}
	if material == "" {
		return nil, fmt.Errorf("%w: set network.secret_key (see config.example.yaml)", ErrNoPseudonymKey)
	}
	mac := hmac.New(sha256.New, []byte(material))
	mac.Write([]byte("sfb-matrix-bridge audit pseudonym key v1"))
	return mac.Sum(nil), nil
}

// pseudonym is the one-way name of an identifier in the audit log.
func pseudonym(key []byte, identifier string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(strings.ToLower(identifier)))
	return database.PseudonymPrefix + hex.EncodeToString(mac.Sum(nil)[:12])
}

// forgetUser drops what the presence engine remembers of a Matrix user.
func (e *presenceEngine) forgetUser(user id.UserID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.present, user)
}
