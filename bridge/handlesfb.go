package bridge

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/metrics"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/msgconv"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// typingTimeout is how long Matrix shows a peer as typing unless SfB says
// they stopped first.
const typingTimeout = 20 * time.Second

// handleEvent turns one SfB event into bridgev2 events and bridge states.
// It runs on the session's event goroutine and returns once a message
// reached Matrix (see queueReliably): the session acknowledges the event
// to SfB after that.
func (c *Client) handleEvent(ctx context.Context, r *eventRouter, evt sfb.Event) {
	log := c.log.With().Type("sfb_event", evt).Logger()
	ctx = log.WithContext(ctx)
	switch evt := evt.(type) {
	case sfb.MessageReceived:
		c.handleMessage(ctx, evt)
	case sfb.TypingChanged:
		c.handleTyping(ctx, evt)
	case sfb.FileOffered:
		c.handleFileOffered(ctx, evt)
	case sfb.ParticipantJoined:
		c.handleParticipantJoined(ctx, evt)
	case sfb.ParticipantLeft:
		c.handleParticipantLeft(ctx, evt)
	case sfb.SubjectChanged:
		c.handleSubjectChanged(ctx, evt)
	case sfb.ConversationEnded:
		// Nothing to show: the room stays, and the next message starts
		// a new conversation with the same peer.
		log.Debug().Str("peer", evt.Conversation.Peer.Address()).Str("thread_id", evt.Conversation.ThreadID).Msg("SfB conversation ended")
	case sfb.SessionState:
		if evt.Connected {
			c.loggedIn.Store(true)
			c.sendState(status.BridgeState{StateEvent: status.StateConnected})
		} else {
			msg := "connection interrupted"
			if evt.Err != nil {
				msg = evt.Err.Error()
			}
			log.Warn().Err(evt.Err).Msg("SfB session interrupted")
			c.sendState(status.BridgeState{StateEvent: status.StateTransientDisconnect, Error: StateErrSessionInterrupted, Message: msg})
		}
	case sfb.PresenceChanged:
		if e := c.conn.presence; e != nil {
			e.presenceChanged(ctx, c, evt)
		}
	case sfb.ContactsChanged:
		if e := c.conn.presence; e != nil {
			if s := c.currentSession(); s != nil {
				go e.contactsChanged(c.log.WithContext(c.conn.backgroundCtx()), c, s)
			}
		}
	case sfb.SessionEnded:
		c.handleSessionEnded(ctx, r, evt)
		return
	case sfb.MeetingInvited:
		c.handleMeetingInvited(ctx, evt)
	case sfb.CallRinging:
		c.handleCallRinging(ctx, evt)
	case sfb.CallEnded:
		c.handleCallEnded(ctx, evt)
	default:
		log.Warn().Msg("Ignoring unknown SfB event")
	}
	c.saveTokenIfRenewed(ctx)
	c.kickResumeSave()
}

func (c *Client) handleSessionEnded(ctx context.Context, r *eventRouter, evt sfb.SessionEnded) {
	c.mu.Lock()
	// A session whose router is not recorded yet is current while the
	// client runs (Client.signIn attaches before it records); once
	// disconnect cleared stop, the session ends because the client
	// closes or detaches it (logout, shutdown, relogin): no interruption
	// to report, which could land after bridgev2's LOGGED_OUT.
	current := c.router == r || (c.router == nil && c.stop != nil)
	ended := c.session
	if current {
		c.session, c.router = nil, nil
	}
	runCtx := c.runCtx
	c.mu.Unlock()
	if !current {
		return
	}
	// The next session resumes where this one stopped.
	c.saveResume(ctx, ended)
	if e := c.conn.presence; e != nil {
		// Not in the ended session's context: the moves make requests
		// on other logins' sessions.
		moveCtx, cancel := context.WithTimeout(c.log.WithContext(c.conn.backgroundCtx()), 30*time.Second)
		e.loginDown(moveCtx, c.loginID, loginSessionEnded)
		cancel()
	}
	if evt.Err != nil && needsRelogin(evt.Err) {
		c.requireRelogin(ctx, evt.Err)
		return
	}
	msg := "session ended"
	if evt.Err != nil {
		msg = evt.Err.Error()
	}
	zerolog.Ctx(ctx).Warn().Err(evt.Err).Msg("SfB session ended, reconnecting")
	c.sendState(status.BridgeState{StateEvent: status.StateTransientDisconnect, Error: StateErrSessionInterrupted, Message: msg})
	if runCtx != nil && runCtx.Err() == nil {
		go c.connectLoop(runCtx)
	}
}

func (c *Client) handleMessage(ctx context.Context, evt sfb.MessageReceived) {
	var meta simplevent.EventMeta
	var msgID networkid.MessageID
	var ok bool
	if evt.Conversation.Group {
		meta, msgID, ok = c.groupIncoming(ctx, "message", evt.ID, evt.Conversation, evt.From, evt.Time, evt.Message)
	} else {
		meta, msgID, ok = c.incoming(ctx, "message", evt.ID, evt.Conversation, evt.From, evt.Time, evt.Message.Text)
	}
	if !ok {
		return
	}
	start := time.Now()
	res := c.queueReliably(ctx, &simplevent.Message[sfb.MessageReceived]{
		EventMeta:          meta,
		ID:                 msgID,
		Data:               evt,
		ConvertMessageFunc: convertSfBMessage,
	})
	c.conn.messageBridged(metrics.ToMatrix, eventResult(res), res.Error, time.Since(start))
}

