package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/msgconv"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// refuse builds the error for something SfB cannot carry: bridgev2 marks the
// event as failed and the bot answers in the room with human, so that the
// sender never believes the peer saw it.
func refuse(internal error, human string) error {
	return bridgev2.WrapErrorInStatus(internal).
		WithStatus(event.MessageStatusFail).
		WithErrorReason(event.MessageStatusUnsupported).
		WithIsCertain(true).
		WithSendNotice(true).
		WithMessage(human)
}

// unsupportedContent explains, per message type, what SfB cannot receive.
func unsupportedContent(msgType event.MessageType) error {
	what := map[event.MessageType]string{
		event.MsgImage:               "images",
		event.MsgFile:                "files",
		event.MsgAudio:               "audio or voice messages",
		event.MsgVideo:               "videos",
		event.MsgLocation:            "locations",
		event.CapMsgSticker:          "stickers",
		event.MsgVerificationRequest: "verification requests",
	}[msgType]
	if what == "" {
		what = fmt.Sprintf("this kind of message (%s)", msgType)
	}
	return refuse(fmt.Errorf("%w: message type %s", sfb.ErrUnsupported, msgType),
		fmt.Sprintf("Skype for Business cannot receive %s. Send text or a link instead.", what))
}

// HandleMatrixMessage validates and converts a text message, puts it in
// the outbox for the portal's peer and returns at once with the message
// pending: the outbox lane sends it and reports the SfB message ID or the
// failure through a remote echo (see outbox.go).
func (c *Client) HandleMatrixMessage(ctx context.Context, msg *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	switch msg.Content.MsgType {
	case event.MsgText, event.MsgNotice, event.MsgEmote:
	case event.MsgImage, event.MsgFile, event.MsgVideo, event.MsgAudio:
	default:
		return nil, unsupportedContent(msg.Content.MsgType)
	}
	lane, err := laneOf(msg.Portal)
	if err != nil {
		return nil, err
	}
	out, err := c.convertForSfB(msg.Content)
	if err != nil {
		return nil, err
	}
	if msg.OrigSender != nil {
		out.Text = plainRelayName(out.Text, msg.OrigSender.DisambiguatedName)
	}
	if msg.ReplyTo != nil {
		if author, original, ok := c.originalMessage(ctx, msg.Portal, msg.ReplyTo); ok {
			out = msgconv.WithQuote(out, author, original)
		}
	}
	return c.enqueue(ctx, lane, msg.Portal, msg.Event, string(msg.Content.MsgType), out, msg)
}

// laneOf is the outbox lane of a portal: the peer's URI, or the group
// portal's ID.
func laneOf(portal *bridgev2.Portal) (string, error) {
	if _, ok := groupThread(portal.ID); ok {
		return string(portal.ID), nil
	}
	peer, err := uriFor(portal.ID)
	if err != nil {
		return "", fmt.Errorf("portal %s is not an SfB chat: %w", portal.ID, err)
	}
	return string(peer), nil
}

// enqueue puts out in the outbox lane (a peer, or a group) and returns
// at once. A message (pending set) is registered with bridgev2 as pending
// and settled by the outbox's echo; edits and reactions have no pending
// form in bridgev2, so the lane reports only their failure (and, for an
// edit, links the event to the SfB message, see reportReplayed).
func (c *Client) enqueue(ctx context.Context, lane string, portal *bridgev2.Portal, evt *event.Event, msgType string, out sfb.Message, pending *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	if c.waitSession(ctx, c.conn.sessionWait) == nil {
		return nil, errNotConnected()
	}
	if e := c.conn.presence; e != nil {
		if _, group := groupThread(lane); !group {
			e.sawPeer(ctx, c, sfb.URI(lane))
		}
		e.userActive(ctx, c)
	}
	return c.storeOutbox(ctx, lane, portal, evt, msgType, out, pending)
}

