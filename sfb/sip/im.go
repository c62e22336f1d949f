package sip

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/im"
)

// Instant messaging over SIP, as pidgin-sipe does it (sipe-im.c,
// sipe-incoming.c, sipe-dialog.c) and SfB clients expect:
//
//   - A conversation with a peer is one INVITE dialog. The INVITE carries
//     the first message in Ms-Text-Format, a Ms-Conversation-ID, EndPoints
//     and an SDP with "m=message ... sip null"; the 200 says with
//     "Supported: ms-text-format" whether the peer took that message, else
//     it goes again as the dialog's first MESSAGE. Further messages are
//     MESSAGEs in the dialog; typing is an INFO with KeyboardActivity.
//   - A dialog the server no longer knows (481, or 408/480 to a request in
//     it) is dropped and the message sent again in a new INVITE, once: SfB
//     conversations expire, the caller never sees that.
//   - The peer's INVITE is answered 200 with our SDP; its Ms-Text-Format
//     message is delivered, and acknowledged with "Supported:
//     ms-text-format" so that the peer does not send it again. Its
//     MESSAGEs and INFOs become MessageReceived and TypingChanged, its BYE
//     or CANCEL ConversationEnded.
//   - A dialog idle for Timings.IMIdle is closed with a BYE.
//
// Multi-party conversations (conferences, more than two EndPoints) are
// refused with 488: the transport does not carry them yet.

// imState is what a session keeps for instant messaging: its
// conversations, by peer, made on first use and forgotten when their
// dialog ended and nobody uses them, so an idle session holds none.
type imState struct {
	mu    sync.Mutex
	convs map[sfb.URI]*conversation
}

// conversation is the IM dialog with one peer.
type conversation struct {
	peer sfb.URI
	// turn lets one of our requests at a time into the dialog, so that
	// CSeq numbers reach the peer in order and a message waits for the
	// INVITE before it.
	turn chan struct{}

	// The rest is guarded by imState.mu.
	users int // callers holding or waiting for turn
	// dialog is nil while there is none; established once the INVITE
	// got its 200 (ours) or was answered 200 (theirs).
	dialog      *Dialog
	established bool
	// accept is what the peer's SDP said it takes; nil before.
	accept []string
	// id is the Ms-Conversation-ID; subject the peer's Subject.
	id      string
	subject string
	idle    *time.Timer
}

// defaultIMIdle is how long a dialog may stay idle before it is closed,
// when Timings leave it zero. SfB clients keep a conversation window's
// dialog for longer; the bridge has no window, and a new INVITE is cheap.
const defaultIMIdle = 10 * time.Minute

func (s *Session) imIdle() time.Duration {
	if d := s.t.timings.IMIdle; d > 0 {
		return d
	}
	return defaultIMIdle
}

// conv returns the conversation with peer, made when missing, counted as
// used until done.
func (s *Session) conv(peer sfb.URI) *conversation {
	s.im.mu.Lock()
	defer s.im.mu.Unlock()
	if s.im.convs == nil {
		s.im.convs = map[sfb.URI]*conversation{}
	}
	c := s.im.convs[peer]
	if c == nil {
		c = &conversation{peer: peer, turn: make(chan struct{}, 1)}
		s.im.convs[peer] = c
	}
	c.users++
	return c
}

// done ends a use of c that conv started.
func (s *Session) done(c *conversation) {
	s.im.mu.Lock()
	defer s.im.mu.Unlock()
	c.users--
	s.forgetLocked(c)
}

// forgetLocked drops c when nothing holds it.
func (s *Session) forgetLocked(c *conversation) {
	if c.users == 0 && c.dialog == nil && s.im.convs[c.peer] == c {
		delete(s.im.convs, c.peer)
	}
}

// lock waits for c's turn.
func (s *Session) lock(ctx context.Context, c *conversation) error {
	select {
	case c.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the conversation with %s: %w", c.peer, ctx.Err())
	case <-s.ctx.Done():
		return fmt.Errorf("conversation with %s: %w", c.peer, context.Cause(s.ctx))
	}
}

