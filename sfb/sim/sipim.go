package sim

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/im"
)

// Instant messaging over SIP, through the conversation core: an SIP
// endpoint's INVITE makes a dialog offered like a UCWA application's
// invitation (forked to the target's applications and SIP endpoints, or
// taken by its native client), and what an endpoint sends (MESSAGE, INFO
// typing, BYE, CANCEL) acts on the dialog as the UCWA requests do.
//
// The server stands between each SIP endpoint and the other side as a
// back-to-back user agent that keeps the Call-ID and the tags end to end,
// so that an endpoint sees what an SfB Front End, a proxy, passes on.

// sipLeg is one SIP endpoint's part in a dialog (under Server.mu).
type sipLeg struct {
	d    *dialog
	side int
	conn *sipConn
	// reg is the endpoint's registration; nil for an inviter that did not
	// register (a trusted application may invite without).
	reg    *sipReg
	callID string
	// tag is the endpoint's tag, peerTag the other side's as the endpoint
	// sees it.
	tag, peerTag string
	epid         string
	// target is where requests to the endpoint go: its Contact.
	target string
	// accept are the content types of the endpoint's SDP.
	accept []string
	// cseq is the last CSeq of the server's requests on the leg.
	cseq uint32
	// invite is the endpoint's INVITE while unanswered (the inviter's
	// leg of an offered dialog).
	invite *sip.Request
	// cancel is the CANCEL of the server's INVITE to the endpoint while
	// that is unanswered (a fork of an offered dialog), made with the
	// INVITE: the INVITE itself is being sent meanwhile.
	cancel *sip.Request
	// firstDone: the endpoint took the first message from the INVITE's
	// Ms-Text-Format (its 200 says Supported: ms-text-format).
	firstDone bool
	// requests holds the server's requests to the endpoint (and the 200
	// that must precede them), sent one transaction after the other;
	// replies the answers to the endpoint's requests, which do not wait
	// behind them.
	requests, replies sipQueue
	// gone: the endpoint left (BYE, CANCEL, unregistered, connection
	// lost); nothing more is sent to it.
	gone bool
}

// sipOut is a response, or a request whose outcome goes to done.
type sipOut struct {
	resp *sip.Response
	// inOrder: the response goes with the requests (the 200 to an INVITE,
	// before anything sent in the dialog).
	inOrder bool
	req     *sip.Request
	// ack is sent without waiting for anything.
	ack  bool
	done func(*sip.Response, error)
}

// sipQueue is what waits to be sent to an endpoint, in order; one
// goroutine sends while sending.
type sipQueue struct {
	items   []sipOut
	sending bool
}

type legKey struct{ callID, tag string }

// Reasons of a CANCEL (RFC 3326), as SfB sends to the other forks.
const sipCompletedElsewhere = `SIP;cause=200;text="Call completed elsewhere"`

// serveSIPIM handles the requests of instant messaging from an
// authenticated endpoint of from.
func (s *Server) serveSIPIM(sc *sipConn, req *sip.Request, from *user) {
	fromTag, _ := req.From().Params.Get("tag")
	callID := ""
	if h := req.CallID(); h != nil {
		callID = h.Value()
	}
	if req.Method == sip.INVITE && !req.To().Params.Has("tag") {
		s.sipInvite(sc, req, from, callID, fromTag)
		return
	}
	s.mu.Lock()
	l := s.sip.legs[legKey{callID, fromTag}]
	if l != nil && l.conn != sc {
		l = nil
	}
	switch {
	case req.Method == sip.ACK:
		s.mu.Unlock()
	case l == nil:
		s.mu.Unlock()
		sc.respond(req, sip.StatusCallTransactionDoesNotExists, sipReason(481), nil, sipDiagnostics(s.opts.SIP.FQDN, 1004, "Route set is no longer valid"))
	case req.Method == sip.CANCEL:
		if l.invite == nil || req.CSeq() == nil || l.invite.CSeq().SeqNo != req.CSeq().SeqNo {
			s.mu.Unlock()
			sc.respond(req, sip.StatusCallTransactionDoesNotExists, sipReason(481), nil)
			return
		}
		// Queued: the 200 goes before the INVITE's 487.
		s.sipPush(l, sipOut{resp: sipResponse(req, sip.StatusOK, "OK", nil)})
		s.endDialog(l.d, reasonCanceled, nil)
		s.mu.Unlock()
	case req.Method == sip.BYE:
		l.gone = true
		s.endDialog(l.d, reasonEnded, nil)
		s.mu.Unlock()
		sc.respond(req, sip.StatusOK, "OK", nil)
	case req.Method == sip.INVITE:
		// A re-INVITE of an established dialog: the session stays as it is.
		s.mu.Unlock()
		sc.respond(req, sip.StatusOK, "OK", s.sipSDP(from.uri), sip.NewHeader("Content-Type", im.TypeSDP))
	case req.Method == sip.MESSAGE || req.Method == sip.INFO:
		s.sipInDialog(l, req)
		s.mu.Unlock()
	default:
		s.mu.Unlock()
		sc.respond(req, sip.StatusNotImplemented, sipReason(501), nil)
	}
}