// storeOutbox is enqueue without waiting for a session and without
// counting as the user's activity: for what the bridge sends on its own
// (the Jitsi link a caller gets back).
func (c *Client) storeOutbox(ctx context.Context, lane string, portal *bridgev2.Portal, evt *event.Event, msgType string, out sfb.Message, pending *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	// Sending happens in the outbox lane, not here: bridgev2 holds the
	// portal during this call, and SfB's completion of the send may queue
	// behind an SfB message waiting for that portal (see outbox.go).
	roomID := portal.MXID
	if roomID == "" {
		roomID = evt.RoomID
	}
	txnID := networkid.TransactionID(evt.ID)
	entry := database.OutboxEntry{
		LoginID:    string(c.loginID),
		Peer:       lane,
		EventID:    evt.ID.String(),
		RoomID:     roomID.String(),
		SenderMXID: evt.Sender.String(),
		MsgType:    msgType,
		TxnID:      string(txnID),
		Text:       out.Text,
		HTML:       out.HTML,
	}
	if err := c.conn.sealOutbox(&entry); err != nil {
		return nil, errNotQueued(err)
	}
	if pending != nil {
		// Registered before the lane can see the entry, so that its echo
		// always finds the registration.
		c.markLive(entry.EventID)
		pending.AddPendingToSave(&mxdb.Message{SenderID: c.GetUserID(), Timestamp: time.Now()}, txnID, handleEcho)
	}
	stored, added, err := c.addOutbox(ctx, entry)
	if err != nil {
		if pending != nil {
			pending.RemovePending(txnID)
			c.takeLive(entry.EventID)
		}
		return nil, errNotQueued(err)
	}
	switch {
	case !added && stored.ID == 0:
		// Pushed again by the homeserver after it was already settled.
		if pending != nil {
			pending.RemovePending(txnID)
			c.takeLive(entry.EventID)
		}
		zerolog.Ctx(ctx).Info().Msg("Matrix event was already delivered to SfB, not sending it again")
		return &bridgev2.MatrixMessageResponse{}, nil
	case !added:
		zerolog.Ctx(ctx).Info().Int64("outbox_id", stored.ID).Msg("Matrix event already in the outbox, waiting for its delivery")
	default:
		zerolog.Ctx(ctx).Debug().Int64("outbox_id", stored.ID).Str("peer", sfb.URI(lane).Address()).Msg("Matrix event stored in the outbox")
	}
	c.wakeOutbox(lane)
	return &bridgev2.MatrixMessageResponse{Pending: pending != nil}, nil
}

// plainRelayName undoes, in the plain text of a relayed message, the
// markdown that bridgev2's HTML-to-text conversion gives the bold name of
// the shipped relay format ("<b>Alice</b>: hi" becomes "**Alice**: hi"):
// an SfB client that shows the plain form shows "Alice: hi".
func plainRelayName(text, name string) string {
	if rest, ok := strings.CutPrefix(text, "**"+name+"**"); ok && name != "" {
		return name + rest
	}
	return text
}

// convertForSfB converts message content for SfB, refusing with a notice
// what SfB cannot take.
func (c *Client) convertForSfB(content *event.MessageEventContent) (sfb.Message, error) {
	var out sfb.Message
	var err error
	if isFile(content.MsgType) {
		out, err = c.conn.fileMessage(content)
	} else {
		out, err = msgconv.FromMatrix(content, c.login.RemoteName)
	}
	switch {
	case errors.Is(err, msgconv.ErrTooLong):
		return out, refuse(err, fmt.Sprintf("The message is too long for Skype for Business (at most %d bytes). Split it or send a link.", msgconv.MaxSfBMessageBytes))
	case errors.Is(err, msgconv.ErrEmpty):
		return out, refuse(err, "The message has no text to send to Skype for Business.")
	case err != nil:
		return out, fmt.Errorf("convert message for SfB: %w", err)
	}
	return out, nil
}

