package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/metrics"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Matrix -> SfB goes through a persistent outbox so that the Matrix side
// never waits for SfB while bridgev2 holds the portal.
//
// bridgev2 handles a portal's events one at a time (portal_event_buffer is
// 0, see requireSynchronousPortals), so while HandleMatrixMessage runs, an
// SfB message for the same portal waits, and with it the session's event
// loop; SendMessage, however, returns only when that event loop read SfB's
// completion event. Sending inside HandleMatrixMessage therefore deadlocks
// when both sides write at once. Instead HandleMatrixMessage stores the
// message in sfb_outbox, registers it with bridgev2 as pending
// (AddPendingToSave, matched by transaction ID) and returns. A lane per
// login and peer sends the entries in order, holding no portal, then
// queues a remote echo carrying the transaction ID: bridgev2 matches it,
// stores the SfB message ID (success) or sends the failure status and
// notice that handleEcho returns. Then the entry is deleted.
//
// SfB has no idempotency key, so the entry records how far SfB got as
// early as possible: accepted (with SfB's message ID) once SfB took the
// message, sent once it confirmed delivery, both before the echo, which
// waits its turn in the portal behind SfB messages on their way to
// Matrix. After a restart the pending registrations are gone with the
// process: entries left in the outbox are sent again, except that those
// marked sent are only reported and those marked accepted are looked up
// first; the outcome is written directly (message row, message status).
// A crash between SfB taking a message and the accepted mark sends it
// once more: delivery to SfB is at least once across crashes, with a
// window of one POST answer and one UPDATE (docs/architecture.md).
//
// Edits and reactions travel the same way, but bridgev2 has no pending form
// for them: they are never registered, and their outcome is written like
// that of an entry left from before a restart (reportReplayed).

// outboxOutcome is the data of an outbox echo: what SfB said.
type outboxOutcome struct {
	// err is nil on success, else a bridgev2.MessageStatus for the room.
	err error
}

// outbox runs the lanes of one Connect..Disconnect of a client.
type outbox struct {
	c   *Client
	ctx context.Context
	wg  sync.WaitGroup

	mu sync.Mutex
	// ready is set once the lanes of the previous outbox ended and the
	// stored entries were scheduled; before, wake only notes the peer.
	ready bool
	// lanes holds the lanes that run; true means woken again since the
	// lane last found its queue empty. A lane is named by the entries'
	// peer column: the peer's URI, or groupPortalPrefix and the thread ID
	// of a multi-party conversation.
	lanes map[string]bool
}

func newOutbox(ctx context.Context, c *Client) *outbox {
	return &outbox{c: c, ctx: ctx, lanes: map[string]bool{}}
}

// start schedules the stored entries once prev's lanes have ended, so
// that two lanes never send the same peer's messages.
func (o *outbox) start(prev *outbox) {
	if prev != nil {
		prev.wg.Wait()
	}
	log := o.c.log
	var peers []string
	for backoff := time.Duration(0); ; {
		var err error
		peers, err = o.c.conn.db.OutboxPeers(o.ctx, string(o.c.loginID))
		if err == nil {
			break
		}
		backoff = min(max(backoff*2, o.c.conn.deliverRetryMin), o.c.conn.deliverRetryMax)
		log.Err(err).Stringer("retry_in", backoff).Msg("Failed to read the outbox")
		if !ctxtime.Sleep(o.ctx, backoff) {
			return
		}
	}
	if len(peers) > 0 {
		log.Info().Strs("peers", peers).Msg("Sending Matrix messages left in the outbox")
	}
	o.mu.Lock()
	o.ready = true
	for _, p := range peers {
		if _, ok := o.lanes[p]; !ok {
			o.lanes[p] = false
		}
	}
	for p := range o.lanes {
		o.wg.Add(1)
		go o.lane(p)
	}
	o.mu.Unlock()
}

// wake makes the lane of peer look at the outbox again, starting it when
// none runs.
func (o *outbox) wake(peer string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, running := o.lanes[peer]; running {
		o.lanes[peer] = true
		return
	}
	o.lanes[peer] = false
	if o.ready {
		o.wg.Add(1)
		go o.lane(peer)
	}
}

