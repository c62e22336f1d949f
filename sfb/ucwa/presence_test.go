package ucwa

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// testClock is a settable clock shared by the simulator and the client.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// presenceSim runs the simulator with alice, bob and n generated users
// (sip:user00001@contoso.com ...), events aggregated for 20 ms, and a
// client whose presence loop checks every 10 ms. With a clock, both use it.
func presenceSim(t *testing.T, opts sim.Options, cfg sfb.Config, n int, clock *testClock) (*sim.Server, *Transport, []sfb.URI) {
	t.Helper()
	return presenceSimBehind(t, opts, cfg, n, clock, nil)
}

// presenceSimBehind is presenceSim with the simulator's HTTP handler
// wrapped by front, when not nil.
func presenceSimBehind(t *testing.T, opts sim.Options, cfg sfb.Config, n int, clock *testClock, front func(http.Handler) http.Handler) (*sim.Server, *Transport, []sfb.URI) {
	t.Helper()
	opts.Users = []sim.User{{URI: alice, DisplayName: "Alice Liddell", Password: "pw-alice"}, {URI: bob, DisplayName: "Bob Builder", Password: "pw-bob"}}
	opts.Logger = zerolog.New(zerolog.NewTestWriter(t)).With().Str("side", "sim").Logger()
	opts.EventWait = 200 * time.Millisecond
	if opts.EventAggregation == 0 {
		opts.EventAggregation = 20 * time.Millisecond
	}
	// The fake clock jumps by many minutes: applications must not expire
	// for it.
	opts.ApplicationIdleTimeout = 24 * time.Hour
	var clockOpt []Option
	if clock != nil {
		opts.Now = clock.Now
		clockOpt = append(clockOpt, WithClock(clock.Now))
	}
	srv, err := sim.New(opts)
	require.NoError(t, err)
	handler := srv.Handler()
	if front != nil {
		handler = front(handler)
	}
	hs := httptest.NewServer(handler)
	t.Cleanup(hs.Close)
	t.Cleanup(func() { _ = srv.Close() })
	srv.SetBaseURL(hs.URL)
	var people []sfb.URI
	for _, u := range srv.GenerateUsers(n, "contoso.com") {
		people = append(people, u.URI)
	}
	cfg.DiscoveryURL, cfg.AllowInsecureLoopback, cfg.RequestTimeout = srv.DiscoveryURL(), true, 5*time.Second
	tm := testTimings()
	tm.PresenceCheck = 10 * time.Millisecond
	tr, err := New(cfg, zerolog.New(zerolog.NewTestWriter(t)), append([]Option{WithTimings(tm)}, clockOpt...)...)
	require.NoError(t, err)
	return srv, tr, people
}

// latest is the last presence delivered for each person.
func latest(evts []sfb.Event) map[sfb.URI]sfb.Presence {
	out := map[sfb.URI]sfb.Presence{}
	for _, p := range eventsOf[sfb.PresenceChanged](evts) {
		out[p.Person] = p.Presence
	}
	return out
}

func TestPresenceWatchDeliversInitialStateAndChanges(t *testing.T) {
	srv, tr, users := presenceSim(t, sim.Options{}, sfb.Config{}, 1, nil)
	require.NoError(t, srv.SetPresence(bob, sim.Presence{Availability: "Away", Note: "Gone fishing"}))
	s, rec := simSignIn(t, tr)
	ctx := context.Background()

	taken, err := s.Watch(ctx, []sfb.URI{bob, bob, users[0]})
	require.NoError(t, err)
	assert.Equal(t, []sfb.URI{bob, users[0]}, taken)
	require.Eventually(t, func() bool {
		p, ok := latest(rec.all())[bob]
		return ok && p.Availability == sfb.AvailabilityAway && p.Note == "Gone fishing"
	}, waitFor, tick)

	require.NoError(t, srv.SetPresence(bob, sim.Presence{Availability: "Busy", Activity: "in-a-meeting", DeviceType: "Mobile", Note: "Gone fishing"}))
	require.Eventually(t, func() bool { return latest(rec.all())[bob].Availability == sfb.AvailabilityBusy }, waitFor, tick)
	p := latest(rec.all())[bob]
	assert.Equal(t, sfb.ActivityInAMeeting, p.Activity)
	assert.Equal(t, sfb.DeviceMobile, p.Device)
	assert.Equal(t, "Gone fishing", p.Note)
	assert.False(t, p.Changed.IsZero())

	require.NoError(t, srv.SetPresence(bob, sim.Presence{Availability: "Away", OutOfOffice: "On leave until Monday", Note: "Gone fishing"}))
	require.Eventually(t, func() bool { return latest(rec.all())[bob].OutOfOffice != nil }, waitFor, tick)
	p = latest(rec.all())[bob]
	assert.Equal(t, "On leave until Monday", p.OutOfOffice.Message)
	assert.Empty(t, p.Note, "contactNote shows the out-of-office note instead of the personal one")

	// Unwatched, bob's changes no longer arrive.
	require.NoError(t, s.Unwatch(ctx, []sfb.URI{bob}))
	assert.Equal(t, 0, srv.Subscribers(bob), "his membership deleted")
	assert.Equal(t, 1, srv.Subscribers(users[0]), "the subscription stays for the others")
	n := len(eventsOf[sfb.PresenceChanged](rec.all()))
	require.NoError(t, srv.SetPresence(bob, sim.Presence{Availability: "Online"}))
	assert.Never(t, func() bool { return len(eventsOf[sfb.PresenceChanged](rec.all())) != n }, 300*time.Millisecond, tick)
}

