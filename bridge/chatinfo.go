package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.mau.fi/util/ptr"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/msgconv"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// GetChatInfo describes a group portal (see group.go), or a 1:1 portal: a DM between the login's user and the
// peer's ghost. The room name comes from the ghost (bridgev2's private chat
// settings), not from here.
func (c *Client) GetChatInfo(ctx context.Context, portal *bridgev2.Portal) (*bridgev2.ChatInfo, error) {
	if thread, ok := groupThread(portal.ID); ok {
		return c.groupChatInfo(ctx, thread)
	}
	peer, err := uriFor(portal.ID)
	if err != nil {
		return nil, fmt.Errorf("portal %s is not an SfB 1:1 chat: %w", portal.ID, err)
	}
	peerID := userIDFor(peer)
	return &bridgev2.ChatInfo{
		Type: ptr.Ptr(database.RoomTypeDM),
		Members: &bridgev2.ChatMemberList{
			IsFull:      true,
			OtherUserID: peerID,
			PowerLevels: meetingPowerLevels(),
			MemberMap: bridgev2.ChatMemberMap{
				// The user themselves, by their Matrix account (or double
				// puppet), without a Sender: with one, bridgev2 would also
				// put the user's own SfB ghost in the room, and Element
				// would not show a two-person direct chat.
				// bridgev2 invites through a member event of its own on
				// Synapse (not createRoom's invite list), so is_direct
				// has to be part of it for Element to file the invite
				// under People.
				"": {
					EventSender:      bridgev2.EventSender{IsFromMe: true, SenderLogin: c.loginID},
					Membership:       event.MembershipJoin,
					MemberEventExtra: map[string]any{"is_direct": true},
				},
				peerID: {EventSender: bridgev2.EventSender{Sender: peerID}, Membership: event.MembershipJoin},
			},
		},
	}, nil
}

// GetUserInfo names a ghost from the SfB directory. Without a session, or
// when the directory fails for a passing reason, it returns an error so
// that the ghost stays unnamed and bridgev2 asks again on its next message.
func (c *Client) GetUserInfo(ctx context.Context, ghost *bridgev2.Ghost) (*bridgev2.UserInfo, error) {
	uri, err := uriFor(ghost.ID)
	if err != nil {
		return nil, fmt.Errorf("ghost %s is not an SfB user: %w", ghost.ID, err)
	}
	session := c.currentSession()
	if session == nil {
		return nil, fmt.Errorf("look up %s: %w", uri, bridgev2.ErrNotLoggedIn)
	}
	person, err := session.LookupPerson(ctx, uri)
	if errors.Is(err, sfb.ErrNotFound) {
		// Not in the directory (another organisation, a removed
		// account).
		person = sfb.Person{URI: uri}
	} else if err != nil {
		return nil, fmt.Errorf("look up %s: %w", uri, err)
	}
	if person.URI == "" {
		person.URI = uri
	}
	// The directory gave no name: the one their messages carried, else
	// the address.
	if name := strings.TrimSpace(person.DisplayName); name == "" || strings.EqualFold(name, uri.Address()) {
		if heard := c.heardName(uri); heard != "" {
			person.DisplayName = heard
		}
	}
	return c.userInfo(person)
}

// maxHeardNames bounds the names a client remembers from events; past it
// the oldest knowledge is dropped wholesale, which only costs a ghost its
// name until the sender's next message.
const maxHeardNames = 10000

// hearName remembers the display name an SfB event gave for a sender
// other than the user; a bare address is no name.
func (c *Client) hearName(p sfb.Person) {
	name := strings.TrimSpace(p.DisplayName)
	if p.URI == "" || p.URI == c.selfURI() || name == "" || strings.EqualFold(name, p.URI.Address()) || strings.EqualFold(name, p.URI.String()) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.heardNames == nil || len(c.heardNames) >= maxHeardNames {
		c.heardNames = map[sfb.URI]string{}
	}
	c.heardNames[p.URI] = name
}

func (c *Client) heardName(uri sfb.URI) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heardNames[uri]
}

func (c *Client) userInfo(p sfb.Person) (*bridgev2.UserInfo, error) {
	name, err := c.conn.Config.FormatDisplayname(p)
	if err != nil {
		return nil, err
	}
	return &bridgev2.UserInfo{
		Identifiers: []string{p.URI.String()},
		Name:        &name,
		IsBot:       ptr.Ptr(false),
	}, nil
}