func (c *conversation) unlock() { <-c.turn }

// setDialogLocked makes d c's dialog, its idle timer started.
func (s *Session) setDialogLocked(c *conversation, d *Dialog) {
	c.dialog, c.established = d, false
	if c.idle != nil {
		c.idle.Stop()
	}
	c.idle = time.AfterFunc(s.imIdle(), func() { s.closeIdle(c, d) })
}

// dropDialogLocked forgets c's dialog d; false when it was not c's any
// more.
func (s *Session) dropDialogLocked(c *conversation, d *Dialog) bool {
	if c.dialog != d || d == nil {
		return false
	}
	c.dialog, c.established, c.accept = nil, false, nil
	if c.idle != nil {
		c.idle.Stop()
		c.idle = nil
	}
	s.forgetLocked(c)
	return true
}

// touchLocked restarts c's idle timer: the dialog is in use.
func (s *Session) touchLocked(c *conversation) {
	if c.idle != nil {
		c.idle.Reset(s.imIdle())
	}
}

// conversationOf is the sfb.Conversation of c, for events.
func (s *Session) conversationOf(c *conversation) sfb.Conversation {
	s.im.mu.Lock()
	defer s.im.mu.Unlock()
	return sfb.Conversation{ThreadID: c.id, Peer: c.peer, Subject: c.subject}
}

// conversationWith is c's sfb.Conversation, or the bare one with peer for
// a request in no conversation known.
func (s *Session) conversationWith(c *conversation, peer sfb.URI) sfb.Conversation {
	if c == nil {
		return sfb.Conversation{Peer: peer}
	}
	return s.conversationOf(c)
}

// SendMessage implements sfb.Session.
func (s *Session) SendMessage(ctx context.Context, to sfb.URI, msg sfb.Message) (sfb.SentMessage, error) {
	peer, err := sfb.ParseURI(string(to))
	if err != nil {
		return sfb.SentMessage{}, fmt.Errorf("send message: %w: %w", sfb.ErrNotFound, err)
	}
	// Refuse what cannot be sent before anything reaches the server.
	if _, _, err := im.EncodeMessage(msg, nil); err != nil {
		return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", peer, err)
	}
	c := s.conv(peer)
	defer s.done(c)
	if err := s.lock(ctx, c); err != nil {
		return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", peer, err)
	}
	defer c.unlock()
	for attempt := 0; ; attempt++ {
		s.im.mu.Lock()
		d, accept := c.dialog, c.accept
		if !c.established {
			d = nil
		}
		s.im.mu.Unlock()
		if d == nil {
			return s.invite(ctx, c, msg)
		}
		sent, err := s.message(ctx, c, d, msg, accept)
		if err == nil || attempt > 0 || !dangling(err) {
			return sent, err
		}
		// The server forgot the dialog (expired, the peer's client
		// restarted): a new one carries the message.
		s.log.Debug().Err(err).Str("peer", string(peer)).Msg("IM dialog gone: inviting again")
		s.endDialog(c, d)
	}
}

// dangling reports whether a request in a dialog failed because the
// dialog no longer exists or the peer left it (pidgin-sipe's
// sipe_im_cancel_dangling after 408, 480 or 481).
func dangling(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Status == 481 || e.Status == 408 || e.Status == 480)
}