// A server may release the first state of the people a subscription
// takes on the event channel before it answers the request that created
// the subscription (two connections, no order between them); that state
// must be delivered, not dropped as somebody's nobody watches.
func TestPresenceFirstStateBeforeTheSubscriptionAnswer(t *testing.T) {
	var recorded atomic.Pointer[recorder]
	delivered := func() bool {
		rec := recorded.Load()
		if rec == nil {
			return false
		}
		_, ok := latest(rec.all())[bob]
		return ok
	}
	// Holds the answer to the subscription request until bob's state was
	// delivered, or at most 2 s.
	hold := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/presenceSubscriptions") {
				next.ServeHTTP(w, r)
				return
			}
			held := httptest.NewRecorder()
			next.ServeHTTP(held, r)
			deadline := time.Now().Add(2 * time.Second)
			for !delivered() && time.Now().Before(deadline) {
				time.Sleep(tick)
			}
			for k, v := range held.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(held.Code)
			_, _ = w.Write(held.Body.Bytes())
		})
	}
	srv, tr, _ := presenceSimBehind(t, sim.Options{}, sfb.Config{}, 0, nil, hold)
	require.NoError(t, srv.SetPresence(bob, sim.Presence{Availability: "Busy", Note: "Quarterly report"}))
	s, rec := simSignIn(t, tr)
	recorded.Store(rec)

	taken, err := s.Watch(context.Background(), []sfb.URI{bob})
	require.NoError(t, err)
	assert.Equal(t, []sfb.URI{bob}, taken)
	require.Eventually(t, delivered, waitFor, tick, "bob's first state, announced before the subscription's answer")
	p := latest(rec.all())[bob]
	assert.Equal(t, sfb.AvailabilityBusy, p.Availability)
	assert.Equal(t, "Quarterly report", p.Note)
}

func TestPresenceStormIsFetchedInBatches(t *testing.T) {
	const people = 200
	srv, tr, users := presenceSim(t, sim.Options{EventAggregation: 100 * time.Millisecond}, sfb.Config{}, people, nil)
	s, rec := simSignIn(t, tr)
	taken, err := s.Watch(context.Background(), users)
	require.NoError(t, err)
	require.Len(t, taken, people)
	subs, watched := srv.PresenceSubscriptions(alice)
	assert.Equal(t, people, watched)
	assert.Equal(t, people/maxPerSubscription, subs)
	require.Eventually(t, func() bool { return len(latest(rec.all())) == people }, waitFor, tick)

	before, beforeBatched := srv.SfBRequests(), srv.BatchedRequests()
	for _, u := range users {
		require.NoError(t, srv.SetPresence(u, sim.Presence{Availability: "DoNotDisturb", Activity: "presenting"}))
	}
	require.Eventually(t, func() bool {
		for _, u := range users {
			if latest(rec.all())[u].Availability != sfb.AvailabilityDoNotDisturb {
				return false
			}
		}
		return true
	}, waitFor, tick)
	requests, batched := srv.SfBRequests()-before, srv.BatchedRequests()-beforeBatched
	t.Logf("%d changes took %d HTTP requests to the simulator, with %d requests inside batches", people, requests, batched)
	// A few event-channel GETs and batches of at most 50, not a GET per
	// person.
	assert.Less(t, requests, int64(people/maxBatchParts*3), "HTTP requests for %d changes", people)
	assert.Equal(t, int64(people), batched, "one batched GET per change")
	assert.Equal(t, people, len(eventsOf[sfb.PresenceChanged](rec.all()))-people, "one event per change")
}

