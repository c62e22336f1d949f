package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/ucwa"
)

// LoginRun is the logins scenario for one number of users: the bridge
// signing them in through the provisioning API at the configured ramp
// (what an operator gets), and again with the ramp lifted (what the bridge
// itself can process), side by side with a bare UCWA client (sfb/ucwa
// without the bridge, no ramp) signing in as many users against the same
// simulator.
type LoginRun struct {
	Users       int     `json:"users"`
	Concurrency int     `json:"concurrency"`
	SignInRate  float64 `json:"sign_in_rate"`
	Ramp        Logins  `json:"bridge_at_ramp"`
	// Idle is what the bridge's connected logins cost once they are idle.
	Idle     Idle   `json:"idle"`
	Baseline Logins `json:"bare_client"`
	// LiftedRate is the sign-in rate of the second bridge run (a fresh
	// database, network.simulator_sign_in_rate); 0 when not run.
	LiftedRate float64 `json:"lifted_sign_in_rate"`
	Lifted     Logins  `json:"bridge_lifted"`
	// RateRatio is the lifted bridge's sign-ins per second over the bare
	// client's.
	RateRatio float64 `json:"rate_ratio"`
}

// Logins is one side of a LoginRun.
type Logins struct {
	Connected int     `json:"connected"`
	Failed    int     `json:"failed"`
	Seconds   float64 `json:"seconds_to_all_connected"`
	// Rate is connected / Seconds; PeakRate the most sign-ins completed in
	// one second.
	Rate     float64 `json:"sign_ins_per_s"`
	PeakRate int     `json:"peak_sign_ins_per_s"`
	Latency
	BridgeCPU  float64 `json:"bridge_cpu_s"`
	FirstError string  `json:"first_error,omitempty"`
}

// Idle is what idle connected logins cost.
type Idle struct {
	Seconds      float64 `json:"seconds"`
	RSSBeforeMiB float64 `json:"bridge_rss_before_mib"`
	RSSAfterMiB  float64 `json:"bridge_rss_after_mib"`
	// RSSPerLoginKiB is (after - before) / connected logins.
	RSSPerLoginKiB float64 `json:"bridge_rss_per_login_kib"`
	BridgeCPU      float64 `json:"bridge_cpu_s"`
	// OpenFiles is the bridge's file descriptors (connections included)
	// with the logins connected.
	OpenFiles int `json:"bridge_open_files"`
	// Requests per second the idle logins put on the pool, by kind.
	EventsPerSec   float64 `json:"event_channel_requests_per_s"`
	ActivityPerSec float64 `json:"report_my_activity_per_s"`
	OtherPerSec    float64 `json:"other_requests_per_s"`
}

// runLogins signs n users in through the bridge at its ramp and watches
// them idle, then n others with a bare UCWA client, then, with the ramp
// lifted, n more through a bridge restarted on a fresh database.
func (e *env) runLogins(ctx context.Context, n int) (LoginRun, error) {
	run := LoginRun{Users: n, Concurrency: e.opts.loginConcurrency, SignInRate: e.signInRate()}
	var err error
	if !e.opts.liftedOnly {
		if run.Ramp, run.Idle, err = e.rampAndIdle(ctx, n); err != nil {
			return run, err
		}
	}
	if run.Baseline, err = e.bareSignIns(ctx, n); err != nil {
		return run, err
	}
	if e.opts.liftedRate <= 0 {
		return run, nil
	}
	run.LiftedRate = e.opts.liftedRate
	if err := e.restartBridge(ctx, fmt.Sprintf("sfb_bench_lifted_%d", n), map[string]any{
		"network.simulator_sign_in_rate": true,
		"network.sign_in_rate":           e.opts.liftedRate,
	}); err != nil {
		run.Lifted.FirstError = fmt.Sprintf("the bridge did not start with the sign-in rate lifted: %v", err)
		return run, nil
	}
	run.Lifted = e.bridgeSignIns(ctx, n, "lifted")
	if run.Baseline.Rate > 0 {
		run.RateRatio = run.Lifted.Rate / run.Baseline.Rate
	}
	return run, nil
}

// rampAndIdle signs n users in through the bridge at its ramp, then
// measures what they cost once idle.
func (e *env) rampAndIdle(ctx context.Context, n int) (Logins, Idle, error) {
	pid := e.st.Bridge.PID()
	rss0, err := rssBytes(pid)
	if err != nil {
		return Logins{}, Idle{}, err
	}
	ramp := e.bridgeSignIns(ctx, n, "ramp")

	// The idle cost: settle, then count for opts.idle.
	if !ctxtime.Sleep(ctx, 10*time.Second) {
		return ramp, Idle{}, ctx.Err()
	}
	idle := Idle{Seconds: e.opts.idle.Seconds(), RSSBeforeMiB: float64(rss0) / (1 << 20)}
	before := e.simReqs.read()
	use := startUsage(pid)
	fmt.Fprintf(e.out, "counting the requests of %d idle logins for %s\n", ramp.Connected, e.opts.idle)
	if !ctxtime.Sleep(ctx, e.opts.idle) {
		return ramp, Idle{}, ctx.Err()
	}
	idle.BridgeCPU, _ = use.stop()
	per := e.simReqs.read().perSecond(before, e.opts.idle)
	idle.EventsPerSec = per[requestKindNames[reqEvents]]
	idle.ActivityPerSec = per[requestKindNames[reqActivity]]
	for k := reqActivity + 1; k < numRequestKinds; k++ {
		idle.OtherPerSec += per[requestKindNames[k]]
	}
	idle.OpenFiles, _ = openFiles(pid)
	if rss, err := rssBytes(pid); err == nil {
		idle.RSSAfterMiB = float64(rss) / (1 << 20)
		if ramp.Connected > 0 {
			idle.RSSPerLoginKiB = float64(rss-rss0) / 1024 / float64(ramp.Connected)
		}
	}
	return ramp, idle, nil
}

