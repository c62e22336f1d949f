package bridge

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/presence"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// ghostPresence is the homeserver's presence API as the presence writer
// reaches it: the writes per person.
type ghostPresence struct {
	mu     sync.Mutex
	writes map[sfb.URI][]presence.MatrixState
}

func (g *ghostPresence) set(_ context.Context, person sfb.URI, st presence.MatrixState) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.writes == nil {
		g.writes = map[sfb.URI][]presence.MatrixState{}
	}
	g.writes[person] = append(g.writes[person], st)
	return nil
}

func (g *ghostPresence) of(person sfb.URI) []presence.MatrixState {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]presence.MatrixState(nil), g.writes[person]...)
}

func (g *ghostPresence) last(person sfb.URI) presence.MatrixState {
	w := g.of(person)
	if len(w) == 0 {
		return presence.MatrixState{}
	}
	return w[len(w)-1]
}

func withPresence(g *ghostPresence, mutate func(*PresenceConfig)) envOption {
	return func(e *testEnv, c *Config) {
		e.presenceSet = g.set
		e.transport.watchCapacity = 100
		if mutate != nil {
			mutate(&c.Presence)
		}
	}
}

// manualTimers replaces the publisher's debounce timers by timers the
// test fires.
type manualTimers struct {
	mu      sync.Mutex
	pending []*manualTimer
}

type manualTimer struct {
	f       func()
	stopped bool
}

func (m *manualTimer) Stop() bool { m.stopped = true; return true }

func (mt *manualTimers) afterFunc(_ time.Duration, f func()) stopper {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	t := &manualTimer{f: f}
	mt.pending = append(mt.pending, t)
	return t
}

// fire runs the timers not stopped, as if their time came.
func (mt *manualTimers) fire() {
	mt.mu.Lock()
	ts := mt.pending
	mt.pending = nil
	mt.mu.Unlock()
	for _, t := range ts {
		if !t.stopped {
			t.f()
		}
	}
}

const (
	carol = sfb.URI("sip:carol@contoso.com")
	dave  = sfb.URI("sip:dave@contoso.com")
)

func (e *testEnv) messageFrom(s *fakeSession, from sfb.URI) {
	s.emit(sfb.MessageReceived{ID: "m-" + string(from), From: sfb.Person{URI: from}, Message: sfb.Message{Text: "hi"}, Time: time.Now()})
}

func (e *testEnv) waitWatched(s *fakeSession, p sfb.URI) {
	e.t.Helper()
	require.Eventually(e.t, func() bool { return s.watches(p) }, 5*time.Second, time.Millisecond, "%s never watched", p)
}

func TestPresenceOfAColleagueReachesTheGhost(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, nil))
	_, _, s := e.mustLogin()
	e.messageFrom(s, bob)
	e.waitWatched(s, bob)

	s.emit(sfb.PresenceChanged{Person: bob, Presence: sfb.Presence{Availability: sfb.AvailabilityBusy, Activity: sfb.ActivityInAMeeting}})
	want := presence.MatrixState{Presence: event.PresenceUnavailable, StatusMsg: "In a meeting"}
	require.Eventually(t, func() bool { return g.last(bob) == want }, 5*time.Second, time.Millisecond)

	// The same state again is not written.
	s.emit(sfb.PresenceChanged{Person: bob, Presence: sfb.Presence{Availability: sfb.AvailabilityBusy, Activity: sfb.ActivityInAMeeting}})
	s.emit(sfb.PresenceChanged{Person: bob, Presence: sfb.Presence{Availability: sfb.AvailabilityOnline}})
	require.Eventually(t, func() bool { return g.last(bob).Presence == event.PresenceOnline }, 5*time.Second, time.Millisecond)
	assert.Len(t, g.of(bob), 2)
	require.Eventually(t, func() bool { return e.conn.PresenceStats().Writes == 2 }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, 1, e.conn.PresenceStats().Unchanged)
}

