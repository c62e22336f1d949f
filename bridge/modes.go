package bridge

import (
	"context"
	"time"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
)

// What a person's migration mode changes in what the bridge does for
// their login (docs/migration.md has the table):
//
//   - sfb_only and coexistence: the person still has their SfB client.
//     The bridge mirrors; the SfB client publishes presence (unless the
//     person turned presence-publish on), calls are declined on the
//     bridge's endpoint only and keep ringing there, `meet --sfb` is
//     allowed. A login in sfb_only is allowed: the default mode covers
//     everyone nobody imported yet (pilots), a wave's people are asked to
//     sign in before their wave is switched, and a wave rolled back to
//     sfb_only must not cost its people their logins.
//   - matrix_only: the bridge is the person's only SfB endpoint. Their
//     Matrix presence is published on SfB whatever presence-publish says,
//     calls are declined on all their endpoints with the Jitsi link, and
//     new meetings are Jitsi meetings (`meet --sfb` refused).
//
// None of it is stored per login: each decision asks the mode when it is
// made, and a change of mode (migration.Resolver.Subscribe) re-applies the
// one thing that is state, whether the login publishes presence.

// modeOf is the effective mode of the person a login signs in as (the
// default mode before the modes are loaded).
func (c *Connector) modeOf(loginID networkid.UserLoginID) migration.Mode {
	modes := c.modes.Load()
	if modes == nil {
		return migration.SfBOnly
	}
	return modes.ModeOf(string(loginID))
}

// publishesPresence reports whether the login publishes the user's Matrix
// presence on SfB: always in matrix_only, else as the login's own option
// or the configuration says.
func (c *Connector) publishesPresence(login *bridgev2.UserLogin) bool {
	return c.modeOf(login.ID) == migration.MatrixOnly || publishSetting(login, c.Config.Presence)
}

// presenceLookupTimeout bounds asking the homeserver for the presence of a
// user who starts publishing.
const presenceLookupTimeout = 10 * time.Second

// watchModes applies mode changes to running logins until the bridge stops.
func (c *Connector) watchModes(modes migration.Resolver) {
	cancel := modes.Subscribe(c.applyModeChanges)
	go func() {
		<-c.backgroundCtx().Done()
		cancel()
	}()
}

// applyModeChanges re-applies what a mode decides to the logins of people
// whose mode changed.
func (c *Connector) applyModeChanges(changes []migration.Change) {
	for _, ch := range changes {
		client := c.clientByAddress(ch.Address)
		if client == nil {
			continue
		}
		login := client.login
		publish := c.publishesPresence(login)
		client.log.Info().Str("from", string(ch.From)).Str("to", string(ch.To)).Bool("publish_presence", publish).
			Msg("Migration mode changed; applying it to the login")
		if c.presence != nil {
			if publish {
				// What to publish: usually heard since the sign-in.
				ctx, cancel := context.WithTimeout(c.backgroundCtx(), presenceLookupTimeout)
				c.presence.learnPresence(ctx, login.UserMXID)
				cancel()
			}
			c.presence.setPublish(client, publish)
		}
	}
}

// signInNote tells a person who just signed in what the bridge does for
// them in their mode.
func (c *Connector) signInNote(loginID networkid.UserLoginID) string {
	if c.modeOf(loginID) == migration.MatrixOnly {
		return "You have moved to Matrix: your presence on Skype for Business now comes from Matrix, " +
			"Skype for Business calls to you are declined with a link to a video meeting, and new meetings are Jitsi meetings."
	}
	return "Your Skype for Business client keeps working: it shows your presence and its calls ring there."
}
