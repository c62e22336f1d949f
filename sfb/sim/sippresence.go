package sim

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/presence"
)

// Presence over SIP as MS-PRES, MS-SIP and pidgin-sipe have it: a batched
// category SUBSCRIBE (Event: presence, application/msrtc-adrl-categorylist+xml)
// gets its 200 with the first notification in it when the client supports
// ms-piggyback-first-notify (else a NOTIFY right after), then a BENOTIFY
// (or NOTIFY) for every change of a watched person; the self-subscriptions
// vnd-microsoft-roaming-contacts and vnd-microsoft-roaming-self carry the
// contact list and the user's own category instances; SERVICE with
// application/msrtc-category-publish+xml publishes, refused with 409 and
// the current versions when a version is stale.

const sipBENOTIFY sip.RequestMethod = "BENOTIFY"

// Events of the one-off provisioning query pidgin-sipe sends at sign-in.
const eventProvisioningV2 = "vnd-microsoft-provisioning-v2"

// Content types of the SERVICE requests beside category publication that
// pidgin-sipe sends (access levels, acknowledging subscribers). The
// simulator grants everyone the same access, so it accepts them and keeps
// nothing.
const (
	contentTypeSetContainerMembers = "application/msrtc-setcontainermembers+xml"
	contentTypeSetSubscriber       = "application/msrtc-presence-setsubscriber+xml"
)

// Diagnostics of the per-resource refusals in the rlmi list: the quota the
// subscriber's policy sets on category subscriptions (Lync's "Maximum
// Number of Subscriber Category Subscriptions", 1,000 by default), refused
// per resource with state terminated and reason quotaExceeded as Lync
// refuses a publisher's follower quota, and addresses that are no user.
const (
	reasonQuotaExceeded = "quotaExceeded"
	reasonNoResource    = "noresource"
)

// serveSIPPresence handles SUBSCRIBE and SERVICE from an authenticated
// endpoint of from (sip.go dispatches them here). BENOTIFY gets no
// response; PUBLISH (RFC 3903, which SfB does not use) and NOTIFY are not
// implemented.
func (s *Server) serveSIPPresence(sc *sipConn, req *sip.Request, from *user) {
	switch req.Method {
	case sip.SUBSCRIBE, sipSERVICE:
	case sipBENOTIFY:
		return
	default:
		sc.respond(req, sip.StatusNotImplemented, "Not Implemented", nil)
		return
	}
	ep := s.presenceEndpoint(sc, req, from)
	if ep == nil {
		sc.respond(req, sip.StatusForbidden, "Forbidden", nil, sipDiagnostics(s.opts.SIP.FQDN, 1001, "No registration of this endpoint"))
		return
	}
	var a sipAnswer
	if req.Method == sip.SUBSCRIBE {
		a = s.sipSubscribe(ep, req)
	} else {
		a = s.sipService(ep, req)
	}
	sc.respond(req, a.status, a.reason, a.body, a.headers...)
	if a.after != nil {
		a.after()
	}
}

const sipSERVICE sip.RequestMethod = "SERVICE"

// presenceEndpoint is the presence side of the registration req comes
// from: a registration of from over sc, told apart from the user's others
// by the GRUU in the Contact or the epid of the From, made at the first
// presence request of the endpoint.
func (s *Server) presenceEndpoint(sc *sipConn, req *sip.Request, from *user) *sipPresenceEP {
	contact := sipHeader(req)("Contact")
	epid := ""
	if f := req.From(); f != nil {
		epid, _ = f.Params.Get("epid")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if from.st == nil {
		return nil
	}
	var reg *sipReg
	for _, r := range from.st.sipRegs {
		if r.conn != sc {
			continue
		}
		if strings.Contains(contact, "opaque=user:epid:"+gruuOpaque(r.instance)) || strings.EqualFold(epid, r.instance) {
			reg = r
			break
		}
		if reg == nil {
			reg = r
		}
	}
	if reg == nil {
		return nil
	}
	if ep := s.sipPres.eps[reg]; ep != nil {
		return ep
	}
	if s.sipPres.eps == nil {
		s.sipPres.eps = map[*sipReg]*sipPresenceEP{}
	}
	ep := s.sipEndpointUp(from, reg.instance, regPeer{s, reg})
	s.sipPres.eps[reg] = ep
	return ep
}

// sipPresenceGone ends the presence side of a registration that ended
// (removeRegistration). The caller holds s.mu.
func (s *Server) sipPresenceGone(r *sipReg) {
	if ep := s.sipPres.eps[r]; ep != nil {
		delete(s.sipPres.eps, r)
		s.sipEndpointDown(ep)
	}
}

// regPeer sends over the connection a registration is on now (a client
// may register again over a new connection).
type regPeer struct {
	s *Server
	r *sipReg
}

func (p regPeer) conn() *sipConn {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	return p.r.conn
}

func (p regPeer) Do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, sipSendTimeout)
	defer cancel()
	return p.conn().do(ctx, req)
}