// invite starts a dialog with c's peer carrying msg (sipe_im_invite). The
// caller holds c's turn.
func (s *Session) invite(ctx context.Context, c *conversation, msg sfb.Message) (sfb.SentMessage, error) {
	tf, err := im.EncodeTextFormat(msg)
	if err != nil {
		return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", c.peer, err)
	}
	conn, _ := s.connection()
	if conn == nil {
		return sfb.SentMessage{}, fmt.Errorf("send message to %s: not registered (reconnecting): %w", c.peer, sfb.ErrServerUnavailable)
	}
	d := s.newDialog(string(c.peer))
	s.im.mu.Lock()
	if c.id == "" {
		c.id = randomHex(16)
	}
	convID := c.id
	req, err := s.request(d, sipmsg.INVITE)
	if err == nil {
		s.setDialogLocked(c, d)
	}
	inviteCSeq := d.LocalCSeq
	s.im.mu.Unlock()
	if err != nil {
		return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", c.peer, err)
	}
	req.AppendHeader(sipmsg.NewHeader("Supported", "ms-sender"))
	req.AppendHeader(sipmsg.NewHeader("Supported", "ms-text-format"))
	req.AppendHeader(sipmsg.NewHeader(im.HeaderTextFormat, tf.String()))
	req.AppendHeader(sipmsg.NewHeader(im.HeaderConversationID, convID))
	req.AppendHeader(sipmsg.NewHeader(im.HeaderEndPoints, im.FormatEndPoints([]im.Endpoint{
		{URI: string(s.self), EPID: s.epid}, {URI: string(c.peer)}})))
	req.AppendHeader(sipmsg.NewHeader("Content-Type", im.TypeSDP))
	req.SetBody(s.sdp(conn, "null"))

	res, err := s.do(ctx, "send message", req)
	if err != nil {
		s.im.mu.Lock()
		s.dropDialogLocked(c, d)
		s.im.mu.Unlock()
		return sfb.SentMessage{}, deliveryError(c.peer, err)
	}
	var accept []string
	if sdp, err := im.ParseSDP(res.Body()); err == nil {
		accept = sdp.AcceptTypes
	} else if len(res.Body()) > 0 {
		s.log.Debug().Err(err).Str("peer", string(c.peer)).Msg("The SDP of the peer's 200 is unreadable: assuming text and HTML")
	}
	s.im.mu.Lock()
	d.update(res)
	ack, ackErr := s.requestCSeq(d, sipmsg.ACK, inviteCSeq)
	replaced := c.dialog != d
	if !replaced {
		c.established, c.accept = true, accept
	}
	s.im.mu.Unlock()
	if ackErr == nil {
		ackErr = s.send(ack)
	}
	if ackErr != nil {
		// The peer times the dialog out without it; the message went.
		s.log.Warn().Err(ackErr).Str("peer", string(c.peer)).Msg("ACK of the IM INVITE not sent")
	}
	sent := sfb.SentMessage{ID: messageID(d.CallID, inviteCSeq, "INVITE", ""), Time: time.Now()}
	if !supports(res, "ms-text-format") {
		// The peer did not take the message from the INVITE
		// (process_invite_response): it goes as the first MESSAGE.
		sent, err = s.message(ctx, c, d, msg, accept)
	}
	if replaced {
		// The peer invited us meanwhile; its dialog carries the
		// conversation on, ours is closed once it served.
		go s.bye(c, d)
	}
	return sent, err
}

// message sends msg in dialog d (sipe_im_send_message). The caller holds
// c's turn.
func (s *Session) message(ctx context.Context, c *conversation, d *Dialog, msg sfb.Message, accept []string) (sfb.SentMessage, error) {
	ct, body, err := im.EncodeMessage(msg, accept)
	if err != nil {
		return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", c.peer, err)
	}
	s.im.mu.Lock()
	req, err := s.request(d, sipmsg.MESSAGE)
	cseq := d.LocalCSeq
	s.touchLocked(c)
	s.im.mu.Unlock()
	if err != nil {
		return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", c.peer, err)
	}
	req.AppendHeader(sipmsg.NewHeader("Content-Type", ct.String()))
	req.SetBody(body)
	if _, err := s.do(ctx, "send message", req); err != nil {
		if ct.Type != im.TypePlain && refusedType(err) {
			// A peer that refuses the formatted form gets the text, as
			// the UCWA transport does.
			s.log.Info().Err(err).Str("peer", string(c.peer)).Msg("Formatted message refused: sending it as plain text")
			return s.message(ctx, c, d, msg, []string{im.TypePlain})
		}
		return sfb.SentMessage{}, deliveryError(c.peer, err)
	}
	return sfb.SentMessage{ID: messageID(d.CallID, cseq, "MESSAGE", ""), Time: time.Now()}, nil
}

