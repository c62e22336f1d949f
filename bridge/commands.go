package bridge

import (
	"context"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/networkid"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
)

// commandPresencePublish turns publishing of a login's Matrix presence on
// SfB on or off, while the migration mode leaves it to the user (in
// matrix_only the bridge always publishes; modes.go).
var commandPresencePublish = &commands.FullHandler{
	Name: "presence-publish",
	Help: commands.HelpMeta{
		Section: commands.HelpSectionGeneral,
		Description: "Whether your Matrix presence and status message are shown on Skype for Business. " +
			"Turn it on once you no longer use a Skype for Business client; while you do, that client shows your presence.",
		Args: "[on | off | default] [_login ID_]",
	},
	RequiresLogin: true,
	Func:          fnPresencePublish,
}

func fnPresencePublish(ce *commands.Event) {
	conn, ok := ce.Bridge.Network.(*Connector)
	if !ok {
		return
	}
	args := ce.Args
	login := ce.User.GetDefaultLogin()
	if len(args) == 2 {
		login = ce.Bridge.GetCachedUserLoginByID(networkid.UserLoginID(strings.ToLower(args[1])))
		if login == nil || login.UserMXID != ce.User.MXID {
			ce.Reply("Login `%s` not found. Your logins:\n\n%s", args[1], ce.User.GetFormattedUserLogins())
			return
		}
	}
	if login == nil {
		ce.Reply("You are not logged in to Skype for Business.")
		return
	}
	if len(args) == 0 {
		ce.Reply("%s", conn.describePublish(login))
		return
	}
	var value *bool
	switch strings.ToLower(args[0]) {
	case "on":
		value = new(bool)
		*value = true
	case "off":
		value = new(bool)
	case "default":
	default:
		ce.Reply("Usage: `$cmdprefix presence-publish [on | off | default] [login ID]`")
		return
	}
	if err := conn.setPublishPresence(ce.Ctx, login, value); err != nil {
		ce.Log.Err(err).Msg("Failed to save the presence option")
		ce.Reply("Could not save the setting; try again later.")
		return
	}
	ce.Reply("%s", conn.describePublish(login))
}

// describePublish says whether login publishes, and why.
func (c *Connector) describePublish(login *bridgev2.UserLogin) string {
	on, source := publishSetting(login, c.Config.Presence), "the bridge's default"
	if meta, ok := login.Metadata.(*LoginMetadata); ok && meta.PublishPresence != nil {
		source = "your setting"
	}
	if c.modeOf(login.ID) == migration.MatrixOnly {
		on, source = true, "you have moved to Matrix, so this setting counts only if you move back"
	}
	if on {
		return fmt.Sprintf("Your Matrix presence is shown on Skype for Business as %s (%s).", login.RemoteName, source)
	}
	return fmt.Sprintf("Your Matrix presence is not shown on Skype for Business as %s (%s): your Skype for Business client shows it.", login.RemoteName, source)
}

// setPublishPresence stores the login's presence option (nil: follow the
// configuration) and applies it at once.
func (c *Connector) setPublishPresence(ctx context.Context, login *bridgev2.UserLogin, value *bool) error {
	meta, ok := login.Metadata.(*LoginMetadata)
	if !ok {
		meta = &LoginMetadata{}
		login.Metadata = meta
	}
	meta.PublishPresence = value
	if err := login.Save(ctx); err != nil {
		return fmt.Errorf("save presence option of %s: %w", login.ID, err)
	}
	if c.presence != nil {
		if client, ok := login.Client.(*Client); ok {
			c.presence.setPublish(client, c.publishesPresence(login))
		}
	}
	return nil
}
