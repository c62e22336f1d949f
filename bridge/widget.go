package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/jitsi"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// A Jitsi widget that a Matrix user adds to a bridged room (Element's
// "video call" in a room with more than two members, or any client
// writing the same state event) becomes an IM to the SfB side with the
// Jitsi web link; removing it tells SfB the meeting ended.
//
// bridgev2 (v0.31, v0.32) hands the connector no state events beyond
// room name, topic, avatar, members and power levels: its Matrix
// connector registers handlers for a fixed list of event types on the
// appservice event processor. The connector therefore registers its own
// handler for im.vector.modular.widgets on that processor (Init), as it
// does for m.presence. The homeserver sends state events of the rooms the
// bridge's users are in to the appservice, so the widget events of portal
// rooms arrive there. The IM goes through the outbox, keyed by the state
// event's ID, so that a transaction the homeserver pushes again does not
// send it twice.

// widgetEventType is the widget state event type, as Element writes it.
var widgetEventType = event.Type{Type: jitsi.WidgetEventType, Class: event.StateEventType}

// layoutEventType is Element's widget layout state event type.
var layoutEventType = event.Type{Type: jitsi.LayoutEventType, Class: event.StateEventType}

// meetingPowerLevels lets the room's members start and end Jitsi meetings
// (Element's widget and layout events): bridgev2's portal power levels
// (state events at 50, users at 0) would refuse them, and Element would
// answer its call button with "You do not have permission to start a
// conference call in this room".
func meetingPowerLevels() *bridgev2.PowerLevelOverrides {
	return &bridgev2.PowerLevelOverrides{Events: map[event.Type]int{widgetEventType: 0, layoutEventType: 0}}
}

// widgetMsgType marks outbox entries that announce a widget (not a
// message event), for their status.
const widgetMsgType = jitsi.WidgetEventType

// handleMatrixWidget is the appservice event processor's handler of
// widget state events.
func (c *Connector) handleMatrixWidget(ctx context.Context, evt *event.Event) {
	log := c.log.With().Stringer("room_id", evt.RoomID).Stringer("event_id", evt.ID).Stringer("sender", evt.Sender).Logger()
	ctx = log.WithContext(ctx)
	if c.bridgeUser != nil && c.bridgeUser(evt.Sender) {
		// The bridge's own (meet command, calls): announced already.
		return
	}
	portal, err := c.br.GetPortalByMXID(ctx, evt.RoomID)
	if err != nil {
		log.Err(err).Msg("Failed to look up the room of a widget event")
		return
	}
	if portal == nil {
		return
	}
	if err := c.announceWidget(ctx, portal, evt); err != nil {
		log.Warn().Err(err).Msg("Widget event not announced to SfB")
	}
}

// errNotBridgedWidget: a widget event that is not for SfB.
var errNotBridgedWidget = errors.New("widget event not for SfB")

// announceWidget tells the SfB side of portal about the Jitsi widget evt
// added or removed.
func (c *Connector) announceWidget(ctx context.Context, portal *bridgev2.Portal, evt *event.Event) error {
	client, lane, err := c.portalClient(ctx, portal, evt.Sender)
	if err != nil {
		return err
	}
	widget, removed, err := jitsi.ParseWidget(widgetContent(evt.Content))
	switch {
	case errors.Is(err, jitsi.ErrNotJitsi):
		return fmt.Errorf("%w: not a Jitsi widget", errNotBridgedWidget)
	case err != nil:
		return fmt.Errorf("read widget: %w", err)
	}
	prev, hadPrev := c.previousWidget(ctx, evt)
	name := client.selfName()
	var text string
	switch {
	case removed && !hadPrev:
		return fmt.Errorf("%w: removed widget was not a Jitsi meeting, or unknown", errNotBridgedWidget)
	case removed:
		link, _ := jitsi.JoinURL(prev.Data.Domain, prev.Data.ConferenceID)
		text = fmt.Sprintf("%s ended the video meeting %s", name, link)
	case hadPrev && prev.Data.Domain == widget.Data.Domain && prev.Data.ConferenceID == widget.Data.ConferenceID:
		return fmt.Errorf("%w: same meeting as before", errNotBridgedWidget)
	default:
		text = jitsiInvitation(name, "", widget)
	}
	_, err = client.enqueue(ctx, lane, portal, evt, widgetMsgType, sfb.Message{Text: text}, nil)
	return err
}

// jitsiInvitation is the IM that tells SfB of a Jitsi meeting.
func jitsiInvitation(name, subject string, w jitsi.Widget) string {
	link, _ := jitsi.JoinURL(w.Data.Domain, w.Data.ConferenceID)
	text := fmt.Sprintf("%s started a video meeting%s. Join in your browser: %s", name, quotedSubject(subject), link)
	if w.Data.Auth != "" {
		text += " (the meeting server may ask you to sign in)"
	}
	return text
}

