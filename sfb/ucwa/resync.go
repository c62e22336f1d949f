package ucwa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// maxResyncConversations bounds the requests one resync makes; a bridged
// user has a handful of open conversations, and one the re-read leaves
// out is only forgotten (its next message starts a new one).
const maxResyncConversations = 200

// resyncConversations follows a resync link (EventChannelDetails.md,
// "Special responses"): the client clears its cached transient state and
// reads it again from the server. The server did not close the
// conversations (that is what resume says), so forgetting them would make
// the next outgoing message start a second conversation beside the one
// the peer still has open. Conversations the server no longer lists end;
// when the collection cannot be read at all, every conversation is
// forgotten as before.
func (s *session) resyncConversations(st appState) {
	fresh, err := s.readConversations(s.ctx, st)
	if err != nil {
		s.log.Warn().Err(err).Msg("Could not read the conversations again after resync, forgetting them")
		s.resetTransient("resync")
		return
	}
	s.mu.Lock()
	var ended []*conv
	for h, c := range s.convs {
		if _, ok := fresh[h]; !ok {
			delete(s.convs, h)
			delete(s.firsts, h)
			if !c.ended && (c.peer != "" || c.joined) {
				c.ended = true
				ended = append(ended, c)
			}
		}
	}
	kept := 0
	for h, f := range fresh {
		c := s.convs[h]
		if c == nil {
			if f.peer == "" && !f.group {
				// Not a conversation we can send in; the events
				// that follow still name it.
				continue
			}
			c = &conv{href: h}
			s.convs[h] = c
		}
		// Update in place: a send in progress holds the pointer.
		if f.peer != "" {
			c.peer = f.peer
		}
		if f.threadID != "" {
			c.threadID = f.threadID
		}
		c.messaging, c.state, c.html = f.messaging, f.state, f.html
		c.sendMessage, c.setIsTyping = f.sendMessage, f.setIsTyping
		if f.group {
			c.group, c.subject, c.joined, c.members = true, f.subject, f.joined, f.members
		}
		kept++
	}
	s.wakeLocked()
	s.mu.Unlock()
	s.log.Info().Int("conversations", kept).Int("ended", len(ended)).Msg("Conversations read again after resync")
	for _, c := range ended {
		s.emit(s.endedEvent(c))
	}
}

// loadConversations reads the conversations of a resumed application: a
// restart detached from the application without ending anything, so the
// conversations the peers have open are still there, and a reply must go
// into them rather than start a second one. Nothing is cached yet, so a
// failure only means the next message starts a new conversation.
func (s *session) loadConversations(ctx context.Context) {
	st, _ := s.appSnapshot()
	fresh, err := s.readConversations(ctx, st)
	if err != nil {
		s.log.Warn().Err(err).Msg("Could not read the conversations of the resumed application")
		return
	}
	s.mu.Lock()
	kept := 0
	for h, c := range fresh {
		if (c.peer == "" && !c.group) || s.convs[h] != nil {
			continue
		}
		s.convs[h] = c
		kept++
	}
	s.mu.Unlock()
	s.log.Info().Int("conversations", kept).Msg("Conversations of the resumed application read")
}

// readConversations reads the communication's conversations collection
// (conversations_ref.md) and, for each conversation, the conversation,
// its messaging modality and, when the peer is not known yet, its
// participants. A conversation the server answers 404 for is gone; one it
// cannot answer for now keeps what the cache had.
func (s *session) readConversations(ctx context.Context, st appState) (map[string]*conv, error) {
	if st.conversations == "" {
		return nil, errors.New("the communication resource has no conversations link")
	}
	var coll Resource
	if err := s.get(ctx, st.conversations, "get conversations", &coll); err != nil {
		return nil, err
	}
	links := coll.Links["conversation"]
	if len(links) == 0 {
		// A server may embed the collection's members instead of linking them.
		var embedded []Resource
		if raw, ok := coll.Embedded["conversation"]; ok {
			if err := json.Unmarshal(raw, &embedded); err != nil {
				return nil, fmt.Errorf("decode embedded conversations: %w", err)
			}
		}
		for _, r := range embedded {
			links = append(links, Link{Href: r.Self()})
		}
	}
	if len(links) > maxResyncConversations {
		s.log.Warn().Int("conversations", len(links)).Int("read", maxResyncConversations).Msg("Too many conversations to read again, reading the first")
		links = links[:maxResyncConversations]
	}
	out := make(map[string]*conv, len(links))
	for _, l := range links {
		href := resolveHref(st.base, l.Href)
		if href == "" {
			continue
		}
		c, err := s.readConversation(ctx, st, href)
		switch {
		case err == nil:
			if c != nil {
				out[href] = c
			}
		case errors.Is(err, sfb.ErrNotFound) || statusOf(err) == http.StatusNotFound:
			// Gone between the collection and now.
		default:
			s.log.Warn().Err(err).Str("conversation", redact(href)).Msg("Could not read a conversation again after resync, keeping what was known")
			s.mu.Lock()
			if old := s.convs[href]; old != nil {
				cp := *old
				out[href] = &cp
			}
			s.mu.Unlock()
		}
	}
	return out, nil
}