func TestPresenceOfSomeoneNobodyWatchesIsIgnored(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, nil))
	_, _, s := e.mustLogin()
	s.emit(sfb.PresenceChanged{Person: carol, Presence: sfb.Presence{Availability: sfb.AvailabilityOnline}})
	lines := e.logged("Ignoring presence of a person nobody watches")
	require.Len(t, lines, 1)
	assert.Equal(t, "carol@contoso.com", lines[0]["person"], "logged with context")
	assert.Empty(t, g.of(carol))
}

func TestPresenceUnknownAvailabilityShowsOffline(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, nil))
	_, _, s := e.mustLogin()
	e.messageFrom(s, bob)
	e.waitWatched(s, bob)
	s.emit(sfb.PresenceChanged{Person: bob, Presence: sfb.Presence{Availability: "Lurking", Note: "?"}})
	require.Eventually(t, func() bool { return len(g.of(bob)) == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, presence.MatrixState{Presence: event.PresenceOffline, StatusMsg: "?"}, g.last(bob))
	lines := e.logged("Unknown SfB availability, showing the person offline")
	require.Len(t, lines, 1)
	assert.Equal(t, "Lurking", lines[0]["availability"])
}

func TestPresenceWatchesTheContactList(t *testing.T) {
	g := &ghostPresence{}
	ft := newFakeTransport()
	ft.afterSignIn = func(s *fakeSession) {
		s.presence.contacts = []sfb.Person{{URI: carol}, {URI: carol}, {URI: "sip:alice@contoso.com"}}
	}
	e := newTestEnv(t, withTransport(ft), withPresence(g, nil))
	_, c, s := e.mustLogin()
	e.waitWatched(s, carol)
	assert.False(t, s.watches("sip:alice@contoso.com"), "the login does not watch itself for its contact list")

	// The list changes: dave in, carol out.
	s.setContacts(sfb.Person{URI: dave})
	s.emit(sfb.ContactsChanged{})
	e.waitWatched(s, dave)
	require.Eventually(t, func() bool { return !s.watches(carol) }, 5*time.Second, time.Millisecond)

	// Someone with a room stays watched when they leave the list.
	e.messageFrom(s, dave)
	s.setContacts()
	s.emit(sfb.ContactsChanged{})
	require.Eventually(t, func() bool {
		e.conn.presence.mu.Lock()
		defer e.conn.presence.mu.Unlock()
		return len(e.conn.presence.contacts[c.loginID]) == 0
	}, 5*time.Second, time.Millisecond)
	assert.True(t, s.watches(dave))
}

// twoLogins logs alice and bob (the same Matrix user, two SfB accounts, as
// a delegate would) in.
func twoLogins(t *testing.T, e *testEnv) (a, b *Client, sa, sb *fakeSession) {
	t.Helper()
	e.transport.passwords["bob@contoso.com"] = "bob-pw"
	_, a, sa = e.mustLogin()
	ul, err := e.login("bob@contoso.com", "-", "bob-pw")
	require.NoError(t, err)
	sb = e.transport.lastSession()
	require.NotSame(t, sa, sb)
	require.Eventually(t, func() bool { return len(e.conn.presence.spread.Watching()) == 2 }, 5*time.Second, time.Millisecond, "both logins watch")
	return a, ul.Client.(*Client), sa, sb
}

