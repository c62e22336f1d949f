package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/provisionutil"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// bridgev2 turns the invite of a ghost into a room that is not a portal
// into a chat only when the invite is a direct-chat invite (is_direct); it
// ignores ghosts invited into any other room, which is what a Matrix user
// does who creates a group room with SfB people in it, or invites one into
// an existing room. The connector hears those invites itself
// (handleGhostGroupInvite, on the appservice's event processor next to
// bridgev2's own handler) and does what bridgev2's create-group command
// does for the room: the room becomes an SfB group chat started through
// the inviter's login.

// handleGhostGroupInvite notices a ghost invited, not as a direct chat,
// into a room; the work happens in the background so that the
// homeserver's transaction does not wait for it.
func (c *Connector) handleGhostGroupInvite(ctx context.Context, evt *event.Event) {
	member := evt.Content.AsMember()
	if evt.StateKey == nil || member.Membership != event.MembershipInvite || member.IsDirect {
		return
	}
	ghostID, ok := c.br.Matrix.ParseGhostMXID(id.UserID(*evt.StateKey))
	if !ok || !c.ValidateUserID(ghostID) {
		return
	}
	log := c.log.With().Stringer("room_id", evt.RoomID).Stringer("inviter", evt.Sender).Str("ghost_id", string(ghostID)).Logger()
	go c.bridgeInvitedRoom(log.WithContext(c.backgroundCtx()), evt.RoomID, evt.Sender, ghostID)
}

// bridgeInvitedRoom makes roomID an SfB group chat of inviter's login,
// unless it is a portal (or became one through an earlier invite) or the
// inviter has no login.
func (c *Connector) bridgeInvitedRoom(ctx context.Context, roomID id.RoomID, inviter id.UserID, ghostID networkid.UserID) {
	log := zerolog.Ctx(ctx)
	// One room at a time: a room created with several ghosts invited
	// brings several invites, and only the first bridges it.
	c.groupInviteMu.Lock()
	defer c.groupInviteMu.Unlock()
	if portal, err := c.br.GetPortalByMXID(ctx, roomID); err != nil {
		log.Err(err).Msg("Failed to look up the room a ghost was invited to; not bridging it")
		return
	} else if portal != nil {
		return
	}
	user, err := c.br.GetExistingUserByMXID(ctx, inviter)
	if err != nil {
		log.Err(err).Msg("Failed to look up the user who invited a ghost; not bridging the room")
		return
	}
	if user == nil || user.ManagementRoom == roomID || !user.Permissions.Commands {
		return
	}
	login := user.GetDefaultLogin()
	if login == nil {
		log.Debug().Msg("Ghost invited into a room by a user without a login; not bridging it")
		return
	}
	// The ghost accepts and brings the bot in, which was not invited.
	ghost, err := c.br.GetGhostByID(ctx, ghostID)
	if err != nil {
		log.Err(err).Msg("Failed to get the invited ghost")
		return
	}
	if err := ghost.Intent.EnsureJoined(ctx, roomID); err != nil {
		log.Warn().Err(err).Msg("The invited ghost cannot join; the room stays a Matrix room")
		return
	}
	if err := ghost.Intent.EnsureInvited(ctx, roomID, c.br.Bot.GetMXID()); err != nil {
		log.Debug().Err(err).Msg("The ghost could not invite the bridge bot")
	}
	if err := c.br.Bot.EnsureJoined(ctx, roomID); err != nil {
		log.Warn().Err(err).Msg("The bridge bot cannot join the room a ghost was invited to; it stays a Matrix room")
		return
	}
	params, err := c.groupParams(ctx, roomID, user)
	if err != nil {
		log.Err(err).Msg("Failed to read the room a ghost was invited to")
		return
	}
	resp, err := provisionutil.CreateGroup(ctx, login, params)
	if err != nil {
		log.Err(err).Msg("Failed to start an SfB group chat for the room")
		c.botNotice(ctx, roomID, groupFailureNotice(err))
		return
	}
	log.Info().Str("portal_id", string(resp.ID)).Msg("Bridged a Matrix room with SfB people as an SfB group chat")
	c.botNotice(ctx, roomID, fmt.Sprintf("This room is now a Skype for Business group chat, sent through %s. It starts on Skype for Business with the first message.", login.RemoteName))
}

// groupParams is what create-group takes from the room: its name and the
// SfB people in it (ghosts, and other users of the bridge by their
// logins).
func (c *Connector) groupParams(ctx context.Context, roomID id.RoomID, creator *bridgev2.User) (*bridgev2.GroupCreateParams, error) {
	members, err := c.br.Matrix.GetMembers(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("get members of %s: %w", roomID, err)
	}
	params := &bridgev2.GroupCreateParams{Type: groupType, RoomID: roomID}
	if mx, ok := c.br.Matrix.(bridgev2.MatrixConnectorWithArbitraryRoomState); ok {
		if evt, err := mx.GetStateEvent(ctx, roomID, event.StateRoomName, ""); err == nil && evt != nil {
			if name, ok := evt.Content.Parsed.(*event.RoomNameEventContent); ok && strings.TrimSpace(name.Name) != "" {
				params.Name = name
			}
		}
	}
	for userID, m := range members {
		if !m.Membership.IsInviteOrJoin() || userID == creator.MXID || userID == c.br.Bot.GetMXID() {
			continue
		}
		if ghostID, ok := c.br.Matrix.ParseGhostMXID(userID); ok {
			params.Participants = append(params.Participants, ghostID)
		} else if other, err := c.br.GetExistingUserByMXID(ctx, userID); err == nil && other != nil {
			if l := other.GetDefaultLogin(); l != nil {
				params.Participants = append(params.Participants, l.Client.(bridgev2.NetworkAPIWithUserID).GetUserID())
			}
		}
	}
	return params, nil
}

// botNotice tells the room something as the bridge bot.
func (c *Connector) botNotice(ctx context.Context, roomID id.RoomID, text string) {
	content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: text}
	if _, err := c.br.Bot.SendMessage(ctx, roomID, event.EventMessage, &event.Content{Parsed: content}, nil); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to send a notice to the room")
	}
}

// groupFailureNotice tells a room why it could not become an SfB group
// chat. Only errors written for people go into the room; the rest can name
// internals and stays in the log.
func groupFailureNotice(err error) string {
	why := "something went wrong on the bridge. Please try again later, and tell your IT helpdesk if it keeps happening."
	var forPeople bridgev2.RespError
	if errors.As(err, &forPeople) {
		why = forPeople.Err
	}
	return "This room could not become a Skype for Business group chat: " + why
}