// sipInvite starts a dialog from an endpoint's INVITE.
func (s *Server) sipInvite(sc *sipConn, req *sip.Request, from *user, callID, fromTag string) {
	fqdn := s.opts.SIP.FQDN
	to, err := sipToURI(req)
	if err != nil || fromTag == "" || callID == "" {
		sc.respond(req, sip.StatusBadRequest, sipReason(400), nil, sipDiagnostics(fqdn, 5004, "Failed parsing the incoming request: To, From tag or Call-ID"))
		return
	}
	sdp, err := im.ParseSDP(req.Body())
	if err != nil {
		// Calls, application sharing and file transfers are not
		// simulated.
		sc.respond(req, sip.StatusNotAcceptableHere, sipReason(488), nil, sipDiagnostics(fqdn, 4013, "Content-type does not match the expected content-type: only instant messaging is simulated"))
		return
	}
	var first *sfb.Message
	if v := sipHeader(req)(im.HeaderTextFormat); v != "" {
		tf, err := im.ParseTextFormat(v)
		var m sfb.Message
		if err == nil {
			m, err = tf.Message()
		}
		if err == nil {
			m, err = normalizeMessage(m)
		}
		if err != nil {
			sc.log.Debug().Err(err).Msg("INVITE with an unreadable Ms-Text-Format")
			sc.respond(req, sip.StatusBadRequest, sipReason(400), nil, sipDiagnostics(fqdn, 5004, "Failed parsing the incoming request: Ms-Text-Format"))
			return
		}
		first = &m
	}
	epid, _ := req.From().Params.Get("epid")
	threadID := sipHeader(req)(im.HeaderConversationID)

	s.mu.Lock()
	target := s.users[to]
	_, live := s.sip.conns[sc]
	if target == nil || target == from || !live {
		s.mu.Unlock()
		switch {
		case target == nil:
			sc.respond(req, sip.StatusNotFound, sipReason(404), nil, sipDiagnostics(fqdn, 4005, "Destination URI either not enabled for SIP or does not exist"))
		case target == from:
			sc.respond(req, sip.StatusNotAcceptableHere, sipReason(488), nil)
		}
		return
	}
	defer s.mu.Unlock()
	d := s.newDialog(from, target, sipHeader(req)("Subject"), threadID)
	d.first = first
	l := &sipLeg{
		d: d, side: 0, conn: sc, reg: s.regOn(sc, from, req), callID: callID, tag: fromTag, peerTag: randomHex(5),
		epid: epid, target: sipContactAddress(sipHeader(req)("Contact")), accept: sdp.AcceptTypes, invite: req,
	}
	if l.target == "" {
		l.target = string(from.uri)
	}
	d.parties[0].sip = l
	s.sip.legs[legKey{callID, fromTag}] = l
	sc.legs[l] = struct{}{}
	sc.log.Debug().Stringer("from", from.uri).Stringer("to", to).Str("call_id", callID).Bool("first_message", first != nil).Msg("SIP INVITE offered")
	s.offer(d)
}

// regOn is the registration of u on sc that sent req (by its instance or
// epid), else any of u's on sc, else nil.
func (s *Server) regOn(sc *sipConn, u *user, req *sip.Request) *sipReg {
	if u.st == nil {
		return nil
	}
	instance := sipInstance(sipHeader(req)("Contact"))
	if instance == "" {
		instance, _ = req.From().Params.Get("epid")
	}
	var any *sipReg
	for _, r := range u.st.sipRegs {
		if r.conn != sc {
			continue
		}
		if strings.EqualFold(r.instance, instance) {
			return r
		}
		any = r
	}
	return any
}

