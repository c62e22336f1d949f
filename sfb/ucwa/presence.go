package ucwa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Presence over UCWA: people are watched through presenceSubscriptions
// (SubscribeToThePresenceOfSelectedContacts.md), at most
// maxPerSubscription per subscription, later people added with
// addToPresenceSubscription. Subscriptions are extended before they expire
// and created again when the server drops them or the application is
// lost. contactPresence and contactNote "updated" events carry no values:
// the people of one event batch are fetched together, in UCWA batches.

const (
	// maxPerSubscription bounds a subscription, so that one the server
	// drops is re-created with one request of bounded size.
	maxPerSubscription = 100
	// maxNoteRunes bounds the notes and activities the bridge passes on
	// or publishes; longer ones are cut.
	maxNoteRunes = 512
)

// watchSub is one presence subscription of the session.
type watchSub struct {
	href, memberships, addTo string
	members                  map[sfb.URI]struct{}
	expires                  time.Time
	// lost: the server no longer has it; the presence loop creates it
	// again with its members.
	lost bool
}

// presenceState is the session's presence bookkeeping.
type presenceState struct {
	// opMu serializes changes to the subscriptions (Watch, Unwatch,
	// renewal); mu guards the fields.
	opMu sync.Mutex
	// fetchMu serializes fetching and emitting, so that a later fetch
	// (which reads a later state) is never overtaken by an earlier one.
	fetchMu sync.Mutex

	mu   sync.Mutex
	subs []*watchSub
	of   map[sfb.URI]*watchSub
	// subscribing holds the people of a subscription request under way:
	// the server may announce their state on the event channel before
	// the request's answer arrives, and that first state must not be
	// dropped as somebody's nobody watches.
	subscribing map[sfb.URI]struct{}
	limit       int
	// byContact maps a contact's href (absolute) to the person.
	byContact map[string]sfb.URI
	// last is what was delivered for each watched person.
	last map[sfb.URI]sfb.Presence
	// retry holds hrefs whose fetch failed for a reason that may pass,
	// fetched again by the presence loop.
	retry map[string]presenceEvent
	// activeAt is the last ReportActivity, reportedAt the last
	// reportMyActivity sent.
	activeAt, reportedAt time.Time
	wake                 chan struct{}
}

func newPresenceState(limit int) *presenceState {
	return &presenceState{of: map[sfb.URI]*watchSub{}, subscribing: map[sfb.URI]struct{}{}, limit: limit, byContact: map[string]sfb.URI{},
		last: map[sfb.URI]sfb.Presence{}, retry: map[string]presenceEvent{}, wake: make(chan struct{}, 1)}
}

// watching reports whether events about u are wanted: u is watched or
// being subscribed to. Called with mu held.
func (p *presenceState) watching(u sfb.URI) bool {
	if _, ok := p.of[u]; ok {
		return true
	}
	_, ok := p.subscribing[u]
	return ok
}

func (p *presenceState) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (s *session) presenceTimings() (duration, renewBefore, check time.Duration) {
	tm := s.t.timings
	duration, renewBefore, check = tm.PresenceDuration, tm.PresenceRenewBefore, tm.PresenceCheck
	if duration <= 0 {
		duration = 30 * time.Minute
	}
	duration = min(max(duration, 10*time.Minute), 30*time.Minute)
	if renewBefore <= 0 {
		renewBefore = 5 * time.Minute
	}
	if check <= 0 {
		check = 30 * time.Second
	}
	return duration, renewBefore, check
}

func (s *session) WatchCapacity() int {
	s.pres.mu.Lock()
	defer s.pres.mu.Unlock()
	return s.pres.limit
}