// refusedType reports whether a request failed for its body's type.
func refusedType(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Status == 415 || e.Status == 488)
}

// deliveryError says why the server did not deliver a message: a SIP
// failure wraps sfb.ErrDeliveryFailed beside what its status means
// (ErrRecipientUnavailable, ErrDeclined, ErrNotFound...) with the reason
// and ms-diagnostics the server gave. A 503 with Retry-After is the pool
// pausing the client, not a verdict on the message: it stays
// ErrServerUnavailable, to be tried again.
//
// A 415 or 488 here is the peer refusing the conversation or a message
// already in plain text (a formatted one went again as text first): the
// recipient does not take messages (SfB's 488 with ms-diagnostics 1018,
// what UCWA reports as the subcode NotAcceptable), so ErrDeclined.
func deliveryError(peer sfb.URI, err error) error {
	var e *Error
	switch {
	case !errors.As(err, &e) || (e.Status == 503 && e.RetryAfter > 0):
		return fmt.Errorf("send message to %s: %w", peer, err)
	case refusedType(err):
		return fmt.Errorf("send message to %s: %w: %w: %w", peer, sfb.ErrDeliveryFailed, sfb.ErrDeclined, err)
	}
	return fmt.Errorf("send message to %s: %w: %w", peer, sfb.ErrDeliveryFailed, err)
}

// SetTyping implements sfb.Session: an INFO with KeyboardActivity in the
// dialog with the peer, as pidgin-sipe's sipe_core_user_feedback_typing;
// nothing without an established dialog.
func (s *Session) SetTyping(ctx context.Context, to sfb.URI, typing bool) error {
	peer, err := sfb.ParseURI(string(to))
	if err != nil {
		return fmt.Errorf("typing: %w", err)
	}
	s.im.mu.Lock()
	c := s.im.convs[peer]
	active := c != nil && c.dialog != nil && c.established
	s.im.mu.Unlock()
	if !active {
		return nil
	}
	c = s.conv(peer)
	defer s.done(c)
	if err := s.lock(ctx, c); err != nil {
		return fmt.Errorf("typing to %s: %w", peer, err)
	}
	defer c.unlock()
	s.im.mu.Lock()
	d := c.dialog
	if d == nil || !c.established {
		s.im.mu.Unlock()
		return nil
	}
	req, err := s.request(d, sipmsg.INFO)
	s.im.mu.Unlock()
	if err != nil {
		return fmt.Errorf("typing to %s: %w", peer, err)
	}
	req.AppendHeader(sipmsg.NewHeader("Content-Type", im.TypeKeyboardActivity))
	req.SetBody(im.KeyboardActivity(typing))
	if _, err := s.do(ctx, "typing", req); err != nil {
		if dangling(err) {
			// process_info_typing_response: the dialog is gone.
			s.endDialog(c, d)
			return nil
		}
		return fmt.Errorf("typing to %s: %w", peer, err)
	}
	return nil
}

// endDialog forgets d, which the server or the peer no longer has, as
// c's dialog, and sends a BYE for it in the background.
func (s *Session) endDialog(c *conversation, d *Dialog) {
	s.im.mu.Lock()
	dropped := s.dropDialogLocked(c, d)
	s.im.mu.Unlock()
	if dropped {
		go s.bye(c, d)
	}
}

// bye sends a BYE in d, which is no longer c's dialog, best effort: the
// server forgets the dialog anyway.
func (s *Session) bye(c *conversation, d *Dialog) {
	if s.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.t.timings.RequestTimeout)
	defer cancel()
	s.im.mu.Lock()
	req, err := s.request(d, sipmsg.BYE)
	s.im.mu.Unlock()
	if err == nil {
		_, err = s.do(ctx, "end conversation", req)
	}
	if err != nil {
		s.log.Debug().Err(err).Str("peer", string(c.peer)).Msg("BYE of an IM dialog failed")
	}
}