// idle ends the lane of peer unless it was woken since it last looked.
func (o *outbox) idle(peer string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lanes[peer] {
		o.lanes[peer] = false
		return false
	}
	delete(o.lanes, peer)
	return true
}

// lane sends the entries of one peer, oldest first, until none is left or
// the client disconnects. One peer's slow delivery does not hold up
// messages to others.
func (o *outbox) lane(peer string) {
	defer o.wg.Done()
	c := o.c
	log := c.log.With().Str("peer", sfb.URI(peer).Address()).Logger()
	ctx := log.WithContext(o.ctx)
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		entry, err := c.conn.db.NextOutbox(ctx, string(c.loginID), peer)
		switch {
		case errors.Is(err, database.ErrNotFound):
			if o.idle(peer) {
				return
			}
			continue
		case err != nil:
			if ctx.Err() != nil {
				continue
			}
			backoff = min(max(backoff*2, c.conn.deliverRetryMin), c.conn.deliverRetryMax)
			log.Err(err).Stringer("retry_in", backoff).Msg("Failed to read the outbox")
			ctxtime.Sleep(ctx, backoff)
			continue
		}
		backoff = 0
		if !c.deliverOutbox(ctx, entry) {
			break
		}
	}
	// Disconnected: what is left stays for the next Connect.
	o.mu.Lock()
	delete(o.lanes, peer)
	o.mu.Unlock()
}

// deliverOutbox sends one entry to SfB, marks it accepted and sent as SfB
// answers, reports the outcome in the room and deletes the entry. It
// returns false when the client disconnected before the outcome was known:
// the entry stays. After a restart an entry marked sent is only reported,
// and one marked accepted is looked up (delivered or not) rather than sent
// again, when the transport can (sfb.DeliveryTracker).
func (c *Client) deliverOutbox(ctx context.Context, entry database.OutboxEntry) bool {
	log := zerolog.Ctx(ctx).With().Str("event_id", entry.EventID).Int64("outbox_id", entry.ID).Logger()
	ctx = log.WithContext(ctx)
	// The outcome is reported even when the client disconnects meanwhile:
	// SfB has the message.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outboxReportTimeout)
	defer cancel()
	var outcome outboxOutcome
	msgID, ts := networkid.MessageID(entry.SentID), entry.SentAt
	switch {
	case !ts.IsZero():
		log.Info().Msg("Reporting a Matrix message that reached SfB before the restart")
	case entry.SentID != "" && c.deliveredBefore(ctx, entry, &outcome):
		ts = time.Now()
	default:
		if ctx.Err() != nil {
			return false
		}
		// A kill between SfB taking it and the accepted mark sends it again.
		// registered is false after a restart, and for edits and
		// reactions, which bridgev2 has no pending form for.
		log.Debug().Bool("registered", c.isLive(entry.EventID)).Str("msg_type", entry.MsgType).Msg("Sending Matrix message to SfB")
		sendStart := time.Now()
		sent, ok, err := c.sendOutbox(ctx, rctx, entry)
		if !ok {
			log.Info().Err(err).Msg("Disconnected while sending a Matrix message, it stays in the outbox")
			return false
		}
		sendDone := time.Now()
		c.conn.messageBridged(metrics.ToSfB, metrics.ResultOf(err), err, sendDone.Sub(entry.CreatedAt))
		msgID, ts, outcome.err = networkid.MessageID(sent.ID), sent.Time, err
		if _, group := groupThread(entry.Peer); msgID == "" || group {
			// Every stored message needs an ID; the Matrix event's is
			// unique. A group message keeps it: the copies other logins
			// receive are matched to it (groupdedup.go).
			msgID = matrixMessageID(entry.EventID)
		}
		if ts.IsZero() {
			ts = sendDone
		}
		if outcome.err != nil {
			log.Warn().Err(outcome.err).Msg("Matrix message not delivered to SfB")
		} else if err := c.conn.db.MarkOutboxSent(rctx, entry.ID, string(msgID), ts); err != nil {
			log.Err(err).Msg("Failed to mark a delivered Matrix message sent in the outbox")
		} else {
			log.Debug().Dur("send_ms", sendDone.Sub(sendStart)).Dur("mark_ms", time.Since(sendDone)).
				Msg("Matrix message delivered to SfB and marked sent")
		}
	}
	if c.takeLive(entry.EventID) {
		c.queueReliably(rctx, &simplevent.Message[outboxOutcome]{
			EventMeta: simplevent.EventMeta{
				Type:      bridgev2.RemoteEventMessage,
				PortalKey: c.lanePortalKey(entry.Peer),
				Sender:    bridgev2.EventSender{IsFromMe: true, SenderLogin: c.loginID, Sender: c.GetUserID()},
				Timestamp: ts,
				LogContext: func(lc zerolog.Context) zerolog.Context {
					return lc.Str("sfb_message_id", string(msgID)).Str("echo_of", entry.EventID)
				},
			},
			ID:                 msgID,
			TransactionID:      networkid.TransactionID(entry.TxnID),
			Data:               outcome,
			ConvertMessageFunc: convertOutboxEcho,
		})
		c.deleteOutbox(rctx, entry)
	} else {
		c.reportReplayed(rctx, entry, msgID, ts, outcome)
	}
	return true
}