// Watch subscribes to people. Their current state arrives as
// PresenceChanged events once the server announces it (an "updated" event
// per person after subscribing), usually within seconds.
func (s *session) Watch(ctx context.Context, people []sfb.URI) ([]sfb.URI, error) {
	p := s.pres
	p.opMu.Lock()
	defer p.opMu.Unlock()
	var todo []sfb.URI
	seen := map[sfb.URI]bool{}
	p.mu.Lock()
	for _, u := range people {
		if _, ok := p.of[u]; !ok && !seen[u] {
			seen[u] = true
			todo = append(todo, u)
		}
	}
	p.mu.Unlock()
	var taken []sfb.URI
	// chunk shrinks when the server refuses a request as over its limit:
	// fewer people may still fit.
	chunk := maxPerSubscription
	for len(todo) > 0 {
		p.mu.Lock()
		watching := len(p.of)
		room := p.limit - watching
		var sub *watchSub
		if n := len(p.subs); n > 0 && !p.subs[n-1].lost && p.subs[n-1].addTo != "" && len(p.subs[n-1].members) < maxPerSubscription {
			sub = p.subs[n-1]
		}
		p.mu.Unlock()
		if room <= 0 {
			return taken, fmt.Errorf("watch %d more people (watching %d): %w", len(todo), watching, sfb.ErrWatchLimit)
		}
		n := min(len(todo), room, chunk)
		if sub != nil {
			n = min(n, maxPerSubscription-len(sub.members))
		}
		p.mu.Lock()
		for _, u := range todo[:n] {
			p.subscribing[u] = struct{}{}
		}
		p.mu.Unlock()
		var err error
		if sub == nil {
			err = s.createSubscription(ctx, todo[:n], nil)
		} else {
			err = s.addToSubscription(ctx, sub, todo[:n])
		}
		p.mu.Lock()
		for _, u := range todo[:n] {
			delete(p.subscribing, u)
			if _, ok := p.of[u]; !ok {
				// Whatever arrived meanwhile is not this session's to
				// remember: a later watch delivers the state again.
				delete(p.last, u)
			}
		}
		p.mu.Unlock()
		if isLimitExceeded(err) && n > 1 {
			chunk = n / 2
			continue
		}
		if isLimitExceeded(err) {
			p.mu.Lock()
			p.limit = len(p.of)
			watching = len(p.of)
			p.mu.Unlock()
			s.log.Info().Int("watching", watching).Msg("The server allows no more presence subscriptions for this login")
			return taken, fmt.Errorf("watch %d more people (watching %d): %w: %w", len(todo), watching, sfb.ErrWatchLimit, err)
		}
		if err != nil {
			return taken, fmt.Errorf("watch presence: %w", err)
		}
		taken = append(taken, todo[:n]...)
		todo = todo[n:]
	}
	return taken, nil
}

func isLimitExceeded(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusForbidden && e.Subcode == "LimitExceeded"
}

// createSubscription creates a subscription to people; old, when not nil,
// is a lost subscription it replaces.
func (s *session) createSubscription(ctx context.Context, people []sfb.URI, old *watchSub) error {
	st, _ := s.appSnapshot()
	if st.presenceSubscriptions == "" {
		return fmt.Errorf("create presence subscription: the application has no presenceSubscriptions link: %w", errors.ErrUnsupported)
	}
	duration, _, _ := s.presenceTimings()
	uris := make([]string, len(people))
	for i, u := range people {
		uris[i] = string(u)
	}
	body, _ := json.Marshal(map[string]any{"duration": int(duration / time.Minute), "uris": uris})
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	defer cancel()
	var res PresenceSubscription
	if _, err := s.c.doJSON(rctx, request{op: "create presence subscription", method: http.MethodPost, url: st.presenceSubscriptions,
		body: body, contentType: "application/json"}, &res); err != nil {
		return err
	}
	if res.Self() == "" {
		return errors.New("create presence subscription: response has no self link")
	}
	sub := &watchSub{href: resolveHref(st.base, res.Self()), memberships: resolveHref(st.base, res.Links.Href("memberships")),
		addTo: resolveHref(st.base, res.Links.Href("addToPresenceSubscription")), members: map[sfb.URI]struct{}{},
		expires: s.t.now().Add(duration)}
	p := s.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	if old != nil {
		for i, x := range p.subs {
			if x == old {
				p.subs = append(p.subs[:i:i], p.subs[i+1:]...)
				break
			}
		}
	}
	p.subs = append(p.subs, sub)
	for _, u := range people {
		sub.members[u] = struct{}{}
		p.of[u] = sub
	}
	return nil
}

