package ucwa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// conv is a conversation as the session tracks it.
type conv struct {
	href        string
	threadID    string
	peer        sfb.URI
	messaging   string
	sendMessage string
	setIsTyping string
	state       string // of the messaging modality
	html        bool
	ended       bool
	accepted    map[string]bool
	// accepting: we accept the peer's invitation; until messaging is
	// connected a message to the peer waits (awaitAccept). Cleared when
	// the accept fails.
	accepting bool
	// group: a multi-party conversation (group.go); peer is then the 1:1
	// peer it escalated from, if any. joined: the user's joining was
	// reported; members are the participants reported as joined.
	group          bool
	subject        string
	joined         bool
	leaving        bool
	members        map[sfb.URI]bool
	addParticipant string
}

// firstMessage is the first message of an incoming invitation, which the
// server repeats as the conversation's first message event.
type firstMessage struct {
	// sum is the SHA-256 of the text: enough to recognise the repeat, and
	// what ResumeState keeps.
	sum [32]byte
	at  time.Time
}

func (s *session) absLocked(h string) string { return resolveHref(s.app.base, h) }

// convLocked is the tracked conversation at href, tracked from now on if
// it was not.
func (s *session) convLocked(href string) *conv {
	c := s.convs[href]
	if c == nil {
		c = &conv{href: href}
		s.convs[href] = c
	}
	return c
}

func (s *session) upsertConv(href string, peer sfb.URI, thread string) *conv {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.convLocked(href)
	if peer != "" && !c.group {
		c.peer = peer
	}
	if thread != "" {
		c.threadID = thread
	}
	return c
}

// trackOutgoing ties the conversation of an outgoing invitation to the peer
// it was sent to.
func (s *session) trackOutgoing(href string, inv *MessagingInvitation) {
	convHref := inv.Links.Href("conversation")
	if convHref == "" {
		return
	}
	s.mu.Lock()
	peer := s.outgoingPeer(href, inv.OperationID)
	s.mu.Unlock()
	if peer == "" {
		if to, err := sfb.ParseURI(inv.To); err == nil {
			peer = to
		}
	}
	c := s.upsertConv(s.abs(convHref), peer, inv.ThreadID)
	s.mu.Lock()
	if m := inv.Links.Href("messaging"); m != "" {
		c.messaging = s.absLocked(m)
	}
	// A conversation SendGroupMessage starts is multi-party from its
	// invitation on: the joins are reported here, in the event loop, not
	// to the caller waiting for it.
	var evs []sfb.Event
	if g, ok := s.groupStarts[inv.OperationID]; ok && inv.OperationID != "" {
		c.threadID = g.ThreadID
		evs = s.markGroupLocked(c, g.Subject)
	}
	s.mu.Unlock()
	s.emitAll(evs)
}

// outgoing maps operation IDs and invitation hrefs of our own invitations
// to their peer; guarded by s.mu.
func (s *session) outgoingPeer(href, opID string) sfb.URI {
	if s.outgoing == nil {
		return ""
	}
	if p, ok := s.outgoing["op:"+opID]; ok && opID != "" {
		return p
	}
	return s.outgoing["href:"+href]
}

func (s *session) noteOutgoing(key string, peer sfb.URI) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outgoing == nil {
		s.outgoing = map[string]sfb.URI{}
	}
	if len(s.outgoing) > 1024 {
		clear(s.outgoing)
	}
	s.outgoing[key] = peer
}

// activeConv is the conversation with peer whose messaging is connected.
func (s *session) activeConv(peer sfb.URI) *conv {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.convs {
		if c.peer == peer && !c.group && !c.ended && strings.EqualFold(c.state, "Connected") && c.sendMessage != "" {
			return c
		}
	}
	return nil
}

// acceptPendingLocked says whether we are accepting an invitation from
// peer whose messaging is not connected yet.
func (s *session) acceptPendingLocked(peer sfb.URI) bool {
	for _, c := range s.convs {
		if c.peer == peer && !c.group && c.accepting && !c.ended && !(strings.EqualFold(c.state, "Connected") && c.sendMessage != "") {
			return true
		}
	}
	return false
}