// deleteOutbox deletes a settled entry.
func (c *Client) deleteOutbox(ctx context.Context, entry database.OutboxEntry) {
	if err := c.conn.db.DeleteOutbox(ctx, entry.ID); err != nil {
		// Reported again after the next restart; nothing better to do.
		zerolog.Ctx(ctx).Err(err).Msg("Failed to delete a delivered Matrix message from the outbox")
	}
}

// sendOutbox sends entry to SfB, marking it accepted (in rctx) as soon as
// SfB took it. ok is false when the client disconnected before the outcome
// was known; else err is the delivery failure to report (nil: sent).
func (c *Client) sendOutbox(ctx, rctx context.Context, entry database.OutboxEntry) (sent sfb.SentMessage, ok bool, err error) {
	session := c.outboxSession(ctx, entry)
	switch {
	case ctx.Err() != nil:
		return sent, false, ctx.Err()
	case session == nil:
		return sent, true, errNotConnected()
	}
	msg, err := c.conn.outboxMessage(entry)
	if err != nil {
		return sent, true, errUnreadableOutboxStatus(err)
	}
	if thread, group := groupThread(entry.Peer); group {
		return c.sendGroupOutbox(ctx, rctx, session, thread, entry, msg)
	}
	peer := sfb.URI(entry.Peer)
	if tracker, tracks := session.(sfb.DeliveryTracker); tracks {
		sent, err = tracker.SendMessageTracked(ctx, peer, msg, func(id string) {
			// From SfB taking the message to here a crash sends it
			// twice (docs/architecture.md).
			if err := c.conn.db.MarkOutboxAccepted(rctx, entry.ID, id); err != nil {
				zerolog.Ctx(ctx).Err(err).Msg("Failed to mark a Matrix message accepted by SfB in the outbox")
			} else {
				zerolog.Ctx(ctx).Debug().Msg(markedAccepted)
			}
		})
	} else {
		sent, err = session.SendMessage(ctx, peer, msg)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return sent, false, err
	case err != nil:
		return sent, true, deliveryError(peer.Address(), err)
	}
	return sent, true, nil
}

