package ucwa

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// startProductionSim runs the simulator with n generated users and
// production event timings: every signed-in user's event channel holds
// its GET for the full 180 s, as against a real Front End. The transport
// uses its own HTTP client, not a test one.
func startProductionSim(tb testing.TB, n int) (*sim.Server, []sim.User, *Transport) {
	tb.Helper()
	log := zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel)
	srv, err := sim.New(sim.Options{Logger: log.With().Str("side", "sim").Logger()})
	require.NoError(tb, err)
	users := srv.GenerateUsers(n, "contoso.com")
	require.NoError(tb, srv.AddUser(sim.User{URI: bob, DisplayName: "Bob Builder", Password: "pw-bob"}))
	hs := httptest.NewServer(srv.Handler())
	// Cleanups run last first: sessions (registered later) end their
	// GETs, then the simulator releases what is left, then the server
	// closes, which waits for every request.
	tb.Cleanup(hs.Close)
	tb.Cleanup(func() { _ = srv.Close() })
	srv.SetBaseURL(hs.URL)
	tr, err := New(sfb.Config{DiscoveryURL: srv.DiscoveryURL(), AllowInsecureLoopback: true, RequestTimeout: 5 * time.Second},
		log, WithTimings(DefaultTimings()))
	require.NoError(tb, err)
	return srv, users, tr
}

// signInAll signs users in, parallel at a time, and stops at the first
// failure.
func signInAll(tb testing.TB, tr *Transport, users []sim.User, parallel int) ([]sfb.Session, []*recorder) {
	tb.Helper()
	sessions := make([]sfb.Session, len(users))
	recs := make([]*recorder, len(users))
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, u := range users {
		sem <- struct{}{}
		if ctx.Err() != nil {
			break
		}
		recs[i] = &recorder{}
		wg.Go(func() {
			defer func() { <-sem }()
			creds := sfb.Credentials{SignInAddress: u.URI.Address(), Password: u.Password}
			s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: creds}, recs[i].handle)
			if err != nil {
				cancel(fmt.Errorf("user %d of %d: %w", i+1, len(users), err))
				return
			}
			sessions[i] = s
		})
	}
	wg.Wait()
	tb.Cleanup(func() {
		var wg sync.WaitGroup
		for _, s := range sessions {
			if s != nil {
				wg.Go(func() { _ = s.Close(context.Background()) })
			}
		}
		wg.Wait()
	})
	require.NoError(tb, context.Cause(ctx), "sign-in failed")
	return sessions, recs
}

// TestManyUsersAtOnce signs in 200 users, 16 at a time, each holding a
// pending GET, and then exchanges messages with a handful of them. Any
// limit that all users share (one connection pool with MaxConnsPerHost
// 20, as before) runs out once about 20 event channels wait: later
// sign-ins and messages then wait for a connection until they time out.
func TestManyUsersAtOnce(t *testing.T) {
	const n = 200
	srv, users, tr := startProductionSim(t, n)
	start := time.Now()
	sessions, recs := signInAll(t, tr, users, 16)
	t.Logf("%d users signed in in %s", n, time.Since(start).Round(time.Millisecond))
	require.Eventually(t, func() bool {
		for _, u := range users {
			if srv.PendingGETs(u.URI) == 0 {
				return false
			}
		}
		return true
	}, waitFor, tick, "every user's event channel waits")

	ctx := context.Background()
	for _, i := range []int{0, n / 4, n / 2, 3 * n / 4, n - 1} {
		u, s, rec := users[i].URI, sessions[i], recs[i]
		in := "to " + u.Address()
		start := time.Now()
		require.NoError(t, srv.SendMessage(ctx, bob, u, sfb.Message{Text: in}))
		require.Eventually(t, func() bool {
			msgs := messages(rec.all())
			return len(msgs) == 1 && msgs[0].Message.Text == in
		}, waitFor, tick, "message to %s", u)
		received := time.Since(start)

		out := "from " + u.Address()
		sctx, cancel := context.WithTimeout(ctx, waitFor)
		_, err := s.SendMessage(sctx, bob, sfb.Message{Text: out})
		cancel()
		require.NoError(t, err, "message from %s", u)
		require.Eventually(t, func() bool {
			got := receivedTexts(srv, bob)
			return len(got) > 0 && got[len(got)-1] == out
		}, waitFor, tick, "message from %s", u)
		t.Logf("%s: received in %s, answered in %s", u.Address(), received.Round(time.Millisecond), (time.Since(start) - received).Round(time.Millisecond))
	}
	assert.Len(t, srv.Received(bob), 5)
}

