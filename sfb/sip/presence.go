package sip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/pool"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/presence"
)

// Presence over SIP (MS-PRES, as pidgin-sipe does it): people are watched
// through batched category subscriptions (SUBSCRIBE, Event: presence, to
// the user's own URI, application/msrtc-adrl-categorylist+xml) of at most
// maxPerSubscription people each; people join the last one that has room
// (an in-dialog SUBSCRIBE with the subscribe action) and leave with the
// unsubscribe action, or the whole dialog ends (Expires: 0). The first
// state of each person comes piggybacked on the 200 or in a NOTIFY, later
// ones in BENOTIFYs. Subscriptions are refreshed before they expire and
// created again when the server ends them or the endpoint registered anew.
// The contact list comes from the vnd-microsoft-roaming-contacts
// self-subscription, the versions of the user's own publications from
// vnd-microsoft-roaming-self; both are subscribed to when first needed.
//
// What a session holds for presence is nothing until it is used: no
// goroutine, and timers only for live subscriptions and an active user.

const (
	// maxPerSubscription bounds the people of one subscription, so that
	// one the server drops is created again with a request of bounded
	// size.
	maxPerSubscription = 100
	// publishAttempts bounds the publications of one Publish that the
	// server refuses for stale versions (409).
	publishAttempts = 3
)

// presenceState is what a session keeps for presence. Owned by this file.
type presenceState struct {
	// opMu serializes changes to the watch subscriptions (Watch,
	// Unwatch, refreshes and re-creations).
	opMu sync.Mutex
	// deliverMu serializes reading notifications and emitting what they
	// changed, so that a later state is never overtaken by an earlier one.
	deliverMu sync.Mutex
	// pubMu serializes publications (Publish, ReportActivity).
	pubMu sync.Mutex

	mu sync.Mutex
	// subs are the watch subscriptions; people the watched, with what
	// was delivered for each.
	subs   []*subscription
	people map[sfb.URI]*watched
	// limit, when not 0, is a lower watch limit the server set.
	limit int
	// contacts and self are the self-subscriptions, nil until needed.
	contacts *contactsSub
	self     *subscription
	versions presence.Versions
	// activeAt is the last ReportActivity; machine the machine state
	// published last (0: none); idle moves it down when activity stops.
	activeAt time.Time
	machine  int
	idle     *time.Timer
	// stopHooked: the session's end stops the timers.
	stopHooked bool
}

// subscription is one SUBSCRIBE dialog of the endpoint.
type subscription struct {
	event string
	// to is where a presence subscription goes when it is not the user's
	// own URI (a batch): the contact of a single category subscription,
	// or the pool a batch was sent to (rlmi resubscribe, MS-PRES
	// 3.4.5.1.3). People join only batches to the user's URI.
	to     string
	single bool
	dialog *Dialog
	// members are the people of a presence subscription.
	members map[sfb.URI]struct{}
	timer   *time.Timer
	// lost: the server no longer has the dialog; it is created again.
	lost bool
	// backoff grows while creating it again fails.
	backoff time.Duration
}

// watched is a watched person.
type watched struct {
	sub *subscription
	// last is what was delivered; delivered says whether anything was.
	last      sfb.Presence
	delivered bool
	// dialog and cseq are the dialog and CSeq of the notification last
	// applied (a piggybacked one counts with its ms-piggyback-cseq), so
	// that an older one of the same dialog read late is not applied over
	// it.
	dialog *Dialog
	cseq   uint32
}

// errUnifiedContactStore: the user's contact list is in Exchange, which
// the bridge does not read; the bridge takes errors.ErrUnsupported as "no
// contact list".
var errUnifiedContactStore = fmt.Errorf("the contact list is in the Unified Contact Store, not on the SIP server: %w", errors.ErrUnsupported)

// contactsSub is the roaming contacts self-subscription and the list.
type contactsSub struct {
	sub *subscription
	// ready is closed once the whole list arrived; err says why it
	// cannot (the server refused the subscription).
	ready     chan struct{}
	readyDone bool
	err       error
	list      map[sfb.URI]string
}

// done closes ready once. Called with pres.mu held.
func (c *contactsSub) done() {
	if !c.readyDone {
		c.readyDone = true
		close(c.ready)
	}
}

func (s *Session) watchLimit() int {
	p := &s.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	return s.watchLimitLocked()
}