// wakeLocked tells awaitAccept that a conversation changed.
func (s *session) wakeLocked() {
	if s.convWake != nil {
		close(s.convWake)
	}
	s.convWake = make(chan struct{})
}

// awaitAccept waits, at most AcceptWait, while an invitation from to is
// being accepted: a message sent before messaging is connected would
// start a second conversation beside the one the peer opened. After the
// wait the message goes wherever it can (a new conversation at worst).
func (s *session) awaitAccept(ctx context.Context, to sfb.URI) error {
	var timer *time.Timer
	for {
		s.mu.Lock()
		if !s.acceptPendingLocked(to) {
			s.mu.Unlock()
			return nil
		}
		if s.convWake == nil {
			s.convWake = make(chan struct{})
		}
		wake := s.convWake
		s.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(s.t.timings.AcceptWait)
			defer timer.Stop()
			s.acceptWaiters.Add(1)
			defer s.acceptWaiters.Add(-1)
		}
		select {
		case <-wake:
		case <-timer.C:
			s.log.Info().Str("peer", string(to)).Dur("waited", s.t.timings.AcceptWait).Msg("Invitation still not accepted, sending anyway")
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return nil
		}
	}
}

func (s *session) dropConv(c *conv) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.ended = true
	if s.convs[c.href] == c {
		delete(s.convs, c.href)
	}
	s.wakeLocked()
}

func validateOutgoing(msg sfb.Message) error {
	if msg.Text == "" && msg.HTML == "" {
		return fmt.Errorf("empty message: %w", sfb.ErrUnsupported)
	}
	if len(msg.Text) > MaxMessageBytes || len(msg.HTML) > MaxMessageBytes {
		return fmt.Errorf("message of %d bytes is larger than %d: %w", max(len(msg.Text), len(msg.HTML)), MaxMessageBytes, sfb.ErrUnsupported)
	}
	if !utf8.ValidString(msg.Text) || !utf8.ValidString(msg.HTML) {
		return fmt.Errorf("message is not valid UTF-8: %w", sfb.ErrUnsupported)
	}
	return nil
}

// SendMessage implements sfb.Session: in the active conversation with the
// peer, else in a new one (startMessaging with the message inside the
// invitation). A stale conversation (404/409) is restarted once.
func (s *session) SendMessage(ctx context.Context, to sfb.URI, msg sfb.Message) (sfb.SentMessage, error) {
	return s.SendMessageTracked(ctx, to, msg, nil)
}

// SendMessageTracked implements sfb.DeliveryTracker: SendMessage, calling
// accepted with the message's (or, for the first message of a
// conversation, the invitation's) href once the server answered the POST
// with its Location. accepted may be nil.
func (s *session) SendMessageTracked(ctx context.Context, to sfb.URI, msg sfb.Message, accepted func(id string)) (sfb.SentMessage, error) {
	if err := validateOutgoing(msg); err != nil {
		return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", to, err)
	}
	if s.closed.Load() {
		return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", to, errStopped)
	}
	// Sending ends typing, as in SfB's own clients.
	s.stopTyping(to)
	if err := s.awaitAccept(ctx, to); err != nil {
		return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", to, err)
	}
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		_, gen := s.appSnapshot()
		var sent sfb.SentMessage
		var err error
		if c := s.activeConv(to); c != nil {
			sent, err = s.sendInConversation(ctx, c, msg, accepted)
			if err != nil && (statusOf(err) == http.StatusNotFound || statusOf(err) == http.StatusConflict) {
				s.log.Debug().Err(err).Str("peer", string(to)).Msg("Conversation is stale, starting a new one")
				s.dropConv(c)
				if applicationGone(err) {
					if rerr := s.recreate(ctx, gen, false); rerr != nil {
						return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", to, rerr)
					}
				}
				lastErr = err
				continue
			}
		} else {
			sent, err = s.startMessaging(ctx, to, msg, accepted)
			if err != nil && applicationGone(err) && attempt == 0 {
				if rerr := s.recreate(ctx, gen, false); rerr != nil {
					return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", to, rerr)
				}
				lastErr = err
				continue
			}
		}
		if err != nil {
			return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", to, err)
		}
		return sent, nil
	}
	return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", to, lastErr)
}