// bridgeSignIns signs n new users in through the provisioning API. Their
// Matrix IDs need no account: the provisioning API takes any user the
// bridge's permissions allow.
func (e *env) bridgeSignIns(ctx context.Context, n int, phase string) Logins {
	users := e.sim.GenerateUsers(n, fmt.Sprintf("%s%d.%s", phase, n, sfbDomain))
	use := startUsage(e.st.Bridge.PID())
	res := e.signIns(ctx, fmt.Sprintf("logins %d bridge %s", n, phase), users, func(ctx context.Context, i int, u sim.User) error {
		mxid := id.NewUserID(fmt.Sprintf("bench-%s%d-%d", phase, n, i), e.st.HS.ServerName)
		_, err := e.st.ProvisionLogin(ctx, mxid, u.URI.Address(), u.Password)
		return err
	}, use.sample)
	res.BridgeCPU, _ = use.stop()
	return res
}

// bareSignIns signs n new users in with sfb/ucwa directly: no bridge, no
// ramp, the same concurrency; what the simulator and the UCWA client allow.
func (e *env) bareSignIns(ctx context.Context, n int) (Logins, error) {
	tr, err := ucwa.New(sfb.Config{
		Transport:             "ucwa",
		DiscoveryURL:          e.sim.DiscoveryURL(),
		AllowInsecureLoopback: true,
		UserAgent:             "sfb-bench",
		RequestTimeout:        30 * time.Second,
		ActivityInterval:      3 * time.Minute,
		// No ramp: what the simulator and the client allow.
		SignInRate:          1e6,
		SimulatorSignInRate: true,
	}, zerolog.Nop())
	if err != nil {
		return Logins{}, err
	}
	// Each session is closed as soon as it is signed in, by 16 closers:
	// the bench process holds the simulator's end of every bridge login's
	// connection and both ends of every bare session's, and with N =
	// 10,000 open sessions that is 30,000 file descriptors, more than this
	// kind of machine allows a process (20,000 here).
	signedIn := make(chan sfb.Session, 1000)
	var closers sync.WaitGroup
	for range 16 {
		closers.Go(func() {
			for s := range signedIn {
				_ = s.Close(context.WithoutCancel(ctx))
			}
		})
	}
	users := e.sim.GenerateUsers(n, fmt.Sprintf("bare%d.%s", n, sfbDomain))
	res := e.signIns(ctx, fmt.Sprintf("logins %d bare client", n), users, func(ctx context.Context, _ int, u sim.User) error {
		s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: u.URI.Address(), Password: u.Password}},
			func(context.Context, sfb.Event) {})
		if err == nil {
			signedIn <- s
		}
		return err
	}, nil)
	close(signedIn)
	closers.Wait()
	return res, nil
}

// signIns signs users in with opts.loginConcurrency at a time and measures
// how fast.
func (e *env) signIns(ctx context.Context, label string, users []sim.User, signIn func(context.Context, int, sim.User) error, sample func()) Logins {
	conc := e.opts.loginConcurrency
	t := newTracker(label, 1, conc)
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go progress(pctx, e.out, label, "sign-ins", len(users), t, sample)

	var (
		mu       sync.Mutex
		failed   int
		firstErr string
		done     []time.Time
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for i, u := range users {
		g.Go(func() error {
			body := u.URI.Address()
			err := t.offer(gctx, 0, body)
			if err == nil {
				if err = signIn(gctx, i, u); err != nil {
					t.abandon(body)
				}
			}
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				if firstErr == "" {
					firstErr = fmt.Sprintf("%s: %v", u.URI, err)
				}
				return nil
			}
			done = append(done, now)
			t.arrive(body, now)
			return nil
		})
	}
	_ = g.Wait()
	stop()

	t.mu.Lock()
	res := Logins{Connected: len(t.latencies), Failed: failed, FirstError: firstErr, Latency: summarize(t.latencies)}
	if res.Connected > 0 {
		res.Seconds = t.last.Sub(t.first).Seconds()
		res.Rate = float64(res.Connected) / res.Seconds
	}
	start := t.first
	t.mu.Unlock()
	res.PeakRate = peakPerSecond(start, done)
	fmt.Fprintf(e.out, "%s: %d connected, %d failed in %.1fs (%.1f/s, peak %d/s)\n", label, res.Connected, res.Failed, res.Seconds, res.Rate, res.PeakRate)
	if firstErr != "" {
		fmt.Fprintf(e.out, "%s: first error: %s\n", label, firstErr)
	}
	return res
}

// peakPerSecond is the most events in one whole second after start.
func peakPerSecond(start time.Time, at []time.Time) int {
	counts := map[time.Duration]int{}
	peak := 0
	for _, t := range at {
		second := t.Sub(start) / time.Second
		counts[second]++
		peak = max(peak, counts[second])
	}
	return peak
}

func (e *env) signInRate() float64 {
	if r, ok := e.opts.network["sign_in_rate"].(float64); ok {
		return r
	}
	return 10 // the default of network.sign_in_rate
}
