package bridge

import (
	"context"

	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
)

// startMigration loads the migration modes before any login starts, and
// keeps reading them for changes, so that a change made through any bridge
// process is seen here within network.migration.poll_interval and applied
// to running logins (modes.go); it starts the wave announcements.
func (c *Connector) startMigration(ctx context.Context, db *database.DB) {
	c.announcer = newAnnouncer(c, db)
	modes := migration.New(db, c.log, migration.Options{
		PollInterval:  c.Config.Migration.PollInterval,
		Logins:        c.migrationLogin,
		Announcements: c.announcer.view,
	})
	if err := modes.Refresh(ctx); err != nil {
		c.log.Warn().Err(err).Msg("Could not read migration modes at start; everyone has the default mode until they are read")
	}
	c.modes.Store(modes)
	c.watchModes(modes)
	go modes.Run(c.backgroundCtx())
	go c.announcer.run(c.backgroundCtx(), c.Config.Migration.PollInterval)
}

// Migration returns the migration modes and waves; nil before Start.
// Routing asks it through migration.Resolver.
func (c *Connector) Migration() *migration.Service { return c.modes.Load() }

// clientByAddress is the client of the login of an SfB address (as the
// mode tables write it), nil when it has none.
func (c *Connector) clientByAddress(address string) *Client {
	if c.br == nil {
		return nil
	}
	login := c.br.GetCachedUserLoginByID(networkid.UserLoginID(address))
	if login == nil {
		return nil
	}
	client, _ := login.Client.(*Client)
	return client
}

// migrationLogin sums up the login of an address from the bridge state
// bridgev2 last sent for it.
func (c *Connector) migrationLogin(address string) migration.Login {
	client := c.clientByAddress(address)
	if client == nil {
		return migration.Login{Status: migration.LoginNone}
	}
	state := client.lastState.Load()
	if state == nil {
		return migration.Login{Status: migration.LoginConnecting}
	}
	return loginSummary(*state)
}

func loginSummary(state status.BridgeState) migration.Login {
	l := migration.Login{Status: migration.LoginConnecting, State: string(state.StateEvent)}
	switch state.StateEvent {
	case status.StateConnected, status.StateBackfilling:
		l.Status = migration.LoginConnected
	case status.StateBadCredentials, status.StateUnknownError, status.StateTransientDisconnect:
		l.Status = migration.LoginError
	case status.StateLoggedOut:
		l.Status = migration.LoginNone
	}
	switch {
	case state.Error != "" && state.Message != "":
		l.Error = string(state.Error) + ": " + state.Message
	case state.Error != "":
		l.Error = string(state.Error)
	default:
		l.Error = state.Message
	}
	return l
}
