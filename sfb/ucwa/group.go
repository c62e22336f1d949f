package ucwa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Multi-party conversations over UCWA.
//
// A conversation is multi-party when its resource links an onlineMeeting
// (conversation_ref.md: "a read-only version of the onlineMeeting
// associated with this conversation"): an IM conference, started with
// several people or escalated from a 1:1 conversation by addParticipant
// (addParticipant_ref.md). An invitation into one is a messagingInvitation
// like a 1:1 one, accepted the same way. UCWA has no way to start a
// multi-party conversation at once: startMessaging (startMessaging_ref.md)
// starts a peer-to-peer one, under the thread ID to continue, and
// addParticipant escalates it.

// ParticipantInvitation is addParticipant's outgoing invitation
// (participantInvitation_ref.md).
type ParticipantInvitation struct {
	Resource
	Direction   string `json:"direction"`
	OperationID string `json:"operationId"`
	State       string `json:"state"`
	ThreadID    string `json:"threadId"`
	To          string `json:"to"`
}

// groupTypingKey names a multi-party conversation in the typing
// refreshers, which are kept per peer for 1:1 conversations.
func groupTypingKey(threadID string) sfb.URI { return sfb.URI("thread:" + threadID) }

// groupConversation is what the events of a multi-party conversation say
// it is.
func (c *conv) groupConversation() sfb.Conversation {
	return sfb.Conversation{ThreadID: c.threadID, Group: true, Subject: c.subject}
}

// groupConvLocked is the live multi-party conversation of threadID the
// user is in, nil when none.
func (s *session) groupConvLocked(threadID string) *conv {
	for _, c := range s.convs {
		if c.group && !c.ended && !c.leaving && c.threadID == threadID && c.joined &&
			strings.EqualFold(c.state, "Connected") && c.sendMessage != "" {
			return c
		}
	}
	return nil
}

// markGroupLocked notes that c is multi-party; the events to report once
// the user is in it are returned.
func (s *session) markGroupLocked(c *conv, subject string) []sfb.Event {
	if !c.group {
		c.group = true
		c.subject = subject
	}
	return s.joinedLocked(c)
}

// joinedLocked reports the user's joining c once messaging is connected:
// the user, and the 1:1 peer of an escalated conversation; the others
// follow as participant events.
func (s *session) joinedLocked(c *conv) []sfb.Event {
	if !c.group || c.joined || c.ended || !strings.EqualFold(c.state, "Connected") {
		return nil
	}
	c.joined = true
	if c.members == nil {
		c.members = map[sfb.URI]bool{}
	}
	out := []sfb.Event{sfb.ParticipantJoined{Conversation: c.groupConversation(), Person: s.person}}
	c.members[s.self] = true
	if c.peer != "" && c.peer != s.self && !c.members[c.peer] {
		c.members[c.peer] = true
		out = append(out, sfb.ParticipantJoined{Conversation: c.groupConversation(), Person: s.knownPersonLocked(c.peer)})
	}
	return out
}

// knownPersonLocked is the person at uri as the participants told it.
func (s *session) knownPersonLocked(uri sfb.URI) sfb.Person {
	for _, p := range s.participants {
		if p.URI == uri {
			return p
		}
	}
	return sfb.Person{URI: uri, DisplayName: uri.Address()}
}

func (s *session) emitAll(evs []sfb.Event) {
	for _, e := range evs {
		s.emit(e)
	}
}

// onGroupParticipant reports a participant added to or deleted from the
// roster of a multi-party conversation.
func (s *session) onGroupParticipant(convHref string, e Event) error {
	if e.Type != "added" && e.Type != "deleted" {
		return nil
	}
	s.mu.Lock()
	c := s.convs[convHref]
	ok := c != nil && c.group && c.joined && !c.ended
	s.mu.Unlock()
	if !ok {
		return nil
	}
	person, err := s.resolveParticipant(e.Link)
	if err != nil {
		return err
	}
	s.mu.Lock()
	var evt sfb.Event
	switch {
	case e.Type == "added" && !c.members[person.URI]:
		c.members[person.URI] = true
		evt = sfb.ParticipantJoined{Conversation: c.groupConversation(), Person: person}
	case e.Type == "deleted" && c.members[person.URI]:
		delete(c.members, person.URI)
		evt = sfb.ParticipantLeft{Conversation: c.groupConversation(), URI: person.URI}
	}
	s.mu.Unlock()
	if evt != nil {
		s.emit(evt)
	}
	return nil
}