// sipInDialog handles MESSAGE and INFO on an established leg (under s.mu).
func (s *Server) sipInDialog(l *sipLeg, req *sip.Request) {
	fqdn := s.opts.SIP.FQDN
	d := l.d
	ctv := sipHeader(req)("Content-Type")
	ct, err := im.ParseContentType(ctv)
	if err != nil {
		s.sipPush(l, sipOut{resp: sipResponse(req, sip.StatusBadRequest, sipReason(400), nil, sipDiagnostics(fqdn, 5004, "Failed parsing the incoming request: Content-Type"))})
		return
	}
	if d.state != dialogConnected {
		s.sipPush(l, sipOut{resp: sipResponse(req, sip.StatusCallTransactionDoesNotExists, sipReason(481), nil)})
		return
	}
	switch {
	case im.IsTypingType(ct.Type):
		typing, err := im.ParseTyping(ctv, req.Body())
		if err != nil {
			s.sipPush(l, sipOut{resp: sipResponse(req, sip.StatusBadRequest, sipReason(400), nil)})
			return
		}
		s.setTyping(d, l.side, typing)
		s.sipPush(l, sipOut{resp: sipResponse(req, sip.StatusOK, "OK", nil)})
	case req.Method == sip.INFO:
		// Other INFO (conversation information, roster management) is
		// acknowledged, as pidgin-sipe does.
		s.sipPush(l, sipOut{resp: sipResponse(req, sip.StatusOK, "OK", nil)})
	case im.IsMessageType(ct.Type):
		msg, err := im.DecodeMessage(ctv, req.Body())
		if err == nil {
			msg, err = normalizeMessage(msg)
		}
		if err != nil {
			status := sip.StatusBadRequest
			if errors.Is(err, im.ErrUnsupportedType) {
				status = sip.StatusUnsupportedMediaType
			}
			s.sipPush(l, sipOut{resp: sipResponse(req, status, sipReason(status), nil)})
			return
		}
		answer := func(err error) {
			if err == nil {
				s.sipPush(l, sipOut{resp: sipResponse(req, sip.StatusOK, "OK", nil)})
				return
			}
			status, diag := s.sipFailure(reasonOf(err))
			s.sipPush(l, sipOut{resp: sipResponse(req, status, sipReason(status), nil, diag)})
		}
		if err := s.deliver(d, l.side, msg, answer); err != nil {
			answer(err)
		}
	default:
		s.sipPush(l, sipOut{resp: sipResponse(req, sip.StatusUnsupportedMediaType, sipReason(415), nil)})
	}
}

// reasonUnsupported: a SIP endpoint refused the content of a message
// (415, 488), or takes none of the forms it could be written in.
var reasonUnsupported = reason{"RemoteFailure", "UnsupportedMediaType", "The content-type is not supported."}

// reasonOf is the reason of a failed delivery.
func reasonOf(err error) reason {
	var de deliveryError
	if errors.As(err, &de) {
		return de.r
	}
	return reasonUnreachable
}

// sipFailure is the status and ms-diagnostics (MS-OCER's error IDs; nil
// where the status says it all) of a failed invitation or delivery, for
// reason r.
func (s *Server) sipFailure(r reason) (int, sip.Header) {
	fqdn := s.opts.SIP.FQDN
	switch r.subcode {
	case reasonNotFound.subcode:
		return sip.StatusNotFound, sipDiagnostics(fqdn, 4005, "Destination URI either not enabled for SIP or does not exist")
	case reasonDeclined.subcode:
		return sip.StatusGlobalDecline, nil
	case reasonCanceled.subcode:
		return sip.StatusRequestTerminated, nil
	case "NotAcceptable":
		// The recipient does not take messages now (the reject-messages
		// fault): declined, as the UCWA side says.
		return sip.StatusGlobalDecline, nil
	case reasonUnsupported.subcode:
		return sip.StatusUnsupportedMediaType, sipDiagnostics(fqdn, 4013, "Content-type does not match the expected content-type")
	}
	if r.code == "Timeout" {
		return sip.StatusRequestTimeout, nil
	}
	return sip.StatusTemporarilyUnavailable, sipDiagnostics(fqdn, 1007, "Temporarily cannot route")
}