// incoming is what a message and an offered file from SfB share: the
// portal of the conversation, the sender, and the ID that deduplicates
// it. An event without an ID gets one derived from its sender, time and
// content (its text, or what names the file). ok is false, and the
// reason logged, when the event has no sender or no peer. Events of a
// multi-party conversation go to groupIncoming.
func (c *Client) incoming(ctx context.Context, what, id string, conv sfb.Conversation, fromPerson sfb.Person, when time.Time, content string) (meta simplevent.EventMeta, msgID networkid.MessageID, ok bool) {
	if conv.Group {
		// What it is belongs to its fingerprint: a file is not the same
		// as a message whose text names it.
		return c.groupIncoming(ctx, what, id, conv, fromPerson, when, sfb.Message{Text: what + ": " + content})
	}
	log := zerolog.Ctx(ctx)
	from := fromPerson.URI
	if from == "" {
		log.Warn().Str("sfb_event_kind", what).Msg("Dropping SfB event without sender")
		return meta, "", false
	}
	fromMe := from == c.selfURI()
	c.hearName(fromPerson)
	peer := conv.Peer
	if peer == "" && !fromMe {
		peer = from
	}
	if peer == "" || peer == c.selfURI() {
		log.Warn().Str("sfb_event_kind", what).Str("from", from.Address()).Msg("Dropping SfB event without a peer")
		return meta, "", false
	}
	id = eventIDOf(ctx, what, id, from, when, content)
	if e := c.conn.presence; e != nil {
		e.sawPeer(ctx, c, peer)
	}
	sender := bridgev2.EventSender{Sender: userIDFor(from)}
	if fromMe {
		sender = bridgev2.EventSender{IsFromMe: true, SenderLogin: c.loginID, Sender: userIDFor(from)}
	}
	return simplevent.EventMeta{
		Type:         bridgev2.RemoteEventMessage,
		PortalKey:    portalKeyFor(peer, c.loginID),
		Sender:       sender,
		CreatePortal: true,
		Timestamp:    when,
		LogContext: func(lc zerolog.Context) zerolog.Context {
			return lc.Str("sfb_message_id", id).Str("sfb_thread_id", conv.ThreadID)
		},
	}, networkid.MessageID(id), true
}

// eventIDOf is id, or, without one, an ID derived from the sender, time
// and content of the event: a redelivered event would else be bridged
// twice.
func eventIDOf(ctx context.Context, what, id string, from sfb.URI, when time.Time, content string) string {
	if id != "" {
		return id
	}
	id = stableID("sha256:", from.String(), when.UTC().Format(time.RFC3339Nano), content)
	zerolog.Ctx(ctx).Debug().Str("sfb_event_kind", what).Str("derived_id", id).Msg("SfB event without ID")
	return id
}

func convertSfBMessage(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, evt sfb.MessageReceived) (*bridgev2.ConvertedMessage, error) {
	contents := msgconv.ToMatrix(evt.Message)
	if len(contents) == 0 {
		return nil, fmt.Errorf("%w: empty SfB message", bridgev2.ErrIgnoringRemoteEvent)
	}
	converted := &bridgev2.ConvertedMessage{}
	for i, content := range contents {
		converted.Parts = append(converted.Parts, &bridgev2.ConvertedMessagePart{
			ID:      partID(i),
			Type:    event.EventMessage,
			Content: content,
		})
	}
	return converted, nil
}

// onePart is an SfB event shown as one Matrix message (a notice, a file).
func onePart(content *event.MessageEventContent, extra map[string]any) *bridgev2.ConvertedMessage {
	return &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{{Type: event.EventMessage, Content: content, Extra: extra}}}
}

// partID names the i-th Matrix event of an SfB message that was too long
// for one. The first keeps the empty ID that a message of one part has,
// so that messages bridged before splitting existed keep theirs.
func partID(i int) networkid.PartID {
	if i == 0 {
		return ""
	}
	return networkid.PartID(strconv.Itoa(i))
}

// handleTyping shows a peer typing in the 1:1 room, or a participant in
// the group room.
func (c *Client) handleTyping(ctx context.Context, evt sfb.TypingChanged) {
	from := evt.From
	if from == "" || from == c.selfURI() {
		return
	}
	var key networkid.PortalKey
	switch {
	case evt.Conversation.Group && evt.Conversation.ThreadID == "":
		return
	case evt.Conversation.Group:
		key = c.groupPortalKey(evt.Conversation.ThreadID)
	case evt.Conversation.Peer != "":
		key = portalKeyFor(evt.Conversation.Peer, c.loginID)
	default:
		key = portalKeyFor(from, c.loginID)
	}
	timeout := time.Duration(0)
	if evt.Typing {
		timeout = typingTimeout
	}
	c.queue(&simplevent.Typing{
		EventMeta: simplevent.EventMeta{
			Type:      bridgev2.RemoteEventTyping,
			PortalKey: key,
			Sender:    bridgev2.EventSender{Sender: userIDFor(from)},
		},
		Timeout: timeout,
		Type:    bridgev2.TypingTypeText,
	})
}