func (s *session) sendInConversation(ctx context.Context, c *conv, msg sfb.Message, accepted func(id string)) (sfb.SentMessage, error) {
	s.mu.Lock()
	target, useHTML := c.sendMessage, c.html && msg.HTML != ""
	s.mu.Unlock()
	opID := newUUID()
	u, err := url.Parse(target)
	if err != nil {
		return sfb.SentMessage{}, fmt.Errorf("parse sendMessage link: %w", err)
	}
	q := u.Query()
	// sendMessage_ref.md names the parameter operationId; SendAnIM.md
	// shows OperationContext. Send both.
	q.Set("operationId", opID)
	q.Set("OperationContext", opID)
	u.RawQuery = q.Encode()
	body, ctype := msg.Text, "text/plain"
	if useHTML {
		body, ctype = msg.HTML, "text/html"
	}
	if body == "" {
		body = htmlToText(msg.HTML)
	}
	ch := make(chan opResult, 1)
	keys := []string{"op:" + opID}
	s.ops.register(ch, keys...)
	defer s.ops.unregister(keys...)
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	resp, err := s.c.do(rctx, request{op: "send message", method: http.MethodPost, url: u.String(), body: []byte(body), contentType: ctype + ";charset=UTF-8"})
	cancel()
	if err != nil {
		return sfb.SentMessage{}, err
	}
	href := s.abs(resp.location)
	if href == "" {
		return sfb.SentMessage{}, errors.New("send message: answer without Location")
	}
	if accepted != nil {
		accepted(href)
	}
	return s.awaitSent(ctx, ch, "message", href)
}

// awaitSent waits for the completion of the message or invitation the
// server created as href.
func (s *session) awaitSent(ctx context.Context, ch chan opResult, what, href string) (sfb.SentMessage, error) {
	res, err := s.awaitOp(ctx, ch, "href:"+href)
	if err != nil {
		return sfb.SentMessage{}, fmt.Errorf("%s %s: %w", what, href, err)
	}
	if !strings.EqualFold(res.status, "Success") {
		return sfb.SentMessage{}, deliveryError(res)
	}
	return sfb.SentMessage{ID: href, Time: s.t.now()}, nil
}

func (s *session) awaitOp(ctx context.Context, ch chan opResult, extraKey string) (opResult, error) {
	if r, ok := s.ops.register(ch, extraKey); ok {
		return r, nil
	}
	defer s.ops.unregister(extraKey)
	// The wait may already have been failed between the POST's
	// registration and this one.
	select {
	case r := <-ch:
		if r.err != nil {
			return opResult{}, r.err
		}
		return r, nil
	default:
	}
	t := time.NewTimer(s.t.timings.OperationTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return opResult{}, r.err
		}
		return r, nil
	case <-ctx.Done():
		return opResult{}, ctx.Err()
	case <-s.ctx.Done():
		return opResult{}, fmt.Errorf("session ended: %w", context.Cause(s.ctx))
	case <-t.C:
		return opResult{}, fmt.Errorf("no completion event within %s: %w", s.t.timings.OperationTimeout, sfb.ErrServerUnavailable)
	}
}

// deliveryError wraps sfb.ErrDeliveryFailed with the reason the server
// gave, and with what kind of failure it is, so that the connector can
// tell the sender what to do: the address is nobody's (ErrNotFound), the
// recipient is offline or unreachable (ErrRecipientUnavailable), or they
// refused it (ErrDeclined). The subcodes are ErrorSubcode's in the
// reference (call_ref.md, messagingInvitation_ref.md).
func deliveryError(res opResult) error {
	reason := res.status
	var code, subcode string
	if res.reason != nil {
		code, subcode = res.reason.Code, res.reason.Subcode
		reason = strings.Trim(code+"/"+subcode, "/")
		if res.reason.Message != "" {
			reason += ": " + res.reason.Message
		}
	}
	var kind error
	switch {
	case subcode == "DestinationNotFound":
		kind = sfb.ErrNotFound
	case subcode == "Unreachable", subcode == "TemporarilyUnavailable", subcode == "Unavailable",
		subcode == "Offline", subcode == "Timeout", code == "Timeout":
		kind = sfb.ErrRecipientUnavailable
	case subcode == "Declined", subcode == "DoNotDisturb", subcode == "Busy", subcode == "NotAcceptable",
		subcode == "Denied", subcode == "NotAllowed":
		kind = sfb.ErrDeclined
	}
	if kind == nil {
		return fmt.Errorf("%w: %s", sfb.ErrDeliveryFailed, reason)
	}
	return fmt.Errorf("%w: %w: %s", sfb.ErrDeliveryFailed, kind, reason)
}