// reasonOfStatus is the reason a SIP endpoint's failure response gives.
func reasonOfStatus(status int) reason {
	switch status {
	case sip.StatusNotFound, sip.StatusGlobalDoesNotExistAnywhere:
		return reasonNotFound
	case sip.StatusBusyHere, sip.StatusGlobalDecline, sip.StatusForbidden:
		return reasonDeclined
	case sip.StatusNotAcceptableHere, sip.StatusUnsupportedMediaType, sip.StatusGlobalNotAcceptable:
		return reasonUnsupported
	case sip.StatusRequestTerminated:
		return reasonCanceled
	}
	return reasonUnreachable
}

// sipTargets are the target's SIP endpoints an offer forks to (under
// s.mu): all its registrations but the inviter's own endpoint.
func (s *Server) sipTargets(d *dialog) []*sipReg {
	t := s.users[d.parties[1].uri]
	if t == nil || t.st == nil || len(t.st.sipRegs) == 0 {
		return nil
	}
	var inviter *sipReg
	if l := d.parties[0].sip; l != nil {
		inviter = l.reg
	}
	now := s.now()
	out := make([]*sipReg, 0, len(t.st.sipRegs))
	for _, r := range t.st.sipRegs {
		if r != inviter && r.expires.After(now) {
			out = append(out, r)
		}
	}
	return out
}

// sipOffer sends the invitation to each of the target's endpoints regs
// (under s.mu): an INVITE carrying the first message in Ms-Text-Format.
func (s *Server) sipOffer(d *dialog, regs []*sipReg) {
	from, to := d.parties[0], d.parties[1]
	callID, fromTag, epid := randomHex(16), randomHex(5), ""
	if l := from.sip; l != nil {
		callID, fromTag, epid = l.callID, l.tag, l.epid
	}
	var textFormat string
	if d.first != nil {
		if tf, err := im.EncodeTextFormat(*d.first); err == nil {
			textFormat = tf.String()
		}
	}
	for _, r := range regs {
		l := &sipLeg{d: d, side: 1, conn: r.conn, reg: r, callID: callID, peerTag: fromTag, target: r.contact, cseq: 1}
		d.parties[1].sipOffers = append(d.parties[1].sipOffers, l)
		r.conn.legs[l] = struct{}{}
		req := s.sipRequest(sip.INVITE, l.target, from.uri, fromTag, to.uri, "", callID, 1, s.sipPartyContact(from))
		if epid != "" {
			req.From().Params.Add("epid", epid)
		}
		req.From().DisplayName = from.name
		req.PrependHeader(sipVia(r.conn))
		req.AppendHeader(sip.NewHeader("P-Asserted-Identity", `"`+from.name+`" <`+string(from.uri)+`>`))
		req.AppendHeader(sip.NewHeader("Supported", "ms-sender"))
		req.AppendHeader(sip.NewHeader(im.HeaderConversationID, d.threadID))
		req.AppendHeader(sip.NewHeader(im.HeaderEndPoints, im.FormatEndPoints([]im.Endpoint{{URI: string(from.uri), EPID: epid}, {URI: string(to.uri)}})))
		if d.subject != "" {
			req.AppendHeader(sip.NewHeader("Subject", d.subject))
		}
		if textFormat != "" {
			req.AppendHeader(sip.NewHeader(im.HeaderTextFormat, textFormat))
		}
		req.AppendHeader(sip.NewHeader("Content-Type", im.TypeSDP))
		req.SetBody(s.sipSDP(""))
		l.cancel = sipCancelOf(req)
		s.goSIP(func() {
			ctx, cancel := s.sipCtx()
			defer cancel()
			res, err := r.conn.do(ctx, req)
			s.sipInviteAnswered(l, res, err)
		})
	}
}

