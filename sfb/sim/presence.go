package sim

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Presence as presenceSubscriptions_ref.md, presenceSubscription_ref.md,
// addToPresenceSubscription_ref.md, presenceSubscriptionMemberships_ref.md,
// contactPresence_ref.md, contactNote_ref.md, presence_ref.md, note_ref.md
// and reportMyActivity_ref.md describe it. Every user has a presence; state
// is only allocated for users whose presence differs from the default
// (Online on a PC, no note), so 70,000 users cost nothing until they change.

// The reference bounds a subscription's duration (10 to 30 minutes) but not
// how many subscriptions or people an application may hold; those limits
// are the simulator's, configurable in Options.
const (
	minSubscriptionMinutes = 10
	maxSubscriptionMinutes = 30
	// subscriptionWarning is how long before its expiry a subscription
	// gets the "updated" event that ExtendAPresenceSubscription.md calls
	// "about to expire".
	subscriptionWarning = time.Minute
	// maxNoteRunes bounds a personal note; longer ones are refused with
	// 400 ParameterValidationFailure (the simulator's limit).
	maxNoteRunes = 512
)

// availabilities are the values of Availability_ref.md.
var availabilities = []string{"Online", "IdleOnline", "Busy", "IdleBusy", "DoNotDisturb", "BeRightBack", "Away", "Offline"}

// preferredAvailabilities are what an application may publish
// (PreferredAvailability_ref.md).
var preferredAvailabilities = []string{"Online", "Busy", "DoNotDisturb", "BeRightBack", "Away", "Offwork"}

var deviceTypes = []string{"PC", "Mobile", "Web", "DeskPhone", "Unknown"}

// Presence is what the control API sets and reads of a user's presence.
type Presence struct {
	// Availability is one of Availability_ref.md's values.
	Availability string
	// Activity is a token (in-a-meeting, on-the-phone, ...) or free text.
	Activity string
	// DeviceType is PC, Mobile, Web, DeskPhone or Unknown; empty means PC.
	DeviceType string
	// Note is the personal note.
	Note string
	// OutOfOffice, when not empty, is the out-of-office note; it is shown
	// instead of the personal note, as in contactNote_ref.md.
	OutOfOffice string
	LastActive  time.Time
}

// presenceState is a user's presence as the server aggregates it.
type presenceState struct {
	Presence
	// published is what a UCWA application published (me/presence), empty
	// when the presence comes from the native client or the control API.
	// Only then does idleness (no reportMyActivity) lower it.
	published string
	// activeAt is the last reportMyActivity (or publication) of a UCWA
	// application.
	activeAt time.Time
	// publications counts me/presence and me/note publications.
	publications int
}

// ContactGroup is a group of a user's contact list.
type ContactGroup struct {
	Name    string
	Members []sfb.URI
}

// presenceSub is one presenceSubscription of an application.
type presenceSub struct {
	id      string
	app     *app
	members map[sfb.URI]struct{}
	expires time.Time
	warned  bool
}

func (a *app) subHref(id string) string { return a.base() + "/people/presenceSubscriptions/" + id }

func (a *app) membershipsHref(id string) string {
	return a.base() + "/people/presenceSubscriptionMemberships?presenceSubscriptionId=" + url.QueryEscape(id)
}

// presenceOf is u's presence; the default for users nobody changed.
func (u *user) presenceOf() Presence {
	if u.st != nil && u.st.presence != nil {
		return u.st.presence.Presence
	}
	return Presence{Availability: "Online", DeviceType: "PC"}
}

func (u *user) presenceState() *presenceState {
	st := u.state()
	if st.presence == nil {
		st.presence = &presenceState{Presence: u.presenceOf()}
	}
	return st.presence
}