// addOutbox stores entry unless its event was settled already. After a
// restart the homeserver pushes again the events of the transaction the
// killed process had not answered, while the outbox lane settles the
// entries that process stored: bridgev2 looks for the event's message row
// before the lane records it, and a plain AddOutbox after the lane deleted
// the entry would store the event anew and send it to SfB a second time.
// The lane records the row and deletes the entry under settleMu
// (reportReplayed); checked for a row under the same lock, the event finds
// either its entry or its row. A live entry's row is stored by bridgev2 in
// the portal's event loop, which also runs this handler, before the entry
// is deleted.
func (c *Client) addOutbox(ctx context.Context, entry database.OutboxEntry) (database.OutboxEntry, bool, error) {
	c.settleMu.Lock()
	defer c.settleMu.Unlock()
	part, err := c.conn.br.DB.Message.GetPartByMXID(ctx, id.EventID(entry.EventID))
	switch {
	case err != nil:
		return entry, false, fmt.Errorf("look up Matrix event %s in the message table: %w", entry.EventID, err)
	case part != nil:
		entry.ID = 0
		return entry, false, nil
	}
	return c.conn.db.AddOutbox(ctx, entry)
}

// errNotQueued is the status of a message the outbox could not take.
func errNotQueued(err error) error {
	return bridgev2.WrapErrorInStatus(fmt.Errorf("queue message for SfB: %w", err)).
		WithStatus(event.MessageStatusRetriable).
		WithErrorReason(event.MessageStatusGenericError).
		WithIsCertain(true).
		WithSendNotice(true).
		WithMessage("The bridge could not store the message for Skype for Business; it was not sent. Send it again.")
}

// errNotConnected is the status of a message that found no SfB session.
func errNotConnected() error {
	return bridgev2.WrapErrorInStatus(errors.New("not connected to Skype for Business")).
		WithStatus(event.MessageStatusRetriable).
		WithErrorReason(event.MessageStatusBridgeUnavailable).
		WithIsCertain(true).
		WithSendNotice(true).
		WithMessage("You are not connected to Skype for Business right now, so the message was not sent. The bridge bot tells you why; send it again once you are connected.")
}

// deliveryError maps a send failure to a message status the sender sees.
// The notice says what happened and what the sender can do, in words for
// people; the error chain stays in the status's internal error (logs,
// the checkpoint), never in the room.
func deliveryError(who string, err error) error {
	status := bridgev2.WrapErrorInStatus(fmt.Errorf("send message to %s: %w", who, err)).
		WithIsCertain(true).
		WithSendNotice(true)
	switch {
	case errors.Is(err, sfb.ErrNotFound):
		return status.WithStatus(event.MessageStatusFail).
			WithErrorReason(event.MessageStatusGenericError).
			WithMessage(fmt.Sprintf("No Skype for Business user with the address %s; the message was not delivered. Check the address.", who))
	case errors.Is(err, sfb.ErrRecipientUnavailable):
		return status.WithStatus(event.MessageStatusFail).
			WithErrorReason(event.MessageStatusGenericError).
			WithMessage(fmt.Sprintf("%s is offline and Skype for Business could not deliver the message. Send it again when they are online.", who))
	case errors.Is(err, sfb.ErrDeclined):
		return status.WithStatus(event.MessageStatusFail).
			WithErrorReason(event.MessageStatusGenericError).
			WithMessage(fmt.Sprintf("%s is not accepting messages right now (for example Do not disturb); the message was not delivered. Try again later.", who))
	case errors.Is(err, sfb.ErrDeliveryFailed):
		return status.WithStatus(event.MessageStatusFail).
			WithErrorReason(event.MessageStatusGenericError).
			WithMessage(fmt.Sprintf("Skype for Business could not deliver the message to %s. Send it again later.", who))
	case errors.Is(err, sfb.ErrNotCarried):
		return status.WithStatus(event.MessageStatusFail).
			WithErrorReason(event.MessageStatusUnsupported).
			WithMessage("This bridge cannot carry group chats to Skype for Business yet; the message was not delivered. Write to each person in a direct chat instead.")
	case errors.Is(err, sfb.ErrUnsupported):
		return status.WithStatus(event.MessageStatusFail).
			WithErrorReason(event.MessageStatusUnsupported).
			WithMessage("Skype for Business refused the message as unsupported. Send plain text instead.")
	case errors.Is(err, sfb.ErrLocalTimeout):
		return status.WithStatus(event.MessageStatusRetriable).
			WithErrorReason(event.MessageStatusBridgeUnavailable).
			WithMessage("The bridge is too busy right now and the message waited too long; it was not delivered. Send it again in a moment.")
	case errors.Is(err, sfb.ErrServerUnavailable), errors.Is(err, context.DeadlineExceeded):
		return status.WithStatus(event.MessageStatusRetriable).
			WithErrorReason(event.MessageStatusNetworkError).
			WithMessage("Skype for Business is not reachable right now; the message was not delivered. Send it again later.")
	case needsRelogin(err):
		return status.WithStatus(event.MessageStatusRetriable).
			WithErrorReason(event.MessageStatusBridgeUnavailable).
			WithMessage("Your Skype for Business sign-in expired; the message was not delivered. Log in again and resend it.")
	default:
		return status.WithStatus(event.MessageStatusRetriable).
			WithErrorReason(event.MessageStatusGenericError).
			WithMessage("Sending to Skype for Business failed; the message was not delivered. Send it again later, and tell your administrator if it keeps failing.")
	}
}