func (s *Session) watchLimitLocked() int {
	limit := s.t.cfg.PresenceWatchLimit
	if limit <= 0 {
		limit = sfb.DefaultConfig().PresenceWatchLimit
	}
	if p := &s.pres; p.limit > 0 && p.limit < limit {
		limit = p.limit
	}
	return limit
}

// WatchCapacity implements sfb.PresenceSession.
func (s *Session) WatchCapacity() int { return s.watchLimit() }

// Watch implements sfb.PresenceSession.
func (s *Session) Watch(ctx context.Context, people []sfb.URI) ([]sfb.URI, error) {
	p := &s.pres
	p.opMu.Lock()
	defer p.opMu.Unlock()
	var todo []sfb.URI
	seen := map[sfb.URI]bool{}
	p.mu.Lock()
	for _, u := range people {
		if _, ok := p.people[u]; !ok && !seen[u] {
			seen[u] = true
			todo = append(todo, u)
		}
	}
	p.mu.Unlock()
	var taken []sfb.URI
	for len(todo) > 0 {
		p.mu.Lock()
		watching := len(p.people)
		room := s.watchLimitLocked() - watching
		var sub *subscription
		for i := len(p.subs) - 1; i >= 0; i-- {
			if x := p.subs[i]; x.to == "" {
				if !x.lost && len(x.members) < maxPerSubscription {
					sub = x
				}
				break
			}
		}
		fresh := sub == nil
		if fresh {
			// Listed at once, so that a notification that overtakes the
			// 200 is known as the subscription's.
			sub = &subscription{event: presence.EventPresence, members: map[sfb.URI]struct{}{}}
			p.subs = append(p.subs, sub)
		}
		n := min(len(todo), room, maxPerSubscription-len(sub.members))
		if room <= 0 {
			if fresh {
				p.subs = p.subs[:len(p.subs)-1]
			}
			p.mu.Unlock()
			return taken, fmt.Errorf("watch %d more people (watching %d): %w", len(todo), watching, sfb.ErrWatchLimit)
		}
		batch := todo[:n]
		if p.people == nil {
			p.people = map[sfb.URI]*watched{}
		}
		for _, u := range batch {
			p.people[u] = &watched{sub: sub}
		}
		p.mu.Unlock()

		refused, err := s.subscribePresence(ctx, sub, fresh, presence.ActionSubscribe, batch)
		p.mu.Lock()
		failed := batch
		if err == nil {
			failed = refused
			for _, u := range batch {
				sub.members[u] = struct{}{}
			}
		} else if fresh {
			s.unlist(sub)
		}
		for _, u := range failed {
			if w := p.people[u]; w != nil && w.sub == sub {
				delete(p.people, u)
			}
			delete(sub.members, u)
		}
		empty := err == nil && len(sub.members) == 0
		p.mu.Unlock()
		if empty {
			// The server took nobody: the dialog ends.
			s.dropSubscription(sub)
		}
		if err != nil {
			if isWatchRefused(err) {
				p.mu.Lock()
				p.limit = max(len(p.people), 1)
				p.mu.Unlock()
				return taken, fmt.Errorf("watch %d more people (watching %d): %w: %w", len(todo), watching, sfb.ErrWatchLimit, err)
			}
			return taken, fmt.Errorf("watch presence: %w", err)
		}
		for _, u := range batch {
			if !containsURI(refused, u) {
				taken = append(taken, u)
			}
		}
		if len(refused) > 0 {
			p.mu.Lock()
			p.limit = max(len(p.people), 1)
			watching = len(p.people)
			p.mu.Unlock()
			s.log.Info().Int("watching", watching).Int("refused", len(refused)).Msg("The server allows no more presence subscriptions for this login")
			return taken, fmt.Errorf("watch %d more people (watching %d): the server refused %d: %w", len(todo)-len(batch)+len(refused), watching, len(refused), sfb.ErrWatchLimit)
		}
		todo = todo[n:]
	}
	return taken, nil
}

func containsURI(list []sfb.URI, u sfb.URI) bool {
	for _, x := range list {
		if x == u {
			return true
		}
	}
	return false
}

// isWatchRefused reports whether the server refused a presence
// subscription as over the user's limits.
func isWatchRefused(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == 403
}