// startMessaging sends an invitation with the first message inside
// (startMessaging_ref.md) and waits for it to complete.
//
// The invitation's message is one ExternalResource, a data URI
// (messagingInvitation_ref.md): formatted text goes as text/html, as SfB
// clients send their first message, so it is not flattened. A server that
// refuses the HTML form outright (400, 415) gets the plain text instead;
// the invitation carries only one form.
func (s *session) startMessaging(ctx context.Context, to sfb.URI, msg sfb.Message, accepted func(id string)) (sfb.SentMessage, error) {
	plain := msg.Text
	if plain == "" {
		plain = htmlToText(msg.HTML)
	}
	if msg.HTML != "" {
		sent, err := s.invite(ctx, to, EncodeDataURI("text/html", msg.HTML), accepted)
		if st := statusOf(err); st != http.StatusBadRequest && st != http.StatusUnsupportedMediaType {
			return sent, err
		}
		s.log.Info().Err(err).Str("peer", string(to)).Msg("Invitation with an HTML message refused, sending it as plain text")
	}
	return s.invite(ctx, to, EncodeDataURI("text/plain", plain), accepted)
}

// invite posts one messaging invitation with first (a data URI) as its
// message and waits for it to complete.
func (s *session) invite(ctx context.Context, to sfb.URI, first string, accepted func(id string)) (sfb.SentMessage, error) {
	opID := newUUID()
	ch := make(chan opResult, 1)
	s.ops.register(ch, "op:"+opID)
	defer s.ops.unregister("op:" + opID)
	href, err := s.postStartMessaging(ctx, to, opID, map[string]any{
		"subject": "",
		"_links":  map[string]any{"message": map[string]string{"href": first}},
	})
	if err != nil {
		return sfb.SentMessage{}, err
	}
	if href == "" {
		href = "op:" + opID
	} else if accepted != nil {
		accepted(href)
	}
	return s.awaitSent(ctx, ch, "invitation", href)
}

// postStartMessaging posts a messaging invitation to to with the fields
// every one carries and extra; its completion goes to what the caller
// registered under "op:"+opID. It returns the invitation's address, ""
// when the server did not give it.
func (s *session) postStartMessaging(ctx context.Context, to sfb.URI, opID string, extra map[string]any) (string, error) {
	st, _ := s.appSnapshot()
	fields := map[string]any{
		"importance":     "Normal",
		"sessionContext": newUUID(),
		"to":             string(to),
		"operationId":    opID,
	}
	maps.Copy(fields, extra)
	body, _ := json.Marshal(fields)
	s.noteOutgoing("op:"+opID, to)
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	resp, err := s.c.do(rctx, request{op: "start messaging", method: http.MethodPost, url: st.startMessaging, body: body, contentType: "application/json"})
	cancel()
	if err != nil {
		return "", err
	}
	href := s.abs(resp.location)
	if href != "" {
		s.noteOutgoing("href:"+href, to)
	}
	return href, nil
}

