package presence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// fakeWatcher is a session with a capacity; refuseAfter, when positive, is
// where SfB answers LimitExceeded below the capacity.
type fakeWatcher struct {
	mu          sync.Mutex
	capacity    int
	refuseAfter int
	fail        error
	watching    map[sfb.URI]bool
	calls       int
}

func newFakeWatcher(capacity int) *fakeWatcher {
	return &fakeWatcher{capacity: capacity, watching: map[sfb.URI]bool{}}
}

func (f *fakeWatcher) Watch(_ context.Context, people []sfb.URI) ([]sfb.URI, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		return nil, f.fail
	}
	limit := f.capacity
	if f.refuseAfter > 0 {
		limit = f.refuseAfter
	}
	var taken []sfb.URI
	for _, p := range people {
		if len(f.watching) >= limit {
			return taken, fmt.Errorf("add to subscription: %w", sfb.ErrWatchLimit)
		}
		f.watching[p] = true
		taken = append(taken, p)
	}
	return taken, nil
}

func (f *fakeWatcher) Unwatch(_ context.Context, people []sfb.URI) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range people {
		delete(f.watching, p)
	}
	return nil
}

func (f *fakeWatcher) WatchCapacity() int { return f.capacity }

func (f *fakeWatcher) has(p sfb.URI) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watching[p]
}

func (f *fakeWatcher) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watching)
}

func people(prefix string, n int) []sfb.URI {
	out := make([]sfb.URI, n)
	for i := range out {
		out[i] = sfb.URI(fmt.Sprintf("sip:%s%d@contoso.com", prefix, i))
	}
	return out
}

type unwatchLog struct {
	mu  sync.Mutex
	got []sfb.URI
}

func (u *unwatchLog) add(p sfb.URI) { u.mu.Lock(); u.got = append(u.got, p); u.mu.Unlock() }

func newSpread(t *testing.T) (*Spread, *unwatchLog) {
	u := &unwatchLog{}
	return NewSpread(zerolog.New(zerolog.NewTestWriter(t)), u.add), u
}

// checkOnce asserts that every person is watched by exactly one session
// and that the spread's owner says which.
func checkOnce(t *testing.T, s *Spread, ps []sfb.URI, sessions map[string]*fakeWatcher) {
	t.Helper()
	for _, p := range ps {
		n := 0
		for _, f := range sessions {
			if f.has(p) {
				n++
			}
		}
		assert.Equal(t, 1, n, "%s watched once", p)
		id, ok := s.Owner(p)
		if assert.True(t, ok, "%s has an owner", p) {
			assert.True(t, sessions[id].has(p), "the owner of %s watches them", p)
		}
	}
}

func TestSpreadWatchesEachPersonOnce(t *testing.T) {
	ctx := context.Background()
	s, _ := newSpread(t)
	a, b := newFakeWatcher(100), newFakeWatcher(100)
	s.AddWatcher(ctx, "a", a)
	s.AddWatcher(ctx, "b", b)
	shared := people("shared", 10)
	s.Want(ctx, "a", append(people("a", 20), shared...))
	s.Want(ctx, "b", append(people("b", 20), shared...))
	all := append(append(people("a", 20), people("b", 20)...), shared...)
	checkOnce(t, s, all, map[string]*fakeWatcher{"a": a, "b": b})
	for _, p := range people("a", 20) {
		assert.True(t, a.has(p), "a login that wants someone watches them when it has room")
	}
	assert.Equal(t, 50, a.count()+b.count())
}

func TestSpreadRespectsCapacityAndLimitExceeded(t *testing.T) {
	ctx := context.Background()
	s, _ := newSpread(t)
	a := newFakeWatcher(10)
	b := newFakeWatcher(100)
	b.refuseAfter = 15 // SfB refuses below the advertised capacity
	c := newFakeWatcher(100)
	s.AddWatcher(ctx, "a", a)
	s.AddWatcher(ctx, "b", b)
	ps := people("p", 60)
	s.Want(ctx, "a", ps[:40])
	s.Want(ctx, "b", ps[40:])
	assert.Equal(t, 10, a.count(), "no login beyond its capacity")
	assert.Equal(t, 15, b.count(), "a login that SfB refused takes no more")
	assert.Equal(t, 35, s.Unplaced())

	s.AddWatcher(ctx, "c", c)
	assert.Equal(t, 0, s.Unplaced(), "a new login takes the rest")
	checkOnce(t, s, ps, map[string]*fakeWatcher{"a": a, "b": b, "c": c})
}