// subscribePresence sends a batch subscription of sub for people: the
// first SUBSCRIBE of a new dialog when fresh, else one in its dialog
// (action subscribe or unsubscribe). It reads the first notification when
// the 200 carries it and returns the people the server refused for its
// quota.
func (s *Session) subscribePresence(ctx context.Context, sub *subscription, fresh bool, action string, people []sfb.URI) ([]sfb.URI, error) {
	batch := presence.BatchSubscribe{URI: string(s.self), Action: action, Categories: presence.DefaultCategories}
	for _, u := range people {
		batch.Resources = append(batch.Resources, presence.Resource{URI: string(u)})
	}
	p := &s.pres
	p.mu.Lock()
	if fresh {
		// A new dialog (a re-creation reuses the subscription).
		to := sub.to
		if to == "" {
			to = string(s.self)
		}
		sub.dialog = s.newDialog(to)
	}
	d := sub.dialog
	req, err := s.request(d, sipmsg.SUBSCRIBE)
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("subscribe to presence: %w", err)
	}
	addSubscribeHeaders(req, presence.EventPresence, presence.Accept)
	if !sub.single {
		// A single category subscription goes to the contact and carries
		// neither (pidgin-sipe's sipe_subscribe_presence_single).
		req.AppendHeader(sipmsg.NewHeader("Require", "adhoclist, categoryList"))
		req.AppendHeader(sipmsg.NewHeader("Supported", "eventlist"))
	}
	req.AppendHeader(sipmsg.NewHeader("Content-Type", presence.ContentTypeCategoryList))
	req.SetBody(batch.Marshal())
	rctx, cancel := context.WithTimeout(ctx, s.t.timings.RequestTimeout)
	defer cancel()
	res, err := s.do(rctx, "subscribe to presence", req)
	if err != nil {
		return nil, err
	}
	s.established(sub, res, fresh)
	if len(res.Body()) == 0 {
		return nil, nil
	}
	refused, err := s.readPresence(sub, d, piggybackCSeq(res), headerValue(res, "Content-Type"), res.Body())
	if err != nil {
		s.log.Warn().Err(err).Msg("Unreadable first presence notification, waiting for the next")
	}
	return refused, nil
}

// addSubscribeHeaders adds what every SUBSCRIBE of the endpoint carries
// (pidgin-sipe's sipe_subscribe).
func addSubscribeHeaders(req *sipmsg.Request, event, accept string) {
	req.AppendHeader(sipmsg.NewHeader("Event", event))
	req.AppendHeader(sipmsg.NewHeader("Accept", accept))
	req.AppendHeader(sipmsg.NewHeader("Supported", "com.microsoft.autoextend"))
	req.AppendHeader(sipmsg.NewHeader("Supported", "ms-benotify"))
	req.AppendHeader(sipmsg.NewHeader("Proxy-Require", "ms-benotify"))
	req.AppendHeader(sipmsg.NewHeader("Supported", "ms-piggyback-first-notify"))
}

// piggybackCSeq is the CSeq a notification piggybacked on res would have
// had; 0 when the server does not say.
func piggybackCSeq(res *sipmsg.Response) uint32 {
	n, _ := strconv.ParseUint(strings.TrimSpace(headerValue(res, "ms-piggyback-cseq")), 10, 32)
	return uint32(n)
}

// established takes what a 200 to a SUBSCRIBE of sub says about its
// dialog (a new one when fresh) and schedules its refresh. When the server
// ended the dialog while the request was under way, it stays ended: its
// re-creation is scheduled already.
func (s *Session) established(sub *subscription, res *sipmsg.Response, fresh bool) {
	p := &s.pres
	p.mu.Lock()
	if sub.lost && !fresh {
		p.mu.Unlock()
		return
	}
	sub.dialog.update(res)
	sub.lost, sub.backoff = false, 0
	p.mu.Unlock()
	s.scheduleRefresh(sub, subscriptionExpiry(res))
}

// defaultSubscriptionExpiry is taken when the server states none.
const defaultSubscriptionExpiry = time.Hour