func TestPresenceMovesToAnotherLoginAtLogout(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, nil))
	e.transport.watchCapacity = 2
	a, b, sa, sb := twoLogins(t, e)
	e.messageFrom(sa, carol)
	e.waitWatched(sa, carol)
	e.messageFrom(sa, bob)
	e.waitWatched(sa, bob)
	e.messageFrom(sb, dave)
	e.waitWatched(sb, dave)
	e.messageFrom(sb, carol)
	require.Eventually(t, func() bool { return e.conn.presence.spread.Wants(string(b.loginID), carol) }, 5*time.Second, time.Millisecond)
	assert.False(t, sb.watches(carol), "one watch per person across logins")

	sa.emit(sfb.PresenceChanged{Person: carol, Presence: sfb.Presence{Availability: sfb.AvailabilityBusy}})
	require.Eventually(t, func() bool { return g.last(carol).StatusMsg == "Busy" }, 5*time.Second, time.Millisecond)

	// alice logs out: carol, whom bob's login wants too, moves to it;
	// bob, whom only alice wanted, is no longer watched.
	a.LogoutRemote(e.ctx)
	assert.True(t, sb.watches(carol), "moved to the other login")
	assert.True(t, sb.watches(dave))
	spread := e.conn.presence.spread
	assert.False(t, spread.Wanted(bob))
	owner, _ := spread.Owner(carol)
	assert.Equal(t, string(b.loginID), owner)
	assert.Equal(t, map[string]int{string(b.loginID): 2}, spread.Watching(), "within the capacity")
	_, stillWritten := e.conn.presence.writer.Written(carol)
	assert.True(t, stillWritten, "carol's ghost keeps its state while the watch moves: no gap")

	// A late report of the logged-out session does not count.
	sa.emit(sfb.PresenceChanged{Person: carol, Presence: sfb.Presence{Availability: sfb.AvailabilityAway}})
	sb.emit(sfb.PresenceChanged{Person: carol, Presence: sfb.Presence{Availability: sfb.AvailabilityDoNotDisturb}})
	require.Eventually(t, func() bool { return g.last(carol).StatusMsg == "Do not disturb" }, 5*time.Second, time.Millisecond)
	for _, st := range g.of(carol) {
		assert.NotEqual(t, "Away", st.StatusMsg)
	}
}

func TestPresenceMovesWhenASessionEnds(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, nil))
	_, _, sa, sb := twoLogins(t, e)
	e.messageFrom(sa, carol)
	e.messageFrom(sb, carol)
	// Both want carol; one watches.
	require.Eventually(t, func() bool { return sa.watches(carol) != sb.watches(carol) }, 5*time.Second, time.Millisecond)
	owner, other := sa, sb
	if sb.watches(carol) {
		owner, other = sb, sa
	}
	owner.emit(sfb.SessionEnded{Err: sfb.ErrServerUnavailable})
	require.Eventually(t, func() bool { return other.watches(carol) }, 5*time.Second, time.Millisecond, "the other login takes carol over")
}

func TestMatrixPresenceIsPublishedOnlyWhenTheLoginPublishes(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, nil))
	ul, _, s := e.mustLogin()
	timers := &manualTimers{}
	e.conn.presence.afterFunc = timers.afterFunc
	alice := e.user.MXID

	// Default: coexistence, the user's own SfB client is the source.
	e.conn.presence.matrixPresence(e.ctx, alice, &event.PresenceEventContent{Presence: event.PresenceOnline, CurrentlyActive: true})
	timers.fire()
	assert.Empty(t, s.publications())
	assert.Zero(t, s.activityReports())

	yes := true
	require.NoError(t, e.conn.setPublishPresence(e.ctx, ul, &yes))
	timers.fire() // what turning it on publishes
	require.Len(t, s.publications(), 1)
	e.conn.presence.matrixPresence(e.ctx, alice, &event.PresenceEventContent{Presence: event.PresenceOnline, StatusMessage: "In Lyon"})
	assert.Len(t, s.publications(), 1, "nothing before the debounce")
	timers.fire()
	pubs := s.publications()
	require.Len(t, pubs, 2)
	assert.Equal(t, sfb.AvailabilityOnline, *pubs[1].Availability)
	assert.Equal(t, "In Lyon", *pubs[1].Note)
}

func TestMatrixPresenceIsDebounced(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, func(p *PresenceConfig) { p.Publish = true }))
	_, _, s := e.mustLogin()
	timers := &manualTimers{}
	e.conn.presence.afterFunc = timers.afterFunc
	alice := e.user.MXID
	send := func(p event.Presence) {
		e.conn.presence.matrixPresence(e.ctx, alice, &event.PresenceEventContent{Presence: p})
	}

	send(event.PresenceOnline)
	timers.fire()
	require.Len(t, s.publications(), 1)

	// One device idles, another is active: online, unavailable, online
	// within the window publishes nothing.
	send(event.PresenceUnavailable)
	send(event.PresenceOnline)
	timers.fire()
	assert.Len(t, s.publications(), 1, "no flap")

	// A state that holds is published, the last one of a burst.
	send(event.PresenceUnavailable)
	send(event.PresenceOffline)
	timers.fire()
	pubs := s.publications()
	require.Len(t, pubs, 2)
	assert.Equal(t, sfb.AvailabilityAway, *pubs[1].Availability, "offline is Away by default")
}

