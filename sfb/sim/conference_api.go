package sim

import (
	"context"
	"fmt"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Group is a conference as the control API shows it.
type Group struct {
	ThreadID string `json:"threadId"`
	// ConferenceID changes when the conversation is started again under
	// the same thread ID.
	ConferenceID string    `json:"conferenceId"`
	Subject      string    `json:"subject"`
	Participants []sfb.URI `json:"participants"`
}

// StartGroup starts a multi-party conversation from a user's native client
// with participants and subject; threadID empty picks one. The user's own
// UCWA applications are invited too (the user's other endpoints), as are
// the participants'. It returns the thread ID.
func (s *Server) StartGroup(ctx context.Context, from sfb.URI, participants []sfb.URI, subject, threadID string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	from = canonical(from)
	if len(subject) > 250 {
		return "", fmt.Errorf("start group: subject longer than 250 characters: %w", sfb.ErrUnsupported)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fu := s.users[from]
	if fu == nil {
		return "", fmt.Errorf("start group from %s: %w", from, sfb.ErrNotFound)
	}
	if fu.st != nil && fu.st.nativeSignedOut {
		return "", fmt.Errorf("start group from %s: %w", from, errNativeSignedOut)
	}
	var targets []*user
	for _, p := range participants {
		u := s.users[canonical(p)]
		if u == nil {
			return "", fmt.Errorf("start group with %s: %w", p, sfb.ErrNotFound)
		}
		if u.uri != from {
			targets = append(targets, u)
		}
	}
	if len(targets) == 0 {
		return "", fmt.Errorf("start group from %s: no participant: %w", from, sfb.ErrUnsupported)
	}
	c := s.newConference(threadID, subject)
	// The native client is in it, and the user's other endpoints are
	// invited into the conversation it started.
	s.inviteMember(c, from, fu, nil)
	for _, u := range targets {
		s.inviteMember(c, from, u, nil)
	}
	return c.threadID, nil
}

// AddGroupParticipant has by add uri to the conversation threadID from by's
// native client. A 1:1 conversation of by with that thread ID escalates.
func (s *Server) AddGroupParticipant(ctx context.Context, threadID string, by, uri sfb.URI) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	by, uri = canonical(by), canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	target := s.users[uri]
	if target == nil || s.users[by] == nil {
		return fmt.Errorf("add %s to %s: %w", uri, threadID, sfb.ErrNotFound)
	}
	c := s.liveConference(threadID)
	if c == nil {
		for _, d := range s.dialogs {
			if d.threadID == threadID && d.state == dialogConnected && (d.parties[0].uri == by || d.parties[1].uri == by) {
				c = s.escalate(d)
				break
			}
		}
	}
	if c == nil {
		return fmt.Errorf("add %s to %s: no such conversation: %w", uri, threadID, sfb.ErrNotFound)
	}
	if m := c.member(by); m == nil || !m.joined() {
		return fmt.Errorf("add %s to %s: %s is not in it: %w", uri, threadID, by, sfb.ErrNotFound)
	}
	s.inviteMember(c, by, target, nil)
	return nil
}

// LeaveGroup takes every endpoint of uri out of the conversation threadID.
func (s *Server) LeaveGroup(ctx context.Context, threadID string, uri sfb.URI) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.liveConference(threadID)
	if c == nil {
		return fmt.Errorf("leave %s: %w", threadID, sfb.ErrNotFound)
	}
	m := c.member(uri)
	if m == nil {
		return fmt.Errorf("leave %s: %s is not in it: %w", threadID, uri, sfb.ErrNotFound)
	}
	if !m.joined() {
		// An invitation nobody answered yet is withdrawn.
		s.declineMember(c, m, reasonCanceled)
		return nil
	}
	s.leaveMember(c, m)
	return nil
}

// SendGroupMessage sends msg into the conversation threadID from the
// native client of from.
func (s *Server) SendGroupMessage(ctx context.Context, threadID string, from sfb.URI, msg sfb.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	from = canonical(from)
	msg, err := normalizeMessage(msg)
	if err != nil {
		return fmt.Errorf("send message to %s: %w", threadID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.liveConference(threadID)
	if c == nil {
		return fmt.Errorf("send message to %s: %w", threadID, sfb.ErrNotFound)
	}
	m := c.member(from)
	if m == nil || !m.joined() || !m.native {
		return fmt.Errorf("send message to %s: the native client of %s is not in it: %w", threadID, from, sfb.ErrNotFound)
	}
	if err := s.confSend(c, m, nil, msg); err != nil {
		return fmt.Errorf("send message from %s to %s: %w", from, threadID, err)
	}
	return nil
}

// SetGroupTyping shows or hides from as typing in the conversation
// threadID.
func (s *Server) SetGroupTyping(ctx context.Context, threadID string, from sfb.URI, typing bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	from = canonical(from)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.liveConference(threadID)
	if c == nil {
		return fmt.Errorf("set typing in %s: %w", threadID, sfb.ErrNotFound)
	}
	m := c.member(from)
	if m == nil || !m.joined() {
		return fmt.Errorf("set typing in %s: %s is not in it: %w", threadID, from, sfb.ErrNotFound)
	}
	s.setConfTyping(c, m, typing)
	return nil
}

// SetGroupSubject changes the subject of the conversation threadID.
func (s *Server) SetGroupSubject(ctx context.Context, threadID, subject string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(subject) > 250 {
		return fmt.Errorf("set subject of %s: longer than 250 characters: %w", threadID, sfb.ErrUnsupported)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.liveConference(threadID)
	if c == nil {
		return fmt.Errorf("set subject of %s: %w", threadID, sfb.ErrNotFound)
	}
	s.setConfSubject(c, subject)
	return nil
}

// EndGroup ends the conference of threadID now, as idle expiry does.
func (s *Server) EndGroup(threadID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.liveConference(threadID)
	if c == nil {
		return fmt.Errorf("end %s: %w", threadID, sfb.ErrNotFound)
	}
	s.endConference(c, reasonIdle)
	return nil
}

// GroupInfo describes the live conference of threadID; ok is false when
// there is none.
func (s *Server) GroupInfo(threadID string) (g Group, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.liveConference(threadID)
	if c == nil {
		return Group{}, false
	}
	g = Group{ThreadID: c.threadID, ConferenceID: c.id, Subject: c.subject, Participants: []sfb.URI{}}
	for _, m := range c.members {
		if m.joined() {
			g.Participants = append(g.Participants, m.uri)
		}
	}
	return g, true
}

// GroupTyping reports whether uri is shown as typing in the conversation
// threadID.
func (s *Server) GroupTyping(threadID string, uri sfb.URI) bool {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.liveConference(threadID)
	if c == nil {
		return false
	}
	m := c.member(uri)
	return m != nil && m.typingUntil.After(s.now())
}