// sipInviteAnswered takes the final response of an endpoint to a fork.
func (s *Server) sipInviteAnswered(l *sipLeg, res *sip.Response, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := l.d
	p := &d.parties[1]
	open := d.state == dialogOffering && slices.Contains(p.sipOffers, l) && !l.gone
	l.cancel = nil
	if err == nil && res.CSeq() != nil && res.CSeq().MethodName != sip.INVITE {
		err = errors.New("response to another request")
	}
	if err == nil && res.StatusCode/100 == 2 {
		if to := res.To(); to != nil {
			l.tag, _ = to.Params.Get("tag")
		}
		if sdp, err := im.ParseSDP(res.Body()); err == nil {
			l.accept = sdp.AcceptTypes
		}
		for _, h := range res.GetHeaders("Supported") {
			if strings.Contains(strings.ToLower(h.Value()), "ms-text-format") {
				l.firstDone = true
			}
		}
		s.sipPush(l, sipOut{req: s.sipLegRequest(l, sip.ACK, 1), ack: true})
		if !open {
			// Accepted elsewhere or withdrawn meanwhile: the late
			// acceptance is ended at once.
			l.gone = false
			s.sipBye(l)
			return
		}
		p.sipOffers = slices.DeleteFunc(p.sipOffers, func(x *sipLeg) bool { return x == l })
		p.sip = l
		s.sip.legs[legKey{l.callID, l.tag}] = l
		s.connect(d, nil)
		return
	}
	if !open {
		delete(l.conn.legs, l)
		return
	}
	r := reasonUnreachable
	if err == nil {
		r = reasonOfStatus(res.StatusCode)
	}
	l.conn.log.Debug().AnErr("error", err).Stringer("to", p.uri).Str("reason", r.subcode).Msg("SIP endpoint refused the invitation")
	p.sipOffers = slices.DeleteFunc(p.sipOffers, func(x *sipLeg) bool { return x == l })
	delete(l.conn.legs, l)
	if !p.offered() {
		s.failDialog(d, r)
	}
}

// sipConnected completes the SIP side of a dialog just connected (under
// s.mu): the inviter's INVITE is answered 200; an invitee that did not
// take the first message from the INVITE gets it as a MESSAGE.
func (s *Server) sipConnected(d *dialog, side int) {
	l := d.parties[side].sip
	if l.invite != nil {
		resp := sipResponse(l.invite, sip.StatusOK, "OK", s.sipSDP(d.parties[1-side].uri),
			sip.NewHeader("Contact", s.sipPartyContact(d.parties[1-side])),
			// The first message went into the conversation already.
			sip.NewHeader("Supported", "ms-text-format"),
			sip.NewHeader("Supported", "com.microsoft.rtc-multiparty"),
			sip.NewHeader("Content-Type", im.TypeSDP))
		resp.To().Params.Add("tag", l.peerTag)
		l.invite = nil
		s.sipPush(l, sipOut{resp: resp, inOrder: true})
	}
	if side == 1 && d.first != nil && !l.firstDone {
		s.sipSendMessage(l, *d.first, nil)
	}
}

// sipPartyContact is the Contact of requests and answers the server sends
// on behalf of a party: the GRUU of its SIP endpoint, else its address (an
// application or the native client, both behind the server).
func (s *Server) sipPartyContact(p party) string {
	if p.sip != nil && p.sip.reg != nil {
		return "<" + s.gruu(p.sip.reg) + ">"
	}
	return "<" + string(p.uri) + ">"
}

// sipCancelOffers withdraws the forks to the target's endpoints but keep
// (under s.mu).
func (s *Server) sipCancelOffers(d *dialog, keep *sipLeg, why string) {
	p := &d.parties[1]
	for _, l := range p.sipOffers {
		if l != keep {
			s.sipCancel(l, why)
		}
	}
	p.sipOffers = nil
}

// sipCancel sends CANCEL for the server's INVITE to l (under s.mu). It is
// sent at once, not queued: the INVITE is still waiting for its final
// response. (Should it overtake an INVITE not written yet, the endpoint
// answers it 481 and may accept the INVITE: that late acceptance gets ACK
// and BYE, as any other.)
func (s *Server) sipCancel(l *sipLeg, why string) {
	l.gone = true
	delete(l.conn.legs, l)
	req := l.cancel
	if req == nil {
		return
	}
	l.cancel = nil
	if why != "" {
		req.AppendHeader(sip.NewHeader("Reason", why))
	}
	sc := l.conn
	s.goSIP(func() {
		if sa := sc.sa.Load(); sa != nil {
			if err := sipSign(sa, req, 0); err != nil {
				sc.log.Warn().Err(err).Msg("signing a CANCEL")
			}
		}
		// The 200 to the CANCEL is not waited for: the INVITE's 487
		// says it all.
		if err := sc.c.Send(req); err != nil {
			sc.log.Debug().Err(err).Msg("sending a CANCEL")
		}
	})
}

