package presence

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Watcher is the part of an SfB session that watches people.
type Watcher interface {
	Watch(ctx context.Context, people []sfb.URI) (taken []sfb.URI, err error)
	Unwatch(ctx context.Context, people []sfb.URI) error
	WatchCapacity() int
}

// Spread decides which login watches whom: every person some login wants
// (a portal, a conversation, the contact list) is watched by exactly one
// login, preferably one that wants them, and no login beyond its capacity
// or past the point where SfB refused more (ErrWatchLimit). When a login
// goes away its people move to the others at once; the writer keeps what
// the ghosts show meanwhile, and the new watch starts with the current
// state, so Matrix users see no gap.
//
// Watch and Unwatch calls happen under the Spread's lock: placements of
// one person never race, at the price of serialising them. Owner, Wanted
// and Accepts, which event handlers call, take only a lock that is never
// held across a request: a transport may deliver the first state of a
// watch before Watch returns.
type Spread struct {
	log zerolog.Logger
	// unwatched is called for people nobody watches any more (nobody
	// wants them, or no login can take them).
	unwatched func(sfb.URI)

	mu       sync.Mutex
	watchers map[string]*watcher
	// vmu guards the keys of wanted and owner for readers without mu;
	// who changes them holds both.
	vmu sync.RWMutex
	// wanted: person -> logins that want them.
	wanted map[sfb.URI]map[string]struct{}
	owner  map[sfb.URI]string
	// unplaced are wanted people no login could take.
	unplaced map[sfb.URI]struct{}
}

type watcher struct {
	id       string
	w        Watcher
	watching map[sfb.URI]struct{}
	// full is set once SfB refused more: the login takes no one new.
	full bool
}

func (w *watcher) room() int {
	if w.full {
		return 0
	}
	return max(w.w.WatchCapacity()-len(w.watching), 0)
}

// NewSpread returns an empty spread; unwatched is told of every person
// that stops being watched.
func NewSpread(log zerolog.Logger, unwatched func(sfb.URI)) *Spread {
	return &Spread{
		log:       log,
		unwatched: unwatched,
		watchers:  map[string]*watcher{},
		wanted:    map[sfb.URI]map[string]struct{}{},
		owner:     map[sfb.URI]string{},
		unplaced:  map[sfb.URI]struct{}{},
	}
}

// Owner returns the login watching person.
func (s *Spread) Owner(person sfb.URI) (string, bool) {
	s.vmu.RLock()
	defer s.vmu.RUnlock()
	id, ok := s.owner[person]
	return id, ok
}

// Wanted reports whether some login wants person watched.
func (s *Spread) Wanted(person sfb.URI) bool {
	s.vmu.RLock()
	defer s.vmu.RUnlock()
	_, ok := s.wanted[person]
	return ok
}

// Wants reports whether login wants person watched. It waits for a Watch
// in progress: not for event handlers.
func (s *Spread) Wants(login string, person sfb.URI) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.wanted[person][login]
	return ok
}

// Accepts reports whether a presence report of person from login counts:
// someone wants the person, and login watches them or the watch is being
// set up (Watch reports the current state before it returns).
func (s *Spread) Accepts(login string, person sfb.URI) bool {
	s.vmu.RLock()
	defer s.vmu.RUnlock()
	if _, wanted := s.wanted[person]; !wanted {
		return false
	}
	id, ok := s.owner[person]
	return !ok || id == login
}

// Watching returns how many people each login watches.
func (s *Spread) Watching() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for id, w := range s.watchers {
		out[id] = len(w.watching)
	}
	return out
}

// Unplaced returns how many wanted people no login watches.
func (s *Spread) Unplaced() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.unplaced)
}

// AddWatcher makes a login's session available for watching and places
// the people nobody watches yet.
func (s *Spread) AddWatcher(ctx context.Context, id string, w Watcher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.watchers[id]; old != nil {
		// A new session of the same login: the old one's watches ended
		// with it.
		s.dropWatcher(id)
	}
	s.watchers[id] = &watcher{id: id, w: w, watching: map[sfb.URI]struct{}{}}
	s.place(ctx, keys(s.unplaced))
}

// RemoveWatcher takes a login's session out (logout, session ended,
// shutdown) and moves its people to the other logins. What the login
// wants stays wanted (see Forget).
func (s *Spread) RemoveWatcher(ctx context.Context, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	moved := s.dropWatcher(id)
	s.place(ctx, moved)
}

// DropWatcher takes a login's session out without moving its people
// (the bridge is stopping): they wait unplaced for the next watcher.
func (s *Spread) DropWatcher(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.dropWatcher(id) {
		if _, wanted := s.wanted[p]; wanted {
			s.unplaced[p] = struct{}{}
		}
	}
}

// dropWatcher forgets watcher id and returns its people; s.mu is held.
func (s *Spread) dropWatcher(id string) []sfb.URI {
	w := s.watchers[id]
	if w == nil {
		return nil
	}
	delete(s.watchers, id)
	people := keys(w.watching)
	s.vmu.Lock()
	for _, p := range people {
		delete(s.owner, p)
	}
	s.vmu.Unlock()
	return people
}

// Want records that login wants people watched and places those nobody
// watches yet.
func (s *Spread) Want(ctx context.Context, login string, people []sfb.URI) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var place []sfb.URI
	for _, p := range people {
		logins := s.wanted[p]
		if logins == nil {
			logins = map[string]struct{}{}
			s.vmu.Lock()
			s.wanted[p] = logins
			s.vmu.Unlock()
		}
		logins[login] = struct{}{}
		if _, ok := s.owner[p]; !ok {
			place = append(place, p)
		}
	}
	s.place(ctx, place)
}