func validPresence(p Presence) (Presence, error) {
	if p.Availability == "" {
		p.Availability = "Online"
	}
	if !slices.Contains(availabilities, p.Availability) {
		return p, fmt.Errorf("availability %q is not one of %s", p.Availability, strings.Join(availabilities, ", "))
	}
	if p.DeviceType == "" {
		p.DeviceType = "PC"
	}
	if !slices.Contains(deviceTypes, p.DeviceType) {
		return p, fmt.Errorf("device type %q is not one of %s", p.DeviceType, strings.Join(deviceTypes, ", "))
	}
	for name, v := range map[string]string{"note": p.Note, "out-of-office note": p.OutOfOffice, "activity": p.Activity} {
		if err := validNote(v); err != nil {
			return p, fmt.Errorf("%s: %w", name, err)
		}
	}
	return p, nil
}

func validNote(s string) error {
	switch {
	case !utf8.ValidString(s):
		return fmt.Errorf("not valid UTF-8")
	case utf8.RuneCountInString(s) > maxNoteRunes:
		return fmt.Errorf("longer than %d characters", maxNoteRunes)
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0:
		return fmt.Errorf("contains control characters")
	}
	return nil
}

// SetPresence sets uri's presence as their native client would publish it
// (idleness of UCWA applications no longer applies) and tells every
// application subscribed to uri.
func (s *Server) SetPresence(uri sfb.URI, p Presence) error {
	uri = canonical(uri)
	p, err := validPresence(p)
	if err != nil {
		return fmt.Errorf("set presence of %s: %w", uri, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[uri]
	if u == nil {
		return fmt.Errorf("set presence of %s: %w", uri, sfb.ErrNotFound)
	}
	if p.LastActive.IsZero() {
		p.LastActive = s.now()
	}
	ps := u.presenceState()
	ps.published = ""
	s.changePresence(u, p)
	return nil
}

// GetPresence is uri's presence as colleagues see it.
func (s *Server) GetPresence(uri sfb.URI) (Presence, error) {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[uri]
	if u == nil {
		return Presence{}, fmt.Errorf("get presence of %s: %w", uri, sfb.ErrNotFound)
	}
	return u.presenceOf(), nil
}

// changePresence stores p and sends contactPresence and contactNote
// "updated" events, without values, to every subscriber of what changed.
func (s *Server) changePresence(u *user, p Presence) {
	ps := u.presenceState()
	old := ps.Presence
	ps.Presence = p
	s.presenceChanges++
	if old.Availability != p.Availability || old.Activity != p.Activity || old.DeviceType != p.DeviceType {
		s.notifyWatchers(u.uri, "contactPresence", "/presence")
	}
	if old.Note != p.Note || old.OutOfOffice != p.OutOfOffice {
		s.notifyWatchers(u.uri, "contactNote", "/note")
	}
	s.sipPresenceChanged(u, old, p)
}

// PresenceChanges is how many presence changes the server made so far
// (control API, publications, idleness, storms), for the bench.
func (s *Server) PresenceChanges() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.presenceChanges
}

func (s *Server) notifyWatchers(uri sfb.URI, rel, suffix string) {
	notified := map[*app]bool{}
	for sub := range s.watchers[uri] {
		a := sub.app
		if notified[a] {
			continue
		}
		notified[a] = true
		contact := a.peopleHref(uri)
		s.emit(a, "people", a.base()+"/people", prioMedium, obj{
			"link": obj{"rel": rel, "href": contact + suffix},
			"in":   obj{"rel": "contact", "href": contact},
			"type": "updated",
		})
	}
}

// Subscribers is how many applications are subscribed to uri's presence.
func (s *Server) Subscribers(uri sfb.URI) int {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	apps := map[*app]bool{}
	for sub := range s.watchers[uri] {
		apps[sub.app] = true
	}
	return len(apps)
}

// PresenceSubscriptions is the number of presence subscriptions the
// applications and SIP endpoints of uri hold, and the people in them.
func (s *Server) PresenceSubscriptions(uri sfb.URI) (subscriptions, people int) {
	s.forApps(uri, func(a *app) {
		subscriptions += len(a.subs)
		for _, sub := range a.subs {
			people += len(sub.members)
		}
	})
	s.forSIPPresenceSubs(uri, func(sub *sipSub) {
		subscriptions++
		people += len(sub.members)
	})
	return subscriptions, people
}

// DropPresenceSubscriptions deletes every presence subscription of uri's
// applications as the server does when it ends one (a deleted event on the
// event channel; for a SIP endpoint a NOTIFY terminated;reason=deactivated,
// which invites it to subscribe again); a later extension answers 404
// (481 over SIP).
func (s *Server) DropPresenceSubscriptions(uri sfb.URI) {
	s.forApps(uri, func(a *app) {
		for _, sub := range a.subs {
			s.deleteSub(sub, true)
		}
	})
	s.forSIPPresenceSubs(uri, func(sub *sipSub) {
		s.endSub(sub)
		s.queue(sub, s.notifyRequest(sub, "terminated;reason=deactivated", "", nil))
	})
}

// ExpirePresenceSubscriptions makes every presence subscription of uri's
// applications and SIP endpoints expire now, silently: a client that did
// not extend in time learns of it when its extension is answered 404 (481
// over SIP).
func (s *Server) ExpirePresenceSubscriptions(uri sfb.URI) {
	s.forApps(uri, func(a *app) {
		for _, sub := range a.subs {
			s.deleteSub(sub, false)
		}
	})
	s.forSIPPresenceSubs(uri, s.endSub)
}

func (s *Server) deleteSub(sub *presenceSub, event bool) {
	a := sub.app
	for m := range sub.members {
		s.unwatch(sub, m)
	}
	delete(a.subs, sub.id)
	if event {
		s.emit(a, "people", a.base()+"/people", prioMedium, ev("presenceSubscription", a.subHref(sub.id), "", "deleted", nil))
	}
}

func (s *Server) unwatch(sub *presenceSub, m sfb.URI) {
	delete(sub.members, m)
	if w := s.watchers[m]; w != nil {
		delete(w, sub)
		if len(w) == 0 {
			delete(s.watchers, m)
		}
	}
}

// appGone forgets an application's subscriptions when it goes; with the
// user's last application goes what they published through UCWA (they
// are Offline, unless their native client sets something else or a SIP
// endpoint of theirs is registered).
func (s *Server) appGone(a *app) {
	for _, sub := range a.subs {
		for m := range sub.members {
			s.unwatch(sub, m)
		}
	}
	a.subs = nil
	st := a.user.st
	if ps := st.presence; ps != nil && ps.published != "" && len(st.apps) == 1 && st.apps[0] == a {
		ps.published = ""
		if len(st.sipRegs) == 0 {
			p := ps.Presence
			p.Availability, p.Activity = "Offline", ""
			s.changePresence(a.user, p)
		}
	}
}

// SetContacts replaces uri's contact list; each group keeps its order and
// each person is listed once per group. Applications of uri get contact
// added/deleted events in myContacts (myContacts_ref.md).
func (s *Server) SetContacts(uri sfb.URI, groups []ContactGroup) error {
	uri = canonical(uri)
	clean := make([]ContactGroup, 0, len(groups))
	for _, g := range groups {
		name := strings.TrimSpace(g.Name)
		if name == "" || len(name) > maxDisplayName || !utf8.ValidString(name) {
			return fmt.Errorf("set contacts of %s: group name %q: want 1 to %d bytes of UTF-8", uri, g.Name, maxDisplayName)
		}
		cg := ContactGroup{Name: name}
		for _, m := range g.Members {
			c, err := sfb.ParseURI(string(m))
			if err != nil {
				return fmt.Errorf("set contacts of %s: group %s: %w", uri, name, err)
			}
			if !slices.Contains(cg.Members, c) {
				cg.Members = append(cg.Members, c)
			}
		}
		clean = append(clean, cg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[uri]
	if u == nil {
		return fmt.Errorf("set contacts of %s: %w", uri, sfb.ErrNotFound)
	}
	for _, g := range clean {
		for _, m := range g.Members {
			if s.users[m] == nil {
				return fmt.Errorf("set contacts of %s: %s: %w", uri, m, sfb.ErrNotFound)
			}
		}
	}
	before := contactSet(u.state().groups)
	u.state().groups = clean
	after := contactSet(clean)
	for _, a := range u.st.apps {
		in := obj{"rel": "myContacts", "href": a.base() + "/people/contacts"}
		for m := range before {
			if _, ok := after[m]; !ok {
				s.emit(a, "people", a.base()+"/people", prioHigh, obj{"link": obj{"rel": "contact", "href": a.peopleHref(m)}, "in": in, "type": "deleted"})
			}
		}
		for m := range after {
			if _, ok := before[m]; !ok {
				s.emit(a, "people", a.base()+"/people", prioHigh, obj{"link": obj{"rel": "contact", "href": a.peopleHref(m)}, "in": in, "type": "added"})
			}
		}
	}
	s.sipContactsChanged(u)
	return nil
}

func contactSet(groups []ContactGroup) map[sfb.URI]struct{} {
	out := map[sfb.URI]struct{}{}
	for _, g := range groups {
		for _, m := range g.Members {
			out[m] = struct{}{}
		}
	}
	return out
}

// sweepPresence expires subscriptions (with the warning event before) and
// lowers the availability of UCWA users who stopped reporting activity.
func (s *Server) sweepPresence(now time.Time) {
	s.sweepSIPSubscriptions(now)
	for _, a := range s.apps {
		for _, sub := range a.subs {
			switch {
			case !now.Before(sub.expires):
				s.deleteSub(sub, true)
			case !sub.warned && !now.Before(sub.expires.Add(-subscriptionWarning)):
				sub.warned = true
				s.emit(a, "people", a.base()+"/people", prioMedium, ev("presenceSubscription", a.subHref(sub.id), "", "updated", a.presenceSubscription(sub.id)))
			}
		}
		if ps := a.user.st.presence; ps != nil && ps.published != "" {
			if avail := idleAvailability(ps.published, now.Sub(ps.activeAt), s.opts.IdleTimeout, s.opts.AwayTimeout); avail != ps.Availability {
				p := ps.Presence
				p.Availability = avail
				s.changePresence(a.user, p)
			}
		}
	}
}

// idleAvailability is what a published availability becomes after idle
// without reportMyActivity: Online and Busy turn IdleOnline/IdleBusy, then
// Away, as SfB clients show an inactive user.
func idleAvailability(published string, idle, idleAfter, awayAfter time.Duration) string {
	shown := publishedAvailability(published)
	if shown != "Online" && shown != "Busy" {
		return shown
	}
	switch {
	case idle >= awayAfter:
		return "Away"
	case idle >= idleAfter:
		return "Idle" + shown
	}
	return shown
}

// publishedAvailability is how colleagues see a PreferredAvailability:
// Offwork shows as Away with the off-work activity.
func publishedAvailability(p string) string {
	if p == "Offwork" {
		return "Away"
	}
	return p
}

func (a *app) presenceSubscription(id string) obj {
	return obj{
		"rel": "presenceSubscription",
		"id":  id,
		"_links": obj{
			"self":                      link(a.subHref(id)),
			"memberships":               link(a.membershipsHref(id)),
			"addToPresenceSubscription": link(a.membershipsHref(id)),
		},
	}
}

func (a *app) membership(id string, m sfb.URI) obj {
	return obj{
		"rel": "presenceSubscriptionMembership",
		"_links": obj{
			"self":                 link(a.base() + "/people/presenceSubscriptionMemberships/" + url.PathEscape(id+","+m.Address())),
			"contact":              link(a.peopleHref(m)),
			"presenceSubscription": link(a.subHref(id)),
		},
	}
}

func (a *app) memberships(id string, ms []sfb.URI) obj {
	list := make([]any, 0, len(ms))
	for _, m := range ms {
		list = append(list, a.membership(id, m))
	}
	return obj{
		"rel":       "presenceSubscriptionMemberships",
		"_links":    obj{"self": link(a.membershipsHref(id))},
		"_embedded": obj{"presenceSubscriptionMembership": list},
	}
}

func (a *app) subscribedCount() int {
	n := 0
	for _, sub := range a.subs {
		n += len(sub.members)
	}
	return n
}

type subscribeRequest struct {
	Duration    *int     `json:"duration"`
	URIs        []string `json:"uris"`
	ContactURIs []string `json:"contactUris"`
}

// parseURIs reads the people of a subscription request; the reference's
// samples quote them oddly ("\"sip : x\""), which a server does not accept.
func parseURIs(raw []string) ([]sfb.URI, error) {
	out := make([]sfb.URI, 0, len(raw))
	for _, r := range raw {
		u, err := sfb.ParseURI(r)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out, nil
}

func limitExceeded(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusForbidden, "Forbidden", "LimitExceeded", msg)
}

// servePresenceSubscriptions handles people/presenceSubscriptions[/{id}]
// and people/presenceSubscriptionMemberships[/{id}] (segs after people/).
func (s *Server) servePresenceSubscriptions(w http.ResponseWriter, r *http.Request, a *app, segs []string) {
	switch {
	case segs[0] == "presenceSubscriptions" && len(segs) == 1:
		switch r.Method {
		case http.MethodGet:
			s.locked(func() {
				list := []any{}
				for _, id := range sortedKeys(a.subs) {
					list = append(list, a.presenceSubscription(id))
				}
				writeJSON(w, http.StatusOK, obj{
					"rel":       "presenceSubscriptions",
					"_links":    obj{"self": link(a.base() + "/people/presenceSubscriptions")},
					"_embedded": obj{"presenceSubscription": list},
				})
			})
		case http.MethodPost:
			s.createSubscription(w, r, a)
		default:
			methodNotAllowed(w)
		}
	case segs[0] == "presenceSubscriptions" && len(segs) == 2:
		s.serveSubscription(w, r, a, segs[1])
	case segs[0] == "presenceSubscriptionMemberships" && len(segs) == 1:
		s.serveMemberships(w, r, a, r.URL.Query().Get("presenceSubscriptionId"))
	case segs[0] == "presenceSubscriptionMemberships" && len(segs) == 2:
		id, addr, ok := strings.Cut(segs[1], ",")
		m, err := sfb.ParseURI(addr)
		if !ok || err != nil {
			notFound(w)
			return
		}
		s.serveMembership(w, r, a, id, m)
	default:
		notFound(w)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func durationOf(w http.ResponseWriter, r *http.Request, body *int) (int, bool) {
	d := 0
	if body != nil {
		d = *body
	} else if q := r.URL.Query().Get("duration"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil {
			badRequest(w, "ParameterValidationFailure", "duration must be a number of minutes.")
			return 0, false
		}
		d = n
	} else {
		badRequest(w, "ParameterValidationFailure", "duration is required.")
		return 0, false
	}
	if d < minSubscriptionMinutes || d > maxSubscriptionMinutes {
		badRequest(w, "ParameterValidationFailure", fmt.Sprintf("duration must be between %d and %d minutes.", minSubscriptionMinutes, maxSubscriptionMinutes))
		return 0, false
	}
	return d, true
}

func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request, a *app) {
	var req subscribeRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	d, ok := durationOf(w, r, req.Duration)
	if !ok {
		return
	}
	people, err := parseURIs(req.URIs)
	if err != nil || len(people) == 0 {
		badRequest(w, "ParameterValidationFailure", "uris must list at least one SIP URI.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(a.subs) >= s.opts.MaxPresenceSubscriptions {
		limitExceeded(w, "The user has reached the maximum number of subscriptions that can be created.")
		return
	}
	if a.subscribedCount()+len(people) > s.opts.MaxSubscribedPeople {
		limitExceeded(w, "The subscription limit was exceeded.")
		return
	}
	if a.subs == nil {
		a.subs = map[string]*presenceSub{}
	}
	s.seq++
	id := strconv.FormatUint(s.seq, 36) + randomHex(3)
	sub := &presenceSub{id: id, app: a, members: map[sfb.URI]struct{}{}, expires: s.now().Add(time.Duration(d) * time.Minute)}
	a.subs[id] = sub
	s.emit(a, "people", a.base()+"/people", prioMedium, ev("presenceSubscription", a.subHref(id), "", "added", nil))
	s.subscribe(sub, people)
	w.Header().Set("Location", a.subHref(id))
	writeJSON(w, http.StatusCreated, a.presenceSubscription(id))
}

// subscribe adds people to sub; like SubscribeToThePresenceOfSelectedContacts.md,
// each gets a contactPresence (and contactNote) "updated" event so that the
// application fetches their current state. Unknown addresses are taken as
// the server does for people it cannot see: Offline.
func (s *Server) subscribe(sub *presenceSub, people []sfb.URI) {
	a := sub.app
	for _, m := range people {
		if _, ok := sub.members[m]; ok {
			continue
		}
		sub.members[m] = struct{}{}
		if s.watchers[m] == nil {
			s.watchers[m] = map[*presenceSub]struct{}{}
		}
		s.watchers[m][sub] = struct{}{}
		contact := a.peopleHref(m)
		for _, rel := range [...]string{"contactPresence", "contactNote"} {
			suffix := "/presence"
			if rel == "contactNote" {
				suffix = "/note"
			}
			s.emit(a, "people", a.base()+"/people", prioMedium, obj{
				"link": obj{"rel": rel, "href": contact + suffix},
				"in":   obj{"rel": "contact", "href": contact},
				"type": "updated",
			})
		}
	}
}

func (s *Server) serveSubscription(w http.ResponseWriter, r *http.Request, a *app, id string) {
	switch r.Method {
	case http.MethodGet, http.MethodPost, http.MethodDelete:
	default:
		methodNotAllowed(w)
		return
	}
	var req subscribeRequest
	if r.Method == http.MethodPost && !decodeJSON(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := a.subscriptionOr404(w, id)
	if sub == nil {
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, a.presenceSubscription(id))
	case http.MethodPost:
		d, ok := durationOf(w, r, req.Duration)
		if !ok {
			return
		}
		now := s.now()
		sub.expires = now.Add(min(sub.expires.Sub(now)+time.Duration(d)*time.Minute, maxSubscriptionMinutes*time.Minute))
		sub.warned = false
		writeJSON(w, http.StatusOK, a.presenceSubscription(id))
	case http.MethodDelete:
		s.deleteSub(sub, true)
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) serveMemberships(w http.ResponseWriter, r *http.Request, a *app, id string) {
	var req subscribeRequest
	if r.Method == http.MethodPost && !decodeJSON(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := a.subscriptionOr404(w, id)
	if sub == nil {
		return
	}
	switch r.Method {
	case http.MethodGet:
		ms := make([]sfb.URI, 0, len(sub.members))
		for m := range sub.members {
			ms = append(ms, m)
		}
		slices.Sort(ms)
		writeJSON(w, http.StatusOK, a.memberships(id, ms))
	case http.MethodPost:
		people, err := parseURIs(req.ContactURIs)
		if err != nil || len(people) == 0 {
			badRequest(w, "ParameterValidationFailure", "contactUris must list at least one SIP URI.")
			return
		}
		added := 0
		for _, p := range people {
			if _, ok := sub.members[p]; !ok {
				added++
			}
		}
		if a.subscribedCount()+added > s.opts.MaxSubscribedPeople {
			limitExceeded(w, "The subscription limit was exceeded.")
			return
		}
		s.subscribe(sub, people)
		writeJSON(w, http.StatusCreated, a.memberships(id, people))
	default:
		methodNotAllowed(w)
	}
}

// subscriptionOr404 returns the application's subscription id, or answers
// 404 and returns nil. ExtendAPresenceSubscription.md: an expired
// subscription is answered 404 (its sample says ApplicationNotFound, which
// would make a client throw away a live application; the simulator uses no
// subcode). The caller holds s.mu.
func (a *app) subscriptionOr404(w http.ResponseWriter, id string) *presenceSub {
	sub := a.subs[id]
	if sub == nil {
		writeError(w, http.StatusNotFound, "NotFound", "", "The presence subscription does not exist.")
	}
	return sub
}

func (s *Server) serveMembership(w http.ResponseWriter, r *http.Request, a *app, id string, m sfb.URI) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := a.subs[id]
	if sub == nil {
		notFound(w)
		return
	}
	if _, ok := sub.members[m]; !ok {
		notFound(w)
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, a.membership(id, m))
	case http.MethodDelete:
		s.unwatch(sub, m)
		w.WriteHeader(http.StatusNoContent)
	default:
		methodNotAllowed(w)
	}
}

// contactPresence and contactNote as contactPresence_ref.md and
// contactNote_ref.md show them.
func (a *app) contactPresence(u *user) obj {
	p := u.presenceOf()
	b := obj{
		"rel":          "contactPresence",
		"availability": p.Availability,
		"deviceType":   p.DeviceType,
		"activity":     p.Activity,
		"_links":       obj{"self": link(a.peopleHref(u.uri) + "/presence")},
	}
	if !p.LastActive.IsZero() {
		b["lastActive"] = msDate(p.LastActive)
	}
	return b
}

func (a *app) contactNote(u *user) obj {
	p := u.presenceOf()
	b := obj{"rel": "contactNote", "_links": obj{"self": link(a.peopleHref(u.uri) + "/note")}}
	switch {
	case p.OutOfOffice != "":
		b["message"], b["type"] = p.OutOfOffice, "OutOfOffice"
	case p.Note != "":
		b["message"], b["type"] = p.Note, "Personal"
	}
	return b
}

// myContacts, myGroups and groupContacts (myContacts_ref.md,
// myGroups_ref.md, groupContacts_ref.md): every user's groups are roaming
// groups ("group") with ids by position.
func (s *Server) serveContactList(w http.ResponseWriter, a *app, segs []string) {
	groups := a.user.st.groups
	list := func(self string, ms []sfb.URI) obj {
		links, emb := []any{}, []any{}
		for _, m := range ms {
			links = append(links, link(a.peopleHref(m)))
			if u := s.users[m]; u != nil {
				emb = append(emb, a.contact(u))
			}
		}
		return obj{"_links": obj{"self": link(self), "contact": links}, "_embedded": obj{"contact": emb}}
	}
	switch {
	case segs[0] == "contacts" && len(segs) == 1:
		var all []sfb.URI
		for _, g := range groups {
			for _, m := range g.Members {
				if !slices.Contains(all, m) {
					all = append(all, m)
				}
			}
		}
		b := list(a.base()+"/people/contacts", all)
		b["rel"] = "myContacts"
		writeJSON(w, http.StatusOK, b)
	case segs[0] == "groups" && len(segs) == 1:
		emb, links := []any{}, []any{}
		for i, g := range groups {
			links = append(links, link(a.groupHref(i)))
			emb = append(emb, obj{
				"rel": "group", "id": strconv.Itoa(i + 1), "name": g.Name,
				"_links": obj{"self": link(a.groupHref(i)), "groupContacts": link(a.groupHref(i) + "/contacts")},
			})
		}
		writeJSON(w, http.StatusOK, obj{
			"rel":       "myGroups",
			"_links":    obj{"self": link(a.base() + "/people/groups"), "group": links},
			"_embedded": obj{"group": emb},
		})
	case segs[0] == "groups" && (len(segs) == 2 || len(segs) == 3 && segs[2] == "contacts"):
		i, err := strconv.Atoi(segs[1])
		if err != nil || i < 1 || i > len(groups) {
			notFound(w)
			return
		}
		g := groups[i-1]
		if len(segs) == 2 {
			writeJSON(w, http.StatusOK, obj{
				"rel": "group", "id": segs[1], "name": g.Name,
				"_links": obj{"self": link(a.groupHref(i - 1)), "groupContacts": link(a.groupHref(i-1) + "/contacts")},
			})
			return
		}
		b := list(a.groupHref(i-1)+"/contacts", g.Members)
		b["rel"] = "groupContacts"
		writeJSON(w, http.StatusOK, b)
	default:
		notFound(w)
	}
}

func (a *app) groupHref(i int) string { return a.base() + "/people/groups/" + strconv.Itoa(i+1) }

// serveMyPresence is me/presence: GET, and POST of a PreferredAvailability
// (an empty body resets it to Online).
func (s *Server) serveMyPresence(w http.ResponseWriter, r *http.Request, a *app) {
	switch r.Method {
	case http.MethodGet:
		s.locked(func() {
			p := a.user.presenceOf()
			writeJSON(w, http.StatusOK, obj{
				"rel":          "presence",
				"availability": p.Availability,
				"activity":     p.Activity,
				"_links":       obj{"self": link(a.base() + "/me/presence")},
			})
		})
	case http.MethodPost:
		var req struct {
			Availability string `json:"availability"`
		}
		if !decodeJSON(w, r, &req) {
			return
		}
		if req.Availability == "" {
			req.Availability = "Online"
		}
		i := slices.IndexFunc(preferredAvailabilities, func(v string) bool { return strings.EqualFold(v, req.Availability) })
		if i < 0 {
			badRequest(w, "ParameterValidationFailure", fmt.Sprintf("availability %q is not one of %s.", req.Availability, strings.Join(preferredAvailabilities, ", ")))
			return
		}
		s.locked(func() { s.publish(a.user, preferredAvailabilities[i]) })
		w.WriteHeader(http.StatusNoContent)
	default:
		methodNotAllowed(w)
	}
}

// publish sets what a UCWA application published and counts as activity.
func (s *Server) publish(u *user, preferred string) {
	ps := u.presenceState()
	ps.published = preferred
	ps.publications++
	ps.activeAt = s.now()
	p := ps.Presence
	p.Availability = publishedAvailability(preferred)
	p.Activity = ""
	if preferred == "Offwork" {
		p.Activity = sfb.ActivityOffWork
	}
	p.LastActive = s.now()
	s.changePresence(u, p)
}

// reportActivity is reportMyActivity: an idle user is shown as published
// again.
func (s *Server) reportActivity(u *user) {
	ps := u.presenceState()
	ps.activeAt = s.now()
	if ps.published == "" {
		return
	}
	if want := publishedAvailability(ps.published); ps.Availability != want {
		p := ps.Presence
		p.Availability = want
		p.LastActive = s.now()
		s.changePresence(u, p)
	}
}

// serveMyNote is me/note: GET, and POST of the personal note (message in
// the body or the query; blank resets it).
func (s *Server) serveMyNote(w http.ResponseWriter, r *http.Request, a *app) {
	switch r.Method {
	case http.MethodGet:
		s.locked(func() {
			b := a.contactNote(a.user)
			b["rel"] = "note"
			b["_links"] = obj{"self": link(a.base() + "/me/note")}
			writeJSON(w, http.StatusOK, b)
		})
	case http.MethodPost:
		var req struct {
			Message *string `json:"message"`
		}
		if !decodeJSON(w, r, &req) {
			return
		}
		msg := r.URL.Query().Get("message")
		if req.Message != nil {
			msg = *req.Message
		}
		msg = strings.TrimSpace(msg)
		if err := validNote(msg); err != nil {
			badRequest(w, "ParameterValidationFailure", "message: "+err.Error()+".")
			return
		}
		s.locked(func() {
			a.user.presenceState().publications++
			p := a.user.presenceOf()
			p.Note = msg
			s.changePresence(a.user, p)
		})
		w.WriteHeader(http.StatusNoContent)
	default:
		methodNotAllowed(w)
	}
}

// Publications is how many times uri's UCWA applications published their
// presence or note (me/presence, me/note) and its SIP endpoints published
// categories, counting those that changed nothing: tests tell from it
// whether a client published at all.
func (s *Server) Publications(uri sfb.URI) int {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[uri]
	if u == nil || u.st == nil || u.st.presence == nil {
		return 0
	}
	return u.st.presence.publications
}

// PresenceSubscriptionExpiry is when the first of uri's presence
// subscriptions expires; zero without any.
func (s *Server) PresenceSubscriptionExpiry(uri sfb.URI) time.Time {
	var first time.Time
	s.forApps(uri, func(a *app) {
		for _, sub := range a.subs {
			if first.IsZero() || sub.expires.Before(first) {
				first = sub.expires
			}
		}
	})
	s.forSIPPresenceSubs(uri, func(sub *sipSub) {
		if first.IsZero() || sub.expires.Before(first) {
			first = sub.expires
		}
	})
	return first
}