// closeIdle ends d when it was idle for the idle time: a BYE, and the
// handler told. A dialog busy with a request of ours waits another round.
func (s *Session) closeIdle(c *conversation, d *Dialog) {
	if s.ctx.Err() != nil {
		return
	}
	select {
	case c.turn <- struct{}{}:
	default:
		s.im.mu.Lock()
		if c.dialog == d {
			s.touchLocked(c)
		}
		s.im.mu.Unlock()
		return
	}
	s.im.mu.Lock()
	c.users++
	dropped := s.dropDialogLocked(c, d)
	s.im.mu.Unlock()
	if dropped {
		s.log.Debug().Str("peer", string(c.peer)).Msg("IM dialog idle: closed")
		s.bye(c, d)
	}
	c.unlock()
	s.done(c)
	if dropped {
		s.emit(sfb.ConversationEnded{Conversation: s.conversationOf(c)})
	}
}

// closeIM ends every IM dialog of a session that signs out, with a BYE
// each as pidgin-sipe's sipe_session_close, so that peers see the user
// leave rather than a conversation that fails later.
func (s *Session) closeIM(ctx context.Context) {
	type ended struct {
		c *conversation
		d *Dialog
	}
	var all []ended
	s.im.mu.Lock()
	for _, c := range s.im.convs {
		if d := c.dialog; d != nil && c.established {
			all = append(all, ended{c, d})
		}
		if c.idle != nil {
			c.idle.Stop()
			c.idle = nil
		}
	}
	s.im.convs = nil
	s.im.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range all {
		wg.Go(func() {
			s.im.mu.Lock()
			req, err := s.request(e.d, sipmsg.BYE)
			s.im.mu.Unlock()
			if err == nil {
				_, err = s.do(ctx, "end conversation", req)
			}
			if err != nil {
				s.log.Debug().Err(err).Str("peer", string(e.c.peer)).Msg("BYE at sign-out failed")
			}
		})
	}
	wg.Wait()
}

// handleIM handles the server's INVITE, MESSAGE, INFO, BYE, ACK and CANCEL
// for the endpoint, in arrival order (see Session). It answers each (but
// ACK) exactly once, after emitting what it brought.
func (s *Session) handleIM(_ context.Context, req *sipmsg.Request) {
	peer, err := peerOf(req)
	if err != nil {
		s.log.Warn().Err(err).Str("method", string(req.Method)).Msg("IM request without a usable From")
		if req.Method != sipmsg.ACK {
			_ = s.respond(req, 400, "Bad Request", nil)
		}
		return
	}
	switch req.Method {
	case sipmsg.INVITE:
		s.handleInvite(peer, req)
	case sipmsg.ACK:
		s.inDialog(peer, req) // nothing to do but keep the dialog alive
	case sipmsg.MESSAGE:
		s.handleMessage(peer, req)
	case sipmsg.INFO:
		s.handleInfo(peer, req)
	case sipmsg.BYE, sipmsg.CANCEL:
		c, d := s.inDialog(peer, req)
		if d == nil {
			if req.Method == sipmsg.CANCEL {
				// Every INVITE is answered at once: nothing is pending.
				_ = s.respond(req, 481, "Call/Transaction Does Not Exist", nil)
				return
			}
			// pidgin-sipe answers a BYE of a dialog it forgot 200 too.
			_ = s.respond(req, 200, "OK", nil)
			return
		}
		s.im.mu.Lock()
		dropped := s.dropDialogLocked(c, d)
		conv := sfb.Conversation{ThreadID: c.id, Peer: c.peer, Subject: c.subject}
		s.im.mu.Unlock()
		if dropped {
			s.emit(sfb.ConversationEnded{Conversation: conv})
		}
		_ = s.respond(req, 200, "OK", nil)
	}
}

// peerOf is the sender of a request: its From URI.
func peerOf(req *sipmsg.Request) (sfb.URI, error) {
	from := req.From()
	if from == nil || req.CallID() == nil || req.CSeq() == nil {
		return "", fmt.Errorf("%s without From, Call-ID or CSeq", req.Method)
	}
	return sfb.ParseURI(from.Address.User + "@" + from.Address.Host)
}

