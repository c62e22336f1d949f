package sim

import (
	"fmt"
	"slices"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/presence"
)

// Enhanced presence (MS-PRES) keeps a user's presence as category
// instances, each named by category, instance and container and carrying a
// version that a publisher must name to change it. The simulator's one
// presence per user (presenceState) stays the truth colleagues see; the
// category store below holds what SIP endpoints published, and mirrors
// what UCWA applications and the control API set into the instances every
// client shares (the user state and the note), so that a SIP client whose
// version is stale is refused with 409 as SfB refuses it.

// userStateInstance is the instance of the user's manual state: every
// client publishes it there (pidgin-sipe's SIPE_PUB_STATE_USER, 0x20000000),
// which is why a publication from elsewhere makes a client's version stale.
const userStateInstance = 0x20000000

// maxCategoryInstances bounds the category instances a user's clients may
// publish (the simulator's limit: a client publishes a few dozen).
const maxCategoryInstances = 500

// The containers the shared instances are published in: the state in the
// containers 2 and 3 as pidgin-sipe publishes it, the note in 200, 300 and
// 400 (colleagues, workgroup, friends).
var (
	stateContainers = []int{2, 3}
	noteContainers  = []int{200, 300, 400}
)

type catKey struct {
	name      string
	instance  uint32
	container int
}

// publishedCat is one category instance; ep is the endpoint whose
// registration it lives as long as (expireType "endpoint"), nil for the
// others.
type publishedCat struct {
	cat presence.Category
	ep  *sipPresenceEP
}

// sipUser is a user's presence state on the SIP side: what exists only for
// users that registered a SIP endpoint.
type sipUser struct {
	cats map[catKey]*publishedCat
	// self are the roaming subscriptions (contacts, self) of the user's
	// endpoints.
	self map[*sipSub]struct{}
	// categorySubs counts the category subscriptions the user's endpoints
	// hold (people × categories), against Options.MaxCategorySubscriptions.
	categorySubs int
	// endpoints are the user's registered endpoints.
	endpoints map[*sipPresenceEP]struct{}
	// changed is when the user's presence last changed, the publishTime
	// of the categories the server writes.
	changed time.Time
	// contactsDelta numbers the versions of the contact list sent
	// (deltaNum, which MS-SIP wants non-zero).
	contactsDelta uint32
}

func (s *Server) sipUserOf(u *user) *sipUser {
	su := s.sipPres.users[u.uri]
	if su == nil {
		su = &sipUser{cats: map[catKey]*publishedCat{}, self: map[*sipSub]struct{}{}, endpoints: map[*sipPresenceEP]struct{}{}, changed: s.now(), contactsDelta: 1}
		if s.sipPres.users == nil {
			s.sipPres.users = map[sfb.URI]*sipUser{}
		}
		s.sipPres.users[u.uri] = su
	}
	return su
}

// sipPublication is one publication of a category publish request: a
// category instance, or its removal (expires="0").
type sipPublication struct {
	cat    presence.Category
	remove bool
}

// versionFault is a publication whose version is not the current one:
// index counts the request's publications from 1, as the 409's fault
// names them.
type versionFault struct {
	index      int
	version    uint32
	curVersion uint32
}

// publishCategories applies a category publish request of ep atomically:
// when a version is stale nothing changes and the faults say the current
// versions (MS-PRES: Client.BadCall.WrongDelta). Otherwise every instance
// is written with its version plus one (removed for expires="0"), the
// user's presence follows what was published, and the roaming-self
// subscribers hear of it. It returns the categories written, with their
// new versions, for the response; an error when the user would hold more
// instances than the simulator keeps. The caller holds s.mu.
func (s *Server) publishCategories(ep *sipPresenceEP, pubs []sipPublication) ([]presence.Category, []versionFault, error) {
	su := s.sipUserOf(ep.user)
	var faults []versionFault
	for i, p := range pubs {
		cur := uint32(0)
		if pc := su.cats[catKeyOf(p.cat)]; pc != nil {
			cur = pc.cat.Version
		}
		if p.cat.Version != cur {
			faults = append(faults, versionFault{index: i + 1, version: p.cat.Version, curVersion: cur})
		}
	}
	if len(faults) > 0 {
		return nil, faults, nil
	}
	added := 0
	for _, p := range pubs {
		if _, ok := su.cats[catKeyOf(p.cat)]; !ok && !p.remove {
			added++
		}
	}
	if len(su.cats)+added > maxCategoryInstances {
		return nil, nil, fmt.Errorf("%d category instances: more than the %d a user may have", len(su.cats)+added, maxCategoryInstances)
	}
	now := s.now()
	written := make([]presence.Category, 0, len(pubs))
	for _, p := range pubs {
		k := catKeyOf(p.cat)
		if p.remove {
			if pc := su.cats[k]; pc != nil {
				delete(su.cats, k)
				gone := pc.cat
				gone.State, gone.Note, gone.ContactCard, gone.Raw = nil, nil, nil, nil
				written = append(written, gone)
			}
			continue
		}
		c := p.cat
		c.Version++
		c.PublishTime = now
		pc := &publishedCat{cat: c}
		if c.ExpireType == "endpoint" {
			pc.ep = ep
		}
		su.cats[k] = pc
		written = append(written, c)
	}
	s.presenceFromCategories(ep.user, su, written)
	s.notifySelf(su, ep.user, written)
	ep.user.presenceState().publications++
	ep.published = true
	return written, nil, nil
}