// Send signs req as every message of the server on a signed connection
// (pidgin-sipe drops unsigned ones) and sends it without a transaction.
func (p regPeer) Send(msg sip.Message) error {
	sc := p.conn()
	if sa := sc.sa.Load(); sa != nil {
		if err := sipSign(sa, msg, 0); err != nil {
			return fmt.Errorf("sign %s: %w", msg.(*sip.Request).Method, err)
		}
	}
	return sc.c.Send(msg)
}

func (p regPeer) Via() *sip.ViaHeader { return sipVia(p.conn()) }

// sipAnswer is the final response to a request this file handles: the SIP
// front end sends it, then runs after, which releases what a new
// subscription's dialog holds back until its 200 is out (its first NOTIFY
// when the client does not take it piggybacked, notifications of changes
// made in between).
type sipAnswer struct {
	status  int
	reason  string
	body    []byte
	headers []sip.Header
	after   func()
}

// sipRefusal is a failure response, with SfB's ms-diagnostics when code
// is not 0.
func (s *Server) sipRefusal(status int, reason string, code int, text string) sipAnswer {
	a := sipAnswer{status: status, reason: reason}
	if code != 0 {
		a.headers = append(a.headers, sipDiagnostics(s.opts.SIP.FQDN, code, text))
	}
	return a
}

