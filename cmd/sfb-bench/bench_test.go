package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/presence"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/synapse"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

func TestSummarizeNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	assert.Equal(t, Latency{P50: 50, P95: 95, P99: 99, Max: 100}, summarize(d))
	assert.Equal(t, Latency{P50: 7, P95: 7, P99: 7, Max: 7}, summarize([]time.Duration{7 * time.Millisecond}))
	assert.Equal(t, Latency{}, summarize(nil))
	assert.Equal(t, time.Duration(100)*time.Millisecond, d[0], "summarize must not sort its argument")
}

func TestTrackerWindowAndDoubles(t *testing.T) {
	tr := newTracker("test", 2, 2)
	ctx := context.Background()
	require.NoError(t, tr.offer(ctx, 0, "a"))
	require.NoError(t, tr.offer(ctx, 0, "b"))
	require.NoError(t, tr.offer(ctx, 1, "c"), "another conversation has its own window")

	full, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, tr.offer(full, 0, "d"), context.DeadlineExceeded, "a full window blocks")

	tr.arrive("a", time.Now())
	require.NoError(t, tr.offer(ctx, 0, "d"), "an arrival frees its place in the window")
	tr.arrive("a", time.Now())
	tr.arrive("unknown", time.Now())
	tr.abandon("b")
	tr.arrive("b", time.Now())

	done, _ := tr.snapshot()
	assert.Equal(t, 1, done)
	assert.Equal(t, 1, tr.doubled)
	assert.Len(t, tr.pending, 2, "c and d are still on their way")
}

func TestPeakPerSecond(t *testing.T) {
	start := time.Now()
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	assert.Equal(t, 3, peakPerSecond(start, []time.Time{at(10), at(1100), at(1500), at(1999), at(2000)}))
	assert.Equal(t, 0, peakPerSecond(start, nil))
}

func TestParseFlags(t *testing.T) {
	opts, err := parseFlags([]string{"-scenario", "standard", "-network", "sign_in_rate=50", "-modes", "sequential,10", "-presence-rate", "200", "-presence-duration", "20s"})
	require.NoError(t, err)
	assert.Equal(t, standard, opts.scenarios())
	assert.Equal(t, 50.0, opts.network["sign_in_rate"])
	modes, err := parseModes(opts.modes, opts.window)
	require.NoError(t, err)
	assert.Equal(t, []mode{{"sequential", 1, 1}, {"concurrent-10", 10, 10}}, modes)
	assert.Equal(t, 200, opts.presenceRate)
	assert.Equal(t, 20*time.Second, opts.presenceDuration)
	assert.NotContains(t, opts.scenarios(), "presence-storm", "the standard set stays as it was")

	assert.Empty(t, opts.sipMode(), "UCWA unless asked")
	opts, err = parseFlags([]string{"-scenario", "sip-scale,sip-per-user", "-sfb-transport", "sip-trusted"})
	require.NoError(t, err)
	assert.Equal(t, []string{"sip-scale", "sip-per-user"}, opts.scenarios())
	assert.Equal(t, sfb.SIPModeTrusted, opts.sipMode())
	assert.True(t, ownEnv("sip-scale") && ownEnv("crash") && !ownEnv("logins"), "the SIP scenarios start no homeserver or bridge")

	for _, bad := range [][]string{{"-scenario", "nope"}, {"-modes", "0"}, {"-presence-rate", "0"}, {"-refresh-interval", "10ms"}, {"-network", "novalue"}, {"extra"},
		{"-sfb-transport", "xmpp"}, {"-sip-registration-expiry", "1s"}, {"-sip-connections", "0"}} {
		_, err := parseFlags(bad)
		assert.Error(t, err, "%q", bad)
	}
}