// onParticipantInvitation completes the wait of AddParticipant and
// reports an invitation that was declined or not answered.
func (s *session) onParticipantInvitation(e Event) error {
	if e.Type != "completed" {
		return nil
	}
	var inv ParticipantInvitation
	ok, err := decodeEmbedded(e.Embedded, "participantInvitation", &inv)
	if err != nil {
		return err
	}
	href := s.abs(e.Link.Href)
	keys := []string{"href:" + href}
	if ok && inv.OperationID != "" {
		keys = append(keys, "op:"+inv.OperationID)
	}
	s.ops.complete(opResult{status: e.Status, reason: e.Reason}, keys...)
	if strings.EqualFold(e.Status, "Success") || !ok {
		return nil
	}
	to, err := sfb.ParseURI(inv.To)
	if err != nil {
		return fmt.Errorf("participant invitation %s: %w", href, err)
	}
	s.mu.Lock()
	c := s.convs[s.absLocked(inv.Links.Href("conversation"))]
	report := c != nil && c.group && !c.ended && !c.members[to]
	var conv sfb.Conversation
	if report {
		conv = c.groupConversation()
	}
	s.mu.Unlock()
	if report {
		s.emit(sfb.ParticipantLeft{Conversation: conv, URI: to, Declined: true})
	}
	return nil
}

// SendGroupMessage implements sfb.GroupSession.
func (s *session) SendGroupMessage(ctx context.Context, g sfb.Group, msg sfb.Message) (sfb.SentMessage, error) {
	if err := validateGroup(g); err != nil {
		return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", g.ThreadID, err)
	}
	if err := validateOutgoing(msg); err != nil {
		return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", g.ThreadID, err)
	}
	if s.closed.Load() {
		return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", g.ThreadID, errStopped)
	}
	s.stopTyping(groupTypingKey(g.ThreadID))
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		_, gen := s.appSnapshot()
		c, err := s.enterGroup(ctx, g)
		var sent sfb.SentMessage
		if err == nil {
			sent, err = s.sendInConversation(ctx, c, msg, nil)
			if err != nil && (statusOf(err) == http.StatusNotFound || statusOf(err) == http.StatusConflict) {
				s.log.Debug().Err(err).Str("thread_id", g.ThreadID).Msg("Multi-party conversation is stale, starting it again")
				s.dropConv(c)
				lastErr = err
				if !applicationGone(err) {
					continue
				}
			}
		}
		if err != nil && applicationGone(err) && attempt == 0 {
			// As SendMessage: the application expired; a new one starts
			// the conversation again.
			if rerr := s.recreate(ctx, gen, false); rerr != nil {
				return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", g.ThreadID, rerr)
			}
			lastErr = err
			continue
		}
		if err != nil {
			return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", g.ThreadID, err)
		}
		return sent, nil
	}
	return sfb.SentMessage{}, fmt.Errorf("send message to %s: %w", g.ThreadID, lastErr)
}

func validateGroup(g sfb.Group) error {
	if g.ThreadID == "" {
		return fmt.Errorf("multi-party conversation without thread ID: %w", sfb.ErrUnsupported)
	}
	for _, p := range g.Participants {
		if _, err := sfb.ParseURI(string(p)); err != nil {
			return fmt.Errorf("participant: %w", err)
		}
	}
	if len(g.Subject) > 250 {
		// messagingInvitation_ref.md: the subject is limited to 250
		// characters.
		return fmt.Errorf("subject of %d bytes is longer than 250: %w", len(g.Subject), sfb.ErrUnsupported)
	}
	return nil
}

// enterGroup is the live conversation of g, started again when the user
// is not in it.
func (s *session) enterGroup(ctx context.Context, g sfb.Group) (*conv, error) {
	s.mu.Lock()
	c := s.groupConvLocked(g.ThreadID)
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	return s.startGroup(ctx, g)
}

// startGroup starts the multi-party conversation g again: a peer-to-peer
// conversation with the first participant who accepts, under g's thread
// ID and subject, then addParticipant for the others. The invitations are
// waited for at most AcceptWait, so that a message sent next reaches
// those who join at once.
func (s *session) startGroup(ctx context.Context, g sfb.Group) (*conv, error) {
	var others []sfb.URI
	for _, p := range g.Participants {
		if p != s.self && p != "" {
			others = append(others, p)
		}
	}
	if len(others) == 0 {
		return nil, fmt.Errorf("start %s: nobody to invite: %w", g.ThreadID, sfb.ErrDeliveryFailed)
	}
	var c *conv
	var lastErr error
	for i, p := range others {
		cv, err := s.inviteIntoGroup(ctx, p, g)
		if err != nil {
			if !errors.Is(err, sfb.ErrDeliveryFailed) {
				return nil, err
			}
			s.log.Info().Err(err).Str("thread_id", g.ThreadID).Str("peer", string(p)).Msg("Participant did not join the restarted conversation")
			lastErr = err
			continue
		}
		c = cv
		others = others[i+1:]
		break
	}
	if c == nil {
		return nil, fmt.Errorf("start %s: %w", g.ThreadID, lastErr)
	}
	waits := make([]chan opResult, 0, len(others))
	var keys []string
	for _, p := range others {
		ch := make(chan opResult, 1)
		key, err := s.postAddParticipant(ctx, c, p, ch)
		if err != nil {
			s.log.Info().Err(err).Str("thread_id", g.ThreadID).Str("peer", string(p)).Msg("Could not invite participant into the restarted conversation")
			continue
		}
		keys = append(keys, key)
		waits = append(waits, ch)
	}
	defer s.ops.unregister(keys...)
	t := time.NewTimer(s.t.timings.AcceptWait)
	defer t.Stop()
	for _, ch := range waits {
		select {
		case <-ch:
		case <-t.C:
			return c, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return c, nil
}

// inviteIntoGroup starts the peer-to-peer conversation with to that
// becomes g, and waits for it to be accepted.
func (s *session) inviteIntoGroup(ctx context.Context, to sfb.URI, g sfb.Group) (*conv, error) {
	opID := newUUID()
	s.mu.Lock()
	if s.groupStarts == nil {
		s.groupStarts = map[string]sfb.Group{}
	}
	s.groupStarts[opID] = g
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.groupStarts, opID)
		s.mu.Unlock()
	}()
	ch := make(chan opResult, 1)
	s.ops.register(ch, "op:"+opID)
	defer s.ops.unregister("op:" + opID)
	href, err := s.postStartMessaging(ctx, to, opID, map[string]any{"subject": g.Subject, "threadId": g.ThreadID})
	if err != nil {
		return nil, err
	}
	if href == "" {
		href = "op:" + opID
	} else {
		href = "href:" + href
	}
	res, err := s.awaitOp(ctx, ch, href)
	if err != nil {
		return nil, fmt.Errorf("invitation of %s: %w", to, err)
	}
	if !strings.EqualFold(res.status, "Success") {
		return nil, deliveryError(res)
	}
	if res.invitation == nil {
		return nil, errors.New("invitation completed without its resource")
	}
	convHref := res.invitation.Links.Href("conversation")
	if convHref == "" {
		return nil, errors.New("invitation without conversation")
	}
	s.mu.Lock()
	c := s.convLocked(s.absLocked(convHref))
	c.threadID = g.ThreadID
	evs := s.markGroupLocked(c, g.Subject)
	s.mu.Unlock()
	s.emitAll(evs)
	return c, nil
}