func (s *session) addToSubscription(ctx context.Context, sub *watchSub, people []sfb.URI) error {
	uris := make([]string, len(people))
	for i, u := range people {
		uris[i] = string(u)
	}
	body, _ := json.Marshal(map[string]any{"contactUris": uris})
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	defer cancel()
	_, err := s.c.do(rctx, request{op: "add to presence subscription", method: http.MethodPost, url: sub.addTo, body: body, contentType: "application/json"})
	if statusOf(err) == http.StatusNotFound {
		// The server dropped it: a new subscription takes the old
		// members and these.
		s.pres.mu.Lock()
		sub.lost = true
		s.pres.mu.Unlock()
		return s.recreateSubscription(ctx, sub, people)
	}
	if err != nil {
		return err
	}
	p := s.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range people {
		sub.members[u] = struct{}{}
		p.of[u] = sub
	}
	return nil
}

// recreateSubscription replaces a lost subscription with a new one of its
// members and extra.
func (s *session) recreateSubscription(ctx context.Context, sub *watchSub, extra []sfb.URI) error {
	s.pres.mu.Lock()
	people := make([]sfb.URI, 0, len(sub.members)+len(extra))
	for u := range sub.members {
		people = append(people, u)
	}
	s.pres.mu.Unlock()
	people = append(people, extra...)
	if len(people) == 0 {
		s.pres.mu.Lock()
		defer s.pres.mu.Unlock()
		s.dropSub(sub)
		return nil
	}
	s.log.Info().Int("people", len(people)).Msg("Presence subscription lost, creating it again")
	return s.createSubscription(ctx, people, sub)
}

// dropSub forgets sub; callers hold pres.mu.
func (s *session) dropSub(sub *watchSub) {
	p := s.pres
	for i, x := range p.subs {
		if x == sub {
			p.subs = append(p.subs[:i:i], p.subs[i+1:]...)
			break
		}
	}
	for u := range sub.members {
		if p.of[u] == sub {
			delete(p.of, u)
		}
	}
}

// Unwatch removes people from their subscriptions: a subscription left
// empty is deleted, other memberships are deleted one by one.
func (s *session) Unwatch(ctx context.Context, people []sfb.URI) error {
	p := s.pres
	p.opMu.Lock()
	defer p.opMu.Unlock()
	bySub := map[*watchSub][]sfb.URI{}
	p.mu.Lock()
	for _, u := range people {
		if sub := p.of[u]; sub != nil {
			bySub[sub] = append(bySub[sub], u)
			delete(p.of, u)
			delete(sub.members, u)
			delete(p.last, u)
		}
	}
	p.mu.Unlock()
	var errs []error
	for sub, gone := range bySub {
		p.mu.Lock()
		empty, lost := len(sub.members) == 0, sub.lost
		if empty {
			s.dropSub(sub)
		}
		p.mu.Unlock()
		if lost {
			continue
		}
		if empty {
			rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
			_, err := s.c.do(rctx, request{op: "delete presence subscription", method: http.MethodDelete, url: sub.href})
			cancel()
			if err != nil && statusOf(err) != http.StatusNotFound {
				errs = append(errs, err)
			}
			continue
		}
		if err := s.deleteMemberships(ctx, sub, gone); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("unwatch presence: %w", err)
	}
	return nil
}

// deleteMemberships deletes the memberships of people in sub
// (presenceSubscriptionMembership_ref.md), found by their contact link.
func (s *session) deleteMemberships(ctx context.Context, sub *watchSub, people []sfb.URI) error {
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	defer cancel()
	var list Resource
	if _, err := s.c.doJSON(rctx, request{op: "list presence memberships", method: http.MethodGet, url: sub.memberships}, &list); err != nil {
		return err
	}
	var ms []Resource
	if _, err := decodeEmbedded(list.Embedded, "presenceSubscriptionMembership", &ms); err != nil {
		return err
	}
	gone := map[sfb.URI]bool{}
	for _, u := range people {
		gone[u] = true
	}
	for _, m := range ms {
		u, _, _ := s.personOfContact(m.Links.Href("contact"))
		if !gone[u] {
			continue
		}
		if _, err := s.c.do(rctx, request{op: "delete presence membership", method: http.MethodDelete, url: s.abs(m.Self())}); err != nil && statusOf(err) != http.StatusNotFound {
			return err
		}
	}
	return nil
}