func catKeyOf(c presence.Category) catKey {
	k := catKey{name: c.Name, container: c.Container}
	if c.Instance != nil {
		k.instance = *c.Instance
	}
	return k
}

// presenceFromCategories sets the user's presence from the published
// states and notes, as a native client's publication (UCWA idleness no
// longer applies): the manual user state wins, lowered to Idle or Away
// while the machine state says the computer is inactive or away; without
// one, the latest machine state. Published notes replace both notes (none
// left clears them); without note instances or a change of them the notes
// stay as they are. Once the user's last endpoint is gone, the user is
// Offline.
func (s *Server) presenceFromCategories(u *user, su *sipUser, changed []presence.Category) {
	var userState, machine *presence.Category
	var personal, oof *presence.Category
	notes := slices.ContainsFunc(changed, func(c presence.Category) bool { return c.Name == "note" })
	for _, pc := range su.cats {
		c := &pc.cat
		switch {
		case c.Name == "state" && c.State != nil && c.State.Type == "userState":
			if userState == nil || c.PublishTime.After(userState.PublishTime) {
				userState = c
			}
		case c.Name == "state" && c.State != nil && c.State.Type == "machineState":
			if machine == nil || c.PublishTime.After(machine.PublishTime) {
				machine = c
			}
		case c.Name == "note":
			notes = true
			if c.Note == nil || c.Note.Text == "" {
				continue
			}
			if c.Note.Type == presence.NoteOOF {
				if oof == nil || c.PublishTime.After(oof.PublishTime) {
					oof = c
				}
			} else if personal == nil || c.PublishTime.After(personal.PublishTime) {
				personal = c
			}
		}
	}
	ps := u.presenceState()
	p := ps.Presence
	state := userState
	if state == nil {
		state = machine
	}
	switch {
	case len(su.endpoints) == 0 && ps.published == "":
		// The last SIP endpoint is gone: nobody is signed in to show
		// what was published, as when a UCWA user's last application
		// goes.
		p.Availability, p.Activity = "Offline", ""
	case state != nil:
		avail := presence.AvailabilityOf(state.State.Availability)
		if userState != nil && machine != nil && (avail == sfb.AvailabilityOnline || avail == sfb.AvailabilityBusy) {
			switch presence.AvailabilityOf(machine.State.Availability) {
			case sfb.AvailabilityIdleOnline, sfb.AvailabilityIdleBusy:
				avail = "Idle" + avail
			case sfb.AvailabilityAway:
				avail = sfb.AvailabilityAway
			}
		}
		if avail != sfb.AvailabilityUnknown {
			p.Availability = string(avail)
			p.Activity = presence.ActivityOf(state.State.Activity, state.State.CustomActivity)
		}
	}
	if notes {
		p.Note, p.OutOfOffice = "", ""
		if personal != nil {
			p.Note, _ = presence.CleanText(personal.Note.Text)
		}
		if oof != nil {
			p.OutOfOffice, _ = presence.CleanText(oof.Note.Text)
		}
	}
	p.LastActive = s.now()
	ps.published = ""
	s.sipPres.applying = true
	s.changePresence(u, p)
	s.sipPres.applying = false
}

// mirrorPresence writes a presence change that did not come from a SIP
// publication (a UCWA application, the control API, idleness) into the
// instances every client shares, with new versions, and tells the user's
// roaming-self subscribers. Only users with a SIP store have one to write.
func (s *Server) mirrorPresence(u *user, old, p Presence) {
	su := s.sipPres.users[u.uri]
	if su == nil {
		return
	}
	now := s.now()
	su.changed = now
	var written []presence.Category
	if old.Availability != p.Availability || old.Activity != p.Activity {
		if n := presence.AggregateNumber(sfb.Availability(p.Availability)); n != 0 && !isIdle(p.Availability) {
			token, custom := presence.ActivityToken(p.Activity)
			for _, c := range stateContainers {
				written = append(written, su.write(catKey{"state", userStateInstance, c}, now, "static", func(cat *presence.Category) {
					cat.State = &presence.State{Type: "userState", Manual: true, Availability: n, Activity: token, CustomActivity: custom, EndpointLocation: true}
				}))
			}
		}
	}
	if old.Note != p.Note {
		for _, c := range noteContainers {
			written = append(written, su.write(catKey{"note", 0, c}, now, "static", func(cat *presence.Category) {
				cat.Note = &presence.Note{Type: "personal", Text: p.Note}
			}))
		}
	}
	s.notifySelf(su, u, written)
}