func TestPresenceSubscriptionExtendedBeforeExpiry(t *testing.T) {
	clock := &testClock{now: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	srv, tr, _ := presenceSim(t, sim.Options{}, sfb.Config{}, 0, clock)
	s, rec := simSignIn(t, tr)
	_, err := s.Watch(context.Background(), []sfb.URI{bob})
	require.NoError(t, err)
	first := srv.PresenceSubscriptionExpiry(alice)
	assert.Equal(t, clock.Now().Add(30*time.Minute), first)

	clock.Advance(26 * time.Minute)
	require.Eventually(t, func() bool { return srv.PresenceSubscriptionExpiry(alice).After(first) }, waitFor, tick)
	clock.Advance(10 * time.Minute) // past the first expiry
	srv.Sweep()
	assert.Equal(t, 1, srv.Subscribers(bob))
	require.NoError(t, srv.SetPresence(bob, sim.Presence{Availability: "BeRightBack"}))
	require.Eventually(t, func() bool { return latest(rec.all())[bob].Availability == sfb.AvailabilityBeRightBack }, waitFor, tick)
}

func TestPresenceSubscriptionRecreatedWhenTheServerDropsIt(t *testing.T) {
	clock := &testClock{now: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	srv, tr, _ := presenceSim(t, sim.Options{}, sfb.Config{}, 0, clock)
	s, rec := simSignIn(t, tr)
	_, err := s.Watch(context.Background(), []sfb.URI{bob})
	require.NoError(t, err)

	// Ended with a deleted event: created again at once.
	srv.DropPresenceSubscriptions(alice)
	require.Equal(t, 0, srv.Subscribers(bob))
	require.Eventually(t, func() bool { return srv.Subscribers(bob) == 1 }, waitFor, tick)
	require.NoError(t, srv.SetPresence(bob, sim.Presence{Availability: "Busy"}))
	require.Eventually(t, func() bool { return latest(rec.all())[bob].Availability == sfb.AvailabilityBusy }, waitFor, tick)

	// Lapsed without a word: found out when extending (404), created
	// again.
	srv.ExpirePresenceSubscriptions(alice)
	require.Equal(t, 0, srv.Subscribers(bob))
	clock.Advance(26 * time.Minute)
	require.Eventually(t, func() bool { return srv.Subscribers(bob) == 1 }, waitFor, tick)
	require.NoError(t, srv.SetPresence(bob, sim.Presence{Availability: "Away"}))
	require.Eventually(t, func() bool { return latest(rec.all())[bob].Availability == sfb.AvailabilityAway }, waitFor, tick)
	assert.Equal(t, sfb.DefaultConfig().PresenceWatchLimit, s.WatchCapacity(), "a dropped subscription does not lower the capacity")
}

func TestPresenceSubscriptionsFollowARecreatedApplication(t *testing.T) {
	srv, tr, _ := presenceSim(t, sim.Options{}, sfb.Config{}, 0, nil)
	s, rec := simSignIn(t, tr)
	_, err := s.Watch(context.Background(), []sfb.URI{bob})
	require.NoError(t, err)
	srv.DeleteApplications(alice)
	require.Equal(t, 0, srv.Subscribers(bob))
	require.Eventually(t, func() bool { return srv.Subscribers(bob) == 1 }, waitFor, tick)
	require.NoError(t, srv.SetPresence(bob, sim.Presence{Availability: "DoNotDisturb"}))
	require.Eventually(t, func() bool { return latest(rec.all())[bob].Availability == sfb.AvailabilityDoNotDisturb }, waitFor, tick)
}

func TestPresenceWatchLimit(t *testing.T) {
	t.Run("server LimitExceeded", func(t *testing.T) {
		srv, tr, users := presenceSim(t, sim.Options{MaxSubscribedPeople: 5}, sfb.Config{}, 8, nil)
		s, _ := simSignIn(t, tr)
		taken, err := s.Watch(context.Background(), users[:3])
		require.NoError(t, err)
		require.Len(t, taken, 3)
		taken, err = s.Watch(context.Background(), users[3:])
		require.ErrorIs(t, err, sfb.ErrWatchLimit)
		assert.Equal(t, users[3:5], taken, "as many as the server still takes")
		assert.Equal(t, 5, s.WatchCapacity())
		_, watched := srv.PresenceSubscriptions(alice)
		assert.Equal(t, 5, watched)
		taken, err = s.Watch(context.Background(), users[5:])
		require.ErrorIs(t, err, sfb.ErrWatchLimit)
		assert.Empty(t, taken, "at capacity: nothing asked")
	})
	t.Run("configured capacity", func(t *testing.T) {
		srv, tr, users := presenceSim(t, sim.Options{}, sfb.Config{PresenceWatchLimit: 4}, 8, nil)
		s, _ := simSignIn(t, tr)
		assert.Equal(t, 4, s.WatchCapacity())
		taken, err := s.Watch(context.Background(), users)
		require.ErrorIs(t, err, sfb.ErrWatchLimit)
		assert.Equal(t, users[:4], taken)
		_, watched := srv.PresenceSubscriptions(alice)
		assert.Equal(t, 4, watched)
	})
}

func TestPresencePublish(t *testing.T) {
	srv, tr, _ := presenceSim(t, sim.Options{}, sfb.Config{}, 0, nil)
	s, _ := simSignIn(t, tr)
	ctx := context.Background()
	busy, note := sfb.AvailabilityBusy, "In Element today"
	require.NoError(t, s.Publish(ctx, sfb.Publication{Availability: &busy, Note: &note}))
	p, err := srv.GetPresence(alice)
	require.NoError(t, err)
	assert.Equal(t, "Busy", p.Availability)
	assert.Equal(t, "In Element today", p.Note)

	offline := sfb.AvailabilityOffline
	require.NoError(t, s.Publish(ctx, sfb.Publication{Availability: &offline}))
	p, err = srv.GetPresence(alice)
	require.NoError(t, err)
	assert.Equal(t, "Away", p.Availability, "UCWA cannot appear offline: Offwork")
	assert.Equal(t, sfb.ActivityOffWork, p.Activity)

	// Notes are cleaned of control characters and cut rather than
	// refused; an unknown availability is the caller's error.
	long := strings.Repeat("é", 2000)
	require.NoError(t, s.Publish(ctx, sfb.Publication{Note: &long}))
	p, err = srv.GetPresence(alice)
	require.NoError(t, err)
	assert.Equal(t, strings.Repeat("é", maxNoteRunes), p.Note)
	controls := "\x00\x07"
	require.NoError(t, s.Publish(ctx, sfb.Publication{Note: &controls}))
	p, err = srv.GetPresence(alice)
	require.NoError(t, err)
	assert.Empty(t, p.Note)
	unknown := sfb.AvailabilityUnknown
	require.ErrorIs(t, s.Publish(ctx, sfb.Publication{Availability: &unknown}), sfb.ErrUnsupported)
}

func TestReportActivityKeepsTheUserAvailableAndIdleGoesAway(t *testing.T) {
	clock := &testClock{now: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	srv, tr, _ := presenceSim(t, sim.Options{}, sfb.Config{}, 0, clock)
	s, _ := simSignIn(t, tr)
	ctx := context.Background()
	online := sfb.AvailabilityOnline
	require.NoError(t, s.Publish(ctx, sfb.Publication{Availability: &online}))
	availability := func() string {
		srv.Sweep()
		p, err := srv.GetPresence(alice)
		require.NoError(t, err)
		return p.Availability
	}

	clock.Advance(6 * time.Minute)
	assert.Equal(t, "IdleOnline", availability(), "no activity reported: idle")
	require.NoError(t, s.ReportActivity(ctx))
	assert.Equal(t, "Online", availability(), "the first activity after a quiet interval is reported at once")

	clock.Advance(16 * time.Minute)
	assert.Equal(t, "Away", availability(), "a Matrix user who stays idle goes Away")
}

func TestContactsAndTheirChanges(t *testing.T) {
	srv, tr, users := presenceSim(t, sim.Options{}, sfb.Config{}, 3, nil)
	s, rec := simSignIn(t, tr)
	require.NoError(t, srv.SetContacts(alice, []sim.ContactGroup{{Name: "Team", Members: []sfb.URI{bob, users[0]}}, {Name: "Friends", Members: []sfb.URI{bob}}}))
	require.Eventually(t, func() bool { return len(eventsOf[sfb.ContactsChanged](rec.all())) > 0 }, waitFor, tick)
	got, err := s.Contacts(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []sfb.Person{{URI: bob, DisplayName: "Bob Builder"}, {URI: users[0], DisplayName: "User 00001"}}, got)

	n := len(eventsOf[sfb.ContactsChanged](rec.all()))
	require.NoError(t, srv.SetContacts(alice, []sim.ContactGroup{{Name: "Team", Members: []sfb.URI{users[1]}}}))
	require.Eventually(t, func() bool { return len(eventsOf[sfb.ContactsChanged](rec.all())) > n }, waitFor, tick)
	got, err = s.Contacts(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []sfb.Person{{URI: users[1], DisplayName: "User 00002"}}, got)
}

// TestReportActivityIsBounded: however often the bridge says the user is
// active, reportMyActivity goes out at most about once per interval, and
// not at all while the user is not active (so SfB can turn them Away).
func TestReportActivityIsBounded(t *testing.T) {
	f := newFake(t)
	cfg := sfb.Config{DiscoveryURL: f.url("/autodiscover/autodiscoverservice.svc/root"), AllowInsecureLoopback: true,
		ActivityInterval: 100 * time.Millisecond, RequestTimeout: 5 * time.Second}
	tr, err := New(cfg, zerolog.New(zerolog.NewTestWriter(t)), WithTimings(testTimings()))
	require.NoError(t, err)
	s, _ := signIn(t, tr, "secret")
	reports := func() int { return len(f.recorded(http.MethodPost, "/me/reportMyActivity")) }
	assert.Never(t, func() bool { return reports() > 0 }, 300*time.Millisecond, tick, "no activity, no report")

	ctx := context.Background()
	require.NoError(t, s.ReportActivity(ctx))
	assert.Equal(t, 1, reports(), "the first activity after a quiet interval is reported at once")
	for range 50 {
		require.NoError(t, s.ReportActivity(ctx))
	}
	assert.LessOrEqual(t, reports(), 2, "activity within the interval waits for the activity loop's next tick")
	require.Eventually(t, func() bool { return reports() == 2 }, waitFor, tick)
	assert.Never(t, func() bool { return reports() > 2 }, 400*time.Millisecond, tick, "idle again: no more reports")
}

// After a restart that resumes the application, the subscriptions of the
// session before are deleted: the bridge watches its people again, and
// nothing would extend the old ones.
func TestResumedSessionDeletesStaleSubscriptions(t *testing.T) {
	srv, tr, _ := presenceSim(t, sim.Options{}, sfb.Config{}, 0, nil)
	s1 := signInWith(t, tr, "", (&recorder{}).handle)
	ctx := context.Background()
	_, err := s1.Watch(ctx, []sfb.URI{bob})
	require.NoError(t, err)
	stored := s1.ResumeState()
	require.NoError(t, s1.Detach(ctx))

	rec := &recorder{}
	s2, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "pw-alice"}, Resume: stored}, rec.handle)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s2.Close(context.Background()) })
	assert.Equal(t, 1, srv.Applications(alice), "resumed, not created again")
	require.Eventually(t, func() bool { subs, _ := srv.PresenceSubscriptions(alice); return subs == 0 }, waitFor, tick)
	_, err = s2.Watch(ctx, []sfb.URI{bob})
	require.NoError(t, err)
	subs, people := srv.PresenceSubscriptions(alice)
	assert.Equal(t, []int{1, 1}, []int{subs, people})
	require.NoError(t, srv.SetPresence(bob, sim.Presence{Availability: "Busy"}))
	require.Eventually(t, func() bool { return latest(rec.all())[bob].Availability == sfb.AvailabilityBusy }, waitFor, tick)
}

// A publication that finds the application gone goes to the same link of
// the one created again: the note to me/note, the availability to
// me/presence.
func TestPresencePublishAfterTheApplicationIsGone(t *testing.T) {
	srv, tr, _ := presenceSim(t, sim.Options{}, sfb.Config{}, 0, nil)
	s, _ := simSignIn(t, tr)
	ctx := context.Background()
	srv.DeleteApplications(alice)
	away, note := sfb.AvailabilityAway, "Back at two"
	require.NoError(t, s.Publish(ctx, sfb.Publication{Availability: &away, Note: &note}))
	p, err := srv.GetPresence(alice)
	require.NoError(t, err)
	assert.Equal(t, "Away", p.Availability)
	assert.Equal(t, "Back at two", p.Note)
}