// Unwant drops login's wish to watch people; who is wanted by nobody any
// more is unwatched.
func (s *Spread) Unwant(ctx context.Context, login string, people []sfb.URI) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unwant(ctx, login, people)
}

// Forget drops everything login wants (logout).
func (s *Spread) Forget(ctx context.Context, login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var people []sfb.URI
	for p, logins := range s.wanted {
		if _, ok := logins[login]; ok {
			people = append(people, p)
		}
	}
	s.unwant(ctx, login, people)
}

func (s *Spread) unwant(ctx context.Context, login string, people []sfb.URI) {
	byOwner := map[string][]sfb.URI{}
	for _, p := range people {
		logins := s.wanted[p]
		delete(logins, login)
		if len(logins) > 0 {
			continue
		}
		s.vmu.Lock()
		delete(s.wanted, p)
		id, owned := s.owner[p]
		delete(s.owner, p)
		s.vmu.Unlock()
		delete(s.unplaced, p)
		if owned {
			delete(s.watchers[id].watching, p)
			byOwner[id] = append(byOwner[id], p)
		}
		s.unwatched(p)
	}
	for id, ps := range byOwner {
		// Room again, whatever SfB refused before.
		s.watchers[id].full = false
		if err := s.watchers[id].w.Unwatch(ctx, ps); err != nil {
			s.log.Warn().Err(err).Str("login", id).Int("people", len(ps)).Msg("Failed to stop watching presence")
		}
	}
	if len(byOwner) > 0 && len(s.unplaced) > 0 {
		s.place(ctx, keys(s.unplaced))
	}
}

// place gives people to logins; s.mu is held. A person goes to the login
// with the most room among those that want them, else to the login with
// the most room; a login that refuses more is full and the rest goes
// round again.
func (s *Spread) place(ctx context.Context, people []sfb.URI) {
	pending := people
	// skip holds logins whose transport failed this time; they are tried
	// again at the next placement.
	skip := map[string]bool{}
	for len(pending) > 0 {
		batches := map[string][]sfb.URI{}
		planned := map[string]int{}
		var homeless []sfb.URI
		for _, p := range pending {
			if _, ok := s.wanted[p]; !ok {
				continue
			}
			if _, ok := s.owner[p]; ok {
				continue
			}
			w := s.choose(p, planned, skip)
			if w == nil {
				homeless = append(homeless, p)
				continue
			}
			planned[w.id]++
			batches[w.id] = append(batches[w.id], p)
		}
		var newlyHomeless []sfb.URI
		for _, p := range homeless {
			if _, was := s.unplaced[p]; !was {
				s.unplaced[p] = struct{}{}
				newlyHomeless = append(newlyHomeless, p)
				s.unwatched(p)
			}
		}
		if len(newlyHomeless) > 0 {
			// One line for the lot: at the limit this is every new person.
			s.log.Warn().Int("people", len(newlyHomeless)).Str("first", newlyHomeless[0].Address()).
				Int("unplaced", len(s.unplaced)).Int("logins", len(s.watchers)).
				Msg("No login can watch these people's presence now; they wait for one with room")
		}
		pending = nil
		for _, id := range sortedKeys(batches) {
			batch := batches[id]
			w := s.watchers[id]
			taken, err := w.w.Watch(ctx, batch)
			s.vmu.Lock()
			for _, p := range taken {
				w.watching[p] = struct{}{}
				s.owner[p] = id
				delete(s.unplaced, p)
			}
			s.vmu.Unlock()
			if err == nil && len(taken) == len(batch) {
				continue
			}
			if errors.Is(err, sfb.ErrWatchLimit) || err == nil {
				s.log.Info().Str("login", id).Int("watching", len(w.watching)).Msg("Login watches all it can; others take the rest")
				w.full = true
			} else {
				// Transport failure: others take the rest.
				s.log.Warn().Err(err).Str("login", id).Int("people", len(batch)-len(taken)).Msg("Failed to watch presence")
				skip[id] = true
			}
			pending = append(pending, rest(batch, taken)...)
		}
	}
}

// choose picks the watcher for p; planned counts what this round already
// gave each. s.mu is held.
func (s *Spread) choose(p sfb.URI, planned map[string]int, skip map[string]bool) *watcher {
	var best, bestWanting *watcher
	room := func(w *watcher) int { return w.room() - planned[w.id] }
	for _, id := range sortedKeys(s.watchers) {
		w := s.watchers[id]
		if skip[id] || room(w) <= 0 {
			continue
		}
		if best == nil || room(w) > room(best) {
			best = w
		}
		if _, wants := s.wanted[p][id]; wants && (bestWanting == nil || room(w) > room(bestWanting)) {
			bestWanting = w
		}
	}
	if bestWanting != nil {
		return bestWanting
	}
	return best
}

func rest(batch, taken []sfb.URI) []sfb.URI {
	got := map[sfb.URI]struct{}{}
	for _, p := range taken {
		got[p] = struct{}{}
	}
	var out []sfb.URI
	for _, p := range batch {
		if _, ok := got[p]; !ok {
			out = append(out, p)
		}
	}
	return out
}

func keys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := keys(m)
	sort.Strings(out)
	return out
}