func isIdle(a string) bool { return a == "IdleOnline" || a == "IdleBusy" }

// write replaces instance k with fill's content and the next version.
func (su *sipUser) write(k catKey, now time.Time, expireType string, fill func(*presence.Category)) presence.Category {
	inst := k.instance
	c := presence.Category{Name: k.name, Instance: &inst, Container: k.container, PublishTime: now, ExpireType: expireType}
	if pc := su.cats[k]; pc != nil {
		c.Version = pc.cat.Version
	}
	c.Version++
	fill(&c)
	su.cats[k] = &publishedCat{cat: c}
	return c
}

// dropEndpointCategories removes what ep published with expireType
// "endpoint" (its machine state, device, ...), as SfB does when an
// endpoint's registration ends, and lets the user's presence follow when
// the endpoint published.
func (s *Server) dropEndpointCategories(ep *sipPresenceEP) {
	su := s.sipPres.users[ep.user.uri]
	if su == nil {
		return
	}
	var gone []presence.Category
	for k, pc := range su.cats {
		if pc.ep == ep {
			delete(su.cats, k)
			c := pc.cat
			c.State, c.Note, c.ContactCard, c.Raw = nil, nil, nil, nil
			gone = append(gone, c)
		}
	}
	if ep.published {
		s.presenceFromCategories(ep.user, su, gone)
	}
	s.notifySelf(su, ep.user, gone)
}

// selfCategories is what a roaming-self subscriber sees: every instance the
// user's clients published, and the aggregate state the server computes
// (container 2, where pidgin-sipe looks for it).
func (s *Server) selfCategories(u *user, su *sipUser) presence.Categories {
	doc := presence.Categories{URI: string(u.uri)}
	keys := make([]catKey, 0, len(su.cats))
	for k := range su.cats {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b catKey) int {
		switch {
		case a.name != b.name:
			return compare(a.name, b.name)
		case a.container != b.container:
			return a.container - b.container
		}
		return compare(a.instance, b.instance)
	})
	for _, k := range keys {
		doc.Categories = append(doc.Categories, su.cats[k].cat)
	}
	doc.Categories = append(doc.Categories, s.aggregateState(u, su, 2))
	return doc
}

// selfCategoriesOf is the user's roaming-self categories of the names in
// written, whole: pidgin-sipe forgets every instance it knew of a category
// a roaming-self document names and keeps those the document lists, so a
// document naming a category lists all its instances, or, when none is
// left, the category alone (which clears it).
func (s *Server) selfCategoriesOf(u *user, su *sipUser, written []presence.Category) presence.Categories {
	names := map[string]bool{}
	for _, c := range written {
		names[c.Name] = true
	}
	doc := presence.Categories{URI: string(u.uri)}
	listed := map[string]bool{}
	for _, c := range s.selfCategories(u, su).Categories {
		if names[c.Name] {
			doc.Categories = append(doc.Categories, c)
			listed[c.Name] = true
		}
	}
	for name := range names {
		if !listed[name] {
			doc.Categories = append(doc.Categories, presence.Category{Name: name, Container: presence.NoContainer})
		}
	}
	return doc
}

func compare[T string | uint32](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// aggregateState is the state the server computes from every source, as a
// category of the given container (presence.NoContainer for watchers).
func (s *Server) aggregateState(u *user, su *sipUser, container int) presence.Category {
	doc := presence.Describe(string(u.uri), sfbPresence(u.presenceOf(), su.changedAt(s.now())), 0)
	c := doc.Categories[0]
	c.Container = container
	return c
}

func (su *sipUser) changedAt(now time.Time) time.Time {
	if su == nil {
		return now
	}
	return su.changed
}

// sfbPresence converts the simulator's presence to the model the codec
// speaks.
func sfbPresence(p Presence, changed time.Time) sfb.Presence {
	out := sfb.Presence{
		Availability: sfb.Availability(p.Availability),
		Activity:     p.Activity,
		Note:         p.Note,
		Device:       sfb.DeviceType(p.DeviceType),
		LastActive:   p.LastActive,
		Changed:      changed,
	}
	if p.OutOfOffice != "" {
		out.OutOfOffice = &sfb.OutOfOffice{Message: p.OutOfOffice}
	}
	return out
}
