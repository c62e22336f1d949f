package ucwa

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
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

// poolWatch counts the requests the client sends, and those it sends
// while their pool is paused, split into a signed-in session's event
// channel and everything else (sign-ins, token renewals, messages).
type poolWatch struct {
	next http.RoundTripper
	tr   atomic.Pointer[Transport]

	sent, refused             atomic.Int64
	pausedEvents, pausedOther atomic.Int64
	mu                        sync.Mutex
	pausedOtherOps            map[string]int
}

func (w *poolWatch) RoundTrip(r *http.Request) (*http.Response, error) {
	w.sent.Add(1)
	if tr := w.tr.Load(); tr != nil && time.Now().Before(tr.guard(r.URL).PausedUntil()) {
		if strings.HasSuffix(r.URL.Path, "/events") {
			w.pausedEvents.Add(1)
		} else {
			w.pausedOther.Add(1)
			w.mu.Lock()
			w.pausedOtherOps[r.Method+" "+lastSegment(r.URL)]++
			w.mu.Unlock()
		}
	}
	resp, err := w.next.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusServiceUnavailable {
		w.refused.Add(1)
	}
	return resp, err
}

func lastSegment(u *url.URL) string {
	return u.Path[strings.LastIndex(u.Path, "/")+1:]
}

// TestPoolPauseHoldsSignInsOf1000Logins signs 1,000 users in at once
// against the simulator and makes it answer 503 with Retry-After part way
// through: the whole pool pauses (new sign-ins send nothing while it
// lasts, however many are waiting), sessions already signed in keep
// working, and after the pause every login connects.
func TestPoolPauseHoldsSignInsOf1000Logins(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 logins")
	}
	const (
		logins     = 1000
		rate       = 200 // sign-ins per second: the simulator's lift
		faultAfter = 300 // connected logins when the simulator starts refusing
		refusals   = 20  // requests the simulator answers with 503
	)
	peer := sfb.URI("sip:peer@contoso.com")
	users := []sim.User{{URI: peer, DisplayName: "Peer", Password: "pw"}}
	for i := range logins {
		users = append(users, sim.User{URI: userURI(i), Password: "pw"})
	}
	srv, err := sim.New(sim.Options{Users: users, Logger: zerolog.Nop(), EventWait: time.Minute})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	t.Cleanup(func() { _ = srv.Close() })
	srv.SetBaseURL(hs.URL)

	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 2 * logins
	watch := &poolWatch{next: base, pausedOtherOps: map[string]int{}}
	tm := testTimings()
	tm.BackoffMin, tm.BackoffMax = 200*time.Millisecond, 2*time.Second
	// Longer than the simulator holds a pending GET: signed-in sessions
	// poll once a minute.
	tm.EventTimeout = 2 * time.Minute
	// Generous: CI shares two cores with everything else.
	tm.OperationTimeout = 2 * time.Minute
	tr, err := New(sfb.Config{DiscoveryURL: srv.DiscoveryURL(), AllowInsecureLoopback: true, RequestTimeout: 2 * time.Minute,
		SignInRate: rate, SimulatorSignInRate: true},
		zerolog.Nop(), WithTimings(tm), WithHTTPClient(&http.Client{Transport: watch}))
	require.NoError(t, err)
	watch.tr.Store(tr)
	guard := tr.guard(mustParse(t, hs.URL))

	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu        sync.Mutex
		sessions  []sfb.Session
		connected atomic.Int64
		attempts  atomic.Int64
		timeouts  atomic.Int64
		signing   sync.WaitGroup
	)
	t.Cleanup(func() {
		// No sign-in outlives the test, nor any session: the tests after
		// this one need the machine.
		cancel()
		signing.Wait()
		var wg sync.WaitGroup
		for _, s := range sessions {
			wg.Go(func() { _ = s.Detach(context.Background()) })
		}
		wg.Wait()
	})
	start := time.Now()
	for i := range logins {
		signing.Go(func() {
			// Like the connector: sign in again after a transient
			// failure. No backoff of its own: the guard is what keeps
			// the retries off the pool.
			for ctx.Err() == nil {
				attempts.Add(1)
				s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: userURI(i).Address(), Password: "pw"}},
					func(context.Context, sfb.Event) {})
				if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
					// A request timed out on a loaded machine; the
					// connector tries again too.
					timeouts.Add(1)
					continue
				}
				if err != nil {
					if !errors.Is(err, sfb.ErrServerUnavailable) && ctx.Err() == nil {
						t.Errorf("sign in %d: %v", i, err)
						return
					}
					continue
				}
				mu.Lock()
				sessions = append(sessions, s)
				mu.Unlock()
				connected.Add(1)
				return
			}
		})
	}

	require.Eventually(t, func() bool { return connected.Load() >= faultAfter }, 2*time.Minute, 5*time.Millisecond)
	mu.Lock()
	early := sessions[0]
	mu.Unlock()
	srv.FailRequestsRetryAfter(refusals, http.StatusServiceUnavailable, time.Second)
	require.Eventually(t, func() bool { return time.Now().Before(guard.PausedUntil()) }, 10*time.Second, time.Millisecond,
		"a 503 pauses the pool")
	connectedAtPause := connected.Load()

	// A session signed in before the pause still sends while it lasts,
	// once the simulator's refusals are used up.
	// (Each refusal pauses the pool for its Retry-After of 1 s once the
	// transport has seen it, which is just after the watch has.)
	require.Eventually(t, func() bool {
		return watch.refused.Load() >= refusals && time.Now().Before(guard.PausedUntil())
	}, 10*time.Second, time.Millisecond)
	_, err = early.SendMessage(ctx, peer, sfb.Message{Text: "during the pause"})
	require.NoError(t, err)
	watch.mu.Lock()
	sentPaused := watch.pausedOtherOps["POST messagingInvitations"]
	watch.mu.Unlock()
	assert.Equal(t, 1, sentPaused, "the message went out during the pause, not after it")

	require.Eventually(t, func() bool { return connected.Load() == logins }, 2*time.Minute, 10*time.Millisecond,
		"every login connects after the pause")
	elapsed, afterPause := time.Since(start), time.Since(guard.PausedUntil())

	watch.mu.Lock()
	ops := fmt.Sprint(watch.pausedOtherOps)
	watch.mu.Unlock()
	t.Logf("%d logins connected in %s, %s after the last pause ended (%d sign-in attempts, %d timed out; %d requests, %d refused with 503); %d were connected when the pool paused",
		logins, elapsed.Round(time.Millisecond), afterPause.Round(time.Millisecond), attempts.Load(), timeouts.Load(),
		watch.sent.Load(), watch.refused.Load(), connectedAtPause)
	st := guard.Stats()
	t.Logf("%d pauses, %s in all; requests sent while the pool was paused: %d event channel polls of signed-in sessions, %d others %s",
		st.Pauses, st.Paused.Round(time.Millisecond), watch.pausedEvents.Load(), watch.pausedOther.Load(), ops)

	// What a sign-in sends while paused can only be what had passed the
	// guard when the first 503 arrived: one request each of the few
	// sign-ins under way. Nothing of the hundreds waiting.
	assert.LessOrEqual(t, watch.pausedOther.Load(), int64(20), "sign-in requests during the pause")
	// Signed-in sessions are not paused, but each polls its event channel
	// at most a few times (its own backoff honours Retry-After).
	assert.LessOrEqual(t, watch.pausedEvents.Load(), 3*connectedAtPause, "event channel polls during the pause")
	assert.Equal(t, 1, len(srv.Received(peer)), "the message sent during the pause arrived")
}

