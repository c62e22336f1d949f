package ucwa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/pool"
)

// firstRepeatWindow bounds how long an incoming invitation's first message
// is remembered for its repeat as the conversation's first message event
// (ReceiveAnIM.md, steps 8-16). It only keeps the memory bounded: whether
// a message event is the repeat never depends on the clock (a handler
// held up by an unavailable homeserver, a dropped event channel or a
// bridge restart delay the repeat by any amount), only on being the
// first message event of that conversation with the same text. The entry
// goes with the repeat or with the conversation.
const firstRepeatWindow = time.Hour

// maxUndecodable is how many undecodable event channel responses in a row
// make the session report itself disconnected.
const maxUndecodable = 3

// eventLoop holds the pending GET on the event channel, always following
// the server's next (or resume/resync) link and processing each batch in
// order before asking for the next one. A failed GET is repeated with the
// same URL: its ack tells the server which batch we have seen, so nothing
// is lost or repeated.
func (s *session) eventLoop() {
	defer s.wg.Done()
	st, gen := s.appSnapshot()
	s.mu.Lock()
	next := s.startEvents
	s.mu.Unlock()
	if next == "" {
		next = st.events
	}
	backoff := time.Duration(0)
	replaced := 0
	undecodable := 0
	connected := true
	for {
		if s.ctx.Err() != nil {
			s.finish()
			return
		}
		rctx, cancel := context.WithTimeout(s.ctx, s.t.timings.EventTimeout)
		resp, err := s.c.do(rctx, request{op: "event channel", method: http.MethodGet, url: next})
		cancel()
		if err != nil {
			if s.ctx.Err() != nil {
				s.finish()
				return
			}
			var e *Error
			isErr := errors.As(err, &e)
			switch {
			case applicationGone(err):
				if rerr := s.recreate(s.ctx, gen, false); rerr != nil {
					err = rerr
					break
				}
				st, gen = s.appSnapshot()
				next = st.events
				continue
			case isErr && e.Status == http.StatusConflict && e.Subcode == SubcodePGetReplaced:
				// Another GET with our ack replaced this one. Ours is the
				// only loop, so it is another instance using this
				// application: re-issue once, stop if it keeps happening.
				replaced++
				if replaced > s.t.timings.MaxPGetReplaced {
					s.end(fmt.Errorf("event channel: pending GET replaced %d times, another client uses this application: %w", replaced, err))
					continue
				}
				s.log.Warn().Int("times", replaced).Msg("Pending GET replaced by another request")
			case errors.Is(err, sfb.ErrCredentialsRequired) || errors.Is(err, sfb.ErrBadCredentials):
				s.end(err)
				continue
			case isErr && (e.Status == http.StatusForbidden || e.Status == http.StatusBadGateway):
				// RootURL.md: rediscover after 403/502.
				if rerr := s.recreate(s.ctx, gen, true); rerr == nil {
					st, gen = s.appSnapshot()
					next = st.events
					continue
				}
			}
			if connected {
				connected = false
				s.emit(sfb.SessionState{Connected: false, Err: err})
			}
			backoff = nextBackoff(backoff, s.t.timings)
			wait := retryWait(err, backoff, s.t.timings)
			s.log.Warn().Err(err).Dur("retry_in", wait).Msg("Event channel failed")
			s.t.observer.EventChannelReconnect()
			ctxtime.Sleep(s.ctx, wait)
			continue
		}
		replaced = 0
		var evs Events
		if err := json.Unmarshal(resp.body, &evs); err != nil {
			// Without the body we do not know the next link; asking again
			// with the same ack gets the same batch. A server (or a proxy
			// in front of it) that keeps answering so is as good as gone:
			// say so after a few, and back off like any other failure.
			undecodable++
			s.log.Error().Err(err).Int("times", undecodable).Str("url", redact(next)).Msg("Undecodable event channel response")
			if connected && undecodable >= maxUndecodable {
				connected = false
				s.emit(sfb.SessionState{Connected: false, Err: fmt.Errorf("event channel: %d undecodable responses in a row: %w: %w", undecodable, err, sfb.ErrServerUnavailable)})
			}
			backoff = nextBackoff(backoff, s.t.timings)
			ctxtime.Sleep(s.ctx, pool.Jitter(backoff))
			continue
		}
		undecodable = 0
		backoff = 0
		if !connected {
			connected = true
			s.emit(sfb.SessionState{Connected: true})
		}
		st, gen = s.appSnapshot()
		if h := evs.Links.Href("resync"); h != "" {
			// We lost track of the channel: what we cached may be stale,
			// but the server kept the conversations open (unlike after
			// resume), so read them again rather than forget them.
			s.log.Warn().Msg("Event channel asks to resync")
			s.resyncConversations(st)
			next = resolveHref(st.base, h)
			continue
		}
		resumed := false
		if h := evs.Links.Href("resume"); h != "" {
			s.log.Info().Msg("Event channel resumed after inactivity")
			s.resetTransient("resume")
			next = resolveHref(st.base, h)
			resumed = true
		} else if h := evs.Links.Href("next"); h != "" {
			next = resolveHref(st.base, h)
		} else {
			s.log.Error().Str("url", redact(next)).Msg("Event channel response without next link, asking again")
		}
		s.processBatch(evs, next)
		if resumed {
			// The server closed the conversations while we were away:
			// completions not in this first batch will never come.
			s.failPending("the event channel resumed after inactivity and the server closed the conversations")
			s.recheckCalls()
		}
		s.markHandled(next)
	}
}