// ResolveIdentifier finds an SfB user by address, for the start-chat
// command and the provisioning API, and optionally names the DM portal.
func (c *Client) ResolveIdentifier(ctx context.Context, identifier string, createChat bool) (*bridgev2.ResolveIdentifierResponse, error) {
	uri, err := sfb.ParseURI(identifier)
	if err != nil {
		return nil, bridgev2.RespError{ErrCode: ErrCodeInvalidAddress, Err: fmt.Sprintf("%q is not a Skype for Business address (want alice@contoso.com).", identifier), StatusCode: http.StatusBadRequest}
	}
	if uri == c.selfURI() {
		return nil, bridgev2.RespError{ErrCode: ErrCodeInvalidAddress, Err: "That is your own Skype for Business address.", StatusCode: http.StatusBadRequest}
	}
	session := c.currentSession()
	if session == nil {
		return nil, bridgev2.RespError{ErrCode: ErrCodeUnavailable, Err: "You are not connected to Skype for Business right now.", StatusCode: http.StatusServiceUnavailable}
	}
	person, err := session.LookupPerson(ctx, uri)
	if errors.Is(err, sfb.ErrNotFound) {
		return nil, bridgev2.RespError{ErrCode: "M_NOT_FOUND", Err: fmt.Sprintf("No Skype for Business user with the address %s.", uri.Address()), StatusCode: http.StatusNotFound}
	} else if err != nil {
		return nil, fmt.Errorf("look up %s: %w", uri, err)
	}
	if person.URI == "" {
		person.URI = uri
	}
	userID := userIDFor(person.URI)
	ghost, err := c.login.Bridge.GetGhostByID(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("get ghost of %s: %w", person.URI, err)
	}
	info, err := c.userInfo(person)
	if err != nil {
		return nil, err
	}
	resp := &bridgev2.ResolveIdentifierResponse{Ghost: ghost, UserID: userID, UserInfo: info}
	if createChat {
		resp.Chat = &bridgev2.CreateChatResponse{PortalKey: portalKeyFor(person.URI, c.loginID)}
	}
	return resp, nil
}

// roomCapabilities is what SfB instant messaging carries: text with basic
// formatting. Files are listed as unsupported rather than rejected, so that
// bridgev2 hands them to HandleMatrixMessage, which answers with a notice
// that names what SfB cannot receive. Edits, deletions and reactions are
// rejected: bridgev2 refuses them (see handlematrix.go).
var roomCapabilities = &event.RoomFeatures{
	ID: "net.sfb.capabilities.2026_2",
	Formatting: event.FormattingFeatureMap{
		event.FmtBold:                event.CapLevelFullySupported,
		event.FmtItalic:              event.CapLevelFullySupported,
		event.FmtUnderline:           event.CapLevelFullySupported,
		event.FmtStrikethrough:       event.CapLevelFullySupported,
		event.FmtInlineCode:          event.CapLevelFullySupported,
		event.FmtCodeBlock:           event.CapLevelFullySupported,
		event.FmtBlockquote:          event.CapLevelFullySupported,
		event.FmtInlineLink:          event.CapLevelFullySupported,
		event.FmtUnorderedList:       event.CapLevelFullySupported,
		event.FmtOrderedList:         event.CapLevelFullySupported,
		event.FmtListStart:           event.CapLevelFullySupported,
		event.FmtHeaders:             event.CapLevelFullySupported,
		event.FmtSuperscript:         event.CapLevelFullySupported,
		event.FmtSubscript:           event.CapLevelFullySupported,
		event.FmtHorizontalLine:      event.CapLevelFullySupported,
		event.FmtTable:               event.CapLevelPartialSupport,
		event.FmtUserLink:            event.CapLevelPartialSupport, // reduced to the name
		event.FmtRoomLink:            event.CapLevelPartialSupport,
		event.FmtEventLink:           event.CapLevelPartialSupport,
		event.FmtCustomEmoji:         event.CapLevelPartialSupport, // reduced to the alt text
		event.FmtSpoiler:             event.CapLevelDropped,
		event.FmtTextForegroundColor: event.CapLevelDropped,
		event.FmtTextBackgroundColor: event.CapLevelDropped,
		event.FmtSyntaxHighlighting:  event.CapLevelDropped,
		event.FmtMath:                event.CapLevelDropped,
		event.FmtDetailsSummary:      event.CapLevelDropped,
	},
	File: event.FileFeatureMap{
		event.MsgImage:      unsupportedFile,
		event.MsgFile:       unsupportedFile,
		event.MsgAudio:      unsupportedFile,
		event.MsgVideo:      unsupportedFile,
		event.CapMsgVoice:   unsupportedFile,
		event.CapMsgGIF:     unsupportedFile,
		event.CapMsgSticker: unsupportedFile,
	},
	MaxTextLength:       msgconv.MaxSfBMessageBytes,
	LocationMessage:     event.CapLevelUnsupported,
	Poll:                event.CapLevelRejected,
	Thread:              event.CapLevelRejected,
	Reply:               event.CapLevelPartialSupport, // a quote of the original
	Edit:                event.CapLevelPartialSupport, // "(edited) new text"
	Delete:              event.CapLevelRejected,
	Reaction:            event.CapLevelPartialSupport, // "Alice reacted 👍 to: ..."
	ReadReceipts:        false,
	TypingNotifications: true,
}

var unsupportedFile = &event.FileFeatures{MimeTypes: map[string]event.CapabilitySupportLevel{"*/*": event.CapLevelUnsupported}}

// roomCapabilitiesReactionsDropped are the features with
// network.messages.reactions: drop.
var roomCapabilitiesReactionsDropped = func() *event.RoomFeatures {
	f := roomCapabilities.Clone()
	f.ID += ".reactions_dropped"
	f.Reaction = event.CapLevelDropped
	return f
}()

// GetCapabilities is the same for every SfB 1:1 chat of a bridge.
func (c *Client) GetCapabilities(ctx context.Context, portal *bridgev2.Portal) *event.RoomFeatures {
	if c.conn.Config.Messages.Reactions == ReactionsDropped {
		return roomCapabilitiesReactionsDropped
	}
	return roomCapabilities
}