// sipSubscribe handles a SUBSCRIBE of ep. The caller does not hold s.mu.
func (s *Server) sipSubscribe(ep *sipPresenceEP, req *sip.Request) sipAnswer {
	event := eventOf(req)
	switch event {
	case presence.EventPresence, presence.EventRoamingContacts, presence.EventRoamingSelf, eventProvisioningV2:
	default:
		a := s.sipRefusal(489, "Bad Event", 0, "")
		a.headers = append(a.headers, sip.NewHeader("Allow-Events", sipAllowEvents))
		return a
	}
	from, to := req.From(), req.To()
	if from == nil || to == nil || req.CallID() == nil || req.CSeq() == nil {
		return s.sipRefusal(400, "Bad Request", 0, "")
	}
	if self, err := sipAddress(from.Address); err != nil || self != ep.user.uri {
		return s.sipRefusal(403, "Forbidden", 1001, "From URI not authorized to communicate with server")
	}
	expires, hasExpires := expiresOf(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ep.gone {
		return s.sipRefusal(481, "Call Leg/Transaction Does Not Exist", 0, "")
	}
	var sub *sipSub
	if tag, ok := to.Params.Get("tag"); ok && tag != "" {
		sub = ep.findSub(req.CallID().Value(), tag)
		if sub == nil || sub.event != event {
			return s.sipRefusal(481, "Call Leg/Transaction Does Not Exist", 0, "")
		}
	}
	if event == eventProvisioningV2 {
		return s.provisioning(req)
	}
	// Expires: 0 ends a subscription, or, outside one, is a one-off
	// query answered with the state as it is and no dialog kept.
	oneOff := hasExpires && expires == 0
	if oneOff && sub != nil {
		s.endSub(sub)
		return sipAnswer{status: 200, reason: "OK", headers: []sip.Header{
			sip.NewHeader("Event", event), sip.NewHeader("Subscription-State", "terminated;expires=0"), sip.NewHeader("Expires", "0"),
		}}
	}
	if !hasExpires {
		expires = sipSubscriptionDefault
	}
	if !oneOff {
		expires = min(max(expires, sipSubscriptionMin), sipSubscriptionMax)
	}
	fresh := sub == nil
	if fresh {
		sub = &sipSub{
			ep: ep, event: event, callID: req.CallID().Value(), localTag: sip.GenerateTagN(16),
			remote: from.Address, local: to.Address, target: from.Address, heapIndex: -1, members: map[sfb.URI]struct{}{},
		}
		sub.remoteTag, _ = from.Params.Get("tag")
		if c := req.Contact(); c != nil {
			sub.target = c.Address
		}
		to.Params.Add("tag", sub.localTag)
	}
	sub.benotify = supports(req, "ms-benotify")
	piggyback := supports(req, "ms-piggyback-first-notify")
	var (
		contentType string
		body        []byte
	)
	switch event {
	case presence.EventPresence:
		var ans *sipAnswer
		contentType, body, ans = s.batchSubscribe(sub, req, !oneOff)
		if oneOff {
			s.endSub(sub)
		}
		if ans != nil {
			if fresh {
				s.endSub(sub)
			}
			return *ans
		}
	case presence.EventRoamingContacts:
		contentType, body = presence.ContentTypeRoamingContacts, contactList(ep.user, s.sipUserOf(ep.user).contactsDelta).Marshal()
	case presence.EventRoamingSelf:
		su := s.sipUserOf(ep.user)
		contentType, body = presence.ContentTypeRoamingSelf, presence.RoamingSelf{Categories: s.selfCategories(ep.user, su)}.Marshal()
	}
	state := fmt.Sprintf("active;expires=%d", expires)
	if oneOff {
		state = "terminated;expires=0"
		piggyback = true
	} else {
		if fresh {
			s.addSub(sub)
		}
		s.refreshSub(sub, s.now().Add(time.Duration(expires)*time.Second))
	}
	a := sipAnswer{status: 200, reason: "OK", headers: []sip.Header{
		sip.NewHeader("Event", event),
		sip.NewHeader("Subscription-State", state),
		sip.NewHeader("Expires", strconv.Itoa(expires)),
		sip.NewHeader("Supported", "com.microsoft.autoextend, ms-benotify, ms-piggyback-first-notify"),
		sip.NewHeader("Contact", s.sipContact()),
	}}
	if event == presence.EventPresence {
		a.headers = append(a.headers, sip.NewHeader("Require", "eventlist"))
	}
	var first *sip.Request
	switch {
	case body == nil:
	case piggyback:
		// The first notification rides on the 200 (MS-SIP 3.3.5.1); its
		// CSeq is the one a NOTIFY would have had.
		sub.cseq++
		a.body = body
		a.headers = append(a.headers, sip.NewHeader("Content-Type", contentType), sip.NewHeader("ms-piggyback-cseq", strconv.FormatUint(uint64(sub.cseq), 10)))
	default:
		first = s.notifyRequest(sub, state, contentType, body)
	}
	if !oneOff {
		// Nothing of the dialog goes out before this 200: what a change
		// queues meanwhile waits (pidgin-sipe would take a BENOTIFY
		// overtaking the 200 for newer than the state the 200 carries).
		if sub.held == nil {
			sub.held = []*sip.Request{}
		}
		a.after = func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			held := sub.held
			sub.held = nil
			if _, live := ep.subs[sub]; !live {
				return
			}
			if first != nil {
				s.queue(sub, first)
			}
			for _, req := range held {
				s.queue(sub, req)
			}
		}
	}
	return a
}