func userURI(i int) sfb.URI { return sfb.URI(fmt.Sprintf("sip:user%04d@contoso.com", i)) }

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u
}

// TestTokenRenewalsSpreadOverTheWindow: 10,000 tokens obtained in the same
// minute (a restart) are renewed spread evenly between RenewFrom and
// RenewTo of their lifetime, each user at the same point on every run.
func TestTokenRenewalsSpreadOverTheWindow(t *testing.T) {
	tm := DefaultTimings()
	const n, slices = 10000, 16
	var perSlice [slices]int
	for i := range n {
		f := renewFraction(userURI(i), tm)
		require.GreaterOrEqual(t, f, tm.RenewFrom)
		require.Less(t, f, tm.RenewTo)
		perSlice[int((f-tm.RenewFrom)/(tm.RenewTo-tm.RenewFrom)*slices)]++
	}
	window := time.Duration((tm.RenewTo - tm.RenewFrom) * float64(8*time.Hour))
	for i, got := range perSlice {
		assert.InDelta(t, n/slices, got, n/slices/4, "renewals in the %s from %s after issue",
			window/slices, time.Duration(float64(8*time.Hour)*tm.RenewFrom)+window/slices*time.Duration(i))
	}
	assert.Equal(t, renewFraction(alice, tm), renewFraction(alice, tm))
}

// TestSimulatorSignInRateOnlyTowardsLoopback: the transport itself refuses
// the lift of the 12/s limit unless it talks plain HTTP to loopback, should
// a configuration reach it without the bridge's validation.
func TestSimulatorSignInRateOnlyTowardsLoopback(t *testing.T) {
	for _, cfg := range []sfb.Config{
		{SignInRate: 50},
		{SignInRate: 50, SimulatorSignInRate: true},
		{SignInRate: 50, SimulatorSignInRate: true, DiscoveryURL: "https://lyncdiscover.contoso.com/autodiscover/autodiscoverservice.svc/root"},
		{SignInRate: 50, SimulatorSignInRate: true, DiscoveryURL: "http://127.0.0.1:1/root"},
	} {
		_, err := New(cfg, zerolog.Nop())
		var ce *ConfigError
		require.ErrorAs(t, err, &ce, "%+v", cfg)
		assert.Contains(t, err.Error(), "sign_in_rate")
	}
	tr, err := New(sfb.Config{SignInRate: 50, SimulatorSignInRate: true, DiscoveryURL: "http://127.0.0.1:1/root", AllowInsecureLoopback: true}, zerolog.Nop())
	require.NoError(t, err)
	assert.Equal(t, 50.0, tr.cfg.SignInRate)
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{" 7 ", 7 * time.Second},
		{"-3", 0},
		{"soon", 0},
		{"99999999999999999", 24 * time.Hour},
		{"Thu, 01 Jan 2026 08:00:30 GMT", 30 * time.Second},
		{"Thu, 01 Jan 2026 07:00:00 GMT", 0},
	} {
		h := http.Header{}
		if tt.header != "" {
			h.Set("Retry-After", tt.header)
		}
		assert.Equal(t, tt.want, retryAfter(h, now), "Retry-After: %q", tt.header)
	}
}