func TestSpreadMovesPeopleWhenALoginGoesAway(t *testing.T) {
	ctx := context.Background()
	s, unwatched := newSpread(t)
	a, b, c := newFakeWatcher(100), newFakeWatcher(30), newFakeWatcher(100)
	s.AddWatcher(ctx, "a", a)
	s.AddWatcher(ctx, "b", b)
	s.AddWatcher(ctx, "c", c)
	ps := people("p", 60)
	s.Want(ctx, "a", ps)
	s.Want(ctx, "b", ps[:20])
	require.Equal(t, 60, a.count(), "a wants them all and has room")

	// a's session ends: b takes those it wants itself first, c the rest.
	s.RemoveWatcher(ctx, "a")
	sessions := map[string]*fakeWatcher{"b": b, "c": c}
	checkOnce(t, s, ps, sessions)
	for _, p := range ps[:20] {
		assert.True(t, b.has(p), "%s moved to a login that wants them", p)
	}
	assert.LessOrEqual(t, b.count(), 30)
	assert.Empty(t, unwatched.got, "nobody went unwatched on the way")

	// a logs out for good: what only a wanted is unwatched.
	s.Forget(ctx, "a")
	assert.Equal(t, 20, b.count()+c.count())
	assert.Len(t, unwatched.got, 40)
	checkOnce(t, s, ps[:20], sessions)
}

func TestSpreadLastLoginGoneLeavesPeopleUnplaced(t *testing.T) {
	ctx := context.Background()
	s, unwatched := newSpread(t)
	a := newFakeWatcher(100)
	s.AddWatcher(ctx, "a", a)
	s.Want(ctx, "a", people("p", 5))
	s.RemoveWatcher(ctx, "a")
	assert.Equal(t, 5, s.Unplaced())
	assert.Len(t, unwatched.got, 5, "the writer stops refreshing what nobody watches")

	// The login reconnects with a new session: its people are back.
	a2 := newFakeWatcher(100)
	s.AddWatcher(ctx, "a", a2)
	assert.Equal(t, 5, a2.count())
	assert.Equal(t, 0, s.Unplaced())
}

func TestSpreadTransportFailureGoesToAnotherLogin(t *testing.T) {
	ctx := context.Background()
	s, _ := newSpread(t)
	a, b := newFakeWatcher(100), newFakeWatcher(100)
	a.fail = errors.New("connection reset")
	s.AddWatcher(ctx, "a", a)
	s.AddWatcher(ctx, "b", b)
	ps := people("p", 5)
	s.Want(ctx, "a", ps)
	checkOnce(t, s, ps, map[string]*fakeWatcher{"a": a, "b": b})
	assert.Equal(t, 5, b.count())

	// a works again: new people go to it.
	a.mu.Lock()
	a.fail = nil
	a.mu.Unlock()
	s.Want(ctx, "a", people("q", 3))
	assert.Equal(t, 3, a.count())
}

func TestSpreadUnwantFreesRoomAfterLimit(t *testing.T) {
	ctx := context.Background()
	s, _ := newSpread(t)
	a := newFakeWatcher(100)
	a.refuseAfter = 3
	s.AddWatcher(ctx, "a", a)
	ps := people("p", 4)
	s.Want(ctx, "a", ps)
	require.Equal(t, 3, a.count())
	owned := []sfb.URI{}
	for _, p := range ps {
		if a.has(p) {
			owned = append(owned, p)
		}
	}
	s.Unwant(ctx, "a", owned[:1])
	assert.Equal(t, 3, a.count(), "room again after an unwatch: the one who waited takes it")
	assert.Equal(t, 0, s.Unplaced())
}

func TestSpreadFreedRoomTakesTheUnplaced(t *testing.T) {
	ctx := context.Background()
	s, _ := newSpread(t)
	a := newFakeWatcher(2)
	s.AddWatcher(ctx, "a", a)
	ps := people("p", 3)
	s.Want(ctx, "a", ps)
	require.Equal(t, 1, s.Unplaced())
	var owned sfb.URI
	for _, p := range ps {
		if a.has(p) {
			owned = p
			break
		}
	}
	s.Unwant(ctx, "a", []sfb.URI{owned})
	assert.Equal(t, 0, s.Unplaced(), "the room an unwatch freed goes to who waited")
	assert.Equal(t, 2, a.count())
}

// reportingWatcher reports each person's first state from inside Watch,
// as a transport may.
type reportingWatcher struct {
	*fakeWatcher
	report func(sfb.URI)
}

func (r reportingWatcher) Watch(ctx context.Context, ps []sfb.URI) ([]sfb.URI, error) {
	for _, p := range ps {
		r.report(p)
	}
	return r.fakeWatcher.Watch(ctx, ps)
}

func TestSpreadAcceptsReportsMadeDuringWatch(t *testing.T) {
	ctx := context.Background()
	s, _ := newSpread(t)
	var accepted []bool
	s.AddWatcher(ctx, "a", reportingWatcher{newFakeWatcher(10), func(p sfb.URI) {
		accepted = append(accepted, s.Accepts("a", p), s.Accepts("b", p))
	}})
	s.Want(ctx, "a", people("p", 1))
	assert.Equal(t, []bool{true, true}, accepted, "no deadlock; a report before the owner is known counts")
	assert.True(t, s.Accepts("a", people("p", 1)[0]))
	assert.False(t, s.Accepts("b", people("p", 1)[0]), "once a owns the watch, b's reports do not count")
	assert.False(t, s.Accepts("a", "sip:nobody@contoso.com"))
}