// finish reports why the session ended, unless the user closed it.
func (s *session) finish() {
	cause := context.Cause(s.ctx)
	if cause == nil || errors.Is(cause, errStopped) || s.closed.Load() {
		return
	}
	s.emit(sfb.SessionEnded{Err: cause})
	s.closed.Store(true)
}

// retryWait is how long to wait before retrying after err: the backoff
// with jitter, or the server's Retry-After when it asks for longer
// (capped).
func retryWait(err error, backoff time.Duration, tm Timings) time.Duration {
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > backoff {
		return min(e.RetryAfter, tm.BackoffMax)
	}
	return pool.Jitter(backoff)
}

// nextBackoff is the next step of the backoff between BackoffMin and
// BackoffMax.
func nextBackoff(cur time.Duration, tm Timings) time.Duration {
	return pool.NextBackoff(cur, tm.BackoffMin, tm.BackoffMax)
}

// processBatch handles every event of a batch in order; one bad event is
// logged with its context and the others still run.
func (s *session) processBatch(evs Events, eventURL string) {
	// The completions of the user's own messages go first: SendMessage
	// returns when its completion is read, and the handler may take long
	// over the incoming messages before it in the batch (the bridge waits
	// for Matrix with each; after a resume the batch holds all it missed).
	// Until SendMessage returns, the caller cannot record the message as
	// delivered, and a crash makes it send the message again.
	completed := map[*Event]bool{}
	for i := range evs.Sender {
		for j := range evs.Sender[i].Events {
			if e := &evs.Sender[i].Events[j]; s.completeOwnMessage(*e) {
				completed[e] = true
			}
		}
	}
	var presence []presenceEvent
	contactsChanged := false
	for i := range evs.Sender {
		snd := evs.Sender[i]
		for j := range snd.Events {
			e := &snd.Events[j]
			if completed[e] {
				continue
			}
			switch {
			case (e.Link.Rel == "contactPresence" || e.Link.Rel == "contactNote") && e.Type == "updated":
				// Fetched together after the batch: one request for
				// many people.
				pe := presenceEvent{rel: e.Link.Rel, href: s.abs(e.Link.Href)}
				if e.In != nil {
					pe.contact = s.abs(e.In.Href)
				}
				if pe.href == "" {
					s.log.Warn().Str("rel", e.Link.Rel).Msg("Presence event without a link, ignored")
					continue
				}
				presence = append(presence, pe)
				continue
			case e.Link.Rel == "presenceSubscription":
				s.onSubscriptionEvent(*e)
				continue
			case e.Link.Rel == "contact" && e.In != nil && e.In.Rel == "myContacts":
				contactsChanged = true
				continue
			}
			if err := s.handleEvent(snd, *e); err != nil {
				s.log.Error().Err(err).Str("sender_rel", snd.Rel).Str("sender", snd.Href).
					Str("rel", e.Link.Rel).Str("href", e.Link.Href).Str("type", e.Type).
					Str("events", redact(eventURL)).Msg("Could not handle UCWA event")
			}
		}
	}
	if len(presence) > 0 {
		s.onPresenceEvents(s.ctx, presence)
	}
	if contactsChanged {
		s.emit(sfb.ContactsChanged{})
	}
}