// personOfContact maps a contact href to a watched person: one seen before,
// or an href ending in the address (people/alice@contoso.com, as the
// reference's transcripts and the simulator name contacts). named says the
// href names somebody, watched or not; when it does not (people/282), only
// the contact resource tells who it is.
func (s *session) personOfContact(href string) (uri sfb.URI, watched, named bool) {
	if href == "" {
		return "", false, false
	}
	abs := s.abs(href)
	p := s.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	if u, ok := p.byContact[abs]; ok {
		return u, p.watching(u), true
	}
	u, err := url.Parse(abs)
	if err != nil {
		return "", false, false
	}
	last, err := url.PathUnescape(path.Base(u.EscapedPath()))
	if err != nil || !strings.Contains(last, "@") {
		return "", false, false
	}
	uri, err = sfb.ParseURI(last)
	if err != nil {
		return "", false, false
	}
	if watched = p.watching(uri); watched {
		p.byContact[abs] = uri
	}
	return uri, watched, true
}

// presenceEvent is an "updated" event of a contact's presence or note.
type presenceEvent struct {
	rel     string // contactPresence or contactNote
	href    string // absolute
	contact string // absolute
}

// watchedEvent is a presenceEvent of a watched person.
type watchedEvent struct {
	ev     presenceEvent
	person sfb.URI
}

// onPresenceEvents fetches what the events of one batch say changed and
// delivers the new states.
func (s *session) onPresenceEvents(ctx context.Context, evs []presenceEvent) {
	p := s.pres
	p.fetchMu.Lock()
	defer p.fetchMu.Unlock()
	p.mu.Lock()
	for _, e := range p.retry {
		evs = append(evs, e)
	}
	clear(p.retry)
	p.mu.Unlock()
	// One fetch per href, and the contact resource where the href does
	// not tell who it is.
	var items []watchedEvent
	var urls []string
	seen := map[string]bool{}
	var unknown []presenceEvent
	for _, e := range evs {
		if seen[e.href] {
			continue
		}
		seen[e.href] = true
		u, watched, named := s.personOfContact(e.contact)
		switch {
		case named && !watched:
			// Unwatched a moment ago, or never: nothing to fetch.
			s.log.Debug().Stringer("person", u).Msg("Presence of somebody not watched, ignored")
			continue
		case !named:
			unknown = append(unknown, e)
			continue
		}
		items = append(items, watchedEvent{e, u})
		urls = append(urls, e.href)
	}
	if len(unknown) > 0 {
		items, urls = s.identify(ctx, unknown, items, urls)
	}
	if len(urls) == 0 {
		return
	}
	st, _ := s.appSnapshot()
	parts := s.getMany(ctx, st.batch, urls)
	changed := map[sfb.URI]sfb.Presence{}
	var order []sfb.URI
	for i, it := range items {
		part := parts[i]
		p.mu.Lock()
		watched := p.watching(it.person)
		cur, had := changed[it.person]
		if !had {
			cur = p.last[it.person]
		}
		p.mu.Unlock()
		if !watched {
			s.log.Debug().Stringer("person", it.person).Msg("Presence of somebody no longer watched, ignored")
			continue
		}
		if part.err != nil || part.status != http.StatusOK {
			// What may pass (the server busy, the network) is fetched
			// again; an answer that cannot be read would be the same.
			retry := errors.Is(part.err, sfb.ErrServerUnavailable) || part.status >= 500 || part.status == http.StatusTooManyRequests
			s.log.Warn().AnErr("error", part.err).Int("status", part.status).Str("href", redact(it.ev.href)).Stringer("person", it.person).
				Bool("retry", retry).Msg("Could not fetch presence")
			if retry {
				p.mu.Lock()
				p.retry[it.ev.href] = it.ev
				p.mu.Unlock()
			}
			continue
		}
		next, err := applyPresenceBody(cur, it.ev.rel, part.body)
		if err != nil {
			s.log.Warn().Err(err).Str("href", redact(it.ev.href)).Stringer("person", it.person).Msg("Bad presence from the server, ignored")
			continue
		}
		for _, w := range next.warnings {
			s.log.Warn().Str("problem", w).Stringer("person", it.person).Str("href", redact(it.ev.href)).Msg("Presence value mapped to a safe default")
		}
		if !had {
			order = append(order, it.person)
		}
		changed[it.person] = next.Presence
	}
	now := s.t.now()
	for _, u := range order {
		np := changed[u]
		p.mu.Lock()
		old, known := p.last[u]
		watched := p.watching(u)
		if watched {
			np.Changed = now
			if known && old.Same(np) {
				np.Changed = old.Changed
			}
			p.last[u] = np
		}
		p.mu.Unlock()
		if watched && (!known || !old.Same(np)) {
			s.emit(sfb.PresenceChanged{Person: u, Presence: np})
		}
	}
}

