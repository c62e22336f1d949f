package sim

import (
	"container/heap"
	"context"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/presence"
)

// SIP watchers share the presence core with UCWA's presenceSubscriptions:
// a change of a user's presence, whoever made it, reaches the UCWA
// applications through s.watchers and the SIP subscriptions through
// s.sipPres.watchers, both indexed by the person watched, so that a change
// costs what its watchers cost and nothing for the 70,000 endpoints that do
// not watch that person.

// Subscription durations (seconds). SfB grants presence subscriptions for
// hours (MS-SIP's example: 23903 s) and clients refresh two minutes before
// they end; a requested duration is kept within the bounds below.
const (
	sipSubscriptionDefault = 6 * 3600
	sipSubscriptionMin     = 600
	sipSubscriptionMax     = 12 * 3600
	// sipOutboxLimit bounds the notifications queued for one endpoint; an
	// endpoint that does not keep up loses its presence subscriptions
	// (terminated, reason=deactivated) and subscribes again, rather than
	// being sent stale state late or making the server hold it.
	sipOutboxLimit = 1024
)

// sipPeer is the connection an endpoint registered over, as presence needs
// it (regPeer).
type sipPeer interface {
	Do(ctx context.Context, req *sip.Request) (*sip.Response, error)
	Send(msg sip.Message) error
	// Via is the Via of a request sent without a transaction.
	Via() *sip.ViaHeader
}

// sipPresenceEP is a registered SIP endpoint as presence sees it: its
// subscriptions, what it published, and the queue of what it is sent. The
// SIP front end makes one at registration (sipEndpointUp) and ends it when
// the registration or the connection ends (sipEndpointDown).
type sipPresenceEP struct {
	user *user
	// epid is the endpoint identifier of the From header.
	epid string
	peer sipPeer
	subs map[*sipSub]struct{}
	gone bool
	// published: the endpoint published categories, so its going changes
	// the user's presence.
	published bool

	// out holds the notifications not yet sent, in order; sending is
	// true while a goroutine drains it. Both under s.mu.
	out     []sipOutgoing
	sending bool
}

// sipSub is one subscription dialog of an endpoint: a batched presence
// subscription or a self-subscription (roaming contacts, roaming self).
type sipSub struct {
	ep    *sipPresenceEP
	event string
	// The dialog: Call-ID, the tags and addresses of both sides, where
	// NOTIFYs go (the Contact of the SUBSCRIBE) and the server's CSeq.
	callID        string
	localTag      string
	remoteTag     string
	local, remote sip.Uri
	target        sip.Uri
	cseq          uint32
	// benotify: the endpoint takes BENOTIFY (Supported: ms-benotify).
	benotify  bool
	expires   time.Time
	heapIndex int
	// members are the people a presence subscription watches, categories
	// the categories it asked for (all when empty), counted the category
	// subscriptions it holds of its user's quota.
	members    map[sfb.URI]struct{}
	categories []string
	counted    int
	// rlmiVersion numbers the rlmi lists of the dialog.
	rlmiVersion uint32
	// held, when not nil, holds the dialog's requests until its 200 is
	// sent.
	held []*sip.Request
}

// sipOutgoing is a request to send in a subscription's dialog.
type sipOutgoing struct {
	sub *sipSub
	req *sip.Request
}

// sipPresenceState is the SIP side of presence; it lives in Server.sip and
// is guarded by s.mu.
type sipPresenceState struct {
	// watchers indexes presence subscriptions by the person they watch.
	watchers map[sfb.URI]map[*sipSub]struct{}
	users    map[sfb.URI]*sipUser
	// eps are the presence sides of registrations that sent a presence
	// request.
	eps    map[*sipReg]*sipPresenceEP
	expiry subHeap
	// applying is set while a SIP publication changes a presence, so
	// that the change is not written back into the category store.
	applying bool
}

// subHeap orders subscriptions by expiry, so that the sweep looks only at
// those that ended.
type subHeap []*sipSub

func (h subHeap) Len() int           { return len(h) }
func (h subHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h subHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex, h[j].heapIndex = i, j
}
func (h *subHeap) Push(x any) {
	sub := x.(*sipSub)
	sub.heapIndex = len(*h)
	*h = append(*h, sub)
}
func (h *subHeap) Pop() any {
	old := *h
	sub := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	sub.heapIndex = -1
	return sub
}

// sipEndpointUp makes the presence side of an endpoint of u that
// registered over peer. The caller holds s.mu.
func (s *Server) sipEndpointUp(u *user, epid string, peer sipPeer) *sipPresenceEP {
	ep := &sipPresenceEP{user: u, epid: epid, peer: peer, subs: map[*sipSub]struct{}{}}
	s.sipUserOf(u).endpoints[ep] = struct{}{}
	return ep
}