// DeliveryStatus implements sfb.DeliveryTracker: it reads the message
// resource (message_ref.md: status Pending, Succeeded, Failed) or, for the
// first message of a conversation, the invitation (state Connecting,
// Connected, Failed) at id. A resource the server no longer has (its
// conversation or application ended) is DeliveryUnknown.
func (s *session) DeliveryStatus(ctx context.Context, id string) (sfb.DeliveryStatus, error) {
	if !strings.HasPrefix(id, "http://") && !strings.HasPrefix(id, "https://") {
		return sfb.DeliveryUnknown, nil
	}
	var res struct {
		Status string `json:"status"`
		State  string `json:"state"`
	}
	if err := s.get(ctx, id, "get message status", &res); err != nil {
		if st := statusOf(err); st == http.StatusNotFound || st == http.StatusGone || applicationGone(err) {
			return sfb.DeliveryUnknown, nil
		}
		return sfb.DeliveryUnknown, fmt.Errorf("delivery status of %s: %w", redact(id), err)
	}
	switch {
	case strings.EqualFold(res.Status, "Succeeded"), strings.EqualFold(res.State, "Connected"):
		return sfb.DeliveryDelivered, nil
	case strings.EqualFold(res.Status, "Failed"), strings.EqualFold(res.State, "Failed"):
		return sfb.DeliveryFailed, nil
	case strings.EqualFold(res.Status, "Pending"), strings.EqualFold(res.State, "Connecting"):
		return sfb.DeliveryPending, nil
	}
	return sfb.DeliveryUnknown, nil
}

// SetTyping implements sfb.Session. setIsTyping starts a short timer on the
// server (setIsTyping_ref.md): the user shows as typing only while it is
// repeated, so a refresher repeats it until the user stops typing, sends
// the message, the conversation goes, or TypingMax passes. "Stopped
// typing" is not renewing it.
func (s *session) SetTyping(ctx context.Context, to sfb.URI, typing bool) error {
	if err := s.setTyping(ctx, to, typing); err != nil {
		return fmt.Errorf("set typing to %s: %w", to, err)
	}
	return nil
}

// setTyping serves SetTyping and SetGroupTyping; key is a peer's address
// or a group's groupTypingKey.
func (s *session) setTyping(ctx context.Context, key sfb.URI, typing bool) error {
	s.stopTyping(key)
	if !typing {
		return nil
	}
	link := s.typingLink(key)
	if link == "" {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	defer cancel()
	if _, err := s.c.do(rctx, request{op: "set typing", method: http.MethodPost, url: link}); err != nil {
		return err
	}
	s.startTyping(key)
	return nil
}

func (s *session) typingLink(to sfb.URI) string {
	if thread, ok := strings.CutPrefix(string(to), "thread:"); ok {
		s.mu.Lock()
		defer s.mu.Unlock()
		if c := s.groupConvLocked(thread); c != nil {
			return c.setIsTyping
		}
		return ""
	}
	c := s.activeConv(to)
	if c == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.setIsTyping
}

func (s *session) stopTyping(to sfb.URI) {
	s.mu.Lock()
	cancel := s.typing[to]
	delete(s.typing, to)
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (s *session) startTyping(to sfb.URI) {
	if s.ctx == nil || s.closed.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.t.timings.TypingMax)
	s.mu.Lock()
	if s.typing == nil {
		s.typing = map[sfb.URI]context.CancelFunc{}
	}
	if old := s.typing[to]; old != nil {
		old()
	}
	s.typing[to] = cancel
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		tick := time.NewTicker(s.t.timings.TypingRefresh)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			link := s.typingLink(to)
			if link == "" {
				return
			}
			rctx, rcancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
			_, err := s.c.do(rctx, request{op: "set typing", method: http.MethodPost, url: link})
			rcancel()
			if err != nil {
				if ctx.Err() == nil {
					s.log.Debug().Err(err).Str("peer", string(to)).Msg("Repeating setIsTyping failed")
				}
				return
			}
		}
	}()
}