// batchSubscribe applies a batched category subscription to sub: the
// resources of a subscribe action are watched (within the subscriber's
// category-subscription quota), those of an unsubscribe action no longer.
// It returns the first notification for the resources named: an rlmi list
// with each resource's instance state and the categories of those watched.
// A one-off query (active false) watches nobody. The caller holds s.mu.
func (s *Server) batchSubscribe(sub *sipSub, req *sip.Request, active bool) (string, []byte, *sipAnswer) {
	if ct := req.ContentType(); ct == nil || mediaType(ct.Value()) != presence.ContentTypeCategoryList {
		// A SUBSCRIBE refreshing the dialog without a body keeps what
		// it watches.
		if len(req.Body()) == 0 && sub.heapIndex >= 0 {
			return "", nil, nil
		}
		a := s.sipRefusal(415, "Unsupported Media Type", 0, "")
		a.headers = append(a.headers, sip.NewHeader("Accept", presence.ContentTypeCategoryList))
		return "", nil, &a
	}
	batch, err := presence.ParseBatchSubscribe(req.Body())
	if err != nil {
		s.log.Debug().Err(err).Stringer("user", sub.ep.user.uri).Msg("SIP batch subscription refused")
		a := s.sipRefusal(400, "Bad Request", 0, "")
		if errors.Is(err, presence.ErrTooLarge) {
			// More resources than a batch may hold: the client is to
			// split it (the codec's MaxResources).
			a = s.sipRefusal(413, "Request Entity Too Large", 1000, fmt.Sprintf("A batch subscription holds at most %d resources", presence.MaxResources))
		}
		return "", nil, &a
	}
	su := s.sipUserOf(sub.ep.user)
	if len(batch.Categories) > 0 {
		// A new category list re-counts the people already watched.
		before := sub.counted
		sub.categories = batch.Categories
		sub.counted = len(sub.members) * sub.perPerson()
		su.categorySubs += sub.counted - before
	}
	perPerson := sub.perPerson()
	sub.rlmiVersion++
	list := &presence.List{URI: string(sub.ep.user.uri), Version: sub.rlmiVersion, FullState: sub.rlmiVersion == 1}
	var docs []presence.Categories
	for _, r := range batch.Resources {
		lr := presence.ListResource{URI: r.URI, CID: strings.TrimPrefix(r.URI, "sip:")}
		m, err := sfb.ParseURI(r.URI)
		u := s.users[m]
		switch {
		case batch.Action == presence.ActionUnsubscribe:
			if err == nil {
				if _, ok := sub.members[m]; ok {
					s.unwatchSIP(sub, m)
					sub.counted -= perPerson
					su.categorySubs -= perPerson
				}
			}
			// Ended at the client's word: no reason, which would invite
			// it to subscribe again (RFC 4662's deactivated, timeout).
			lr.State = presence.InstanceTerminated
		case err != nil || u == nil:
			lr.State, lr.Reason = presence.InstanceTerminated, reasonNoResource
		default:
			if _, ok := sub.members[m]; !ok && active {
				if su.categorySubs+perPerson > s.opts.MaxCategorySubscriptions {
					lr.State, lr.Reason = presence.InstanceTerminated, reasonQuotaExceeded
					break
				}
				s.watchSIP(sub, m)
				sub.counted += perPerson
				su.categorySubs += perPerson
			}
			lr.State = presence.InstanceActive
			view := s.watcherView(u)
			doc := presence.Categories{URI: view.URI}
			for _, c := range view.Categories {
				if sub.wants(c.Name) {
					doc.Categories = append(doc.Categories, c)
				}
			}
			docs = append(docs, doc)
		}
		list.Resources = append(list.Resources, lr)
	}
	ct, body := presence.Notify{List: list, Documents: docs}.Marshal()
	return ct, body, nil
}