func (s *session) handleEvent(snd EventSender, e Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic handling event: %v", r)
		}
	}()
	switch e.Link.Rel {
	case "messagingInvitation":
		return s.onInvitation(e)
	case "conversation":
		return s.onConversation(e)
	case "messaging":
		return s.onMessaging(snd, e)
	case "message":
		return s.onMessage(snd, e)
	case "participant", "localParticipant":
		return s.onParticipant(snd, e)
	case "onlineMeetingInvitation":
		return s.onMeetingInvitation(e)
	case "onlineMeeting":
		return s.onOnlineMeeting(snd, e)
	case "audioVideoInvitation":
		return s.onCallInvitation(e)
	case "participantInvitation":
		return s.onParticipantInvitation(e)
	default:
		// Presence, me, communication and other modalities are not
		// bridged by this transport yet.
		return nil
	}
}

func (s *session) abs(h string) string {
	s.mu.Lock()
	base := s.app.base
	s.mu.Unlock()
	return resolveHref(base, h)
}

// fetch GETs a resource an event only linked to.
func (s *session) fetch(href string, out any) error {
	return s.get(s.ctx, s.abs(href), "get resource", out)
}

func (s *session) onInvitation(e Event) error {
	var inv MessagingInvitation
	ok, err := decodeEmbedded(e.Embedded, "messagingInvitation", &inv)
	if err != nil {
		return err
	}
	if !ok {
		if e.Type == "completed" {
			// The outcome is in the event itself.
			href := s.abs(e.Link.Href)
			s.ops.complete(opResult{status: e.Status, reason: e.Reason}, "href:"+href)
			return nil
		}
		if err := s.fetch(e.Link.Href, &inv); err != nil {
			return fmt.Errorf("fetch invitation: %w", err)
		}
	}
	href := s.abs(e.Link.Href)
	switch {
	case strings.EqualFold(inv.Direction, "Incoming"):
		if e.Type == "completed" && !strings.EqualFold(e.Status, "Success") {
			return nil
		}
		return s.onIncomingInvitation(href, &inv)
	case strings.EqualFold(inv.Direction, "Outgoing"):
		s.trackOutgoing(href, &inv)
		if e.Type == "completed" {
			keys := []string{"href:" + href}
			if inv.OperationID != "" {
				keys = append(keys, "op:"+inv.OperationID)
			}
			s.ops.complete(opResult{status: e.Status, reason: e.Reason, invitation: &inv}, keys...)
		}
		return nil
	default:
		return fmt.Errorf("invitation %s has direction %q", href, inv.Direction)
	}
}