// readConversation reads one conversation; nil when it is not connected.
func (s *session) readConversation(ctx context.Context, st appState, href string) (*conv, error) {
	var cv Conversation
	if err := s.get(ctx, href, "get conversation", &cv); err != nil {
		return nil, err
	}
	if strings.EqualFold(cv.State, "Disconnected") {
		return nil, nil
	}
	c := &conv{href: href, threadID: cv.ThreadID}
	if h := cv.Links.Href("messaging"); h != "" {
		var m Messaging
		c.messaging = resolveHref(st.base, h)
		if err := s.get(ctx, c.messaging, "get messaging", &m); err != nil {
			return nil, err
		}
		c.state = m.State
		c.sendMessage = resolveHref(st.base, m.Links.Href("sendMessage"))
		c.setIsTyping = resolveHref(st.base, m.Links.Href("setIsTyping"))
		c.html = containsFold(m.NegotiatedMessageFormats, "Html")
	}
	if cv.Links.Href("onlineMeeting") != "" {
		// A multi-party conversation: the user is in it with whoever
		// the roster shows, reported before.
		c.group, c.subject = true, validText(cv.Subject)
		c.joined = strings.EqualFold(c.state, "Connected")
		c.members = map[sfb.URI]bool{s.self: true}
		if h := cv.Links.Href("participants"); h != "" {
			others, err := s.readParticipants(ctx, resolveHref(st.base, h))
			if err != nil {
				return nil, err
			}
			for _, u := range others {
				c.members[u] = true
			}
		}
		return c, nil
	}
	s.mu.Lock()
	if old := s.convs[href]; old != nil {
		c.peer = old.peer
	}
	s.mu.Unlock()
	if c.peer == "" {
		if h := cv.Links.Href("participants"); h != "" {
			peer, err := s.readPeer(ctx, resolveHref(st.base, h))
			if err != nil {
				return nil, err
			}
			c.peer = peer
		}
	}
	return c, nil
}

// readPeer is the one remote participant of a 1:1 conversation, or ""
// for a conversation with several (participants_ref.md links them; a
// server may embed them instead).
func (s *session) readPeer(ctx context.Context, href string) (sfb.URI, error) {
	peers, err := s.readParticipants(ctx, href)
	if err != nil || len(peers) != 1 {
		return "", err
	}
	return peers[0], nil
}

// readParticipants reads the remote participants of a conversation.
func (s *session) readParticipants(ctx context.Context, href string) ([]sfb.URI, error) {
	var coll Resource
	if err := s.get(ctx, href, "get participants", &coll); err != nil {
		return nil, err
	}
	var peers []sfb.URI
	add := func(p sfb.Person) {
		if p.URI != "" && p.URI != s.self {
			peers = append(peers, p.URI)
		}
	}
	for _, l := range coll.Links["participant"] {
		p, err := s.resolveParticipant(l)
		if err != nil {
			return nil, err
		}
		add(p)
	}
	if len(peers) == 0 {
		if raw, ok := coll.Embedded["participant"]; ok {
			var parts []Participant
			if err := json.Unmarshal(raw, &parts); err != nil {
				var one Participant
				if json.Unmarshal(raw, &one) != nil {
					return nil, fmt.Errorf("decode embedded participants: %w", err)
				}
				parts = []Participant{one}
			}
			for _, part := range parts {
				if part.URI == "" {
					continue
				}
				p, err := s.rememberParticipant(part)
				if err != nil {
					return nil, err
				}
				add(p)
			}
		}
	}
	return peers, nil
}

// get reads a resource.
func (s *session) get(ctx context.Context, href, op string, out any) error {
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	defer cancel()
	_, err := s.c.doJSON(rctx, request{op: op, method: http.MethodGet, url: href}, out)
	return err
}