func TestBridgeOwnPresenceDoesNotEcho(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, func(p *PresenceConfig) { p.Publish = true }))
	a, _, sa, sb := twoLogins(t, e)
	timers := &manualTimers{}
	e.conn.presence.afterFunc = timers.afterFunc

	// A ghost's m.presence (what the bridge wrote) is not a change.
	ghost := id.UserID("@sfb_alice=40contoso.com:example.org")
	e.conn.handleMatrixPresence(e.ctx, &event.Event{Sender: ghost, Type: event.EphemeralEventPresence,
		Content: event.Content{Parsed: &event.PresenceEventContent{Presence: event.PresenceOffline}}})
	timers.fire()
	assert.Empty(t, sa.publications())
	assert.Empty(t, sb.publications())

	// Alice's own SfB presence, watched through bob's login, goes to her
	// ghost only: nothing is published back to SfB.
	e.messageFrom(sb, a.selfURI())
	e.waitWatched(sb, a.selfURI())
	sb.emit(sfb.PresenceChanged{Person: a.selfURI(), Presence: sfb.Presence{Availability: sfb.AvailabilityBusy}})
	require.Eventually(t, func() bool { return len(g.of(a.selfURI())) == 1 }, 5*time.Second, time.Millisecond)
	timers.fire()
	assert.Empty(t, sa.publications())
	assert.Empty(t, sb.publications())
}

func TestPresenceRefreshFollowsWhatPresentUsersSee(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, nil))
	_, c, s := e.mustLogin()
	e.messageFrom(s, bob)
	e.waitWatched(s, bob)
	s.emit(sfb.PresenceChanged{Person: bob, Presence: sfb.Presence{Availability: sfb.AvailabilityOnline}})
	engine := e.conn.presence
	require.Eventually(t, func() bool { _, ok := engine.writer.Written(bob); return ok }, 5*time.Second, time.Millisecond)

	assert.True(t, engine.visible(bob), "a user not heard of yet counts as present")
	assert.False(t, engine.visible(carol), "nobody has a room with carol")
	engine.matrixPresence(e.ctx, c.login.UserMXID, &event.PresenceEventContent{Presence: event.PresenceOffline})
	assert.False(t, engine.visible(bob), "alice is offline: bob's ghost is not refreshed for her")

	// Alice comes back: bob's ghost, which may have decayed, is written
	// at once.
	engine.matrixPresence(e.ctx, c.login.UserMXID, &event.PresenceEventContent{Presence: event.PresenceUnavailable})
	assert.True(t, engine.visible(bob))
	require.Eventually(t, func() bool { return len(g.of(bob)) == 2 }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return e.conn.PresenceStats().Refreshes == 1 }, 5*time.Second, time.Millisecond, "%+v %v", e.conn.PresenceStats(), g.of(bob))
}

func TestMatrixActivityIsReportedForPublishingLogins(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, func(p *PresenceConfig) { p.Publish = true }))
	_, c, s := e.mustLogin()
	portal := e.portalFor(c.loginID, bob)
	for range 3 {
		require.NoError(t, c.HandleMatrixTyping(e.ctx, &bridgev2.MatrixTyping{Portal: portal, IsTyping: true}))
	}
	require.NoError(t, c.HandleMatrixReadReceipt(e.ctx, &bridgev2.MatrixReadReceipt{Portal: portal}))
	require.Eventually(t, func() bool { return s.activityReports() == 1 }, 5*time.Second, time.Millisecond)
	assert.Never(t, func() bool { return s.activityReports() > 1 }, 50*time.Millisecond, 5*time.Millisecond, "at most one report per %s", activityEvery)
}