// subscriptionExpiry is the lifetime a response or NOTIFY gives a
// subscription: Expires, else subscription-state's expires parameter.
func subscriptionExpiry(m sipmsg.Message) time.Duration {
	v := headerValue(m, "Expires")
	if v == "" {
		for _, p := range strings.Split(headerValue(m, "subscription-state"), ";") {
			if name, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(name, "expires") {
				v = val
			}
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return defaultSubscriptionExpiry
	}
	return time.Duration(n) * time.Second
}

// scheduleRefresh refreshes sub before it expires in lifetime: two
// minutes ahead as pidgin-sipe does, at half the lifetime for a short one,
// spread a little so that subscriptions made together do not refresh
// together.
func (s *Session) scheduleRefresh(sub *subscription, lifetime time.Duration) {
	lead := min(2*time.Minute, lifetime/2)
	at := lifetime - lead
	at -= time.Duration(rand.Int64N(int64(lead/4) + 1))
	s.scheduleSub(sub, at)
}

func (s *Session) scheduleSub(sub *subscription, after time.Duration) {
	p := &s.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.closed.Load() {
		return
	}
	s.hookStop()
	if sub.timer != nil {
		sub.timer.Stop()
	}
	sub.timer = time.AfterFunc(after, func() { s.refreshSubscription(sub) })
}

// hookStop stops the presence timers when the session ends. Called with
// pres.mu held.
func (s *Session) hookStop() {
	p := &s.pres
	if p.stopHooked {
		return
	}
	p.stopHooked = true
	context.AfterFunc(s.ctx, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, sub := range p.subs {
			if sub.timer != nil {
				sub.timer.Stop()
			}
		}
		for _, sub := range []*subscription{p.self, p.contactsSubscription()} {
			if sub != nil && sub.timer != nil {
				sub.timer.Stop()
			}
		}
		if p.idle != nil {
			p.idle.Stop()
		}
	})
}

func (p *presenceState) contactsSubscription() *subscription {
	if p.contacts == nil {
		return nil
	}
	return p.contacts.sub
}

// refreshSubscription refreshes sub (an in-dialog SUBSCRIBE with what it
// holds), or creates it again when the server no longer has it.
func (s *Session) refreshSubscription(sub *subscription) {
	if s.closed.Load() || s.ctx.Err() != nil {
		return
	}
	p := &s.pres
	if sub.event == presence.EventPresence {
		p.opMu.Lock()
		defer p.opMu.Unlock()
	}
	p.mu.Lock()
	live := s.subscriptionLive(sub)
	lost := sub.lost
	var members []sfb.URI
	for u := range sub.members {
		members = append(members, u)
	}
	p.mu.Unlock()
	if !live {
		return
	}
	if sub.event == presence.EventPresence && len(members) == 0 {
		s.dropSubscription(sub)
		return
	}
	var err error
	if sub.event == presence.EventPresence {
		var refused []sfb.URI
		refused, err = s.subscribePresence(s.ctx, sub, lost, presence.ActionSubscribe, members)
		if err == nil && len(refused) > 0 {
			s.forget(sub, refused)
		}
	} else {
		err = s.subscribeSelf(s.ctx, sub, lost)
	}
	if err == nil {
		return
	}
	if !lost && isGone(err) {
		// The server forgot the dialog: a new one.
		s.log.Info().Str("event", sub.event).Msg("Subscription gone, subscribing again")
		p.mu.Lock()
		sub.lost = true
		p.mu.Unlock()
		s.scheduleSub(sub, 0)
		return
	}
	p.mu.Lock()
	wait := s.backoff(sub)
	p.mu.Unlock()
	s.log.Warn().Err(err).Str("event", sub.event).Dur("retry_in", wait).Msg("Could not refresh a subscription")
	s.scheduleSub(sub, wait)
}

// backoff is how long to wait before trying sub again: longer after each
// failure, up to BackoffMax, with jitter. Called with pres.mu held.
func (s *Session) backoff(sub *subscription) time.Duration {
	sub.backoff = pool.NextBackoff(sub.backoff, s.t.timings.BackoffMin, s.t.timings.BackoffMax)
	return pool.Jitter(sub.backoff)
}

// subscriptionLive reports whether sub is still one of the session's.
// Called with pres.mu held.
func (s *Session) subscriptionLive(sub *subscription) bool {
	p := &s.pres
	if sub == p.self || sub == p.contactsSubscription() {
		return true
	}
	for _, x := range p.subs {
		if x == sub {
			return true
		}
	}
	return false
}