// LookupPerson implements sfb.Session: the contact resource under people,
// then a directory search; the address stands in for an unknown name. It
// wraps sfb.ErrNotFound when the server said the address is nobody's: the
// contact resource answered 404 and the search found no such contact.
func (s *session) LookupPerson(ctx context.Context, uri sfb.URI) (sfb.Person, error) {
	st, _ := s.appSnapshot()
	fallback := sfb.Person{URI: uri, DisplayName: uri.Address()}
	// known: the server confirmed the address (a contact without a name);
	// unknown: it denied it.
	known, unknown := false, false
	if st.people != "" {
		rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
		var c Contact
		_, err := s.c.doJSON(rctx, request{op: "get contact", method: http.MethodGet, url: strings.TrimRight(st.people, "/") + "/" + url.PathEscape(uri.Address())}, &c)
		cancel()
		switch {
		case err == nil && c.Name != "":
			return sfb.Person{URI: uri, DisplayName: validText(c.Name)}, nil
		case err == nil:
			known = true
		case errors.Is(err, sfb.ErrNotFound):
			unknown = true
		default:
			return fallback, fmt.Errorf("look up %s: %w", uri, err)
		}
	}
	if st.search != "" {
		u, err := url.Parse(st.search)
		if err != nil {
			return fallback, fmt.Errorf("look up %s: parse search link: %w", uri, err)
		}
		q := u.Query()
		q.Set("query", uri.Address())
		q.Set("limit", "10")
		u.RawQuery = q.Encode()
		rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
		var res Search
		_, err = s.c.doJSON(rctx, request{op: "search people", method: http.MethodGet, url: u.String()}, &res)
		cancel()
		switch {
		case errors.Is(err, sfb.ErrNotFound):
			// No search on this server: the contact's answer decides.
		case err != nil:
			return fallback, fmt.Errorf("look up %s: %w", uri, err)
		default:
			var contacts []Contact
			if raw, ok := res.Embedded["contact"]; ok {
				if err := json.Unmarshal(raw, &contacts); err != nil {
					var one Contact
					if json.Unmarshal(raw, &one) == nil {
						contacts = []Contact{one}
					}
				}
			}
			found := false
			for _, c := range contacts {
				if cu, err := sfb.ParseURI(c.URI); err == nil && cu == uri {
					if c.Name != "" {
						return sfb.Person{URI: uri, DisplayName: validText(c.Name)}, nil
					}
					found = true
				}
			}
			// A search by the exact address that does not return it:
			// the directory has no such user.
			unknown = !found && !known
		}
	}
	if unknown {
		return fallback, fmt.Errorf("look up %s: no such user in the directory: %w", uri, sfb.ErrNotFound)
	}
	return fallback, nil
}

// decodeMessage is decodeMessageText for the session: text that does not
// fit its charset is kept with replacement characters and logged, so the
// operator can see that something was lost.
func (s *session) decodeMessage(plain, htmlLink string) (sfb.Message, error) {
	msg, valid, err := decodeMessageText(plain, htmlLink)
	if err == nil && !valid {
		s.log.Warn().Int("bytes", len(msg.Text)+len(msg.HTML)).
			Msg("Incoming message text is not valid in its charset, invalid bytes replaced")
	}
	return msg, err
}

// decodeMessageText decodes the data URIs of a message's plain and HTML
// forms (either may be empty) into an sfb.Message; false when some bytes
// did not fit their charset.
func decodeMessageText(plain, htmlLink string) (sfb.Message, bool, error) {
	var msg sfb.Message
	allValid := true
	for _, l := range []string{plain, htmlLink} {
		if l == "" {
			continue
		}
		d, err := ParseDataURI(l)
		if err != nil {
			return sfb.Message{}, false, err
		}
		if err := d.CheckCharset(); err != nil {
			return sfb.Message{}, false, fmt.Errorf("message of type %s: %w: %w", d.MediaType, err, sfb.ErrUnsupported)
		}
		text, valid := d.Text()
		allValid = allValid && valid
		switch d.MediaType {
		case "text/html":
			msg.HTML = text
		case "text/plain", "":
			msg.Text = text
		default:
			return sfb.Message{}, false, fmt.Errorf("message of type %s: %w", d.MediaType, sfb.ErrUnsupported)
		}
	}
	if msg.Text == "" && msg.HTML != "" {
		msg.Text = htmlToText(msg.HTML)
	}
	return msg, allValid, nil
}

var (
	tagRE   = regexp.MustCompile(`(?s)<[^>]*>`)
	breakRE = regexp.MustCompile(`(?i)<br\s*/?>|</p>|</div>`)
)

// htmlToText is the plain form of an HTML message: tags dropped, line
// breaks kept, entities decoded. bridge/msgconv does the real conversion.
func htmlToText(h string) string {
	h = breakRE.ReplaceAllString(h, "\n")
	h = tagRE.ReplaceAllString(h, "")
	return strings.TrimSpace(html.UnescapeString(h))
}

func validText(s string) string {
	if !utf8.ValidString(s) {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}