// onIncomingInvitation accepts the invitation and delivers the first
// message, which the invitation carries as a data URI.
//
// The accept is sent before the message is delivered, not after: the
// delivery waits for Matrix (a new portal room, under load many seconds),
// and until the accept the server holds the peer's further messages
// while a Matrix message to the peer waits in awaitAccept, at most
// AcceptWait, and then starts a second conversation. A server that keeps
// one conversation per pair ends the pending one for it, and the peer's
// held messages with it (the crash test lost SfB messages that way under
// load). The accept does not acknowledge the event: a crash before the
// message reached Matrix still has it delivered again.
func (s *session) onIncomingInvitation(href string, inv *MessagingInvitation) error {
	from, err := s.invitationSender(inv)
	if err != nil {
		return fmt.Errorf("invitation %s: %w", href, err)
	}
	convHref := s.abs(inv.Links.Href("conversation"))
	c := s.upsertConv(convHref, from.URI, inv.ThreadID)
	if m := inv.Links.Href("messaging"); m != "" {
		s.mu.Lock()
		c.messaging = s.absLocked(m)
		s.mu.Unlock()
	}
	if accept := inv.Links.Href("accept"); accept != "" {
		s.mu.Lock()
		already := c.accepted[href]
		if c.accepted == nil {
			c.accepted = map[string]bool{}
		}
		c.accepted[href] = true
		if !already {
			c.accepting = true
		}
		s.mu.Unlock()
		if !already {
			acceptURL := s.abs(accept)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				if !s.accept(acceptURL) {
					s.mu.Lock()
					c.accepting = false
					s.wakeLocked()
					s.mu.Unlock()
				}
			}()
		}
	}
	var deliverErr error
	if raw := inv.Links.Href("message"); raw != "" && s.seen.add(href) {
		msg, err := s.decodeMessage(raw, "")
		if err != nil {
			deliverErr = fmt.Errorf("first message of invitation %s: %w", href, err)
		} else {
			now := s.t.now()
			sum := textDigest(msg.Text)
			s.mu.Lock()
			for h, f := range s.firsts {
				if now.Sub(f.at) >= firstRepeatWindow {
					delete(s.firsts, h)
				}
			}
			// The first message of this conversation's invitation was
			// emitted already, by an earlier session whose state this one
			// resumed: the redelivered batch shows the invitation again
			// (updated or completed), with the message inside.
			f, emitted := s.firsts[convHref]
			emitted = emitted && f.sum == sum
			if !emitted {
				s.firsts[convHref] = firstMessage{sum: sum, at: now}
			}
			s.mu.Unlock()
			if !emitted {
				s.emitMessage(sfb.MessageReceived{ID: href, Conversation: sfb.Conversation{ThreadID: inv.ThreadID, Peer: from.URI},
					From: from, Message: msg, Time: s.t.now()})
			}
		}
	}
	return deliverErr
}

// accept accepts an invitation; false when it could not.
func (s *session) accept(acceptURL string) bool {
	u := acceptURL
	if strings.Contains(u, "?") {
		u += "&"
	} else {
		u += "?"
	}
	u += "sessionContext=" + newUUID()
	// Until accepted, the sender's further messages wait on the server:
	// a transient failure must not strand them, so retry while the server
	// is only unavailable, with the same sessionContext.
	var backoff time.Duration
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(s.ctx, s.t.cfg.RequestTimeout)
		_, err := s.c.do(rctx, request{op: "accept invitation", method: http.MethodPost, url: u})
		cancel()
		if err == nil {
			return true
		}
		if s.ctx.Err() != nil {
			return false
		}
		if !errors.Is(err, sfb.ErrServerUnavailable) || attempt >= maxAcceptAttempts {
			s.log.Warn().Err(err).Int("attempts", attempt).Str("accept", redact(acceptURL)).Msg("Could not accept messaging invitation")
			return false
		}
		backoff = nextBackoff(backoff, s.t.timings)
		wait := retryWait(err, backoff, s.t.timings)
		s.log.Debug().Err(err).Dur("retry_in", wait).Msg("Accepting messaging invitation failed, retrying")
		if !ctxtime.Sleep(s.ctx, wait) {
			return false
		}
	}
}

// maxAcceptAttempts bounds the retries of an accept: an invitation the
// server has given up on answers 404, which ends them anyway.
const maxAcceptAttempts = 6

// invitationSender finds who sent an invitation: the embedded from
// participant, or the from link (title, then the participant resource,
// then the link's last segment).
func (s *session) invitationSender(inv *MessagingInvitation) (sfb.Person, error) {
	var p Participant
	if ok, err := decodeEmbedded(inv.Embedded, "from", &p); err != nil {
		return sfb.Person{}, err
	} else if ok && p.URI != "" {
		return s.rememberParticipant(p)
	}
	l, ok := inv.Links.Get("from")
	if !ok {
		return sfb.Person{}, errors.New("no from participant")
	}
	return s.resolveParticipant(l)
}

func (s *session) rememberParticipant(p Participant) (sfb.Person, error) {
	uri, err := sfb.ParseURI(p.URI)
	if err != nil {
		return sfb.Person{}, fmt.Errorf("participant %s: %w", p.Self(), err)
	}
	person := sfb.Person{URI: uri, DisplayName: validText(p.Name)}
	if person.DisplayName == "" {
		person.DisplayName = uri.Address()
	}
	if self := p.Self(); self != "" {
		s.mu.Lock()
		s.participants[s.absLocked(self)] = person
		s.mu.Unlock()
	}
	return person, nil
}