// HandleMatrixTyping tells the peer whether the user is typing. Nothing
// happens while disconnected: typing is not worth a reconnect.
func (c *Client) HandleMatrixTyping(ctx context.Context, msg *bridgev2.MatrixTyping) error {
	session := c.currentSession()
	if session == nil {
		return nil
	}
	if e := c.conn.presence; e != nil && msg.IsTyping {
		e.userActive(ctx, c)
	}
	if thread, ok := groupThread(msg.Portal.ID); ok {
		if err := session.SetGroupTyping(ctx, thread, msg.IsTyping); err != nil {
			return fmt.Errorf("send typing to group %s: %w", thread, err)
		}
		return nil
	}
	peer, err := uriFor(msg.Portal.ID)
	if err != nil {
		return fmt.Errorf("portal %s is not an SfB 1:1 chat: %w", msg.Portal.ID, err)
	}
	if err := session.SetTyping(ctx, peer, msg.IsTyping); err != nil {
		return fmt.Errorf("send typing to %s: %w", peer, err)
	}
	return nil
}

// SfB has no replies, edits, reactions or deletions. Replies carry a
// quote of the original (HandleMatrixMessage), edits and reactions are
// sent as new messages. The client does not implement bridgev2's handler
// for deletions: bridgev2 then refuses them itself, logging at debug level
// (an expected refusal is no operator alert), and matrixapp words the
// notice. Polls reach the handlers below, which refuse them with a notice.

// reactionMsgType marks an outbox entry that carries a reaction: it has no
// message row (bridgev2 keeps the reaction's own) and its status is a
// reaction's.
const reactionMsgType = "m.reaction"

// HandleMatrixEdit sends the new text as "(edited) new text".
func (c *Client) HandleMatrixEdit(ctx context.Context, msg *bridgev2.MatrixEdit) error {
	switch msg.Content.MsgType {
	case event.MsgText, event.MsgNotice, event.MsgEmote:
	default:
		return unsupportedContent(msg.Content.MsgType)
	}
	lane, err := laneOf(msg.Portal)
	if err != nil {
		return err
	}
	out, err := c.convertForSfB(msg.Content)
	if err != nil {
		return err
	}
	_, err = c.enqueue(ctx, lane, msg.Portal, msg.Event, string(msg.Content.MsgType), msgconv.Edited(out), nil)
	return err
}

// PreHandleMatrixReaction lets bridgev2 keep one reaction per user and
// emoji on a message, so that the SfB side hears of it once.
func (c *Client) PreHandleMatrixReaction(ctx context.Context, msg *bridgev2.MatrixReaction) (bridgev2.MatrixReactionPreResponse, error) {
	key := msg.Content.RelatesTo.Key
	return bridgev2.MatrixReactionPreResponse{SenderID: c.GetUserID(), EmojiID: networkid.EmojiID(key), Emoji: key}, nil
}