// TestBenchSmoke runs the bench command end to end with a tiny N, so that
// it keeps working: Synapse, PostgreSQL, the simulator and the bridge, one
// scenario, both sides, every message counted once.
func TestBenchSmoke(t *testing.T) {
	if wanted, reason := synapse.Wanted(); !wanted {
		t.Skip(reason)
	}
	const n = 12
	out := t.TempDir()
	opts, err := parseFlags([]string{"-scenario", "sfb-to-matrix,presence-storm", "-n", "12", "-modes", "sequential,2", "-window", "3",
		"-logins", "1", "-profile", "concurrent-2", "-repo", "../..", "-out", out,
		// A storm of 12 people, 2 logins, 2 s; presence updates released
		// at once, so that the test does not wait for UCWA's hold.
		"-presence-logins", "2", "-presence-rate", "6", "-presence-duration", "2s", "-rounds", "1",
		"-presence-sample", "6", "-presence-visible", "1", "-presence-observers", "1", "-steady", "1s", "-sim-event-aggregation", "10ms"})
	require.NoError(t, err)
	opts.race = raceEnabled
	log, err := os.Create(filepath.Join(t.TempDir(), "bench.log"))
	require.NoError(t, err)
	defer log.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := bench(ctx, opts, log); err != nil {
		data, _ := os.ReadFile(log.Name())
		t.Fatalf("bench: %v\n%s", err, data)
	}

	data, err := os.ReadFile(filepath.Join(out, "sfb-to-matrix.json"))
	require.NoError(t, err)
	var res Result
	require.NoError(t, json.Unmarshal(data, &res))
	require.Len(t, res.Runs, 2)
	for _, run := range res.Runs {
		for name, m := range map[string]Measure{"bridge": run.Bridge, "baseline": run.Baseline} {
			assert.Equal(t, n, m.Arrived, "%s %s: every message arrives", run.Mode, name)
			assert.Zero(t, m.Doubled, "%s %s", run.Mode, name)
			assert.Empty(t, m.Error, "%s %s", run.Mode, name)
			assert.Greater(t, m.P50, 0.0, "%s %s", run.Mode, name)
			assert.LessOrEqual(t, m.P99, m.Max, "%s %s", run.Mode, name)
		}
		assert.Greater(t, run.Bridge.BridgeCPU, 0.0, "%s: the bridge's CPU time is read from /proc", run.Mode)
		assert.Greater(t, run.Bridge.BridgePeakRSS, 1.0, "%s: and its RSS", run.Mode)
		assert.InDelta(t, run.Bridge.P99/run.Baseline.P99, run.P99Ratio, 1e-9)
	}
	assert.FileExists(t, filepath.Join(out, "sfb-to-matrix.md"))
	assert.FileExists(t, filepath.Join(out, "bridge-cpu-sfb-to-matrix-concurrent-2.txt"), "the CPU profile of the bridge")

	data, err = os.ReadFile(filepath.Join(out, "presence-storm.json"))
	require.NoError(t, err)
	var storm Result
	require.NoError(t, json.Unmarshal(data, &storm))
	p := storm.Presence
	require.NotNil(t, p)
	assert.Equal(t, n, p.Setup.Watched, "every person is watched")
	assert.GreaterOrEqual(t, p.Setup.Writes, uint64(n), "and their ghost written")
	for name, side := range map[string]PresenceSide{"bridge": p.Bridge, "raw appservice": p.Baseline} {
		assert.Empty(t, side.Error, name)
		assert.Positive(t, side.Sampled, name)
		assert.Equal(t, side.Sampled, side.Arrived, "%s: every sampled change is seen by the observer", name)
		assert.GreaterOrEqual(t, side.Writes, uint64(side.Changes), "%s: every change written", name)
	}
	assert.Positive(t, p.Bridge.SfBPerSec["batch"]+p.Bridge.SfBPerSec["contactPresence"], "the bridge fetched the changes from SfB")
	assert.Positive(t, p.Bridge.BridgeCPU)
}

func TestMergeRounds(t *testing.T) {
	msd := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	m := merge([]part{
		{Measure: Measure{Sent: 2, Arrived: 2, Seconds: 1, BridgeCPU: 0.5, BridgePeakRSS: 30}, latencies: msd(10, 20)},
		{Measure: Measure{Sent: 3, Arrived: 2, Doubled: 1, Seconds: 3, BridgeCPU: 0.25, BridgePeakRSS: 20, Error: "lost one"}, latencies: msd(40, 30)},
	})
	assert.Equal(t, Measure{
		Sent: 5, Arrived: 4, Doubled: 1, Seconds: 4, Throughput: 1,
		Latency:   Latency{P50: 20, P95: 40, P99: 40, Max: 40},
		BridgeCPU: 0.75, BridgePeakRSS: 30, Error: "lost one",
	}, m)
}

func TestPresenceTrackerMatchesTheExpectedState(t *testing.T) {
	ghost, other := id.UserID("@sfb_a:localhost"), id.UserID("@sfb_b:localhost")
	tr := newPresenceTracker(map[id.UserID]sfb.URI{ghost: "sip:a@contoso.com"})
	t0 := time.Now()
	busy := presence.MatrixState{Presence: event.PresenceUnavailable, StatusMsg: "Busy"}
	tr.changed(ghost, busy, t0)
	tr.changed(other, busy, t0)

	tr.seen(ghost, &event.PresenceEventContent{Presence: event.PresenceOnline}, t0.Add(time.Second))
	tr.seen(ghost, &event.PresenceEventContent{Presence: event.PresenceUnavailable, StatusMessage: "Busy"}, t0.Add(-time.Second))
	changes, sampled, arrived, _ := tr.snapshot()
	assert.Equal(t, []int{2, 1, 0}, []int{changes, sampled, arrived}, "another state, or one seen before the change, is not the change")

	// A newer change before the first was seen replaces it: one sample.
	away := presence.MatrixState{Presence: event.PresenceUnavailable, StatusMsg: "Away"}
	tr.changed(ghost, away, t0.Add(time.Second))
	tr.seen(ghost, &event.PresenceEventContent{Presence: event.PresenceUnavailable, StatusMessage: "Busy"}, t0.Add(2*time.Second))
	tr.seen(ghost, &event.PresenceEventContent{Presence: event.PresenceUnavailable, StatusMessage: "Away"}, t0.Add(1500*time.Millisecond))
	tr.seen(ghost, &event.PresenceEventContent{Presence: event.PresenceUnavailable, StatusMessage: "Away"}, t0.Add(3*time.Second))

	var side PresenceSide
	tr.result(&side)
	assert.Equal(t, 3, side.Changes)
	assert.Equal(t, 1, side.Sampled)
	assert.Equal(t, 1, side.Arrived, "a second sighting counts once")
	assert.Equal(t, 500.0, side.P50, "latency from the newer change")
}