func TestPresencePublishOptionPerLogin(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, nil))
	ul, _, s := e.mustLogin()
	timers := &manualTimers{}
	e.conn.presence.afterFunc = timers.afterFunc
	e.conn.presence.matrixPresence(e.ctx, e.user.MXID, &event.PresenceEventContent{Presence: event.PresenceOnline, StatusMessage: "Migrated!"})
	timers.fire()
	assert.Empty(t, s.publications())
	assert.Contains(t, e.conn.describePublish(ul), "is not shown")

	// Turned on: the last Matrix presence is published, and the option
	// survives a reload of the login.
	yes := true
	require.NoError(t, e.conn.setPublishPresence(e.ctx, ul, &yes))
	timers.fire()
	pubs := s.publications()
	require.Len(t, pubs, 1)
	assert.Equal(t, sfb.AvailabilityOnline, *pubs[0].Availability)
	assert.Equal(t, "Migrated!", *pubs[0].Note)
	assert.Contains(t, e.conn.describePublish(ul), "is shown")
	stored, err := e.br.DB.UserLogin.GetByID(e.ctx, ul.ID)
	require.NoError(t, err)
	require.NotNil(t, stored.Metadata.(*LoginMetadata).PublishPresence)
	assert.True(t, *stored.Metadata.(*LoginMetadata).PublishPresence)

	// Off: a change waiting for its debounce is dropped.
	e.conn.presence.matrixPresence(e.ctx, e.user.MXID, &event.PresenceEventContent{Presence: event.PresenceUnavailable})
	no := false
	require.NoError(t, e.conn.setPublishPresence(e.ctx, ul, &no))
	timers.fire()
	assert.Len(t, s.publications(), 1)
}

func TestPresenceOfAUserOfflineAtStartIsLearned(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, nil))
	asked := make(chan id.UserID, 1)
	e.conn.matrixPresenceOf = func(_ context.Context, user id.UserID) (*event.PresenceEventContent, error) {
		asked <- user
		return &event.PresenceEventContent{Presence: event.PresenceOffline}, nil
	}
	_, _, s := e.mustLogin()
	select {
	case user := <-asked:
		assert.Equal(t, e.user.MXID, user)
	case <-time.After(5 * time.Second):
		t.Fatal("the homeserver was not asked")
	}
	e.messageFrom(s, bob)
	e.waitWatched(s, bob)
	assert.False(t, e.conn.presence.visible(bob), "an offline user's rooms are not refreshed, even before any m.presence")

	// A change that arrives wins over what was read.
	e.conn.presence.matrixPresence(e.ctx, e.user.MXID, &event.PresenceEventContent{Presence: event.PresenceOnline})
	assert.True(t, e.conn.presence.visible(bob))
}

func TestPresenceIsPublishedAgainOnANewSession(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, func(p *PresenceConfig) { p.Publish = true }))
	e.conn.matrixPresenceOf = func(context.Context, id.UserID) (*event.PresenceEventContent, error) {
		return &event.PresenceEventContent{Presence: event.PresenceOffline, StatusMessage: "On leave"}, nil
	}
	timers := &manualTimers{}
	e.conn.presence.afterFunc = timers.afterFunc
	_, _, s := e.mustLogin()
	require.Eventually(t, func() bool {
		timers.fire()
		return len(s.publications()) == 1
	}, 5*time.Second, time.Millisecond, "the Matrix presence read at sign-in is published")
	assert.Equal(t, sfb.AvailabilityAway, *s.publications()[0].Availability)
	assert.Equal(t, "On leave", *s.publications()[0].Note)

	// The session ends; the next one publishes again, though the state
	// did not change.
	s.emit(sfb.SessionEnded{Err: sfb.ErrServerUnavailable})
	require.Eventually(t, func() bool { return e.transport.sessionCount() == 2 }, 5*time.Second, time.Millisecond)
	s2 := e.transport.lastSession()
	require.Eventually(t, func() bool {
		timers.fire()
		return len(s2.publications()) == 1
	}, 5*time.Second, time.Millisecond)
	assert.Len(t, s.publications(), 1)
}
