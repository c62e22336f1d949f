package sim

import (
	"crypto/rand"
	"encoding/base64"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// app is one UCWA application of a user.
type app struct {
	id                                         string
	user                                       *user
	endpointID, userAgent, culture, instanceID string
	putGUID, meetingID                         string
	lastActive                                 time.Time
	available                                  bool
	formats                                    []string
	ec                                         eventChannel
	convs                                      map[string]*convView
	invs                                       map[string]*invitation
	subs                                       map[string]*presenceSub
	removed                                    bool
}

func (a *app) views() []*convView {
	out := make([]*convView, 0, len(a.convs))
	for _, v := range a.convs {
		out = append(out, v)
	}
	return out
}

// dialog is a 1:1 IM session between two users, whatever endpoints they
// use. Each side is bound to one UCWA application (a convView), to one SIP
// endpoint (a sipLeg, sipim.go) or to the user's simulated native client.
type dialog struct {
	key                           pairKey
	threadID, subject, importance string
	parties                       [2]party // [0] invited [1]
	state                         dialogState
	created, lastActivity         time.Time
	offeredAt                     time.Time
	connected                     chan struct{}
	// first is the message carried by the invitation; queued are further
	// messages of a native inviter sent before the invitation was accepted.
	first  *sfb.Message
	queued []sfb.Message
}

type dialogState int8

const (
	dialogOffering dialogState = iota
	dialogConnected
	dialogEnded
)

type party struct {
	uri  sfb.URI
	name string
	// view is the application taking part; sip the SIP endpoint; neither
	// for the native client.
	view *convView
	sip  *sipLeg
	// offers and sipOffers are the invitations to the target's
	// applications and SIP endpoints while the dialog is offered (the
	// server forks to all of them).
	offers      []*convView
	sipOffers   []*sipLeg
	typingUntil time.Time
}

// native reports whether the party takes part from its native client.
func (p *party) native() bool { return p.view == nil && p.sip == nil }

// offered reports whether an invitation to the party is still open.
func (p *party) offered() bool { return len(p.offers) > 0 || len(p.sipOffers) > 0 }

type pairKey struct{ a, b sfb.URI }

func keyOf(x, y sfb.URI) pairKey {
	if x > y {
		x, y = y, x
	}
	return pairKey{x, y}
}

func (d *dialog) sideOf(u sfb.URI) int {
	if d.parties[0].uri == u {
		return 0
	}
	return 1
}

// convView is a dialog as one application sees it: a conversation
// resource with its own ID.
type convView struct {
	id      string
	app     *app
	d       *dialog
	side    int
	inv     *invitation
	state   string // Incoming, Connecting, Connected, Disconnected
	nextMsg int
	msgs    map[int]*msgRecord
	// conf is the conference this view is of, nil for a 1:1 dialog.
	conf *conference
}

type invitation struct {
	id, direction, operationID, state string
	first                             *sfb.Message
	view                              *convView
	// from is who invited to a conference.
	from     sfb.URI
	fromName string
	// participant: addParticipant's participantInvitation of to.
	participant bool
	to          sfb.URI
}

type msgRecord struct {
	id          int
	direction   string
	operationID string
	msg         sfb.Message
	at          time.Time
	status      string
	// from is the sender of an incoming conference message.
	from     sfb.URI
	fromName string
}

var (
	reasonIdle     = reason{"Informational", "Timeout", "The conversation ended after being idle."}
	reasonResumed  = reason{"Informational", "Timeout", "The conversation was ended while the application was inactive."}
	reasonEnded    = reason{"Informational", "", "The remote participant left the conversation."}
	reasonAppGone  = reason{"Informational", "", "The application was removed."}
	reasonDeclined = reason{"RemoteFailure", "Declined", "The invitation was declined."}
	reasonNotFound = reason{"NotFound", "DestinationNotFound", "The targeted user doesn't exist."}
	reasonElse     = reason{"Conflict", "ConnectedElsewhere", "The invitation was accepted on another endpoint."}
	// reasonUnreachable: no endpoint of the target took the invitation
	// (ErrorSubcode reference: "The target is not reachable.").
	reasonUnreachable = reason{"RemoteFailure", "Unreachable", "The target is not reachable."}
	// reasonCanceled: the inviter's endpoint went away before the
	// invitation was answered (ErrorSubcode_ref.md: Canceled).
	reasonCanceled = reason{"RemoteFailure", "Canceled", "The invitation was canceled."}
)

func newThreadID() string {
	b := make([]byte, 22)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func (s *Server) newDialog(from, to *user, subject, threadID string) *dialog {
	k := keyOf(from.uri, to.uri)
	if old := s.dialogs[k]; old != nil {
		s.endDialog(old, reasonEnded, nil)
	}
	now := s.now()
	if threadID == "" {
		threadID = newThreadID()
	}
	d := &dialog{
		key: k, threadID: threadID, subject: subject, importance: "Normal",
		parties:   [2]party{{uri: from.uri, name: from.name}, {uri: to.uri, name: to.name}},
		created:   now,
		offeredAt: now, lastActivity: now,
		connected: make(chan struct{}),
	}
	s.dialogs[k] = d
	return d
}

func (s *Server) newView(a *app, d *dialog, side int, state string) *convView {
	v := &convView{id: randomHex(4), app: a, d: d, side: side, state: state, msgs: make(map[int]*msgRecord), nextMsg: 1}
	for a.convs[v.id] != nil {
		v.id = randomHex(4)
	}
	a.convs[v.id] = v
	return v
}

func (s *Server) newInvitation(v *convView, direction, opID string, first *sfb.Message) *invitation {
	inv := &invitation{id: randomHex(16), direction: direction, operationID: opID, state: "Connecting", first: first, view: v}
	v.inv = inv
	v.app.invs[inv.id] = inv
	return inv
}

// Event helpers: sender blocks as in the transcripts.

func (s *Server) emitComm(v *convView, body obj) {
	s.emit(v.app, "communication", v.app.base()+"/communication", prioHigh, body)
}

func (s *Server) emitConv(v *convView, body obj) {
	s.emit(v.app, "conversation", v.href(), prioHigh, body)
}

func (s *Server) emitInvitation(v *convView, typ string, status string, r *reason) {
	inv := v.inv
	var res obj
	if v.conf != nil {
		res = s.confInvitation(inv)
	} else {
		res = s.invitation(inv)
	}
	href := v.app.base() + "/communication/messagingInvitations/" + inv.id
	s.emitComm(v, withOutcome(ev("messagingInvitation", href, "", typ, res), status, r))
}

// withOutcome adds to a completed event its status and reason, those that
// are set.
func withOutcome(e obj, status string, r *reason) obj {
	if status != "" {
		e["status"] = status
	}
	if r != nil {
		e["reason"] = r.body()
	}
	return e
}

// invite starts the application's outgoing invitation to `to`: the dialog,
// the inviter's view and the events every invitation begins with.
func (s *Server) invite(a *app, to *user, first *sfb.Message, opID, subject, threadID string) (*dialog, *invitation) {
	d := s.newDialog(a.user, to, subject, threadID)
	d.first = first
	v := s.newView(a, d, 0, "Connecting")
	d.parties[0].view = v
	inv := s.newInvitation(v, "Outgoing", opID, first)
	s.emitInvitation(v, "started", "", nil)
	s.emitComm(v, ev("conversation", v.href(), "", "added", v.conversation(s)))
	return d, inv
}

// startFromApp is startMessaging: the application's user invites to.
func (s *Server) startFromApp(a *app, to *user, first *sfb.Message, opID, subject, threadID string) *invitation {
	d, inv := s.invite(a, to, first, opID, subject, threadID)
	v := inv.view
	s.emitConv(v, ev("localParticipant", v.participantHref(a.user.uri), a.user.name, "added", v.localParticipant()))
	s.emitConv(v, ev("messaging", v.href()+"/messaging", "", "updated", v.messaging()))
	s.offer(d)
	return inv
}

// nativeSend sends from a native client: in the active dialog, or by
// inviting.
func (s *Server) nativeSend(from, to sfb.URI, msg sfb.Message) error {
	d := s.dialogs[keyOf(from, to)]
	if d != nil && d.state != dialogEnded {
		side := d.sideOf(from)
		if d.state == dialogOffering {
			if side == 0 {
				d.queued = append(d.queued, msg)
				s.log.Debug().Stringer("from", from).Stringer("to", to).Str("text", msg.Text).
					Msg("message queued until the invitation is accepted")
				return nil
			}
			// The invited user answers from the native client: that
			// accepts the invitation there.
			s.connect(d, nil)
		}
		return s.deliver(d, side, msg, nil)
	}
	fu, tu := s.users[from], s.users[to]
	d = s.newDialog(fu, tu, "", "")
	m := msg
	d.first = &m
	s.log.Debug().Stringer("from", from).Stringer("to", to).Str("thread_id", d.threadID).Str("text", msg.Text).
		Msg("conversation offered with its first message")
	if r := s.offer(d); r != nil {
		// A native client shows the sender that the message was not
		// delivered.
		return deliveryError{*r}
	}
	return nil
}

// offer invites the target: to every available application, else to the
// native client, which accepts at once. Without either the invitation
// fails; it returns the reason when it failed at once.
func (s *Server) offer(d *dialog) *reason {
	target := s.users[d.parties[1].uri]
	if target.st != nil && target.st.rejectMessages {
		s.failDialog(d, reasonDeclined)
		return &reasonDeclined
	}
	var avail []*app
	if target.st != nil {
		for _, a := range target.st.apps {
			if a.available && a != d.parties[0].viewApp() {
				avail = append(avail, a)
			}
		}
	}
	regs := s.sipTargets(d)
	if len(avail) == 0 && len(regs) == 0 {
		if target.st != nil && target.st.nativeSignedOut {
			s.failDialog(d, reasonUnreachable)
			return &reasonUnreachable
		}
		s.connect(d, nil)
		return nil
	}
	from := d.parties[0]
	for _, a := range avail {
		v := s.newView(a, d, 1, "Incoming")
		d.parties[1].offers = append(d.parties[1].offers, v)
		s.newInvitation(v, "Incoming", "", d.first)
		s.emitInvitation(v, "started", "", nil)
		s.emitComm(v, ev("conversation", v.href(), "", "added", v.conversation(s)))
		s.emitConv(v, ev("localParticipant", v.participantHref(target.uri), target.name, "added", v.localParticipant()))
		s.emitConv(v, ev("participant", v.participantHref(from.uri), from.name, "added", nil))
	}
	s.sipOffer(d, regs)
	return nil
}

// dropOffer withdraws the invitation to one application of the target; the
// others stay offered.
func (p *party) dropOffer(v *convView) {
	for i, o := range p.offers {
		if o == v {
			p.offers = append(p.offers[:i:i], p.offers[i+1:]...)
			return
		}
	}
}

func (p party) viewApp() *app {
	if p.view == nil {
		return nil
	}
	return p.view.app
}

// connect completes the invitation: accepted by view (an offered
// application) or, when view is nil, by the target's native client.
func (s *Server) connect(d *dialog, accepted *convView) {
	d.state = dialogConnected
	close(d.connected)
	now := s.now()
	d.lastActivity = now
	t := &d.parties[1]
	for _, o := range t.offers {
		if o != accepted {
			s.closeView(o, "Failure", &reasonElse)
		}
	}
	t.offers = nil
	t.view = accepted
	s.sipCancelOffers(d, t.sip, sipCompletedElsewhere)
	for side := range d.parties {
		if d.parties[side].sip != nil {
			s.sipConnected(d, side)
		}
		v := d.parties[side].view
		if v == nil {
			continue
		}
		v.state = "Connected"
		v.inv.state = "Connected"
		peer := d.parties[1-side]
		me := d.parties[side]
		s.emitConv(v, ev("messaging", v.href()+"/messaging", "", "updated", v.messaging()))
		s.emitComm(v, ev("conversation", v.href(), "", "updated", v.conversation(s)))
		if side == 0 {
			s.emitConv(v, ev("participant", v.participantHref(peer.uri), peer.name, "added", nil))
		}
		pm := ev("participantMessaging", v.participantHref(peer.uri)+"/messaging", "", "added", nil)
		pm["in"] = titled(v.participantHref(peer.uri), peer.name)
		pm["in"].(obj)["rel"] = "participant"
		s.emitConv(v, pm)
		lm := ev("participantMessaging", v.participantHref(me.uri)+"/messaging", "", "added", v.participantMessaging(me))
		lm["in"] = obj{"rel": "localParticipant", "href": v.participantHref(me.uri), "title": me.name}
		s.emitConv(v, lm)
		s.emitInvitation(v, "completed", "Success", nil)
	}
	if d.first != nil {
		// ReceiveAnIM.md step 16: once accepted, the invitation's first
		// message comes again as the conversation's first message event.
		if accepted != nil {
			s.emitIncoming(accepted, *d.first)
		}
		s.record(d, 0, *d.first)
	}
	queued := d.queued
	d.queued = nil
	for _, m := range queued {
		_ = s.deliver(d, 0, m, nil)
	}
}

// deliveryError is a delivery that failed (the RejectMessages fault, no
// endpoint of the target); r is the reason the sender's message event or
// invitation completes with.
type deliveryError struct{ r reason }

func (e deliveryError) Error() string { return "delivery failed: " + e.r.message }

func (e deliveryError) Unwrap() error { return sfb.ErrDeliveryFailed }

// deliver carries a message of side fromSide to the other side. done, when
// not nil, learns the outcome of a delivery to a SIP endpoint, which
// completes later (deliver itself returns nil then), and is called at once
// for any other delivery that did not fail.
func (s *Server) deliver(d *dialog, fromSide int, msg sfb.Message, done func(error)) error {
	d.lastActivity = s.now()
	if !d.parties[fromSide].typingUntil.IsZero() {
		s.setTyping(d, fromSide, false)
	}
	to := 1 - fromSide
	tu := s.users[d.parties[to].uri]
	if tu.st != nil && tu.st.rejectMessages {
		return deliveryError{reason{"RemoteFailure", "NotAcceptable", "The recipient did not accept the message."}}
	}
	if v := d.parties[to].view; v != nil {
		s.emitIncoming(v, msg)
	}
	if l := d.parties[to].sip; l != nil {
		// Received once the endpoint took it.
		s.sipSendMessage(l, msg, func(err error) {
			if err == nil {
				s.record(d, fromSide, msg)
			}
			if done != nil {
				done(err)
			}
		})
		return nil
	}
	if done != nil {
		done(nil)
	}
	s.record(d, fromSide, msg)
	return nil
}

// emitIncoming shows msg to an application as an incoming message event:
// one "completed" event with status Success, as in ReceiveAnIM.md.
func (s *Server) emitIncoming(v *convView, msg sfb.Message) {
	m := &msgRecord{direction: "Incoming", msg: msg, at: s.now(), status: "Success"}
	e := ev("message", v.addMessage(m), "", "completed", v.message(s, m))
	e["status"] = "Success"
	s.emitConv(v, e)
}

// addMessage numbers m as the view's next message resource and returns
// its href.
func (v *convView) addMessage(m *msgRecord) string {
	m.id = v.nextMsg
	v.nextMsg++
	v.msgs[m.id] = m
	return v.messageHref(m.id)
}

// record notes a delivery for Received and lets the colleague answer.
func (s *Server) record(d *dialog, fromSide int, msg sfb.Message) {
	from, to := d.parties[fromSide].uri, d.parties[1-fromSide].uri
	s.log.Debug().Stringer("from", from).Stringer("to", to).Str("thread_id", d.threadID).Str("text", msg.Text).
		Bool("to_application", d.parties[1-fromSide].view != nil).Msg("message delivered")
	u := s.users[to]
	st := u.state()
	st.received = append(st.received, Received{From: from, Message: msg, Time: s.now(), ThreadID: d.threadID})
	if n := len(st.received) - s.opts.ReceivedLimit; n > 0 {
		st.received = append(st.received[:0:0], st.received[n:]...)
	}
	if to == s.opts.Colleague && from != to && d.parties[1-fromSide].native() {
		s.colleagueReply(from, msg)
	}
}

// setTyping shows or hides side as typing to the other side. The peer's
// application sees typingParticipants added/deleted events, only on change.
func (s *Server) setTyping(d *dialog, side int, on bool) {
	p := &d.parties[side]
	shown := !p.typingUntil.IsZero()
	if on {
		p.typingUntil = s.now().Add(s.opts.TypingTimeout)
	} else {
		p.typingUntil = time.Time{}
	}
	if shown == on {
		return
	}
	if l := d.parties[1-side].sip; l != nil {
		s.sipSendTyping(l, on)
	}
	v := d.parties[1-side].view
	if v == nil || v.state != "Connected" {
		return
	}
	typ := "deleted"
	if on {
		typ = "added"
	}
	e := ev("participant", v.participantHref(p.uri), p.name, typ, nil)
	e["in"] = obj{"rel": "typingParticipants", "href": v.href() + "/messaging/typingParticipants"}
	s.emitConv(v, e)
}

// closeView ends one application's view of a dialog: its invitation
// completes (when still open), messaging disconnects, the conversation is
// deleted.
func (s *Server) closeView(v *convView, invStatus string, r *reason) {
	if v.inv != nil && v.inv.state == "Connecting" {
		v.inv.state = "Failed"
		s.emitInvitation(v, "completed", invStatus, r)
	}
	v.state = "Disconnected"
	s.emitConv(v, ev("messaging", v.href()+"/messaging", "", "updated", v.messaging()))
	e := ev("conversation", v.href(), "", "deleted", nil)
	if r != nil && invStatus == "" {
		e["reason"] = r.body()
	}
	s.emitComm(v, e)
	delete(v.app.convs, v.id)
	if v.inv != nil {
		delete(v.app.invs, v.inv.id)
	}
}

// endDialog ends a dialog for both sides; skip is a view that gets no
// events (its application is being reset).
func (s *Server) endDialog(d *dialog, r reason, skip *convView) {
	if d.state == dialogEnded {
		return
	}
	offering := d.state == dialogOffering
	d.state = dialogEnded
	if len(d.queued) > 0 {
		// The inviter's native client would show them as not delivered;
		// nothing tells the control API's caller.
		s.log.Warn().Stringer("from", d.parties[0].uri).Stringer("to", d.parties[1].uri).Int("messages", len(d.queued)).
			Str("reason", r.subcode).Msg("conversation ended before its invitation was accepted; messages held for it are dropped")
	}
	s.sipEndDialog(d, r)
	for side := range d.parties {
		p := &d.parties[side]
		p.typingUntil = time.Time{}
		for _, v := range append(p.offers, p.view) {
			if v == nil {
				continue
			}
			if v == skip {
				delete(v.app.convs, v.id)
				if v.inv != nil {
					delete(v.app.invs, v.inv.id)
				}
				continue
			}
			status := ""
			if offering {
				status = "Failure"
			}
			rr := r
			s.closeView(v, status, &rr)
		}
		p.offers, p.view = nil, nil
	}
	if s.dialogs[d.key] == d {
		delete(s.dialogs, d.key)
	}
}

// failDialog fails an offered dialog: the inviter's invitation completes
// with Failure and r.
func (s *Server) failDialog(d *dialog, r reason) {
	d.state = dialogEnded
	s.sipEndDialog(d, r)
	for side := range d.parties {
		p := &d.parties[side]
		for _, v := range append(p.offers, p.view) {
			if v != nil {
				rr := r
				s.closeView(v, "Failure", &rr)
			}
		}
		p.offers, p.view = nil, nil
	}
	if s.dialogs[d.key] == d {
		delete(s.dialogs, d.key)
	}
}

// removeApp deletes an application: its dialogs end, its pending GET is
// answered with g, and later requests get g.
func (s *Server) removeApp(a *app, g goneApp) {
	if a.removed {
		return
	}
	for _, v := range a.views() {
		if v.conf != nil {
			s.leaveView(v, nil, true)
			continue
		}
		d := v.d
		p := &d.parties[v.side]
		if d.state == dialogOffering && v.side == 1 {
			// Only this fork of the invitation goes away.
			p.dropOffer(v)
			delete(a.convs, v.id)
			if !p.offered() {
				s.failDialog(d, reasonUnreachable)
			}
			continue
		}
		s.endDialog(d, reasonAppGone, v)
	}
	s.appGone(a)
	s.dropAppMeetings(a)
	a.removed = true
	a.ec.end(waitGone, g)
	g.at = s.now()
	s.gone[a.id] = g
	delete(s.apps, a.id)
	st := a.user.state()
	for i, x := range st.apps {
		if x == a {
			st.apps = append(st.apps[:i:i], st.apps[i+1:]...)
			break
		}
	}
}