// identify fetches the contact resources of events whose contact href does
// not name the person, learns who they are and adds their fetches.
func (s *session) identify(ctx context.Context, evs []presenceEvent, items []watchedEvent, urls []string) ([]watchedEvent, []string) {
	var contacts []string
	idx := map[string]int{}
	for _, e := range evs {
		if _, ok := idx[e.contact]; !ok && e.contact != "" {
			idx[e.contact] = len(contacts)
			contacts = append(contacts, e.contact)
		}
	}
	st, _ := s.appSnapshot()
	parts := s.getMany(ctx, st.batch, contacts)
	p := s.pres
	for _, e := range evs {
		i, ok := idx[e.contact]
		if !ok {
			s.log.Warn().Str("href", redact(e.href)).Msg("Presence event without its contact, ignored")
			continue
		}
		var c Contact
		if parts[i].err != nil || parts[i].status != http.StatusOK || json.Unmarshal(parts[i].body, &c) != nil {
			s.log.Warn().AnErr("error", parts[i].err).Int("status", parts[i].status).Str("contact", redact(e.contact)).Msg("Could not tell whose presence changed, ignored")
			continue
		}
		uri, err := sfb.ParseURI(c.URI)
		p.mu.Lock()
		watched := p.watching(uri)
		if err == nil && watched {
			p.byContact[e.contact] = uri
		}
		p.mu.Unlock()
		if err != nil || !watched {
			s.log.Warn().Str("contact", redact(e.contact)).Str("uri", c.URI).Msg("Presence for somebody not watched, ignored")
			continue
		}
		items = append(items, struct {
			ev     presenceEvent
			person sfb.URI
		}{e, uri})
		urls = append(urls, e.href)
	}
	return items, urls
}

// mappedPresence is a presence read from the server with what had to be
// mapped to a default on the way.
type mappedPresence struct {
	sfb.Presence
	warnings []string
}

// applyPresenceBody updates cur with a contactPresence or contactNote body.
func applyPresenceBody(cur sfb.Presence, rel string, body []byte) (mappedPresence, error) {
	out := mappedPresence{Presence: cur}
	switch rel {
	case "contactPresence":
		var cp ContactPresence
		if err := json.Unmarshal(body, &cp); err != nil {
			return out, fmt.Errorf("decode contactPresence: %w", err)
		}
		out.Availability = availabilityOf(cp.Availability)
		if out.Availability == sfb.AvailabilityUnknown {
			out.warnings = append(out.warnings, fmt.Sprintf("unknown availability %q", truncate(cp.Availability, 40)))
		}
		act, ok := cleanText(cp.Activity)
		if !ok {
			out.warnings = append(out.warnings, "activity with control characters or too long")
		}
		out.Activity = act
		out.Device = deviceOf(cp.DeviceType)
		out.LastActive = cp.LastActive.Time
	case "contactNote":
		var cn ContactNote
		if err := json.Unmarshal(body, &cn); err != nil {
			return out, fmt.Errorf("decode contactNote: %w", err)
		}
		msg, ok := cleanText(cn.Message)
		if !ok {
			out.warnings = append(out.warnings, "note with control characters or too long")
		}
		out.Note, out.OutOfOffice = "", nil
		switch {
		case msg == "":
		case strings.EqualFold(cn.Type, "OutOfOffice"):
			out.OutOfOffice = &sfb.OutOfOffice{Message: msg}
		default:
			if !strings.EqualFold(cn.Type, "Personal") && cn.Type != "" {
				out.warnings = append(out.warnings, fmt.Sprintf("unknown note type %q, taken as personal", truncate(cn.Type, 40)))
			}
			out.Note = msg
		}
	default:
		return out, fmt.Errorf("not a presence resource: %q", rel)
	}
	return out, nil
}