// inDialog finds the conversation with peer whose dialog req belongs to
// (by Call-ID and tags), keeping the dialog alive; d is nil when req is in
// no dialog known.
func (s *Session) inDialog(peer sfb.URI, req *sipmsg.Request) (*conversation, *Dialog) {
	s.im.mu.Lock()
	defer s.im.mu.Unlock()
	c := s.im.convs[peer]
	if c == nil || c.dialog == nil || c.dialog.CallID != req.CallID().Value() {
		return c, nil
	}
	d := c.dialog
	if tag, _ := req.From().Params.Get("tag"); d.RemoteTag != "" && tag != d.RemoteTag {
		return c, nil
	}
	if n := req.CSeq().SeqNo; n > d.RemoteCSeq && req.Method != sipmsg.ACK && req.Method != sipmsg.CANCEL {
		d.RemoteCSeq = n
	}
	s.touchLocked(c)
	return c, d
}

// handleInvite answers the peer's INVITE (process_incoming_invite):
// 200 with our SDP for a 1:1 IM session, its first message delivered.
func (s *Session) handleInvite(peer sfb.URI, req *sipmsg.Request) {
	if reason := multiparty(req); reason != "" {
		s.log.Info().Str("peer", string(peer)).Str("why", reason).Msg("Multi-party IM invitation declined: not carried over SIP yet")
		_ = s.respond(req, 488, "Not Acceptable Here", nil, sipmsg.NewHeader("Warning", `399 `+s.self.Domain()+` "Multi-party conversations are not supported"`))
		return
	}
	ct := contentTypeOf(req)
	if ct != im.TypeSDP {
		_ = s.respond(req, 415, "Unsupported Media Type", nil, sipmsg.NewHeader("Accept", im.TypeSDP))
		return
	}
	sdp, err := im.ParseSDP(req.Body())
	if err != nil {
		s.log.Info().Err(err).Str("peer", string(peer)).Msg("INVITE that is no IM session refused")
		if errors.Is(err, im.ErrUnsupportedType) {
			// An audio call, application sharing: pidgin-sipe without
			// media answers 501 too.
			_ = s.respond(req, 488, "Not Acceptable Here", nil)
		} else {
			_ = s.respond(req, 400, "Bad Request", nil)
		}
		return
	}
	conn, _ := s.connection()
	if conn == nil {
		_ = s.respond(req, 480, "Temporarily Unavailable", nil)
		return
	}
	// A re-INVITE of the dialog we have (a session refresh): answered,
	// nothing else changes.
	if c, d := s.inDialog(peer, req); d != nil {
		if tag, _ := req.To().Params.Get("tag"); tag == d.LocalTag {
			s.im.mu.Lock()
			c.accept = sdp.AcceptTypes
			s.im.mu.Unlock()
			_ = s.respond(req, 200, "OK", s.sdp(conn, string(s.self)), sipmsg.NewHeader("Content-Type", im.TypeSDP))
			return
		}
	}
	d, err := s.dialogFromRequest(req)
	if err != nil {
		_ = s.respond(req, 400, "Bad Request", nil)
		return
	}
	var (
		first    sfb.Message
		hasFirst bool
	)
	if v := headerValue(req, im.HeaderTextFormat); v != "" {
		tf, err := im.ParseTextFormat(v)
		if err == nil {
			first, err = tf.Message()
		}
		if err != nil {
			// Not acknowledged: the peer sends it again as a MESSAGE,
			// which gets a proper answer.
			s.log.Info().Err(err).Str("peer", string(peer)).Msg("First message of an IM invitation unreadable: left to the peer's MESSAGE")
		} else {
			hasFirst = true
		}
	}

	c := s.conv(peer)
	defer s.done(c)
	// Our own requests to the peer wait until the 200 is out (a reply
	// written while the handler takes the first message would otherwise
	// reach the peer in a dialog it does not have yet). When one of ours
	// is under way already (INVITEs crossing), the dialogs sort it out.
	select {
	case c.turn <- struct{}{}:
		defer c.unlock()
	default:
	}
	s.im.mu.Lock()
	old, oldEstablished := c.dialog, c.established
	s.setDialogLocked(c, d)
	c.established, c.accept = true, sdp.AcceptTypes
	if id := headerValue(req, im.HeaderConversationID); id != "" {
		c.id = id
	}
	if subj := headerValue(req, "Subject"); subj != "" {
		c.subject = subj
	}
	conv := sfb.Conversation{ThreadID: c.id, Peer: c.peer, Subject: c.subject}
	s.im.mu.Unlock()
	if old != nil && oldEstablished && old.CallID != d.CallID {
		// The peer started over (sipe_im_cancel_dangling): the old
		// dialog is closed. An INVITE of ours still unanswered closes
		// its dialog itself once answered (invite).
		go s.bye(c, old)
	}
	headers := []sipmsg.Header{sipmsg.NewHeader("Content-Type", im.TypeSDP)}
	if hasFirst {
		if !s.emitReceived(req, peer, conv, first) {
			s.unavailable(req)
			return
		}
		headers = append(headers, sipmsg.NewHeader("Supported", "ms-text-format"))
	}
	_ = s.respond(req, 200, "OK", s.sdp(conn, string(s.self)), headers...)
}

