package sim

import (
	"errors"
	"slices"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// conference is a multi-party IM conversation (an IM conference on the
// MCU): started with several people, or escalated from a 1:1 dialog by
// addParticipant (addParticipant_ref.md: "first escalate the conversation
// from two-party to conferencing, then invite"). It ends when its last
// participant leaves; a conversation continued under the same thread ID
// afterwards is a new conference with new IDs.
type conference struct {
	id                            string
	threadID, subject, importance string
	members                       []*member
	created, lastActivity         time.Time
	ended                         bool
	// placeholder is the ended dialog every view of the conference points
	// at, so that 1:1 code reaching a conference view finds a dialog that
	// is over instead of nil.
	placeholder *dialog
}

// member is one user in a conference, with every endpoint of theirs: the
// native client and any number of UCWA applications can be in it at once.
type member struct {
	uri    sfb.URI
	name   string
	native bool
	views  []*convView // joined applications
	offers []*convView // applications invited, not answered yet
	// invitedBy is the application whose addParticipant invited the
	// member; its participantInvitation completes with the answer.
	invitedBy   *invitation
	invitedAt   time.Time
	typingUntil time.Time
	left        bool
}

func (m *member) joined() bool { return !m.left && (m.native || len(m.views) > 0) }

func (m *member) party() party { return party{uri: m.uri, name: m.name} }

func (c *conference) member(u sfb.URI) *member {
	for _, m := range c.members {
		if m.uri == u {
			return m
		}
	}
	return nil
}

func (c *conference) joinedCount() int {
	n := 0
	for _, m := range c.members {
		if m.joined() {
			n++
		}
	}
	return n
}

// liveConference is the conference of threadID that has not ended.
func (s *Server) liveConference(threadID string) *conference {
	c := s.confs[threadID]
	if c == nil || c.ended {
		return nil
	}
	return c
}

func (s *Server) newConference(threadID, subject string) *conference {
	if threadID == "" {
		threadID = randomHex(16)
	}
	if old := s.liveConference(threadID); old != nil {
		s.endConference(old, reasonEnded)
	}
	now := s.now()
	c := &conference{
		id: randomHex(8), threadID: threadID, subject: subject, importance: "Normal",
		created: now, lastActivity: now,
		placeholder: &dialog{state: dialogEnded, threadID: threadID, subject: subject, importance: "Normal", created: now, lastActivity: now},
	}
	s.confs[threadID] = c
	s.log.Debug().Str("thread_id", threadID).Str("conference", c.id).Msg("conference started")
	return c
}

func (s *Server) confView(a *app, c *conference, state string) *convView {
	v := s.newView(a, c.placeholder, 0, state)
	v.conf = c
	return v
}

// escalate turns a connected 1:1 dialog into a conference: both parties
// stay in it with the endpoints they used, their conversation resources
// keep their IDs and are updated.
func (s *Server) escalate(d *dialog) *conference {
	c := s.newConference(d.threadID, d.subject)
	c.created = d.created
	for side := range d.parties {
		p := d.parties[side]
		m := &member{uri: p.uri, name: p.name, native: p.native()}
		if v := p.view; v != nil {
			v.conf = c
			v.d = c.placeholder
			m.views = append(m.views, v)
		}
		c.members = append(c.members, m)
	}
	// Conferences are not simulated over SIP: an endpoint in the 1:1
	// dialog is left out of the conference (BYE).
	s.sipEndDialog(d, reasonEnded)
	d.state = dialogEnded
	if s.dialogs[d.key] == d {
		delete(s.dialogs, d.key)
	}
	for _, m := range c.members {
		for _, v := range m.views {
			s.emitComm(v, ev("conversation", v.href(), "", "updated", s.confConversation(v)))
		}
	}
	return c
}

// inviteMember invites u into c: every available application of u gets a
// messagingInvitation, and u's native client joins at once when signed in.
// by is the application whose addParticipant asked, nil otherwise.
func (s *Server) inviteMember(c *conference, inviter sfb.URI, u *user, by *invitation) *reason {
	m := c.member(u.uri)
	if m != nil && m.joined() {
		if by != nil {
			s.completeParticipantInvitation(by, "Success", nil)
		}
		return nil
	}
	if m == nil {
		m = &member{uri: u.uri, name: u.name}
		c.members = append(c.members, m)
	}
	m.left = false
	m.invitedBy = by
	m.invitedAt = s.now()
	st := u.state()
	if st.rejectMessages {
		s.declineMember(c, m, reasonDeclined)
		return &reasonDeclined
	}
	var avail []*app
	for _, a := range st.apps {
		inIt := func(v *convView) bool { return v.app == a }
		if a.available && !slices.ContainsFunc(m.views, inIt) && !slices.ContainsFunc(m.offers, inIt) {
			avail = append(avail, a)
		}
	}
	if len(avail) == 0 && st.nativeSignedOut {
		s.declineMember(c, m, reasonUnreachable)
		return &reasonUnreachable
	}
	from := c.member(inviter)
	for _, a := range avail {
		v := s.confView(a, c, "Incoming")
		m.offers = append(m.offers, v)
		inv := s.newInvitation(v, "Incoming", "", nil)
		inv.from = inviter
		if from != nil {
			inv.fromName = from.name
		}
		// The conversation first: it tells the application that the
		// invitation is to a conference (its onlineMeeting link).
		s.emitComm(v, ev("conversation", v.href(), "", "added", s.confConversation(v)))
		s.emitInvitation(v, "started", "", nil)
		s.emitConv(v, ev("localParticipant", v.participantHref(u.uri), u.name, "added", v.localParticipant()))
	}
	if !st.nativeSignedOut {
		m.native = true
		s.memberJoined(c, m)
	}
	return nil
}

// declineMember ends the invitation of m: the inviting application's
// participantInvitation fails with r.
func (s *Server) declineMember(c *conference, m *member, r reason) {
	for _, v := range m.offers {
		s.closeView(v, "Failure", &r)
	}
	m.offers = nil
	m.left = true
	if m.invitedBy != nil {
		s.completeParticipantInvitation(m.invitedBy, "Failure", &r)
		m.invitedBy = nil
	}
	s.log.Debug().Str("thread_id", c.threadID).Stringer("user", m.uri).Str("reason", r.subcode).Msg("conference invitation not accepted")
}

// memberJoined announces m's arrival to everyone else in c, once.
func (s *Server) memberJoined(c *conference, m *member) {
	c.lastActivity = s.now()
	for _, o := range c.members {
		if o == m {
			continue
		}
		for _, v := range o.views {
			s.emitParticipantAdded(v, m)
			s.emitConv(v, ev("conversation", v.href(), "", "updated", s.confConversation(v)))
		}
	}
	if m.invitedBy != nil {
		s.completeParticipantInvitation(m.invitedBy, "Success", nil)
		m.invitedBy = nil
	}
	s.log.Debug().Str("thread_id", c.threadID).Stringer("user", m.uri).Msg("participant joined conference")
}

func (s *Server) emitParticipantAdded(v *convView, m *member) {
	s.emitConv(v, ev("participant", v.participantHref(m.uri), m.name, "added", v.participant(m.party())))
}

// acceptConference is an application accepting its invitation to c.
func (s *Server) acceptConference(v *convView) {
	m := v.conf.member(v.app.user.uri)
	m.offers = slices.DeleteFunc(m.offers, func(x *convView) bool { return x == v })
	s.joinConference(v, m)
}

// rejoinConference is startMessaging with the thread ID of a live
// conference whose participant to is (startMessaging_ref.md: the thread
// ID "can be used to continue an existing conversation"): the application
// joins it instead of starting a 1:1 conversation.
func (s *Server) rejoinConference(a *app, c *conference, to *member, opID string) *invitation {
	v := s.confView(a, c, "Connecting")
	inv := s.newInvitation(v, "Outgoing", opID, nil)
	inv.from, inv.fromName, inv.to = a.user.uri, a.user.name, to.uri
	s.emitInvitation(v, "started", "", nil)
	s.emitComm(v, ev("conversation", v.href(), "", "added", s.confConversation(v)))
	s.emitConv(v, ev("localParticipant", v.participantHref(a.user.uri), a.user.name, "added", v.localParticipant()))
	m := c.member(a.user.uri)
	if m == nil {
		m = &member{uri: a.user.uri, name: a.user.name}
		c.members = append(c.members, m)
	}
	m.left = false
	s.joinConference(v, m)
	return inv
}

// joinConference puts the application's view v into c as an endpoint of
// m.
func (s *Server) joinConference(v *convView, m *member) {
	c := v.conf
	wasJoined := m.joined()
	m.views = append(m.views, v)
	v.state = "Connected"
	v.inv.state = "Connected"
	s.emitConv(v, ev("messaging", v.href()+"/messaging", "", "updated", v.messaging()))
	s.emitComm(v, ev("conversation", v.href(), "", "updated", s.confConversation(v)))
	for _, o := range c.members {
		if o != m && o.joined() {
			s.emitParticipantAdded(v, o)
		}
	}
	s.emitInvitation(v, "completed", "Success", nil)
	if !wasJoined {
		s.memberJoined(c, m)
	}
}

// leaveView takes one application out of c (it left, or went away).
func (s *Server) leaveView(v *convView, r *reason, quiet bool) {
	c := v.conf
	m := c.member(v.app.user.uri)
	if m == nil {
		return
	}
	wasJoined := m.joined()
	m.views = slices.DeleteFunc(m.views, func(x *convView) bool { return x == v })
	m.offers = slices.DeleteFunc(m.offers, func(x *convView) bool { return x == v })
	if quiet {
		delete(v.app.convs, v.id)
		if v.inv != nil {
			delete(v.app.invs, v.inv.id)
		}
	} else {
		s.closeView(v, "", r)
	}
	if wasJoined && !m.joined() {
		s.memberLeft(c, m)
	}
}

// memberLeft announces that m is no longer in c and ends c when nobody is
// left.
func (s *Server) memberLeft(c *conference, m *member) {
	m.left = true
	m.native = false
	m.typingUntil = time.Time{}
	for _, o := range c.members {
		if o == m {
			continue
		}
		for _, v := range o.views {
			s.emitConv(v, ev("participant", v.participantHref(m.uri), m.name, "deleted", nil))
			s.emitConv(v, ev("conversation", v.href(), "", "updated", s.confConversation(v)))
		}
	}
	s.log.Debug().Str("thread_id", c.threadID).Stringer("user", m.uri).Msg("participant left conference")
	if c.joinedCount() == 0 {
		s.endConference(c, reasonEnded)
	}
}

// leaveMember takes every endpoint of u out of c.
func (s *Server) leaveMember(c *conference, m *member) {
	wasJoined := m.joined()
	for _, v := range append(append([]*convView(nil), m.views...), m.offers...) {
		s.closeView(v, "", &reasonEnded)
	}
	m.views, m.offers = nil, nil
	if wasJoined {
		s.memberLeft(c, m)
	}
}

// endConference ends c for everyone: every application's conversation is
// deleted with r.
func (s *Server) endConference(c *conference, r reason) {
	if c.ended {
		return
	}
	c.ended = true
	for _, m := range c.members {
		for _, v := range append(append([]*convView(nil), m.views...), m.offers...) {
			rr := r
			s.closeView(v, "", &rr)
		}
		if m.invitedBy != nil {
			s.completeParticipantInvitation(m.invitedBy, "Failure", &reasonCanceled)
			m.invitedBy = nil
		}
		m.views, m.offers, m.native = nil, nil, false
	}
	if s.confs[c.threadID] == c {
		delete(s.confs, c.threadID)
	}
	s.log.Debug().Str("thread_id", c.threadID).Str("conference", c.id).Str("reason", r.subcode).Msg("conference ended")
}

// confSend delivers msg from member m (from the application view, or from
// the native client when view is nil) to every other endpoint in c: the
// other members' applications and native clients, and m's own other
// applications, which see it as a message of the local participant.
func (s *Server) confSend(c *conference, m *member, view *convView, msg sfb.Message) error {
	c.lastActivity = s.now()
	if !m.typingUntil.IsZero() {
		s.setConfTyping(c, m, false)
	}
	delivered := 0
	for _, o := range c.members {
		if !o.joined() {
			continue
		}
		if o != m {
			if st := s.users[o.uri].state(); st.rejectMessages {
				continue
			}
			delivered++
		}
		for _, v := range o.views {
			if v != view && v.state == "Connected" {
				s.emitConfIncoming(v, m, msg)
			}
		}
		if o != m {
			s.recordConf(c, m.uri, o.uri, msg)
		}
	}
	if delivered == 0 {
		return deliveryError{reason{"RemoteFailure", "NotAcceptable", "No other participant received the message."}}
	}
	return nil
}

func (s *Server) emitConfIncoming(v *convView, from *member, msg sfb.Message) {
	rec := &msgRecord{direction: "Incoming", msg: msg, at: s.now(), status: "Success", from: from.uri, fromName: from.name}
	e := ev("message", v.addMessage(rec), "", "completed", v.message(s, rec))
	e["status"] = "Success"
	s.emitConv(v, e)
}

func (s *Server) recordConf(c *conference, from, to sfb.URI, msg sfb.Message) {
	st := s.users[to].state()
	st.received = append(st.received, Received{From: from, Message: msg, Time: s.now(), ThreadID: c.threadID, Group: true})
	if n := len(st.received) - s.opts.ReceivedLimit; n > 0 {
		st.received = append(st.received[:0:0], st.received[n:]...)
	}
}

// setConfTyping shows or hides m as typing to the other members'
// applications, only on change.
func (s *Server) setConfTyping(c *conference, m *member, on bool) {
	shown := !m.typingUntil.IsZero()
	if on {
		m.typingUntil = s.now().Add(s.opts.TypingTimeout)
	} else {
		m.typingUntil = time.Time{}
	}
	if shown == on {
		return
	}
	typ := "deleted"
	if on {
		typ = "added"
	}
	for _, o := range c.members {
		if o == m {
			continue
		}
		for _, v := range o.views {
			if v.state != "Connected" {
				continue
			}
			e := ev("participant", v.participantHref(m.uri), m.name, typ, nil)
			e["in"] = obj{"rel": "typingParticipants", "href": v.href() + "/messaging/typingParticipants"}
			s.emitConv(v, e)
		}
	}
}

func (s *Server) setConfSubject(c *conference, subject string) {
	c.subject = subject
	c.placeholder.subject = subject
	for _, m := range c.members {
		for _, v := range m.views {
			s.emitComm(v, ev("conversation", v.href(), "", "updated", s.confConversation(v)))
		}
	}
}

// sweepConferences expires unanswered invitations, idle conferences and
// typing.
func (s *Server) sweepConferences(now time.Time) {
	for _, c := range s.confs {
		if now.Sub(c.lastActivity) >= s.opts.ConversationIdleTimeout {
			s.endConference(c, reasonIdle)
			continue
		}
		for _, m := range c.members {
			if !m.joined() && !m.left && len(m.offers) > 0 && now.Sub(m.invitedAt) >= s.opts.InvitationTimeout {
				s.declineMember(c, m, reason{"Timeout", "", "The invitation was not answered in time."})
			}
			if t := m.typingUntil; !t.IsZero() && !t.After(now) {
				s.setConfTyping(c, m, false)
			}
		}
	}
}

// startParticipantInvitation starts addParticipant's outgoing invitation
// (participantInvitation_ref.md) of to.
func (s *Server) startParticipantInvitation(v *convView, to sfb.URI, opID string) *invitation {
	inv := &invitation{id: randomHex(16), direction: "Outgoing", operationID: opID, state: "Connecting", view: v, participant: true, to: to}
	v.app.invs[inv.id] = inv
	s.emitComm(v, s.participantInvitationEvent(inv, "started", "", nil))
	return inv
}

func (s *Server) completeParticipantInvitation(inv *invitation, status string, r *reason) {
	if inv.state != "Connecting" {
		return
	}
	inv.state = "Connected"
	if status != "Success" {
		inv.state = "Failed"
	}
	if inv.view.app.removed {
		return
	}
	s.emitComm(inv.view, s.participantInvitationEvent(inv, "completed", status, r))
}

func (s *Server) participantInvitationEvent(inv *invitation, typ, status string, r *reason) obj {
	href := inv.view.app.base() + "/communication/participantInvitations/" + inv.id
	return withOutcome(ev("participantInvitation", href, "", typ, s.participantInvitation(inv)), status, r)
}

// userOf is the user at u, a placeholder for an address nobody has.
func (s *Server) userOf(u sfb.URI) *user {
	if x := s.users[u]; x != nil {
		return x
	}
	return &user{uri: u, name: u.Address()}
}

// addParticipantFromApp is addParticipant on the application's
// conversation v: a 1:1 conversation escalates first.
func (s *Server) addParticipantFromApp(v *convView, to sfb.URI, opID string) (*invitation, error) {
	if !v.messagingConnected() {
		return nil, errNotConnected
	}
	if v.conf == nil {
		s.escalate(v.d)
	}
	c := v.conf
	inv := s.startParticipantInvitation(v, to, opID)
	target := s.users[to]
	if target == nil {
		s.completeParticipantInvitation(inv, "Failure", &reasonNotFound)
		return inv, nil
	}
	s.inviteMember(c, v.app.user.uri, target, inv)
	return inv, nil
}

var errNotConnected = errors.New("messaging is not connected")