// forget stops watching people the server refused in sub.
func (s *Session) forget(sub *subscription, people []sfb.URI) {
	p := &s.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range people {
		delete(sub.members, u)
		if w := p.people[u]; w != nil && w.sub == sub {
			delete(p.people, u)
		}
	}
	p.limit = max(len(p.people), 1)
	s.log.Warn().Int("people", len(people)).Msg("The server refused presence subscriptions for this login (quota): they are no longer watched")
}

// unlist removes sub from the watch subscriptions. Called with pres.mu
// held.
func (s *Session) unlist(sub *subscription) {
	p := &s.pres
	for i, x := range p.subs {
		if x == sub {
			p.subs = append(p.subs[:i:i], p.subs[i+1:]...)
			return
		}
	}
}

// dropSubscription ends sub's dialog (Expires: 0) and forgets it.
func (s *Session) dropSubscription(sub *subscription) {
	p := &s.pres
	p.mu.Lock()
	s.unlist(sub)
	if sub.timer != nil {
		sub.timer.Stop()
	}
	lost := sub.lost
	var req *sipmsg.Request
	var err error
	if !lost {
		req, err = s.request(sub.dialog, sipmsg.SUBSCRIBE)
	}
	p.mu.Unlock()
	if lost || err != nil {
		return
	}
	req.AppendHeader(sipmsg.NewHeader("Event", sub.event))
	req.AppendHeader(sipmsg.NewHeader("Expires", "0"))
	ctx, cancel := context.WithTimeout(s.ctx, s.t.timings.RequestTimeout)
	defer cancel()
	if _, err := s.do(ctx, "end presence subscription", req); err != nil && !isGone(err) {
		s.log.Warn().Err(err).Msg("Could not end a presence subscription")
	}
}

// isGone reports whether err says the server no longer has the dialog.
func isGone(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Status == 481 || e.Status == 404 || e.Status == 410)
}