// notifyRequest builds the next request of sub's dialog: a BENOTIFY when
// the endpoint supports them and the subscription goes on, else a NOTIFY.
// state "" is active with the time left. The caller holds s.mu.
func (s *Server) notifyRequest(sub *sipSub, state, contentType string, body []byte) *sip.Request {
	method := sip.NOTIFY
	if state == "" {
		state = fmt.Sprintf("active;expires=%d", max(0, int(sub.expires.Sub(s.now())/time.Second)))
		if sub.benotify {
			method = sipBENOTIFY
		}
	}
	sub.cseq++
	req := sip.NewRequest(method, sub.target)
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxFwd)
	fromH := &sip.FromHeader{Address: sub.local, Params: sip.NewParams()}
	fromH.Params.Add("tag", sub.localTag)
	req.AppendHeader(fromH)
	toH := &sip.ToHeader{Address: sub.remote, Params: sip.NewParams()}
	if sub.remoteTag != "" {
		toH.Params.Add("tag", sub.remoteTag)
	}
	req.AppendHeader(toH)
	callID := sip.CallIDHeader(sub.callID)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: sub.cseq, MethodName: method})
	req.AppendHeader(sip.NewHeader("Contact", s.sipContact()))
	req.AppendHeader(sip.NewHeader("Event", sub.event))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	if strings.HasPrefix(contentType, presence.ContentTypeMultipart) {
		req.AppendHeader(sip.NewHeader("Require", "eventlist"))
	}
	if contentType != "" {
		ct := sip.ContentTypeHeader(contentType)
		req.AppendHeader(&ct)
	}
	req.SetBody(body)
	return req
}

// sipService handles a SERVICE request of ep. The caller does not hold
// s.mu.
func (s *Server) sipService(ep *sipPresenceEP, req *sip.Request) sipAnswer {
	if from := req.From(); from == nil {
		return s.sipRefusal(400, "Bad Request", 0, "")
	} else if self, err := sipAddress(from.Address); err != nil || self != ep.user.uri {
		return s.sipRefusal(403, "Forbidden", 1001, "From URI not authorized to communicate with server")
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = mediaType(h.Value())
	}
	switch ct {
	case presence.ContentTypePublish:
		return s.sipPublish(ep, req)
	case contentTypeSOAP:
		return s.sipContactListRequest(ep, req)
	case contentTypeSetContainerMembers, contentTypeSetSubscriber:
		return sipAnswer{status: 200, reason: "OK"}
	}
	a := s.sipRefusal(415, "Unsupported Media Type", 0, "")
	a.headers = append(a.headers, sip.NewHeader("Accept", presence.ContentTypePublish))
	return a
}