// HandleMatrixReaction sends "Alice reacted 👍 to: ..." or nothing, as
// network.messages.reactions says.
func (c *Client) HandleMatrixReaction(ctx context.Context, msg *bridgev2.MatrixReaction) (*mxdb.Reaction, error) {
	if c.conn.Config.Messages.Reactions == ReactionsDropped {
		// Dropped as the operator chose; the room features say so
		// (GetCapabilities).
		return &mxdb.Reaction{}, nil
	}
	lane, err := laneOf(msg.Portal)
	if err != nil {
		return nil, err
	}
	_, target, _ := c.originalMessage(ctx, msg.Portal, msg.TargetMessage)
	out := msgconv.Reaction(c.login.RemoteName, msg.Content.RelatesTo.Key, target)
	if _, err := c.enqueue(ctx, lane, msg.Portal, msg.Event, reactionMsgType, out, nil); err != nil {
		return nil, err
	}
	return &mxdb.Reaction{}, nil
}

// HandleMatrixReactionRemove does nothing: SfB keeps the message that
// told of the reaction, if one was sent. No notice either: a refusal from
// a handler is an error-level log line, and this one is expected.
func (c *Client) HandleMatrixReactionRemove(ctx context.Context, msg *bridgev2.MatrixReactionRemove) error {
	return nil
}

// originalMessage returns the author's name and the text of a bridged
// message, fetched from the homeserver (the message table holds no text).
// ok is false when the event cannot be read; the reply or reaction then
// goes without the quote.
func (c *Client) originalMessage(ctx context.Context, portal *bridgev2.Portal, target *mxdb.Message) (author, text string, ok bool) {
	bot := c.conn.br.Bot
	if target == nil || bot == nil || portal.MXID == "" {
		return "", "", false
	}
	log := zerolog.Ctx(ctx).With().Str("target_event_id", target.MXID.String()).Logger()
	evt, err := bot.GetEvent(ctx, portal.MXID, target.MXID)
	if err != nil {
		log.Warn().Err(err).Msg("Failed to fetch the message replied or reacted to; sending without a quote")
		return "", "", false
	}
	if err := evt.Content.ParseRaw(evt.Type); err != nil && !errors.Is(err, event.ErrContentAlreadyParsed) {
		log.Warn().Err(err).Msg("Failed to parse the message replied or reacted to; sending without a quote")
		return "", "", false
	}
	content := evt.Content.AsMessage()
	if content == nil {
		return "", "", false
	}
	c2 := *content
	c2.RemoveReplyFallback()
	if c2.NewContent != nil {
		c2 = *c2.NewContent
	}
	return c.senderName(ctx, target.SenderID), c2.Body, true
}

// senderName is the name the SfB side knows the author of a bridged
// message by: the login's own SfB name, or the SfB person's.
func (c *Client) senderName(ctx context.Context, sender networkid.UserID) string {
	if sender == c.GetUserID() {
		return c.login.RemoteName
	}
	if ghost, err := c.conn.br.GetExistingGhostByID(ctx, sender); err == nil && ghost != nil && ghost.Name != "" {
		return ghost.Name
	}
	if uri, err := uriFor(sender); err == nil {
		return uri.Address()
	}
	return ""
}

// HandleMatrixPollStart refuses polls.
func (c *Client) HandleMatrixPollStart(ctx context.Context, msg *bridgev2.MatrixPollStart) (*bridgev2.MatrixMessageResponse, error) {
	return nil, refuse(fmt.Errorf("%w: polls", sfb.ErrUnsupported), "Skype for Business has no polls; the poll was not sent.")
}

// HandleMatrixPollVote refuses poll votes.
func (c *Client) HandleMatrixPollVote(ctx context.Context, msg *bridgev2.MatrixPollVote) (*bridgev2.MatrixMessageResponse, error) {
	return nil, refuse(fmt.Errorf("%w: polls", sfb.ErrUnsupported), "Skype for Business has no polls; the vote was not sent.")
}