var knownAvailabilities = []sfb.Availability{sfb.AvailabilityOnline, sfb.AvailabilityIdleOnline, sfb.AvailabilityBusy,
	sfb.AvailabilityIdleBusy, sfb.AvailabilityDoNotDisturb, sfb.AvailabilityBeRightBack, sfb.AvailabilityAway, sfb.AvailabilityOffline}

// availabilityOf maps Availability_ref.md's values; anything else is
// AvailabilityUnknown.
func availabilityOf(v string) sfb.Availability {
	for _, a := range knownAvailabilities {
		if strings.EqualFold(v, string(a)) {
			return a
		}
	}
	return sfb.AvailabilityUnknown
}

func deviceOf(v string) sfb.DeviceType {
	for _, d := range []sfb.DeviceType{sfb.DevicePC, sfb.DeviceMobile, sfb.DeviceWeb, sfb.DeviceDeskPhone} {
		if strings.EqualFold(v, string(d)) {
			return d
		}
	}
	return sfb.DeviceUnknown
}

// cleanText cleans text from the server or for it, cut to maxNoteRunes.
func cleanText(v string) (string, bool) { return sfb.CleanText(v, maxNoteRunes) }

// presenceLoop extends subscriptions before they expire, creates lost ones
// again and retries failed fetches (on its tick, so that a failing server
// is not asked again at once).
func (s *session) presenceLoop(resumed bool) {
	defer s.wg.Done()
	if resumed {
		s.deleteStaleSubscriptions(s.ctx)
	}
	_, renewBefore, check := s.presenceTimings()
	tick := time.NewTicker(check)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		case <-s.pres.wake:
		}
		s.maintainSubscriptions(s.ctx, renewBefore)
		s.pres.mu.Lock()
		retry := len(s.pres.retry) > 0
		s.pres.mu.Unlock()
		if retry {
			s.onPresenceEvents(s.ctx, nil)
		}
	}
}

func (s *session) maintainSubscriptions(ctx context.Context, renewBefore time.Duration) {
	p := s.pres
	p.opMu.Lock()
	defer p.opMu.Unlock()
	p.mu.Lock()
	subs := append([]*watchSub(nil), p.subs...)
	p.mu.Unlock()
	duration, _, _ := s.presenceTimings()
	now := s.t.now()
	for _, sub := range subs {
		p.mu.Lock()
		lost, expires := sub.lost, sub.expires
		p.mu.Unlock()
		if !lost && expires.Sub(now) > renewBefore {
			continue
		}
		if !lost {
			rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
			_, err := s.c.do(rctx, request{op: "extend presence subscription", method: http.MethodPost,
				url: withQuery(sub.href, "duration", fmt.Sprint(int(duration/time.Minute)))})
			cancel()
			if err == nil {
				p.mu.Lock()
				sub.expires = now.Add(duration)
				p.mu.Unlock()
				continue
			}
			if statusOf(err) != http.StatusNotFound {
				s.log.Warn().Err(err).Msg("Could not extend presence subscription, trying again")
				continue
			}
			// ExtendAPresenceSubscription.md: 404 means it expired.
		}
		if err := s.recreateSubscription(ctx, sub, nil); err != nil {
			p.mu.Lock()
			sub.lost = true
			p.mu.Unlock()
			s.log.Warn().Err(err).Msg("Could not create a lost presence subscription again, trying again")
		}
	}
}