// sipPublish is a category publication. The caller does not hold s.mu.
func (s *Server) sipPublish(ep *sipPresenceEP, req *sip.Request) sipAnswer {
	pub, err := presence.ParsePublish(req.Body())
	if err != nil {
		s.log.Debug().Err(err).Stringer("user", ep.user.uri).Msg("SIP publication refused")
		return s.sipRefusal(400, "Bad Request", 0, "")
	}
	if self, err := sfb.ParseURI(pub.URI); err != nil || self != ep.user.uri {
		return s.sipRefusal(403, "Forbidden", 1001, "Publications of another user")
	}
	pubs := make([]sipPublication, 0, len(pub.Publications))
	for _, p := range pub.Publications {
		pubs = append(pubs, sipPublication{cat: p.Category, remove: p.Expires != nil && *p.Expires == 0})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ep.gone {
		return s.sipRefusal(481, "Call Leg/Transaction Does Not Exist", 0, "")
	}
	written, faults, err := s.publishCategories(ep, pubs)
	if err != nil {
		s.log.Debug().Err(err).Stringer("user", ep.user.uri).Msg("SIP publication refused")
		return s.sipRefusal(403, "Forbidden", 1000, "Too many category instances")
	}
	if len(faults) > 0 {
		f := presence.Fault{Code: presence.FaultWrongDelta}
		for _, vf := range faults {
			f.Operations = append(f.Operations, presence.FaultOperation{Index: vf.index, Version: vf.version, CurVersion: vf.curVersion})
		}
		return sipAnswer{status: 409, reason: "Conflict", body: f.Marshal(), headers: []sip.Header{
			sip.NewHeader("Content-Type", presence.ContentTypeFault),
			sipDiagnostics(s.opts.SIP.FQDN, 2100, "Publication version is out of date"),
		}}
	}
	// The 200 carries the user's instances of every category published,
	// so that the client knows their new versions.
	doc := s.selfCategoriesOf(ep.user, s.sipPres.users[ep.user.uri], written)
	return sipAnswer{status: 200, reason: "OK", body: presence.RoamingSelf{Categories: doc}.Marshal(), headers: []sip.Header{
		sip.NewHeader("Content-Type", presence.ContentTypeRoamingSelf),
	}}
}

// sipContactsChanged sends the new contact list to the roaming-contacts
// subscribers of u. The caller holds s.mu.
func (s *Server) sipContactsChanged(u *user) {
	su := s.sipPres.users[u.uri]
	if su == nil {
		return
	}
	var body []byte
	for sub := range su.self {
		if sub.event == presence.EventRoamingContacts {
			if body == nil {
				su.contactsDelta++
				body = contactList(u, su.contactsDelta).Marshal()
			}
			s.queue(sub, s.notifyRequest(sub, "", presence.ContentTypeRoamingContacts, body))
		}
	}
}

// contactList is u's contact list (SetContacts) as the roaming-contacts
// body: groups numbered by position, each contact once with the groups it
// is in, whole at every change (pidgin-sipe takes a whole list as it takes
// deltas). Colleagues are always subscribed: SfB contact lists are.
func contactList(u *user, delta uint32) presence.ContactList {
	l := presence.ContactList{DeltaNum: delta}
	var groups []ContactGroup
	if u.st != nil {
		groups = u.st.groups
	}
	in := map[sfb.URI][]string{}
	var order []sfb.URI
	for i, g := range groups {
		id := strconv.Itoa(i + 1)
		l.Groups = append(l.Groups, presence.Group{ID: id, Name: g.Name})
		for _, m := range g.Members {
			if _, ok := in[m]; !ok {
				order = append(order, m)
			}
			in[m] = append(in[m], id)
		}
	}
	for _, m := range order {
		l.Contacts = append(l.Contacts, presence.Contact{URI: m.Address(), Groups: in[m], Subscribed: true})
	}
	return l
}

// provisioning answers pidgin-sipe's one-off provisioning query with no
// provisioning groups: the simulator has no address book, conferencing or
// persistent chat to point a client to.
func (s *Server) provisioning(req *sip.Request) sipAnswer {
	return sipAnswer{status: 200, reason: "OK", body: []byte(`<provisionGroupList xmlns="http://schemas.microsoft.com/2006/09/sip/provisiongroupcontent"/>`), headers: []sip.Header{
		sip.NewHeader("Event", eventProvisioningV2),
		sip.NewHeader("Subscription-State", "terminated;expires=0"),
		sip.NewHeader("Expires", "0"),
		sip.NewHeader("Content-Type", "application/vnd-microsoft-roaming-provisioning-v2+xml"),
		sip.NewHeader("ms-piggyback-cseq", strconv.FormatUint(uint64(req.CSeq().SeqNo), 10)),
	}}
}

// sipAllowEvents is what the registrar answers in Allow-Events; pidgin-sipe
// splits it at commas without trimming, so it has no spaces.
const sipAllowEvents = presence.EventPresence + "," + presence.EventRoamingContacts + "," + presence.EventRoamingSelf + "," + eventProvisioningV2

// sipContact is the Contact of what the server sends in a subscription's
// dialog: the Front End.
func (s *Server) sipContact() string { return "<sip:" + s.opts.SIP.FQDN + ";transport=tls>" }

func (ep *sipPresenceEP) findSub(callID, localTag string) *sipSub {
	for sub := range ep.subs {
		if sub.callID == callID && sub.localTag == localTag {
			return sub
		}
	}
	return nil
}

// eventOf is the event package of a request, lower-cased, without its
// parameters.
func eventOf(req *sip.Request) string {
	h := req.GetHeader("Event")
	if h == nil {
		return ""
	}
	v, _, _ := strings.Cut(h.Value(), ";")
	return strings.ToLower(strings.TrimSpace(v))
}

func expiresOf(req *sip.Request) (int, bool) {
	h := req.GetHeader("Expires")
	if h == nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(h.Value()))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// supports reports whether a Supported header of req names option.
func supports(req *sip.Request, option string) bool {
	for _, h := range req.GetHeaders("Supported") {
		for _, v := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(v), option) {
				return true
			}
		}
	}
	return false
}

func mediaType(v string) string {
	mt, _, err := mime.ParseMediaType(v)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(v))
	}
	return mt
}