// quotedSubject is a meeting's subject as IMs to SfB quote it after
// "meeting"; empty when there is none.
func quotedSubject(subject string) string {
	if subject = cleanSubject(subject); subject != "" {
		return ` "` + subject + `"`
	}
	return ""
}

// portalClient is the login that speaks for sender in portal, and the
// portal's outbox lane (the peer of a 1:1 chat, or the group). Only the
// login's own Matrix user speaks for it; in a group room shared by
// several logins, the sender's login in it.
func (c *Connector) portalClient(ctx context.Context, portal *bridgev2.Portal, sender id.UserID) (*Client, string, error) {
	var login *bridgev2.UserLogin
	if portal.Receiver != "" {
		login = c.br.GetCachedUserLoginByID(portal.Receiver)
	} else if user, err := c.br.GetExistingUserByMXID(ctx, sender); err != nil {
		return nil, "", fmt.Errorf("look up %s: %w", sender, err)
	} else if user != nil {
		if login, _, err = portal.FindPreferredLogin(ctx, user, false); err != nil && !errors.Is(err, bridgev2.ErrNotLoggedIn) {
			return nil, "", fmt.Errorf("find the login of %s in room %s: %w", sender, portal.MXID, err)
		}
	}
	if login == nil {
		return nil, "", fmt.Errorf("%w: no login of %s for room %s", errNotBridgedWidget, sender, portal.MXID)
	}
	if login.UserMXID != sender {
		return nil, "", fmt.Errorf("%w: %s does not own the room's login", errNotBridgedWidget, sender)
	}
	client, ok := login.Client.(*Client)
	if !ok {
		return nil, "", fmt.Errorf("%w: login without client", errNotBridgedWidget)
	}
	lane, err := laneOf(portal)
	if err != nil {
		return nil, "", fmt.Errorf("%w: room %s: %w", errNotBridgedWidget, portal.MXID, err)
	}
	return client, lane, nil
}

// widgetContent is the JSON of a widget event's content.
func widgetContent(content event.Content) []byte {
	if len(content.VeryRaw) > 0 {
		return content.VeryRaw
	}
	raw, _ := json.Marshal(content.Raw)
	return raw
}

// previousWidget is the Jitsi widget that evt replaced, from the event's
// unsigned prev_content, else from the event it replaces_state.
func (c *Connector) previousWidget(ctx context.Context, evt *event.Event) (jitsi.Widget, bool) {
	var raw []byte
	switch {
	case evt.Unsigned.PrevContent != nil:
		raw = widgetContent(*evt.Unsigned.PrevContent)
	case evt.Unsigned.ReplacesState != "" && c.br.Bot != nil:
		prev, err := c.br.Bot.GetEvent(ctx, evt.RoomID, evt.Unsigned.ReplacesState)
		if err != nil {
			zerolog.Ctx(ctx).Debug().Err(err).Msg("Could not read the widget event this one replaces")
			return jitsi.Widget{}, false
		}
		raw = widgetContent(prev.Content)
	default:
		return jitsi.Widget{}, false
	}
	w, removed, err := jitsi.ParseWidget(raw)
	return w, err == nil && !removed
}

// addJitsiWidget starts a Jitsi meeting in portal's room the way Element
// does: the widget state event under a new widget ID, then the layout
// event that puts it at the top of the room. It returns the widget and
// its state event's ID.
func (c *Connector) addJitsiWidget(ctx context.Context, portal *bridgev2.Portal, confID, name string) (jitsi.Widget, id.EventID, error) {
	cfg := c.Config.Meetings.Jitsi
	widget, err := jitsi.NewWidget(cfg.WidgetURL, cfg.Domain, confID, name, portal.Name)
	if err != nil {
		return widget, "", fmt.Errorf("build Jitsi widget: %w", err)
	}
	widgetID := jitsi.NewWidgetID()
	resp, err := c.br.Bot.SendState(ctx, portal.MXID, widgetEventType, widgetID, &event.Content{Parsed: widget}, time.Time{})
	if err != nil {
		return widget, "", fmt.Errorf("send Jitsi widget to %s: %w", portal.MXID, err)
	}
	var current map[string]any
	if mx, ok := c.br.Matrix.(bridgev2.MatrixConnectorWithArbitraryRoomState); ok {
		if evt, err := mx.GetStateEvent(ctx, portal.MXID, layoutEventType, ""); err == nil && evt != nil {
			current = evt.Content.Raw
		}
	}
	if _, err := c.br.Bot.SendState(ctx, portal.MXID, layoutEventType, "", &event.Content{Raw: jitsi.Layout(current, widgetID)}, time.Time{}); err != nil {
		// The widget works without; Element shows it in the side panel.
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to set the widget layout")
	}
	return widget, resp.EventID, nil
}