// sipCancelOf is the CANCEL of inv (RFC 3261 9.1: its Request-URI, Via,
// From, To, Call-ID and CSeq number).
func sipCancelOf(inv *sip.Request) *sip.Request {
	req := sip.NewRequest(sip.CANCEL, inv.Recipient)
	req.AppendHeader(sip.HeaderClone(inv.Via()))
	req.AppendHeader(sip.HeaderClone(inv.From()))
	req.AppendHeader(sip.HeaderClone(inv.To()))
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxFwd)
	return req
}

// sipEndDialog ends the SIP side of a dialog that ends with r (under
// s.mu): an unanswered INVITE of an inviter is refused, forks are
// cancelled, established legs get a BYE.
func (s *Server) sipEndDialog(d *dialog, r reason) {
	for side := range d.parties {
		p := &d.parties[side]
		for _, l := range p.sipOffers {
			s.sipCancel(l, "")
		}
		p.sipOffers = nil
		l := p.sip
		if l == nil {
			continue
		}
		p.sip = nil
		if s.sip.legs[legKey{l.callID, l.tag}] == l {
			delete(s.sip.legs, legKey{l.callID, l.tag})
		}
		switch {
		case l.gone:
			delete(l.conn.legs, l)
		case l.invite != nil:
			status, diag := s.sipFailure(r)
			resp := sipResponse(l.invite, status, sipReason(status), nil, diag)
			resp.To().Params.Add("tag", l.peerTag)
			l.invite = nil
			l.gone = true
			s.sipPush(l, sipOut{resp: resp})
			delete(l.conn.legs, l)
		default:
			s.sipBye(l)
		}
	}
}

// sipBye ends an established leg from the server's side (under s.mu).
func (s *Server) sipBye(l *sipLeg) {
	if l.gone {
		return
	}
	l.gone = true
	delete(l.conn.legs, l)
	l.cseq++
	s.sipPush(l, sipOut{req: s.sipLegRequest(l, sip.BYE, l.cseq)})
}

// sipSendMessage sends msg to the endpoint of l; done (when not nil)
// learns whether it took it (under s.mu, as is done).
func (s *Server) sipSendMessage(l *sipLeg, msg sfb.Message, done func(error)) {
	fail := func(r reason) {
		if done != nil {
			done(deliveryError{r})
		}
	}
	if l.gone {
		fail(reasonUnreachable)
		return
	}
	ct, body, err := im.EncodeMessage(msg, l.accept)
	if err != nil {
		fail(reasonUnsupported)
		return
	}
	l.cseq++
	req := s.sipLegRequest(l, sip.MESSAGE, l.cseq)
	req.AppendHeader(sip.NewHeader("Content-Type", ct.String()))
	req.SetBody(body)
	s.sipPush(l, sipOut{req: req, done: func(res *sip.Response, err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case err != nil:
			l.conn.log.Debug().Err(err).Msg("MESSAGE not answered")
			fail(reasonUnreachable)
		case res.StatusCode/100 != 2:
			fail(reasonOfStatus(res.StatusCode))
			if res.StatusCode == sip.StatusCallTransactionDoesNotExists || res.StatusCode == sip.StatusRequestTimeout {
				// The endpoint lost the dialog: it ends (pidgin-sipe
				// drops the session on these too).
				l.gone = true
				s.endDialog(l.d, reasonEnded, nil)
			}
		case done != nil:
			done(nil)
		}
	}})
}

// sipSendTyping tells the endpoint of l that its peer types or stopped,
// with the INFO SfB clients send (under s.mu).
func (s *Server) sipSendTyping(l *sipLeg, typing bool) {
	if l.gone || l.d.state != dialogConnected {
		return
	}
	l.cseq++
	req := s.sipLegRequest(l, sip.INFO, l.cseq)
	req.AppendHeader(sip.NewHeader("Content-Type", im.TypeKeyboardActivity))
	req.SetBody(im.KeyboardActivity(typing))
	s.sipPush(l, sipOut{req: req})
}