// resolveParticipant turns a participant link into a person.
func (s *session) resolveParticipant(l Link) (sfb.Person, error) {
	href := s.abs(l.Href)
	s.mu.Lock()
	p, ok := s.participants[href]
	s.mu.Unlock()
	if ok {
		return p, nil
	}
	// The samples name participants by address (.../participants/lenea@contoso.com).
	if i := strings.LastIndexByte(l.Href, '/'); i >= 0 && strings.Contains(l.Href[i+1:], "@") {
		seg, _ := url.PathUnescape(l.Href[i+1:])
		if uri, err := sfb.ParseURI(seg); err == nil {
			person := sfb.Person{URI: uri, DisplayName: validText(l.Title)}
			if person.DisplayName == "" {
				person.DisplayName = uri.Address()
			}
			return person, nil
		}
	}
	var part Participant
	if err := s.fetch(l.Href, &part); err != nil {
		return sfb.Person{}, fmt.Errorf("resolve participant %s: %w", l.Href, err)
	}
	return s.rememberParticipant(part)
}

func (s *session) onConversation(e Event) error {
	href := s.abs(e.Link.Href)
	if e.Type == "deleted" {
		s.endConversation(href)
		return nil
	}
	var c Conversation
	ok, err := decodeEmbedded(e.Embedded, "conversation", &c)
	if err != nil || !ok {
		return err
	}
	s.mu.Lock()
	cv := s.convLocked(href)
	if c.ThreadID != "" {
		cv.threadID = c.ThreadID
	}
	if m := c.Links.Href("messaging"); m != "" {
		cv.messaging = s.absLocked(m)
	}
	if a := c.Links.Href("addParticipant"); a != "" {
		cv.addParticipant = s.absLocked(a)
	}
	var evs []sfb.Event
	if c.Links.Href("onlineMeeting") != "" {
		if cv.group && cv.joined && validText(c.Subject) != cv.subject {
			cv.subject = validText(c.Subject)
			evs = append(evs, sfb.SubjectChanged{Conversation: cv.groupConversation(), Subject: cv.subject})
		}
		evs = append(evs, s.markGroupLocked(cv, validText(c.Subject))...)
	}
	s.mu.Unlock()
	s.emitAll(evs)
	return nil
}

func (s *session) onMessaging(snd EventSender, e Event) error {
	var m Messaging
	ok, err := decodeEmbedded(e.Embedded, "messaging", &m)
	if err != nil {
		return err
	}
	if !ok {
		if e.Type == "deleted" {
			return nil
		}
		if err := s.fetch(e.Link.Href, &m); err != nil {
			return fmt.Errorf("fetch messaging: %w", err)
		}
	}
	convHref := m.Links.Href("conversation")
	if convHref == "" && snd.Rel == "conversation" {
		convHref = snd.Href
	}
	if convHref == "" {
		return errors.New("messaging without conversation")
	}
	convHref = s.abs(convHref)
	s.mu.Lock()
	cv := s.convLocked(convHref)
	cv.messaging = s.absLocked(e.Link.Href)
	cv.state = m.State
	cv.sendMessage = s.absLocked(m.Links.Href("sendMessage"))
	cv.setIsTyping = s.absLocked(m.Links.Href("setIsTyping"))
	cv.html = containsFold(m.NegotiatedMessageFormats, "Html")
	disconnected := strings.EqualFold(m.State, "Disconnected")
	joined := s.joinedLocked(cv)
	s.wakeLocked()
	s.mu.Unlock()
	s.emitAll(joined)
	if disconnected {
		s.endConversation(convHref)
	}
	return nil
}

// operationStatus is the event status (Success, Failure) a message
// resource's delivery status stands for: the resource says Succeeded or
// Failed (message_ref.md, Status_ref.md), Pending until then.
func operationStatus(resource string) string {
	switch {
	case strings.EqualFold(resource, "Succeeded"):
		return "Success"
	case strings.EqualFold(resource, "Failed"):
		return "Failure"
	}
	return resource
}