// postAddParticipant invites uri into c; the invitation's completion goes
// to ch under the returned key.
func (s *session) postAddParticipant(ctx context.Context, c *conv, uri sfb.URI, ch chan opResult) (string, error) {
	s.mu.Lock()
	target := c.addParticipant
	if target == "" {
		// conversation_ref.md names the link; the samples put it under
		// the conversation.
		target = c.href + "/addParticipant"
	}
	s.mu.Unlock()
	opID := newUUID()
	body, _ := json.Marshal(map[string]string{"to": string(uri), "operationId": opID})
	key := "op:" + opID
	if ch != nil {
		s.ops.register(ch, key)
	}
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	_, err := s.c.do(rctx, request{op: "add participant", method: http.MethodPost, url: target, body: body, contentType: "application/json"})
	cancel()
	if err != nil {
		if ch != nil {
			s.ops.unregister(key)
		}
		return "", fmt.Errorf("add %s: %w", uri, err)
	}
	return key, nil
}

// AddParticipant implements sfb.GroupSession.
func (s *session) AddParticipant(ctx context.Context, g sfb.Group, uri sfb.URI) error {
	if err := validateGroup(g); err != nil {
		return fmt.Errorf("add %s to %s: %w", uri, g.ThreadID, err)
	}
	if _, err := sfb.ParseURI(string(uri)); err != nil {
		return fmt.Errorf("add to %s: %w", g.ThreadID, err)
	}
	if s.closed.Load() {
		return fmt.Errorf("add %s to %s: %w", uri, g.ThreadID, errStopped)
	}
	c, err := s.enterGroup(ctx, g)
	if err != nil {
		return fmt.Errorf("add %s to %s: %w", uri, g.ThreadID, err)
	}
	s.mu.Lock()
	in := c.members[uri]
	s.mu.Unlock()
	if in {
		return nil
	}
	if _, err := s.postAddParticipant(ctx, c, uri, nil); err != nil {
		return fmt.Errorf("add %s to %s: %w", uri, g.ThreadID, err)
	}
	return nil
}

// LeaveGroup implements sfb.GroupSession: DELETE on the conversation
// (conversation_ref.md: "Removes the user from the communication").
func (s *session) LeaveGroup(ctx context.Context, threadID string) error {
	s.stopTyping(groupTypingKey(threadID))
	s.mu.Lock()
	var hrefs []string
	for _, c := range s.convs {
		if c.group && !c.ended && c.threadID == threadID {
			// Not sent in any more; its deletion, reported by the event
			// loop, takes it out.
			c.leaving = true
			hrefs = append(hrefs, c.href)
		}
	}
	s.mu.Unlock()
	for _, h := range hrefs {
		rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
		_, err := s.c.do(rctx, request{op: "leave conversation", method: http.MethodDelete, url: h})
		cancel()
		if err != nil && statusOf(err) != http.StatusNotFound {
			return fmt.Errorf("leave %s: %w", threadID, err)
		}
	}
	return nil
}

// SetGroupTyping implements sfb.GroupSession, as SetTyping.
func (s *session) SetGroupTyping(ctx context.Context, threadID string, typing bool) error {
	if err := s.setTyping(ctx, groupTypingKey(threadID), typing); err != nil {
		return fmt.Errorf("set typing in %s: %w", threadID, err)
	}
	return nil
}