// withQuery sets a query parameter of href.
func withQuery(href, key, value string) string {
	u, err := url.Parse(href)
	if err != nil {
		return href
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// deleteStaleSubscriptions deletes the subscriptions a resumed application
// still holds from the session before (a bridge restart): nobody extends
// them, and the people in them are watched again through Watch.
func (s *session) deleteStaleSubscriptions(ctx context.Context) {
	st, _ := s.appSnapshot()
	if st.presenceSubscriptions == "" {
		return
	}
	p := s.pres
	p.opMu.Lock()
	defer p.opMu.Unlock()
	var list Resource
	if err := s.get(ctx, st.presenceSubscriptions, "list presence subscriptions", &list); err != nil {
		s.log.Warn().Err(err).Msg("Could not list the presence subscriptions of the resumed application")
		return
	}
	var subs []PresenceSubscription
	if _, err := decodeEmbedded(list.Embedded, "presenceSubscription", &subs); err != nil {
		s.log.Warn().Err(err).Msg("Could not read the presence subscriptions of the resumed application")
		return
	}
	mine := map[string]bool{}
	p.mu.Lock()
	for _, sub := range p.subs {
		mine[sub.href] = true
	}
	p.mu.Unlock()
	for _, sub := range subs {
		href := resolveHref(st.base, sub.Self())
		if href == "" || mine[href] {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
		_, err := s.c.do(rctx, request{op: "delete stale presence subscription", method: http.MethodDelete, url: href})
		cancel()
		if err != nil && statusOf(err) != http.StatusNotFound {
			s.log.Warn().Err(err).Msg("Could not delete a stale presence subscription")
		}
	}
}

// onSubscriptionEvent handles presenceSubscription events: "updated" says
// it is about to expire, "deleted" that the server ended it.
func (s *session) onSubscriptionEvent(e Event) {
	href := s.abs(e.Link.Href)
	p := s.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, sub := range p.subs {
		if sub.href != href {
			continue
		}
		switch e.Type {
		case "updated":
			sub.expires = time.Time{}
		case "deleted":
			sub.lost = true
		default:
			return
		}
		p.poke()
		return
	}
}

// subscriptionsLost marks every subscription lost after the application
// was created again (the old one's subscriptions went with it).
func (s *session) subscriptionsLost() {
	p := s.pres
	p.mu.Lock()
	for _, sub := range p.subs {
		sub.lost = true
	}
	clear(p.byContact)
	p.mu.Unlock()
	p.poke()
}

// Contacts reads myContacts: every person of every group, once.
func (s *session) Contacts(ctx context.Context) ([]sfb.Person, error) {
	st, _ := s.appSnapshot()
	if st.myContacts == "" {
		return nil, fmt.Errorf("list contacts: the application has no myContacts link: %w", errors.ErrUnsupported)
	}
	var list Resource
	if err := s.get(ctx, st.myContacts, "list contacts", &list); err != nil {
		return nil, err
	}
	var contacts []Contact
	if _, err := decodeEmbedded(list.Embedded, "contact", &contacts); err != nil {
		return nil, fmt.Errorf("list contacts: %w", err)
	}
	var out []sfb.Person
	seen := map[sfb.URI]bool{}
	for _, c := range contacts {
		uri, err := sfb.ParseURI(c.URI)
		if err != nil {
			s.log.Warn().Err(err).Str("uri", truncate(c.URI, 100)).Msg("Contact with an unusable address, skipped")
			continue
		}
		if seen[uri] {
			continue
		}
		seen[uri] = true
		name, _ := cleanText(c.Name)
		if name == "" {
			name = uri.Address()
		}
		out = append(out, sfb.Person{URI: uri, DisplayName: name})
	}
	return out, nil
}

// preferredOf maps what the bridge publishes to PreferredAvailability_ref.md:
// UCWA cannot appear Offline, Offwork is the nearest (shown as Away, "Off
// work"); the Idle states are the server's, their active forms are sent.
func preferredOf(a sfb.Availability) (string, error) {
	switch a {
	case sfb.AvailabilityOnline, sfb.AvailabilityIdleOnline:
		return "Online", nil
	case sfb.AvailabilityBusy, sfb.AvailabilityIdleBusy:
		return "Busy", nil
	case sfb.AvailabilityDoNotDisturb, sfb.AvailabilityBeRightBack, sfb.AvailabilityAway:
		return string(a), nil
	case sfb.AvailabilityOffline:
		return "Offwork", nil
	}
	return "", fmt.Errorf("publish availability %q: %w", a, sfb.ErrUnsupported)
}

// Publish posts me/presence and me/note. A note is cleaned of control
// characters and cut to maxNoteRunes.
func (s *session) Publish(ctx context.Context, pub sfb.Publication) error {
	st, gen := s.appSnapshot()
	if pub.Availability != nil {
		pref, err := preferredOf(*pub.Availability)
		if err != nil {
			return err
		}
		if st.myPresence == "" {
			return fmt.Errorf("publish presence: the user is not available (no me/presence link): %w", errors.ErrUnsupported)
		}
		body, _ := json.Marshal(map[string]string{"availability": pref})
		if err := s.post(ctx, st, gen, "publish presence", func(st appState) string { return st.myPresence }, body); err != nil {
			return err
		}
	}
	if pub.Note != nil {
		if st.myNote == "" {
			return fmt.Errorf("publish note: the user is not available (no me/note link): %w", errors.ErrUnsupported)
		}
		note, ok := cleanText(*pub.Note)
		if !ok {
			s.log.Warn().Int("runes", utf8.RuneCountInString(*pub.Note)).Msg("Note cleaned or cut before publishing")
		}
		body, _ := json.Marshal(map[string]string{"message": note})
		if err := s.post(ctx, st, gen, "publish note", func(st appState) string { return st.myNote }, body); err != nil {
			return err
		}
	}
	return nil
}

// post posts body to the link that link picks from st, the application of
// generation gen, and, when that application is gone, to the same link of
// the one created again.
func (s *session) post(ctx context.Context, st appState, gen int, op string, link func(appState) string, body []byte) error {
	href := link(st)
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	defer cancel()
	_, err := s.c.do(rctx, request{op: op, method: http.MethodPost, url: href, body: body, contentType: "application/json"})
	if applicationGone(err) {
		if rerr := s.recreate(ctx, gen, false); rerr != nil {
			return fmt.Errorf("%s: %w", op, rerr)
		}
		st, _ := s.appSnapshot()
		href = link(st)
		rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
		defer cancel()
		_, err = s.c.do(rctx, request{op: op, method: http.MethodPost, url: href, body: body, contentType: "application/json"})
	}
	return err
}

// ReportActivity records that the user is active. The first activity
// after a quiet interval is reported at once (an Idle or Away user turns
// available again); later ones are reported by the activity loop, at most
// once per ActivityInterval.
func (s *session) ReportActivity(ctx context.Context) error {
	now := s.t.now()
	p := s.pres
	p.mu.Lock()
	p.activeAt = now
	due := now.Sub(p.reportedAt) >= s.t.cfg.ActivityInterval
	if due {
		p.reportedAt = now
	}
	p.mu.Unlock()
	if !due {
		return nil
	}
	return s.reportActivity(ctx)
}

func (s *session) reportActivity(ctx context.Context) error {
	st, gen := s.appSnapshot()
	if st.reportMyActivity == "" {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	_, err := s.c.do(rctx, request{op: "report activity", method: http.MethodPost, url: st.reportMyActivity})
	cancel()
	if applicationGone(err) {
		if rerr := s.recreate(ctx, gen, false); rerr != nil {
			return fmt.Errorf("report activity: %w", rerr)
		}
		return nil
	}
	return err
}

// activityLoop reports activity the user had since the last report, once
// per ActivityInterval: reportMyActivity must come at least every four
// minutes while the user is active, and must not come when they are not,
// or SfB never shows them Away.
func (s *session) activityLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(s.t.cfg.ActivityInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		now := s.t.now()
		p := s.pres
		p.mu.Lock()
		due := p.activeAt.After(p.reportedAt)
		if due {
			p.reportedAt = now
		}
		p.mu.Unlock()
		if !due {
			continue
		}
		if err := s.reportActivity(s.ctx); err != nil {
			s.log.Warn().Err(err).Msg("reportMyActivity failed")
		}
	}
}
