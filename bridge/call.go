package bridge

import (
	"context"
	"fmt"
	"html"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/jitsi"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// The bridge carries no audio or video. An SfB call to a bridged user
// becomes, at once, a call notice in their 1:1 room; with calls: jitsi a
// Jitsi meeting is started in that room (widget), linked from the notice,
// and the caller gets its link as an IM. What the bridge's SfB endpoint
// does with the call depends on whether the user still has SfB:
//
//   - A user who publishes presence from Matrix (their mode is
//     matrix_only, or network.presence.publish or `presence-publish on`)
//     has left their SfB client: nothing else would answer. The bridge
//     declines the call Global (on all of the user's endpoints,
//     CallDeclineReason_ref.md), so that the caller hears at once that
//     the call will not be taken there. The reason is chosen per call, so
//     a mode change counts from the next call on.
//   - Otherwise the user may still have their SfB client running
//     (coexistence), which rings and can take the call. The bridge's
//     endpoint does not decline: declining Local (on its endpoint only)
//     would change nothing for the caller, but would hide from the bridge
//     how the call ends. Ringing along, it hears that the caller hung up
//     or nobody answered (CallEnded, Missed) and posts a missed-call
//     notice; answered on the SfB client, the call ends without one.

// CallField is the key of the machine-readable call description in a call
// notice's content.
const CallField = "net.sfb_bridge.call"

// callAnswerTimeout bounds declining a call and sending the caller the
// link, which run after the notice, outside the session's event loop.
const callAnswerTimeout = time.Minute

// callMessageID names the notice of call callID (kind: ringing or missed).
func callMessageID(kind, callID string) networkid.MessageID {
	return networkid.MessageID(stableID("call-"+kind+":", callID))
}

// declineReason is how the bridge's endpoint declines calls (see above);
// empty when it lets them ring.
func (c *Client) declineReason() sfb.CallDeclineReason {
	if c.conn.publishesPresence(c.login) {
		return sfb.CallDeclineGlobal
	}
	return ""
}

func (c *Client) handleCallRinging(ctx context.Context, evt sfb.CallRinging) {
	log := zerolog.Ctx(ctx).With().Str("call_id", evt.ID).Logger()
	ctx = log.WithContext(ctx)
	mode := c.conn.Config.Meetings.Calls
	if mode == CallsOff {
		log.Debug().Msg("Leaving SfB call to the user's other endpoints (meetings.calls: off)")
		return
	}
	if evt.ID == "" || evt.From.URI == "" {
		log.Warn().Msg("Dropping SfB call without ID or caller")
		return
	}
	reason := c.declineReason()
	meta, _, ok := c.incoming(ctx, "call", evt.ID, evt.Conversation, evt.From, evt.Time, "")
	if !ok {
		if reason != "" {
			go c.answerCall(evt, reason, "")
		}
		return
	}
	key := meta.PortalKey
	msgID := callMessageID("ringing", evt.ID)
	if existing, err := c.conn.br.DB.Message.GetFirstPartByID(ctx, key.Receiver, msgID); err != nil {
		log.Err(err).Msg("Failed to look up the notice of an SfB call")
	} else if existing != nil {
		// Delivered again after a resume: the notice and the caller's
		// link went out; declining again does nothing if it stopped.
		log.Info().Msg("SfB call already shown, not showing it again")
		if reason != "" {
			go c.answerCall(evt, reason, "")
		}
		return
	}
	var link, confID string
	if mode == CallsJitsi {
		confID = jitsi.NewConferenceID()
		var err error
		if link, err = jitsi.JoinURL(c.conn.Config.Meetings.Jitsi.Domain, confID); err != nil {
			log.Err(err).Msg("Cannot build a Jitsi link for the call; showing the notice only")
			link = ""
		}
	}
	caller := personName(evt.From)
	c.queueReliably(ctx, &simplevent.Message[sfb.CallRinging]{
		EventMeta: meta,
		ID:        msgID,
		Data:      evt,
		ConvertMessageFunc: func(context.Context, *bridgev2.Portal, bridgev2.MatrixAPI, sfb.CallRinging) (*bridgev2.ConvertedMessage, error) {
			content, extra := callNotice(evt, caller, link, reason)
			return onePart(content, extra), nil
		},
	})
	reply := c.callReply(link, reason)
	if link != "" {
		// The caller's link goes through the outbox, keyed by the
		// widget's state event like a widget a user adds: it survives
		// a lost session or a restart once stored.
		if widgetEvt := c.startCallWidget(ctx, key, confID); widgetEvt != nil {
			if _, err := c.storeOutbox(ctx, string(evt.From.URI), widgetEvt.portal, widgetEvt.evt, widgetMsgType, sfb.Message{Text: reply}, nil); err != nil {
				log.Err(err).Msg("Failed to store the caller's Jitsi link in the outbox; sending it directly")
			} else {
				reply = ""
			}
		}
	}
	if reason != "" || reply != "" {
		go c.answerCall(evt, reason, reply)
	}
}

// callReply is the IM the caller gets back; empty for none.
func (c *Client) callReply(link string, reason sfb.CallDeclineReason) string {
	me := c.selfName()
	switch {
	case link != "" && reason == sfb.CallDeclineGlobal:
		return fmt.Sprintf("%s now uses Element and cannot take Skype for Business calls; join here for a video meeting: %s", me, link)
	case link != "":
		return fmt.Sprintf("%s may answer in Element instead; join here for a video meeting: %s", me, link)
	case reason == sfb.CallDeclineGlobal:
		return fmt.Sprintf("%s now uses Element and cannot take Skype for Business calls; please write a message instead.", me)
	}
	return ""
}

// callNotice is the notice of a ringing call.
func callNotice(evt sfb.CallRinging, caller, link string, reason sfb.CallDeclineReason) (*event.MessageEventContent, map[string]any) {
	kind := "an audio call"
	if evt.Video {
		kind = "a video call"
	}
	body := fmt.Sprintf("%s is calling you on Skype for Business (%s).", caller, kind)
	htm := fmt.Sprintf("<p><strong>%s is calling you on Skype for Business</strong> (%s).</p>", html.EscapeString(caller), kind)
	field := map[string]any{"id": evt.ID, "caller": string(evt.From.URI), "video": evt.Video, "state": "ringing"}
	if reason != "" {
		field["declined"] = string(reason)
	}
	switch {
	case link != "":
		field["jitsi_url"] = link
		body += fmt.Sprintf(" The bridge cannot carry the call; meet in Jitsi instead, %s got the same link: %s", caller, link)
		htm += fmt.Sprintf(`<p>The bridge cannot carry the call. <a href="%s">Start the Jitsi meeting</a> (also at the top of this room); %s got the same link.</p>`,
			html.EscapeString(link), html.EscapeString(caller))
	case reason == "":
		body += " The bridge cannot carry the call; answer it in your Skype for Business client."
		htm += "<p>The bridge cannot carry the call; answer it in your Skype for Business client.</p>"
	default:
		body += " The bridge cannot carry the call and declined it."
		htm += "<p>The bridge cannot carry the call and declined it.</p>"
	}
	return &event.MessageEventContent{MsgType: event.MsgNotice, Body: body, Format: event.FormatHTML, FormattedBody: htm},
		map[string]any{CallField: field}
}

// answerCall declines the call (unless reason is empty) and sends the
// caller reply (if any) directly, when the outbox could not take it. It
// runs outside the session's event loop: a send completes only once that
// loop reads SfB's answer.
func (c *Client) answerCall(evt sfb.CallRinging, reason sfb.CallDeclineReason, reply string) {
	ctx, cancel := context.WithTimeout(c.log.With().Str("call_id", evt.ID).Logger().WithContext(c.conn.backgroundCtx()), callAnswerTimeout)
	defer cancel()
	log := zerolog.Ctx(ctx)
	s := c.currentSession()
	if s == nil {
		log.Warn().Msg("No SfB session to answer the call with")
		return
	}
	if reason != "" {
		if err := s.DeclineCall(ctx, evt.ID, reason); err != nil {
			log.Warn().Err(err).Str("reason", string(reason)).Msg("Failed to decline SfB call")
		} else {
			log.Info().Str("reason", string(reason)).Msg("Declined SfB call")
		}
	}
	if reply == "" {
		return
	}
	if _, err := s.SendMessage(ctx, evt.From.URI, sfb.Message{Text: reply}); err != nil {
		log.Warn().Err(err).Msg("Failed to send the caller the Jitsi link")
	}
}

func (c *Client) handleCallEnded(ctx context.Context, evt sfb.CallEnded) {
	log := zerolog.Ctx(ctx).With().Str("call_id", evt.ID).Logger()
	if !evt.Missed || c.conn.Config.Meetings.Calls == CallsOff || evt.From.URI == "" || evt.ID == "" {
		log.Debug().Bool("missed", evt.Missed).Msg("SfB call ended")
		return
	}
	meta, _, ok := c.incoming(ctx, "missed call", evt.ID, evt.Conversation, evt.From, evt.Time, "")
	if !ok {
		return
	}
	caller := personName(evt.From)
	when := evt.Time
	if when.IsZero() {
		when = time.Now()
	}
	c.queueReliably(ctx, &simplevent.Message[sfb.CallEnded]{
		EventMeta: meta,
		ID:        callMessageID("missed", evt.ID),
		Data:      evt,
		ConvertMessageFunc: func(context.Context, *bridgev2.Portal, bridgev2.MatrixAPI, sfb.CallEnded) (*bridgev2.ConvertedMessage, error) {
			at := when.In(c.conn.Config.Meetings.zone()).Format("15:04")
			content := &event.MessageEventContent{
				MsgType:       event.MsgNotice,
				Body:          fmt.Sprintf("Missed Skype for Business call from %s at %s.", caller, at),
				Format:        event.FormatHTML,
				FormattedBody: fmt.Sprintf("<p>Missed Skype for Business call from <strong>%s</strong> at %s.</p>", html.EscapeString(caller), at),
			}
			extra := map[string]any{CallField: map[string]any{"id": evt.ID, "caller": string(evt.From.URI), "state": "missed"}}
			return onePart(content, extra), nil
		},
	})
}

// callWidget is the Jitsi widget a call put in its room.
type callWidget struct {
	portal *bridgev2.Portal
	evt    *event.Event
}

// startCallWidget puts the call's Jitsi meeting in the room, so that the
// user starts it with Element's Join button. It returns nil when there is
// no room or the widget could not be added.
func (c *Client) startCallWidget(ctx context.Context, key networkid.PortalKey, confID string) *callWidget {
	portal, err := c.conn.br.GetExistingPortalByKey(ctx, key)
	if err != nil || portal == nil || portal.MXID == "" {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("No room to put the call's Jitsi meeting in")
		return nil
	}
	_, eventID, err := c.conn.addJitsiWidget(ctx, portal, confID, "")
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to add the call's Jitsi widget")
		return nil
	}
	return &callWidget{portal: portal, evt: &event.Event{ID: eventID, RoomID: portal.MXID, Sender: c.conn.br.Bot.GetMXID()}}
}