// multiparty says why an INVITE is for a multi-party conversation, "" when
// it is 1:1.
func multiparty(req *sipmsg.Request) string {
	if v := headerValue(req, im.HeaderEndPoints); v != "" {
		if eps, err := im.ParseEndPoints(v); err == nil && len(eps) > 2 {
			return "EndPoints lists " + strconv.Itoa(len(eps)) + " parties"
		}
	}
	if strings.EqualFold(strings.TrimSpace(headerValue(req, "TriggeredInvite")), "TRUE") {
		return "TriggeredInvite"
	}
	for _, h := range req.GetHeaders("Require") {
		if strings.Contains(strings.ToLower(h.Value()), "com.microsoft.rtc-multiparty") {
			return "Require: com.microsoft.rtc-multiparty"
		}
	}
	if contentTypeOf(req) == "application/ms-conf-invite+xml" {
		return "conference invitation"
	}
	return ""
}

// handleMessage delivers the peer's MESSAGE: an instant message or RFC
// 3994 typing (process_incoming_message). A MESSAGE outside any dialog we
// know is delivered too, as pidgin-sipe does.
func (s *Session) handleMessage(peer sfb.URI, req *sipmsg.Request) {
	c, _ := s.inDialog(peer, req)
	conv := s.conversationWith(c, peer)
	ct := contentTypeOf(req)
	switch {
	case im.IsTypingType(ct):
		typing, err := im.ParseTyping(headerValue(req, "Content-Type"), req.Body())
		if err != nil {
			s.refuse(req, peer, err)
			return
		}
		s.emit(sfb.TypingChanged{Conversation: conv, From: peer, Typing: typing})
	case im.IsMessageType(ct):
		msg, err := im.DecodeMessage(headerValue(req, "Content-Type"), req.Body())
		if err != nil {
			s.refuse(req, peer, err)
			return
		}
		if !s.emitReceived(req, peer, conv, msg) {
			s.unavailable(req)
			return
		}
	default:
		s.refuse(req, peer, fmt.Errorf("MESSAGE of type %q: %w", ct, im.ErrUnsupportedType))
		return
	}
	_ = s.respond(req, 200, "OK", nil)
}

// handleInfo reads the peer's INFO: KeyboardActivity typing
// (process_incoming_info). Other INFOs (conversation subject, roster
// management) are acknowledged and ignored.
func (s *Session) handleInfo(peer sfb.URI, req *sipmsg.Request) {
	c, _ := s.inDialog(peer, req)
	if ct := contentTypeOf(req); ct == im.TypeKeyboardActivity {
		typing, err := im.ParseTyping(headerValue(req, "Content-Type"), req.Body())
		if err != nil {
			s.refuse(req, peer, err)
			return
		}
		s.emit(sfb.TypingChanged{Conversation: s.conversationWith(c, peer), From: peer, Typing: typing})
	}
	_ = s.respond(req, 200, "OK", nil)
}

