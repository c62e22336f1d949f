package bridge

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

var (
	_ bridgev2.MembershipHandlingNetworkAPI = (*Client)(nil)
	_ bridgev2.GroupCreatingNetworkAPI      = (*Client)(nil)
)

// groupType is the one kind of group bridgev2's create-group command and
// provisioning API can create.
const groupType = "group"

// groupCreation is what creating a group takes: at least one person
// besides the creator.
var groupCreation = map[string]bridgev2.GroupTypeCapabilities{
	groupType: {
		TypeDescription: "a Skype for Business group chat",
		Name:            bridgev2.GroupFieldCapability{Allowed: true},
		Participants:    bridgev2.GroupFieldCapability{Allowed: true, Required: true, MinLength: 1},
	},
}

// HandleMatrixMembership carries membership changes in group rooms to
// SfB: the user leaving the room leaves the conversation, a person invited
// in Matrix (an SfB ghost or another user of the bridge) is added to it.
// SfB lets no participant remove another, so kicks stay on the Matrix
// side; 1:1 rooms have no membership on SfB.
func (c *Client) HandleMatrixMembership(ctx context.Context, msg *bridgev2.MatrixMembershipChange) (*bridgev2.MatrixMembershipResult, error) {
	thread, ok := groupThread(msg.Portal.ID)
	if !ok {
		return nil, nil
	}
	log := zerolog.Ctx(ctx).With().Str("sfb_thread_id", thread).Logger()
	var target sfb.URI
	switch t := msg.Target.(type) {
	case *bridgev2.Ghost:
		uri, err := uriFor(t.ID)
		if err != nil {
			return nil, fmt.Errorf("ghost %s is not an SfB user: %w", t.ID, err)
		}
		target = uri
	case *bridgev2.UserLogin:
		target = sfb.URI("sip:" + string(t.ID))
	default:
		// A Matrix user without a login: not on SfB.
		return nil, nil
	}
	switch msg.Type {
	case bridgev2.Leave, bridgev2.RejectInvite:
		if target != c.selfURI() {
			return nil, nil
		}
		session := c.currentSession()
		if session == nil {
			return nil, errNotConnected()
		}
		if err := session.LeaveGroup(ctx, thread); err != nil {
			return nil, fmt.Errorf("leave SfB group %s: %w", thread, err)
		}
		if _, err := c.conn.db.RemoveGroupParticipant(ctx, thread, string(target)); err != nil {
			log.Warn().Err(err).Msg("Failed to forget the user in the SfB group after leaving it")
		}
		log.Info().Msg("Left the SfB group conversation with the Matrix room")
	case bridgev2.Invite:
		session := c.currentSession()
		if session == nil {
			return nil, errNotConnected()
		}
		g, err := c.sfbGroup(ctx, thread)
		if err != nil {
			return nil, fmt.Errorf("read SfB group %s: %w", thread, err)
		}
		if err := session.AddParticipant(ctx, g, target); err != nil {
			return nil, deliveryError(target.Address(), fmt.Errorf("add to SfB group %s: %w", thread, err))
		}
		if _, err := c.conn.db.AddGroupParticipant(ctx, thread, string(target)); err != nil {
			log.Warn().Err(err).Msg("Failed to record a participant added to the SfB group")
		}
		log.Info().Str("participant", target.Address()).Msg("Added a participant to the SfB group conversation")
	}
	return nil, nil
}

// CreateGroup starts an SfB multi-party conversation with the
// participants, for bridgev2's create-group command (which bridges the
// room it is sent in) and provisioning API. SfB has no empty conference:
// the conversation starts with the first message, under the thread ID
// made here, and invites the participants then. With network.groups.relay
// set to creator, Matrix users without a login write through the
// creator's login.
func (c *Client) CreateGroup(ctx context.Context, params *bridgev2.GroupCreateParams) (*bridgev2.CreateChatResponse, error) {
	if c.currentSession() == nil {
		return nil, bridgev2.RespError{ErrCode: ErrCodeUnavailable, Err: "You are not connected to Skype for Business right now.", StatusCode: 503}
	}
	var people []sfb.URI
	for _, p := range params.Participants {
		uri, err := uriFor(p)
		if err != nil {
			return nil, bridgev2.RespError{ErrCode: ErrCodeInvalidAddress, Err: fmt.Sprintf("%q is not a Skype for Business user.", p), StatusCode: 400}
		}
		if uri != c.selfURI() {
			people = append(people, uri)
		}
	}
	thread, err := newThreadID()
	if err != nil {
		return nil, err
	}
	subject := ""
	if params.Name != nil {
		subject = params.Name.Name
	}
	if _, err := c.conn.db.SetGroupSubject(ctx, thread, subject); err != nil {
		return nil, err
	}
	for _, uri := range append([]sfb.URI{c.selfURI()}, people...) {
		if _, err := c.conn.db.AddGroupParticipant(ctx, thread, string(uri)); err != nil {
			return nil, err
		}
	}
	info, err := c.groupChatInfo(ctx, thread)
	if err != nil {
		return nil, err
	}
	key := c.groupPortalKey(thread)
	portal, err := c.conn.br.GetPortalByKey(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get portal of new group %s: %w", thread, err)
	}
	// The creator writes through their own login, never through the
	// relay: bridgev2 prefers the relay over a login it does not know to
	// be in the portal yet.
	c.login.MarkInPortal(ctx, portal)
	if c.conn.Config.Groups.Relay == GroupRelayCreator {
		if err := portal.SetRelay(ctx, c.login); err != nil {
			return nil, fmt.Errorf("set the creator as relay of group %s: %w", thread, err)
		}
	}
	if params.RoomID != "" {
		// bridgev2 leaves an existing room to the connector: bind it, then
		// bring in the ghosts, which the room's creator only invited.
		if err := portal.UpdateMatrixRoomID(ctx, params.RoomID, bridgev2.UpdateMatrixRoomIDParams{
			FailIfMXIDSet: true, ChatInfo: info, ChatInfoSource: c.login,
		}); err != nil {
			return nil, fmt.Errorf("bridge room %s to group %s: %w", params.RoomID, thread, err)
		}
		for _, uri := range people {
			if c.loginOf(uri) != nil {
				continue
			}
			if ghost, err := c.conn.br.GetGhostByID(ctx, userIDFor(uri)); err != nil {
				zerolog.Ctx(ctx).Warn().Err(err).Str("participant", uri.Address()).Msg("Failed to get ghost of a group participant")
			} else if err := ghost.Intent.EnsureJoined(ctx, params.RoomID); err != nil {
				zerolog.Ctx(ctx).Warn().Err(err).Str("participant", uri.Address()).Msg("Ghost could not join the group room")
			}
		}
	}
	zerolog.Ctx(ctx).Info().Str("sfb_thread_id", thread).Int("participants", len(people)).Msg("Created an SfB group conversation")
	return &bridgev2.CreateChatResponse{PortalKey: key, Portal: portal, PortalInfo: info}, nil
}

// newThreadID names a conversation started from Matrix.
func newThreadID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a thread ID: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