// Unwatch implements sfb.PresenceSession: people leave their
// subscriptions (the unsubscribe action); a subscription left empty ends.
func (s *Session) Unwatch(ctx context.Context, people []sfb.URI) error {
	p := &s.pres
	p.opMu.Lock()
	defer p.opMu.Unlock()
	bySub := map[*subscription][]sfb.URI{}
	p.mu.Lock()
	for _, u := range people {
		if w := p.people[u]; w != nil {
			bySub[w.sub] = append(bySub[w.sub], u)
			delete(p.people, u)
			delete(w.sub.members, u)
		}
	}
	p.mu.Unlock()
	var errs []error
	for sub, gone := range bySub {
		p.mu.Lock()
		empty, lost := len(sub.members) == 0, sub.lost
		p.mu.Unlock()
		switch {
		case empty:
			s.dropSubscription(sub)
		case lost:
			// Created again later with the members it has left.
		default:
			if _, err := s.subscribePresence(ctx, sub, false, presence.ActionUnsubscribe, gone); err != nil && !isGone(err) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("unwatch presence: %w", err)
	}
	return nil
}

// readPresence reads a presence notification of sub (a NOTIFY, a
// BENOTIFY, or one piggybacked on a 200) in its dialog d with CSeq cseq,
// and delivers what changed. It returns the people the server refused for
// its quota.
func (s *Session) readPresence(sub *subscription, d *Dialog, cseq uint32, contentType string, body []byte) ([]sfb.URI, error) {
	n, err := presence.ParseNotify(contentType, body)
	if err != nil {
		return nil, err
	}
	for _, perr := range n.PartErrors {
		s.log.Warn().Err(perr).Msg("Unreadable part of a presence notification, skipped")
	}
	var refused, again []sfb.URI
	var moved []presence.ListResource
	if n.List != nil {
		for _, r := range n.List.Resources {
			u, err := sfb.ParseURI(r.URI)
			if err != nil {
				continue
			}
			switch {
			case r.State == presence.InstanceResubscribe:
				r.URI = string(u)
				moved = append(moved, r)
			case r.State == presence.InstanceTerminated && (r.Reason == "deactivated" || r.Reason == "timeout" || r.Reason == "probation"):
				again = append(again, u)
			case r.State == presence.InstanceTerminated && (strings.EqualFold(r.Reason, "quotaExceeded") || r.Reason == "rejected"):
				refused = append(refused, u)
			}
		}
	}
	p := &s.pres
	p.deliverMu.Lock()
	defer p.deliverMu.Unlock()
	now := time.Now()
	var events []sfb.PresenceChanged
	p.mu.Lock()
	for _, doc := range n.Documents {
		u, err := sfb.ParseURI(doc.URI)
		if err != nil {
			s.log.Warn().Err(err).Msg("Presence of an unusable address, ignored")
			continue
		}
		w := p.people[u]
		if w == nil {
			s.log.Debug().Stringer("person", u).Msg("Presence of somebody not watched, ignored")
			continue
		}
		if w.dialog == d && cseq != 0 && cseq < w.cseq {
			continue
		}
		next, warnings := presence.Apply(w.last, doc)
		if len(warnings) > 0 {
			s.log.Warn().Stringer("person", u).Strs("warnings", warnings).Msg("Presence mapped with defaults")
		}
		if w.dialog != d || cseq > w.cseq {
			w.dialog, w.cseq = d, cseq
		}
		if w.delivered && next.Same(w.last) {
			continue
		}
		next.Changed = now
		w.last, w.delivered = next, true
		events = append(events, sfb.PresenceChanged{Person: u, Presence: next})
	}
	p.mu.Unlock()
	for _, e := range events {
		s.emit(e)
	}
	if len(again) > 0 {
		s.resubscribe(sub, again)
	}
	if len(moved) > 0 {
		s.reroute(sub, moved)
	}
	return refused, nil
}

// resubscribe subscribes people of sub again, as the server asked in its
// rlmi list, in the background.
func (s *Session) resubscribe(sub *subscription, people []sfb.URI) {
	go func() {
		p := &s.pres
		p.opMu.Lock()
		defer p.opMu.Unlock()
		p.mu.Lock()
		var still []sfb.URI
		for _, u := range people {
			if _, ok := sub.members[u]; ok {
				still = append(still, u)
			}
		}
		live, lost := s.subscriptionLive(sub), sub.lost
		p.mu.Unlock()
		if !live || lost || len(still) == 0 || s.ctx.Err() != nil {
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.t.timings.RequestTimeout)
		defer cancel()
		if _, err := s.subscribePresence(ctx, sub, false, presence.ActionSubscribe, still); err != nil {
			s.log.Warn().Err(err).Int("people", len(still)).Msg("Could not subscribe again to presence the server asked for")
		}
	}()
}

// reroute moves people out of sub as the server asked with "resubscribe"
// (MS-PRES 3.4.5.1.3, pidgin-sipe's process_incoming_notify_rlmi_resub):
// one with a poolFqdn into a batch sent to that pool, one without into a
// single category subscription to the contact itself. In the background.
func (s *Session) reroute(sub *subscription, resources []presence.ListResource) {
	go func() {
		p := &s.pres
		p.opMu.Lock()
		defer p.opMu.Unlock()
		if s.ctx.Err() != nil {
			return
		}
		byPool := map[string]*subscription{}
		var made []*subscription
		p.mu.Lock()
		for _, r := range resources {
			u := sfb.URI(r.URI)
			w := p.people[u]
			if w == nil || w.sub != sub {
				continue
			}
			var dst *subscription
			if pool := r.PoolFQDN; pool != "" && !sub.single {
				if dst = byPool[pool]; dst == nil {
					to := pool
					if !strings.HasPrefix(strings.ToLower(to), "sip:") {
						to = "sip:" + to
					}
					dst = &subscription{event: presence.EventPresence, to: to, members: map[sfb.URI]struct{}{}}
					byPool[pool] = dst
					made = append(made, dst)
				}
			} else {
				if sub.single {
					// Already on its own: the same again in a new dialog.
					continue
				}
				dst = &subscription{event: presence.EventPresence, to: string(u), single: true, members: map[sfb.URI]struct{}{}}
				made = append(made, dst)
			}
			delete(sub.members, u)
			dst.members[u] = struct{}{}
			w.sub = dst
		}
		p.subs = append(p.subs, made...)
		empty := len(sub.members) == 0
		p.mu.Unlock()
		if empty {
			s.dropSubscription(sub)
		}
		for _, dst := range made {
			p.mu.Lock()
			people := make([]sfb.URI, 0, len(dst.members))
			for u := range dst.members {
				people = append(people, u)
			}
			p.mu.Unlock()
			ctx, cancel := context.WithTimeout(s.ctx, s.t.timings.RequestTimeout)
			refused, err := s.subscribePresence(ctx, dst, true, presence.ActionSubscribe, people)
			cancel()
			switch {
			case err != nil:
				// Made again by its timer, with backoff.
				s.log.Warn().Err(err).Str("to", dst.to).Msg("Could not subscribe to presence where the server sent it")
				p.mu.Lock()
				dst.lost = true
				wait := s.backoff(dst)
				p.mu.Unlock()
				s.scheduleSub(dst, wait)
			case len(refused) > 0:
				s.forget(dst, refused)
			}
		}
	}()
}

// subscriptionOf finds the subscription a request from the server belongs
// to, and its dialog, by Call-ID; nil when none.
func (s *Session) subscriptionOf(req *sipmsg.Request) (*subscription, *Dialog) {
	callID := ""
	if h := req.CallID(); h != nil {
		callID = h.Value()
	}
	p := &s.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, sub := range append([]*subscription{p.self, p.contactsSubscription()}, p.subs...) {
		if sub != nil && sub.dialog != nil && sub.dialog.CallID == callID {
			return sub, sub.dialog
		}
	}
	return nil, nil
}

// handlePresence handles the server's NOTIFY and BENOTIFY for the endpoint
// (presence, vnd-microsoft-roaming-contacts, vnd-microsoft-roaming-self;
// registration-notify is register.go's), in arrival order. It answers a
// NOTIFY once, after emitting what it brought (400 when its body cannot be
// read); a BENOTIFY gets no answer.
func (s *Session) handlePresence(_ context.Context, req *sipmsg.Request) {
	answer := func(status int, reason string) {
		if req.Method == sipmsg.NOTIFY {
			_ = s.respond(req, status, reason, nil)
		}
	}
	event := strings.ToLower(eventName(req))
	sub, d := s.subscriptionOf(req)
	cseq := uint32(0)
	if h := req.CSeq(); h != nil {
		cseq = h.SeqNo
	}
	terminated := strings.HasPrefix(strings.ToLower(strings.TrimSpace(headerValue(req, "subscription-state"))), "terminated")
	switch event {
	case presence.EventPresence, presence.EventRoamingContacts, presence.EventRoamingSelf:
		if sub == nil {
			// Not a subscription of ours (any more): RFC 6665 4.1.3
			// has the server end it on this answer.
			s.log.Debug().Str("event", event).Msg("Notification of no subscription of ours")
			answer(481, "Call Leg/Transaction Does Not Exist")
			return
		}
	default:
		answer(200, "OK")
		return
	}
	var err error
	switch event {
	case presence.EventPresence:
		if len(req.Body()) > 0 {
			var refused []sfb.URI
			refused, err = s.readPresence(sub, d, cseq, headerValue(req, "Content-Type"), req.Body())
			if len(refused) > 0 {
				s.forget(sub, refused)
			}
		}
	case presence.EventRoamingContacts:
		if len(req.Body()) > 0 && !terminated {
			err = s.readContacts(headerValue(req, "Content-Type"), req.Body())
		}
	case presence.EventRoamingSelf:
		if len(req.Body()) > 0 && !terminated {
			err = s.readSelf(req.Body())
		}
	}
	if err != nil {
		s.log.Warn().Err(err).Str("event", event).Str("method", string(req.Method)).Msg("Unreadable notification from the server")
		answer(400, "Bad Request")
		return
	}
	answer(200, "OK")
	if terminated {
		s.log.Info().Str("event", event).Str("state", headerValue(req, "subscription-state")).Msg("The server ended a subscription, subscribing again")
		p := &s.pres
		p.mu.Lock()
		sub.lost = true
		wait := s.backoff(sub)
		p.mu.Unlock()
		s.scheduleSub(sub, wait)
	}
}

// presenceReregistered is called when the endpoint registered anew (a new
// connection, or the server had dropped the registration): the server
// dropped its subscriptions with it, so every one is created again.
func (s *Session) presenceReregistered() {
	p := &s.pres
	p.mu.Lock()
	subs := append([]*subscription(nil), p.subs...)
	if p.self != nil {
		subs = append(subs, p.self)
	}
	if c := p.contactsSubscription(); c != nil {
		subs = append(subs, c)
	}
	for _, sub := range subs {
		sub.lost = true
	}
	p.machine = 0
	p.mu.Unlock()
	for _, sub := range subs {
		s.scheduleSub(sub, time.Duration(rand.Int64N(int64(time.Second))))
	}
}