// refuse answers a request whose body is not usable: 415 for a type the
// endpoint does not take (as pidgin-sipe), 400 for a malformed one.
func (s *Session) refuse(req *sipmsg.Request, peer sfb.URI, err error) {
	s.log.Info().Err(err).Str("peer", string(peer)).Str("method", string(req.Method)).Msg("IM request refused")
	if errors.Is(err, im.ErrUnsupportedType) {
		_ = s.respond(req, 415, "Unsupported Media Type", nil,
			sipmsg.NewHeader("Accept", strings.Join(im.AcceptTypes(), ", ")))
		return
	}
	_ = s.respond(req, 400, "Bad Request", nil)
}

// contentTypeOf is req's media type, lower-case, without parameters.
func contentTypeOf(req *sipmsg.Request) string {
	v := headerValue(req, "Content-Type")
	if ct, err := im.ParseContentType(v); err == nil {
		return ct.Type
	}
	t, _, _ := strings.Cut(v, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

// unavailable answers a message the session could not hand over because
// it is closing: 480, so that the sender's client says it was not
// delivered instead of the message being lost silently.
func (s *Session) unavailable(req *sipmsg.Request) {
	_ = s.respond(req, 480, "Temporarily Unavailable", nil)
}

// emitReceived hands the handler a message peer sent in req; false when
// the session is closing and the handler did not take it.
func (s *Session) emitReceived(req *sipmsg.Request, peer sfb.URI, conv sfb.Conversation, msg sfb.Message) bool {
	return s.emit(sfb.MessageReceived{
		ID:           requestMessageID(req),
		Conversation: conv,
		From:         sfb.Person{URI: peer, DisplayName: displayName(req, peer)},
		Message:      msg,
		Time:         time.Now(),
	})
}

// displayName is the name in req's From, else the address.
func displayName(req *sipmsg.Request, peer sfb.URI) string {
	if n := strings.TrimSpace(req.From().DisplayName); n != "" {
		return n
	}
	return peer.Address()
}

// supports reports whether a response lists option in Supported.
func supports(res *sipmsg.Response, option string) bool {
	for _, h := range res.GetHeaders("Supported") {
		for o := range strings.SplitSeq(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(o), option) {
				return true
			}
		}
	}
	return false
}

// sdp is the session description of our side of an IM session: the
// connection's local address and port, format "null" in an INVITE and our
// URI in a 200 (pidgin-sipe's sipe_im_invite and send_invite_response).
func (s *Session) sdp(conn interface{ LocalAddr() net.Addr }, format string) []byte {
	desc := im.SDP{Format: format}
	if ap, err := netip.ParseAddrPort(conn.LocalAddr().String()); err == nil {
		desc.Addr, desc.Port = ap.Addr().Unmap(), int(ap.Port())
	}
	return desc.Marshal()
}

// requestMessageID identifies a message the peer sent, the same however
// often it arrives: from its Message-Id when it has one (conferencing
// servers add it), else from Call-ID, CSeq and method, which a
// retransmission keeps.
func requestMessageID(req *sipmsg.Request) string {
	return messageID(req.CallID().Value(), req.CSeq().SeqNo, string(req.Method), headerValue(req, "Message-Id"))
}

// messageID is a compact ID unique per message: the dialog's Call-ID is
// unique, CSeq and method unique within it.
func messageID(callID string, cseq uint32, method, msgID string) string {
	key := callID + "\x00" + strconv.FormatUint(uint64(cseq), 10) + "\x00" + method
	if msgID != "" {
		key = callID + "\x00id\x00" + msgID
	}
	sum := sha256.Sum256([]byte(key))
	return "sip-" + base64.RawURLEncoding.EncodeToString(sum[:18])
}