// sendGroupOutbox sends entry to the multi-party conversation thread,
// which the session starts again when it ended. The message is recorded
// as the login's copy first, so that the copies other logins receive are
// known as this message (groupdedup.go).
func (c *Client) sendGroupOutbox(ctx, rctx context.Context, session sfb.Session, thread string, entry database.OutboxEntry, msg sfb.Message) (sent sfb.SentMessage, ok bool, err error) {
	g, err := c.sfbGroup(ctx, thread)
	if err != nil {
		return sent, ctx.Err() == nil, deliveryError(groupChatName, fmt.Errorf("read the group conversation: %w", err))
	}
	if err := c.conn.recordGroupSend(rctx, c.loginID, string(matrixMessageID(entry.EventID)), thread, msg); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to record a group message before sending it; other logins' copies may show again")
	}
	sent, err = session.SendGroupMessage(ctx, g, msg)
	switch {
	case err != nil && ctx.Err() != nil:
		return sent, false, err
	case err != nil:
		return sent, true, deliveryError(groupChatName, err)
	}
	return sent, true, nil
}

// matrixMessagePrefix starts the ID of a message sent from Matrix that
// SfB gave none (or that went to a group): no SfB message ID starts so,
// nor the ID of a group message's copy, which starts with a login ID.
const matrixMessagePrefix = "mx:"

// matrixMessageID names a message sent from Matrix by its event.
func matrixMessageID(eventID string) networkid.MessageID {
	return networkid.MessageID(matrixMessagePrefix + eventID)
}

// lanePortalKey is the portal of an outbox lane (see outbox.lanes).
func (c *Client) lanePortalKey(lane string) networkid.PortalKey {
	if thread, ok := groupThread(lane); ok {
		return c.groupPortalKey(thread)
	}
	return portalKeyFor(sfb.URI(lane), c.loginID)
}

// groupChatName names a multi-party conversation in delivery notices.
const groupChatName = "the group chat"

// outboxSession returns the session to send entry with. A message sent in
// this process waits for a reconnecting session as long as
// HandleMatrixMessage would have; one left from before the restart waits
// for the sign-in, however long the ramp makes it.
func (c *Client) outboxSession(ctx context.Context, entry database.OutboxEntry) sfb.Session {
	wait := time.Duration(0)
	if c.isLive(entry.EventID) {
		wait = c.conn.sessionWait
	}
	return c.waitSession(ctx, wait)
}

// deliveredBefore asks SfB what became of an entry it took before a
// restart. It returns true when SfB knows the outcome (outcome is set:
// delivered, or failed), false when the entry must be sent (again): SfB
// no longer knows the message, still has it pending after sessionWait, or
// cannot be asked.
func (c *Client) deliveredBefore(ctx context.Context, entry database.OutboxEntry, outcome *outboxOutcome) bool {
	log := zerolog.Ctx(ctx)
	tracker, ok := c.outboxSession(ctx, entry).(sfb.DeliveryTracker)
	if !ok {
		return false
	}
	deadline := time.Now().Add(c.conn.sessionWait)
	for {
		status, err := tracker.DeliveryStatus(ctx, entry.SentID)
		switch {
		case err != nil:
			log.Warn().Err(err).Msg("Could not ask SfB about a Matrix message it took before the restart; sending it again")
			return false
		case status == sfb.DeliveryDelivered:
			log.Info().Msg("SfB delivered a Matrix message before the restart; reporting it")
			return true
		case status == sfb.DeliveryFailed:
			outcome.err = deliveryError(sfb.URI(entry.Peer).Address(), fmt.Errorf("%w (before the bridge restarted)", sfb.ErrDeliveryFailed))
			return true
		case status == sfb.DeliveryUnknown || time.Now().After(deadline):
			log.Warn().Stringer("status", status).Msg("SfB cannot say whether it delivered a Matrix message it took before the restart; sending it again")
			return false
		}
		if !ctxtime.Sleep(ctx, deliveryPoll) {
			return false
		}
	}
}

// markedAccepted is logged (debug) once SfB took a Matrix message and the
// outbox recorded it; e2e/crash measures the duplicate window with it.
const markedAccepted = "Matrix message taken by SfB and marked accepted"

// deliveryPoll is how often a message SfB still has pending is looked up.
const deliveryPoll = 500 * time.Millisecond

// outboxReportTimeout bounds reporting one outcome after a disconnect.
const outboxReportTimeout = 30 * time.Second