// sipEndpointDown ends ep: its subscriptions end without a word (the
// endpoint is gone or unregistered), what it published for the length of
// its registration goes, and the user's presence follows. The caller holds
// s.mu.
func (s *Server) sipEndpointDown(ep *sipPresenceEP) {
	if ep.gone {
		return
	}
	ep.gone = true
	for sub := range ep.subs {
		s.endSub(sub)
	}
	ep.out = nil
	su := s.sipPres.users[ep.user.uri]
	if su == nil {
		return
	}
	delete(su.endpoints, ep)
	s.dropEndpointCategories(ep)
}

// addSub starts tracking a new subscription dialog. The caller holds s.mu.
func (s *Server) addSub(sub *sipSub) {
	sub.ep.subs[sub] = struct{}{}
	heap.Push(&s.sipPres.expiry, sub)
	if sub.event != presence.EventPresence {
		s.sipUserOf(sub.ep.user).self[sub] = struct{}{}
	}
}

// refreshSub moves sub's expiry. The caller holds s.mu.
func (s *Server) refreshSub(sub *sipSub, until time.Time) {
	sub.expires = until
	if sub.heapIndex >= 0 {
		heap.Fix(&s.sipPres.expiry, sub.heapIndex)
	}
}

// endSub forgets sub everywhere. The caller holds s.mu.
func (s *Server) endSub(sub *sipSub) {
	for m := range sub.members {
		s.unwatchSIP(sub, m)
	}
	if su := s.sipPres.users[sub.ep.user.uri]; su != nil {
		su.categorySubs -= sub.counted
		delete(su.self, sub)
	}
	sub.counted = 0
	delete(sub.ep.subs, sub)
	if sub.heapIndex >= 0 {
		heap.Remove(&s.sipPres.expiry, sub.heapIndex)
	}
}

func (s *Server) watchSIP(sub *sipSub, m sfb.URI) {
	sub.members[m] = struct{}{}
	w := s.sipPres.watchers[m]
	if w == nil {
		if s.sipPres.watchers == nil {
			s.sipPres.watchers = map[sfb.URI]map[*sipSub]struct{}{}
		}
		w = map[*sipSub]struct{}{}
		s.sipPres.watchers[m] = w
	}
	w[sub] = struct{}{}
}

func (s *Server) unwatchSIP(sub *sipSub, m sfb.URI) {
	delete(sub.members, m)
	if w := s.sipPres.watchers[m]; w != nil {
		delete(w, sub)
		if len(w) == 0 {
			delete(s.sipPres.watchers, m)
		}
	}
}

// sweepSIPSubscriptions ends the subscriptions whose time is up with a
// final NOTIFY (terminated;reason=timeout), as RFC 3265 ends them. The
// caller holds s.mu.
func (s *Server) sweepSIPSubscriptions(now time.Time) {
	for s.sipPres.expiry.Len() > 0 && !now.Before(s.sipPres.expiry[0].expires) {
		sub := s.sipPres.expiry[0]
		s.endSub(sub)
		s.queue(sub, s.notifyRequest(sub, "terminated;reason=timeout", "", nil))
	}
}

// sipPresenceChanged tells the SIP side that u's presence changed from old
// to p: the shared category instances follow (unless the change came from
// a SIP publication), and every SIP subscription watching u gets the
// categories that changed. The caller holds s.mu.
func (s *Server) sipPresenceChanged(u *user, old, p Presence) {
	if !s.sipPres.applying {
		s.mirrorPresence(u, old, p)
	} else if su := s.sipPres.users[u.uri]; su != nil {
		su.changed = s.now()
	}
	subs := s.sipPres.watchers[u.uri]
	if len(subs) == 0 {
		return
	}
	state := old.Availability != p.Availability || old.Activity != p.Activity || old.DeviceType != p.DeviceType
	note := old.Note != p.Note || old.OutOfOffice != p.OutOfOffice
	if !state && !note {
		return
	}
	// A change is one presentity's categories document, without an rlmi
	// list (pidgin-sipe's sipe_process_presence and the transport read
	// it as such): the same body for every watcher asking for the same
	// categories, written once.
	doc := s.watcherView(u)
	bodies := map[string][]byte{}
	for sub := range subs {
		key := strings.Join(sub.categories, ",")
		body, ok := bodies[key]
		if !ok {
			view := presence.Categories{URI: doc.URI}
			for _, c := range doc.Categories {
				if (c.Name == "state" && state || c.Name == "note" && note) && sub.wants(c.Name) {
					view.Categories = append(view.Categories, c)
				}
			}
			if len(view.Categories) > 0 {
				body = view.Marshal()
			}
			bodies[key] = body
		}
		if body != nil {
			s.queue(sub, s.notifyRequest(sub, "", presence.ContentTypeEventCategories, body))
		}
	}
}