// completeOwnMessage ends the wait of the SendMessage whose completion e
// is, when e says so by itself (no fetch), and reports whether it did.
func (s *session) completeOwnMessage(e Event) bool {
	if e.Link.Rel != "message" || e.Type != "completed" {
		return false
	}
	var m Message
	ok, err := decodeEmbedded(e.Embedded, "message", &m)
	switch {
	case err != nil:
		return false
	case !ok && e.Status != "":
		s.ops.complete(opResult{status: e.Status, reason: e.Reason}, "href:"+s.abs(e.Link.Href))
		return true
	case ok && strings.EqualFold(m.Direction, "Outgoing"):
		s.completeSent(s.abs(e.Link.Href), m, e)
		return true
	}
	return false
}

// completeSent ends the wait for the outgoing message m at href that the
// completed event e reports.
func (s *session) completeSent(href string, m Message, e Event) {
	status := e.Status
	if status == "" {
		status = operationStatus(m.Status)
	}
	keys := []string{"href:" + href}
	if m.OperationID != "" {
		keys = append(keys, "op:"+m.OperationID)
	}
	s.ops.complete(opResult{status: status, reason: e.Reason}, keys...)
}

func (s *session) onMessage(snd EventSender, e Event) error {
	if s.completeOwnMessage(e) {
		return nil
	}
	var m Message
	ok, err := decodeEmbedded(e.Embedded, "message", &m)
	if err != nil {
		return err
	}
	href := s.abs(e.Link.Href)
	if !ok {
		if err := s.fetch(e.Link.Href, &m); err != nil {
			return fmt.Errorf("fetch message: %w", err)
		}
	}
	if strings.EqualFold(m.Direction, "Outgoing") {
		if e.Type == "completed" {
			s.completeSent(href, m, e)
		}
		return nil
	}
	if !strings.EqualFold(m.Direction, "Incoming") {
		return fmt.Errorf("message with direction %q", m.Direction)
	}
	plain, html := m.Links.Href("plainMessage"), m.Links.Href("htmlMessage")
	if plain == "" && html == "" {
		// Only a "started" notice without the text: the completed event
		// (or the resource) carries it.
		if e.Type == "started" {
			return nil
		}
		if err := s.fetch(e.Link.Href, &m); err != nil {
			return fmt.Errorf("fetch message: %w", err)
		}
		plain, html = m.Links.Href("plainMessage"), m.Links.Href("htmlMessage")
		if plain == "" && html == "" {
			return errors.New("incoming message without text")
		}
	}
	msg, err := s.decodeMessage(plain, html)
	if err != nil {
		return fmt.Errorf("message %s: %w", href, err)
	}
	convHref := ""
	if snd.Rel == "conversation" {
		convHref = s.abs(snd.Href)
	}
	s.mu.Lock()
	cv := s.convs[convHref]
	if cv == nil && m.Links.Href("messaging") != "" {
		mh := s.absLocked(m.Links.Href("messaging"))
		for _, c := range s.convs {
			if c.messaging == mh {
				cv = c
			}
		}
	}
	var peer sfb.URI
	var thread string
	var group *sfb.Conversation
	duplicateFirst := false
	firstKey := convHref
	if cv != nil {
		peer, thread = cv.peer, cv.threadID
		firstKey = cv.href
		if cv.group {
			g := cv.groupConversation()
			group = &g
		}
	}
	// ReceiveAnIM.md: the invitation's first message comes again as the
	// conversation's first message event. Only that event is taken for the
	// repeat: the same text sent again later is a new message.
	if f, ok := s.firsts[firstKey]; ok && firstKey != "" {
		duplicateFirst = f.sum == textDigest(msg.Text)
		delete(s.firsts, firstKey)
	}
	s.mu.Unlock()
	if !s.seen.add(href) || duplicateFirst {
		s.log.Debug().Str("message", redact(href)).Bool("repeat_of_invitation", duplicateFirst).
			Msg("Message event already delivered, not delivering it again")
		return nil
	}
	var from sfb.Person
	if l, ok := m.Links.Get("participant"); ok {
		if p, err := s.resolveParticipant(l); err == nil {
			from = p
		}
	}
	if from.URI == "" && m.Links.Href("contact") != "" {
		if p, err := s.resolveParticipant(Link{Href: m.Links.Href("contact")}); err == nil {
			from = p
		}
	}
	if from.URI == "" && group == nil {
		from = sfb.Person{URI: peer, DisplayName: peer.Address()}
	}
	if peer == "" {
		peer = from.URI
	}
	if from.URI == "" {
		return fmt.Errorf("message %s: cannot tell who sent it", href)
	}
	when := m.TimeStamp.Time
	if when.IsZero() {
		when = s.t.now()
	}
	conversation := sfb.Conversation{ThreadID: thread, Peer: peer}
	if group != nil {
		// From may be the user: a message sent from another of the
		// user's endpoints (its participant is the local participant).
		conversation = *group
	}
	s.emitMessage(sfb.MessageReceived{ID: href, Conversation: conversation, From: from, Message: msg, Time: when})
	return nil
}