// handleEcho is the RemoteEchoHandler of pending Matrix messages: the
// outcome's error becomes the message's failure status (and notice).
func handleEcho(evt bridgev2.RemoteMessage, _ *mxdb.Message) (bool, error) {
	echo, ok := evt.(*simplevent.Message[outboxOutcome])
	if !ok {
		return true, nil
	}
	if echo.Data.err != nil {
		return false, echo.Data.err
	}
	return true, nil
}

// convertOutboxEcho runs only when bridgev2 no longer knew the pending
// message (it cannot, while the process lives): an echo is never shown.
func convertOutboxEcho(context.Context, *bridgev2.Portal, bridgev2.MatrixAPI, outboxOutcome) (*bridgev2.ConvertedMessage, error) {
	return nil, fmt.Errorf("%w: echo of a Matrix message without pending registration", bridgev2.ErrIgnoringRemoteEvent)
}

// reportReplayed writes the outcome of an entry sent after a restart,
// whose pending registration died with the previous process: the message
// row that links the Matrix event to the SfB message, and the status; then
// it deletes the entry. The row comes before the deletion, under settleMu:
// see addOutbox.
func (c *Client) reportReplayed(ctx context.Context, entry database.OutboxEntry, msgID networkid.MessageID, ts time.Time, outcome outboxOutcome) {
	log := zerolog.Ctx(ctx)
	br := c.conn.br
	if outcome.err != nil {
		c.sendEntryStatus(ctx, entry, bridgev2.WrapErrorInStatus(outcome.err))
		c.deleteOutbox(ctx, entry)
		return
	}
	if _, err := br.GetGhostByID(ctx, c.GetUserID()); err != nil {
		log.Err(err).Msg("Failed to get own ghost before saving a replayed message")
	}
	c.settleMu.Lock()
	var err error
	if entry.MsgType != reactionMsgType {
		// A reaction has its own row, which bridgev2 stored.
		err = br.DB.Message.Insert(ctx, &mxdb.Message{
			ID:        msgID,
			MXID:      id.EventID(entry.EventID),
			Room:      c.lanePortalKey(entry.Peer),
			SenderID:  c.GetUserID(),
			Timestamp: ts,
		})
	}
	if err != nil {
		log.Err(err).Msg("Failed to save a replayed Matrix message")
	}
	c.deleteOutbox(ctx, entry)
	c.settleMu.Unlock()
	c.sendEntryStatus(ctx, entry, bridgev2.MessageStatus{Status: event.MessageStatusSuccess})
}

// sendEntryStatus sends the message status (and, for a failure, the
// notice) of an outbox entry. bridgev2's Matrix connector sends it in a
// goroutine of its own with the context it gets, so that context must not
// end when the caller returns: the caller's report timeout would cancel the
// status before it left.
func (c *Client) sendEntryStatus(ctx context.Context, entry database.OutboxEntry, ms bridgev2.MessageStatus) {
	info := &bridgev2.MessageStatusEventInfo{
		RoomID:        id.RoomID(entry.RoomID),
		SourceEventID: id.EventID(entry.EventID),
		EventType:     event.EventMessage,
		MessageType:   event.MessageType(entry.MsgType),
		Sender:        id.UserID(entry.SenderMXID),
	}
	switch entry.MsgType {
	case reactionMsgType:
		info.EventType, info.MessageType = event.EventReaction, ""
	case widgetMsgType:
		info.EventType, info.MessageType = widgetEventType, ""
	}
	c.conn.br.Matrix.SendMessageStatus(context.WithoutCancel(ctx), &ms, info)
}

// markLive records that this process registered the Matrix event as
// pending with bridgev2, so that its outcome goes through a remote echo.
func (c *Client) markLive(eventID string) {
	c.mu.Lock()
	c.live[eventID] = struct{}{}
	c.mu.Unlock()
}

func (c *Client) isLive(eventID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.live[eventID]
	return ok
}

// takeLive reports and forgets whether eventID was registered as pending.
func (c *Client) takeLive(eventID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.live[eventID]
	delete(c.live, eventID)
	return ok
}