// watcherView is what a watcher sees of u: the aggregate state, the notes
// and the contact card.
func (s *Server) watcherView(u *user) presence.Categories {
	doc := presence.Describe(string(u.uri), sfbPresence(u.presenceOf(), s.sipPres.users[u.uri].changedAt(s.now())), 1)
	zero := uint32(0)
	doc.Categories = append(doc.Categories, presence.Category{
		Name: "contactCard", Instance: &zero, Container: presence.NoContainer, Version: 1, ExpireType: "static",
		ContactCard: &presence.ContactCard{DisplayName: u.name, Email: u.uri.Address()},
	})
	return doc
}

// perPerson is how many category subscriptions watching one person costs.
func (sub *sipSub) perPerson() int {
	if len(sub.categories) == 0 {
		return len(presence.DefaultCategories)
	}
	return len(sub.categories)
}

func (sub *sipSub) wants(category string) bool {
	if len(sub.categories) == 0 {
		return true
	}
	for _, c := range sub.categories {
		if c == category {
			return true
		}
	}
	return false
}

// notifySelf sends the user's roaming-self subscribers what changed with
// the categories written: every instance of those categories and the
// aggregate state.
func (s *Server) notifySelf(su *sipUser, u *user, written []presence.Category) {
	if len(written) == 0 {
		return
	}
	var body []byte
	for sub := range su.self {
		if sub.event != presence.EventRoamingSelf {
			continue
		}
		if body == nil {
			body = presence.RoamingSelf{Categories: s.selfCategoriesOf(u, su, written)}.Marshal()
		}
		s.queue(sub, s.notifyRequest(sub, "", presence.ContentTypeRoamingSelf, body))
	}
}

// queue hands req to sub's endpoint, whose goroutine sends the endpoint's
// notifications one after the other. The caller holds s.mu.
func (s *Server) queue(sub *sipSub, req *sip.Request) {
	ep := sub.ep
	if ep.gone || req == nil || s.closed {
		return
	}
	if sub.held != nil {
		if len(sub.held) < sipOutboxLimit {
			sub.held = append(sub.held, req)
		}
		return
	}
	if len(ep.out) >= sipOutboxLimit {
		s.log.Warn().Stringer("user", ep.user.uri).Str("epid", ep.epid).Int("queued", len(ep.out)).Msg("SIP endpoint does not keep up with its notifications; ending its subscriptions")
		ep.out = nil
		for other := range ep.subs {
			s.endSub(other)
			ep.out = append(ep.out, sipOutgoing{other, s.notifyRequest(other, "terminated;reason=deactivated", "", nil)})
		}
	} else {
		ep.out = append(ep.out, sipOutgoing{sub, req})
	}
	if !ep.sending {
		ep.sending = true
		s.wg.Add(1)
		go s.drain(ep)
	}
}

// drain sends ep's queued notifications in order: a NOTIFY waits for its
// response (481 ends the subscription, as the endpoint no longer knows
// the dialog), a BENOTIFY gets none.
func (s *Server) drain(ep *sipPresenceEP) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if len(ep.out) == 0 || ep.gone || s.ctx.Err() != nil {
			ep.sending = false
			ep.out = nil
			s.mu.Unlock()
			return
		}
		o := ep.out[0]
		ep.out = ep.out[1:]
		s.mu.Unlock()
		if o.req.Method == sipBENOTIFY {
			// Nobody answers a BENOTIFY, so it goes without a
			// transaction: the Via a transaction would add is ours.
			o.req.PrependHeader(ep.peer.Via())
			if err := ep.peer.Send(o.req); err != nil {
				s.log.Debug().Err(err).Stringer("user", ep.user.uri).Msg("send BENOTIFY")
			}
			continue
		}
		res, err := ep.peer.Do(s.ctx, o.req)
		switch {
		case err != nil:
			s.log.Debug().Err(err).Stringer("user", ep.user.uri).Str("event", o.sub.event).Msg("send NOTIFY")
		case res.StatusCode == 481 || res.StatusCode >= 400 && res.StatusCode != 408:
			s.mu.Lock()
			if _, live := ep.subs[o.sub]; live {
				s.endSub(o.sub)
			}
			s.mu.Unlock()
		}
	}
}

// forSIPPresenceSubs calls f with each presence subscription of uri's SIP
// endpoints, under s.mu.
func (s *Server) forSIPPresenceSubs(uri sfb.URI, f func(*sipSub)) {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	su := s.sipPres.users[uri]
	if su == nil {
		return
	}
	var subs []*sipSub
	for ep := range su.endpoints {
		for sub := range ep.subs {
			if sub.event == presence.EventPresence {
				subs = append(subs, sub)
			}
		}
	}
	for _, sub := range subs {
		f(sub)
	}
}

// SIPPresenceWatchers is how many SIP presence subscriptions watch uri
// (for tests and the bench, beside Subscribers for UCWA).
func (s *Server) SIPPresenceWatchers(uri sfb.URI) int {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sipPres.watchers[uri])
}