// onParticipant handles typing (participants added to and deleted from
// typingParticipants) and learns participants' addresses.
func (s *session) onParticipant(snd EventSender, e Event) error {
	var p Participant
	if ok, err := decodeEmbedded(e.Embedded, e.Link.Rel, &p); err != nil {
		return err
	} else if ok && p.URI != "" {
		if _, err := s.rememberParticipant(p); err != nil {
			return err
		}
	}
	if e.In == nil || e.In.Rel != "typingParticipants" {
		if e.Link.Rel == "participant" && snd.Rel == "conversation" {
			return s.onGroupParticipant(s.abs(snd.Href), e)
		}
		return nil
	}
	if e.Type != "added" && e.Type != "deleted" {
		return nil
	}
	person, err := s.resolveParticipant(e.Link)
	if err != nil {
		return err
	}
	if person.URI == s.self {
		return nil
	}
	convHref := ""
	if snd.Rel == "conversation" {
		convHref = s.abs(snd.Href)
	}
	s.mu.Lock()
	var thread string
	peer := person.URI
	var conversation *sfb.Conversation
	if cv := s.convs[convHref]; cv != nil {
		thread = cv.threadID
		if cv.peer != "" {
			peer = cv.peer
		}
		if cv.group {
			g := cv.groupConversation()
			conversation = &g
		}
	}
	s.mu.Unlock()
	if conversation == nil {
		conversation = &sfb.Conversation{ThreadID: thread, Peer: peer}
	}
	s.emit(sfb.TypingChanged{Conversation: *conversation, From: person.URI, Typing: e.Type == "added"})
	return nil
}

// resetTransient forgets conversations after resume or a new application
// (the server closed them), or a resync whose conversations could not be
// read again.
func (s *session) resetTransient(why string) {
	s.mu.Lock()
	var ended []*conv
	for h, c := range s.convs {
		if !c.ended && (c.peer != "" || c.joined) {
			ended = append(ended, c)
		}
		delete(s.convs, h)
	}
	s.wakeLocked()
	s.mu.Unlock()
	for _, c := range ended {
		s.log.Debug().Str("why", why).Str("peer", string(c.peer)).Str("thread_id", c.threadID).Msg("Conversation reset")
		s.emit(s.endedEvent(c))
	}
}

func (s *session) endConversation(href string) {
	s.mu.Lock()
	c := s.convs[href]
	delete(s.convs, href)
	// An ended conversation sends no repeat of its first message.
	delete(s.firsts, href)
	// Under s.mu: a send that finds the conversation stale ends it too
	// (dropConv).
	report := c != nil && !c.ended && (c.peer != "" || c.joined)
	if c != nil {
		c.ended = true
	}
	s.wakeLocked()
	s.mu.Unlock()
	if report {
		s.emit(s.endedEvent(c))
	}
}

// endedEvent says that the user is no longer in c: a 1:1 conversation
// ended, or the user left a multi-party one (removed, or the conference
// ended).
func (s *session) endedEvent(c *conv) sfb.Event {
	if c.group {
		return sfb.ParticipantLeft{Conversation: c.groupConversation(), URI: s.self}
	}
	return sfb.ConversationEnded{Conversation: sfb.Conversation{ThreadID: c.threadID, Peer: c.peer}}
}