func TestClassifyRequest(t *testing.T) {
	app := "/ucwa/oauth/v1/applications/123"
	for path, want := range map[string]requestKind{
		app + "/events":                                         reqEvents,
		app + "/me/reportMyActivity":                            reqActivity,
		app + "/batch":                                          reqBatch,
		app + "/people/presenceSubscriptions":                   reqSubscriptions,
		app + "/people/presenceSubscriptions/7/extend":          reqSubscriptions,
		app + "/people/presenceSubscriptionMemberships":         reqSubscriptions,
		app + "/people/sip:a@contoso.com/presence":              reqContactPresence,
		app + "/people/sip:a@contoso.com/note":                  reqContactPresence,
		app + "/me/presence":                                    reqOther,
		app + "/communication/messagingInvitations":             reqOther,
		"/autodiscover/autodiscoverservice.svc/root/oauth/user": reqOther,
	} {
		assert.Equal(t, want, classifyRequest(path), path)
	}
	var rc requestCounter
	before := rc.read()
	h := rc.wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for _, p := range []string{app + "/batch", app + "/batch", "/sim/v1/users", app + "/events"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
	}
	per := rc.read().perSecond(before, 2*time.Second)
	assert.Equal(t, 1.0, per["batch"])
	assert.Equal(t, 0.5, per["events"])
	assert.Equal(t, 0.0, per["other"], "the control API is not SfB")
}

// TestSIPBenchSmoke runs the SIP scenarios end to end with a tiny N: the
// simulator as a process, the transport registering trusted endpoints and
// signing per-user users in, the bare client, every figure filled.
func TestSIPBenchSmoke(t *testing.T) {
	if wanted, reason := synapse.Wanted(); !wanted {
		t.Skip(reason)
	}
	const n, ramp, sample = 20, 12, 5
	out := t.TempDir()
	opts, err := parseFlags([]string{"-scenario", "sip-scale,sip-per-user", "-n", fmt.Sprint(n), "-repo", "../..", "-out", out, "-dir", t.TempDir(),
		"-sip-registration-expiry", "10s", "-sip-settle", "0s", "-sip-live-sample", fmt.Sprint(sample), "-sip-ramp-users", fmt.Sprint(ramp),
		"-login-concurrency", "10", "-stall", "2s"})
	require.NoError(t, err)
	log, err := os.Create(filepath.Join(t.TempDir(), "bench.log"))
	require.NoError(t, err)
	defer log.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := bench(ctx, opts, log); err != nil {
		data, _ := os.ReadFile(log.Name())
		t.Fatalf("bench: %v\n%s", err, data)
	}

	var scale Result
	data, err := os.ReadFile(filepath.Join(out, "sip-scale.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &scale))
	s := scale.SIPScale
	require.NotNil(t, s)
	for name, r := range map[string]SIPRegistrations{"transport": s.Transport, "bare client": s.Baseline} {
		assert.Equal(t, n, r.Registered, "%s: every endpoint registered (%s)", name, r.FirstError)
		assert.Positive(t, r.Rate, name)
		assert.LessOrEqual(t, r.P99, r.Max, name)
	}
	assert.Positive(t, s.Idle.RSSAfterMiB, "RSS read from /proc")
	assert.GreaterOrEqual(t, s.Refresh.Refreshed, uint64(n), "every endpoint refreshed in the first wave")
	assert.InDelta(t, float64(n)/(0.725*10), s.Refresh.SteadyPerSec, 1e-9)
	assert.Equal(t, sample, s.Live.Sample)
	assert.Equal(t, sample, s.Live.Messages.Sent, s.Live.Messages.Error)
	assert.Equal(t, sample, s.Live.Messages.Arrived, "every message reaches its endpoint: %s", s.Live.Messages.Error)
	assert.Equal(t, sample, s.Live.Presence.Sent, s.Live.Presence.Error)
	assert.Equal(t, sample, s.Live.Presence.Arrived, "every presence change reaches its endpoint: %s", s.Live.Presence.Error)

	var perUser Result
	data, err = os.ReadFile(filepath.Join(out, "sip-per-user.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &perUser))
	p := perUser.SIPPerUser
	require.NotNil(t, p)
	assert.Equal(t, ramp, p.Ramp.Registered, p.Ramp.FirstError)
	assert.LessOrEqual(t, p.Ramp.SustainedRate, 10*1.05, "the default pool rate holds")
	assert.Equal(t, n, p.Lifted.Registered, p.Lifted.FirstError)
	assert.Equal(t, n, p.Baseline.Registered, p.Baseline.FirstError)
	assert.Greater(t, p.Lifted.Rate, 10.0, "the lifted rate is above the default")
	md, err := os.ReadFile(filepath.Join(out, "sip-per-user.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "bare client (baseline)")
}