// BenchmarkIdleSignedInUsers measures what an idle signed-in user costs
// the client: open file descriptors, Go memory (heap and stacks, after a
// GC), resident memory and goroutines, per user, once every user's event
// channel waits on its pending GET. Run it once per size:
//
//	SFB_IDLE_USERS=5000 go test -tags goolm -run '^$' -bench IdleSignedInUsers -benchtime 1x ./sfb/ucwa/
//
// By default the simulator runs in the same process, so the figures
// include its side of every connection. For the client alone, start
// `sfb-sim -users N -log-level warn` (N at least SFB_IDLE_USERS) and set
// SFB_SIM_DISCOVERY_URL to the discovery URL it prints.
func BenchmarkIdleSignedInUsers(b *testing.B) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		b.Skip("needs /proc")
	}
	n := 2000
	if v := os.Getenv("SFB_IDLE_USERS"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(b, err, "SFB_IDLE_USERS")
	}
	var (
		tr      *Transport
		users   []sim.User
		settled func() bool
	)
	if url := os.Getenv("SFB_SIM_DISCOVERY_URL"); url != "" {
		var err error
		tr, err = New(sfb.Config{DiscoveryURL: url, AllowInsecureLoopback: true, RequestTimeout: 30 * time.Second},
			zerolog.New(zerolog.NewTestWriter(b)).Level(zerolog.WarnLevel), WithTimings(DefaultTimings()))
		require.NoError(b, err)
		for i := 1; i <= n; i++ {
			users = append(users, sim.User{URI: sfb.URI(fmt.Sprintf("sip:user%05d@contoso.com", i)), Password: sim.GeneratedPassword})
		}
		// Every pending GET holds one connection: settled once the
		// client has at least that many sockets open.
		base := openFDs(b)
		settled = func() bool { return openFDs(b) >= base+n }
	} else {
		var srv *sim.Server
		srv, users, tr = startProductionSim(b, n)
		settled = func() bool {
			for _, u := range users {
				if srv.PendingGETs(u.URI) == 0 {
					return false
				}
			}
			return true
		}
	}
	before := measureProcess(b)
	start := time.Now()
	signInAll(b, tr, users, 64)
	signedIn := time.Since(start)
	require.Eventually(b, settled, time.Minute, 50*time.Millisecond, "every event channel waits")
	after := measureProcess(b)
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	b.ReportMetric(float64(n)/signedIn.Seconds(), "signins/s")
	b.ReportMetric(per(after.fds, before.fds), "fds/user")
	b.ReportMetric(per(after.goMem, before.goMem), "go-bytes/user")
	b.ReportMetric(per(after.rss, before.rss), "rss-bytes/user")
	b.ReportMetric(per(after.goroutines, before.goroutines), "goroutines/user")
	b.Logf("%d idle users: %.2f fds, %.1f KiB Go memory (heap %.1f, stacks %.1f), %.1f KiB RSS, %.1f goroutines per user; signed in at %.0f/s",
		n, per(after.fds, before.fds), per(after.goMem, before.goMem)/1024, per(after.heap, before.heap)/1024, per(after.stack, before.stack)/1024,
		per(after.rss, before.rss)/1024, per(after.goroutines, before.goroutines), float64(n)/signedIn.Seconds())
}

type processCost struct{ fds, heap, stack, goMem, rss, goroutines uint64 }

func measureProcess(tb testing.TB) processCost {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, err := os.ReadFile("/proc/self/status")
	require.NoError(tb, err)
	var rssKiB uint64
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rssKiB, err = strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(tb, err, "VmRSS")
		}
	}
	return processCost{fds: uint64(openFDs(tb)), heap: ms.HeapInuse, stack: ms.StackInuse, goMem: ms.HeapInuse + ms.StackInuse,
		rss: rssKiB * 1024, goroutines: uint64(runtime.NumGoroutine())}
}

func openFDs(tb testing.TB) int {
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(tb, err)
	return len(entries)
}