// sipLegRequest builds an in-dialog request of the server to l's endpoint:
// from the other side, to the endpoint.
func (s *Server) sipLegRequest(l *sipLeg, method sip.RequestMethod, cseq uint32) *sip.Request {
	me, peer := l.d.parties[l.side], l.d.parties[1-l.side]
	req := s.sipRequest(method, l.target, peer.uri, l.peerTag, me.uri, l.tag, l.callID, cseq, s.sipPartyContact(peer))
	req.From().DisplayName = peer.name
	if l.epid != "" {
		req.To().Params.Add("epid", l.epid)
	}
	req.PrependHeader(sipVia(l.conn))
	return req
}

// sipPush queues out for l's endpoint (under s.mu); a goroutine per queue
// sends what is queued, in order.
func (s *Server) sipPush(l *sipLeg, out sipOut) {
	q := &l.requests
	if out.resp != nil && !out.inOrder {
		q = &l.replies
	}
	q.items = append(q.items, out)
	if q.sending {
		return
	}
	q.sending = true
	s.goSIP(func() { s.sipDrain(l, q) })
}

func (s *Server) sipDrain(l *sipLeg, q *sipQueue) {
	for {
		s.mu.Lock()
		if len(q.items) == 0 || s.ctx.Err() != nil {
			q.items, q.sending = nil, false
			s.mu.Unlock()
			return
		}
		out := q.items[0]
		q.items = q.items[1:]
		s.mu.Unlock()
		sc := l.conn
		switch {
		case out.resp != nil:
			sc.send(sc.sa.Load(), out.resp)
		case out.ack:
			if sa := sc.sa.Load(); sa != nil {
				_ = sipSign(sa, out.req, 0)
			}
			if err := sc.c.Send(out.req); err != nil {
				sc.log.Debug().Err(err).Msg("sending an ACK")
			}
		default:
			ctx, cancel := s.sipCtx()
			res, err := sc.do(ctx, out.req)
			cancel()
			if out.done != nil {
				out.done(res, err)
			}
		}
	}
}

// sipConnGone ends the legs of a connection that ended (under s.mu).
func (s *Server) sipConnGone(sc *sipConn) {
	for l := range sc.legs {
		s.sipLegGone(l)
	}
}

// sipEndpointGone ends what the endpoint of r took part in (under s.mu).
func (s *Server) sipEndpointGone(r *sipReg) {
	for l := range r.conn.legs {
		if l.reg == r {
			s.sipLegGone(l)
		}
	}
}

// sipLegGone ends l's part: its endpoint is no more (under s.mu).
func (s *Server) sipLegGone(l *sipLeg) {
	l.gone = true
	delete(l.conn.legs, l)
	d := l.d
	p := &d.parties[l.side]
	if d.state == dialogEnded {
		return
	}
	if slices.Contains(p.sipOffers, l) {
		p.sipOffers = slices.DeleteFunc(p.sipOffers, func(x *sipLeg) bool { return x == l })
		if d.state == dialogOffering && !p.offered() {
			s.failDialog(d, reasonUnreachable)
		}
		return
	}
	if p.sip != l {
		return
	}
	if d.state == dialogOffering {
		s.endDialog(d, reasonCanceled, nil)
		return
	}
	s.endDialog(d, reasonEnded, nil)
}

// sipSDP is the server's SDP for an IM session: format "null" in an
// INVITE, the answering user's address in a 200 (as pidgin-sipe writes).
func (s *Server) sipSDP(answerer sfb.URI) []byte {
	sdp := im.SDP{Addr: netip.AddrFrom4([4]byte{127, 0, 0, 1}), Media: im.MediaMessage, Port: 5061, Format: "null"}
	if answerer != "" {
		sdp.Format = string(answerer)
	}
	return sdp.Marshal()
}

// sipVia is the Via of a request the server sends on sc, with a branch
// of its own (a CANCEL repeats the INVITE's).
func sipVia(sc *sipConn) *sip.ViaHeader {
	host, port := "127.0.0.1", 5061
	if a, ok := sc.c.LocalAddr().(*net.TCPAddr); ok {
		host, port = a.IP.String(), a.Port
	}
	v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: sc.c.Transport(), Host: host, Port: port, Params: sip.NewParams()}
	v.Params.Add("branch", "z9hG4bK"+randomHex(8))
	return v
}

// sipCtx bounds one request the server sends.
func (s *Server) sipCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, sipSendTimeout)
}
