package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip"
)

// SIPScaleRun is the sip-scale scenario: N trusted-application endpoints
// registered by this process (the transport sfb/sip, nothing of the
// bridge) against the simulator's SIP front end running as a process of
// its own, side by side with a bare client registering the same users
// with raw REGISTERs over the same number of connections.
type SIPScaleRun struct {
	Endpoints          int     `json:"endpoints"`
	Connections        int     `json:"connections"`
	RegisterRate       float64 `json:"register_rate"`
	RegistrationExpiry float64 `json:"registration_expiry_s"`
	// Transport is the transport's cold start: from sip.New to every
	// endpoint registered.
	Transport SIPRegistrations `json:"transport"`
	// Baseline is the bare client: REGISTER over sipconn, no transport.
	Baseline SIPRegistrations `json:"bare_client"`
	// RateRatio is the transport's registrations per second over the
	// bare client's.
	RateRatio float64    `json:"rate_ratio"`
	Idle      SIPIdle    `json:"idle"`
	Refresh   SIPRefresh `json:"refresh"`
	// Live: messages and presence changes to a random sample of the
	// registered endpoints.
	Live SIPLive `json:"live"`
}

// SIPRegistrations is one side's registrations (or sign-ins).
type SIPRegistrations struct {
	Registered int     `json:"registered"`
	Failed     int     `json:"failed"`
	Seconds    float64 `json:"seconds_to_all"`
	Rate       float64 `json:"per_s"`
	PeakRate   int     `json:"peak_per_s"`
	// SustainedRate leaves out the first completion (a rate limiter lets
	// it through at once): (done - 1) / (last - first).
	SustainedRate float64 `json:"sustained_per_s"`
	Latency
	CPU        float64 `json:"cpu_s"`
	SimCPU     float64 `json:"sim_cpu_s"`
	FirstError string  `json:"first_error,omitempty"`
}

// SIPIdle is what the registered endpoints cost this process once idle.
type SIPIdle struct {
	RSSBeforeMiB float64 `json:"rss_before_mib"`
	RSSAfterMiB  float64 `json:"rss_after_mib"`
	// RSSPerEndpointKiB is (after - before) / endpoints; HeapPerEndpointKiB
	// the live Go heap after a collection, the same way.
	RSSPerEndpointKiB  float64 `json:"rss_per_endpoint_kib"`
	HeapPerEndpointKiB float64 `json:"heap_per_endpoint_kib"`
	Goroutines         int     `json:"goroutines"`
	OpenFiles          int     `json:"open_files"`
}

// SIPRefresh is the first wave of registration refreshes: every endpoint
// refreshes once between 60% and 85% of its registration's lifetime, and
// nothing else runs meanwhile.
type SIPRefresh struct {
	Seconds float64 `json:"seconds"`
	// Refreshed counts the refreshes the server answered (Endpoints when
	// every one went through); PeakPerSec is the most in one second.
	Refreshed  uint64 `json:"refreshed"`
	PeakPerSec uint64 `json:"peak_per_s"`
	// CPUSeconds is this process's CPU time over the wave, CPUPerRefreshMs
	// that per refresh (the idle endpoints' own cost included).
	CPUSeconds      float64 `json:"cpu_s"`
	CPUPerRefreshMs float64 `json:"cpu_per_refresh_ms"`
	SimCPUSeconds   float64 `json:"sim_cpu_s"`
	Reconnects      uint64  `json:"reconnects"`
	// Derived, not measured: the steady refresh rate once the jitter has
	// spread the refreshes, N / (0.725 * lifetime), at this run's lifetime
	// and at SfB's 7200 s, and the CPU it takes at the measured cost per
	// refresh (100 = one core).
	SteadyPerSec         float64 `json:"steady_refreshes_per_s"`
	SteadyPerSecAt7200   float64 `json:"steady_refreshes_per_s_at_7200s"`
	SteadyCPUPercent     float64 `json:"steady_cpu_percent"`
	SteadyCPUPercentAt72 float64 `json:"steady_cpu_percent_at_7200s"`
}

// SIPLive is what reached a sample of the endpoints.
type SIPLive struct {
	Sample   int       `json:"sample"`
	Messages LiveCheck `json:"messages"`
	Presence LiveCheck `json:"presence"`
}

// LiveCheck counts deliveries to the sample and their latency, from the
// simulator's control call to the transport's event.
type LiveCheck struct {
	Sent    int `json:"sent"`
	Arrived int `json:"arrived"`
	Latency
	Error string `json:"error,omitempty"`
}

// SIPPerUserRun is the sip-per-user scenario: users signing in each over
// its own connection with NTLM, at the default pool rate and with the rate
// lifted, and a bare client (raw REGISTERs with the NTLM handshake over
// sipconn) signing in as many users with no rate.
type SIPPerUserRun struct {
	Users       int     `json:"users"`
	Concurrency int     `json:"concurrency"`
	RampUsers   int     `json:"ramp_users"`
	SignInRate  float64 `json:"sign_in_rate"`
	// Ramp is the transport at the default rate: the pool's rate must
	// hold (PeakRate at most the rate, plus its burst).
	Ramp       SIPRegistrations `json:"transport_at_rate"`
	LiftedRate float64          `json:"lifted_sign_in_rate"`
	Lifted     SIPRegistrations `json:"transport_lifted"`
	Baseline   SIPRegistrations `json:"bare_client"`
	RateRatio  float64          `json:"rate_ratio"`
}

// sipUsers are the users the simulator generated for a SIP scenario:
// endpoints first, then the people the live check uses.
type sipUsers struct {
	total int
}

func (u sipUsers) uri(i int) string { return "sip:" + generatedUser(i, u.total) }

// runSIPScale: the simulator as a process, the transport registering n
// endpoints in trusted mode, their idle cost and steady load, a live
// check, then the bare client.
func runSIPScale(ctx context.Context, opts options, out io.Writer, n int) (SIPScaleRun, error) {
	run := SIPScaleRun{Endpoints: n, Connections: opts.sipConnections, RegisterRate: opts.sipRegisterRate,
		RegistrationExpiry: opts.sipExpiry.Seconds()}
	sample := min(opts.sipLiveSample, n)
	users := sipUsers{total: n + sample}
	simp, err := startSimProcess(ctx, opts, opts.dir, simFlags{users: users.total, registrationExpiry: opts.sipExpiry})
	if err != nil {
		return run, err
	}
	defer simp.close()
	fmt.Fprintf(out, "simulator up (pid %d): control %s, SIP TLS %s, TCP %s, %d users\n", simp.pid(), simp.control, simp.sipTLS, simp.sipTCP, users.total)
	logFile, err := os.Create(filepath.Join(opts.dir, "transport.log"))
	if err != nil {
		return run, err
	}
	// Not closed: the transport's goroutines may log after Close returns;
	// the process's end closes it.

	self := os.Getpid()
	runtime.GC()
	rss0, err := rssBytes(self)
	if err != nil {
		return run, err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap0, goroutines0 := ms.HeapAlloc, runtime.NumGoroutine()

	obs := &sipObserver{}
	ev := newSIPEvents()
	start := time.Now()
	tr, err := sip.New(sfb.Config{
		Transport: sfb.TransportSIP, CAFile: simp.tls.CA, UserAgent: "sfb-bench",
		SIP: sfb.SIPConfig{Mode: sfb.SIPModeTrusted, Server: simp.sipTLS, CertFile: simp.tls.ClientCert, KeyFile: simp.tls.ClientKey,
			ApplicationFQDN: benchApplication, Connections: opts.sipConnections, MaxOutstanding: opts.sipMaxOutstanding,
			RegisterRate: opts.sipRegisterRate},
	}, zerolog.New(logFile).Level(zerolog.WarnLevel).With().Timestamp().Logger(), sip.WithObserver(obs))
	if err != nil {
		return run, fmt.Errorf("sip transport: %w", err)
	}
	defer tr.Close()
	sessions := make([]sfb.Session, users.total+1)
	run.Transport = signInAll(ctx, out, fmt.Sprintf("sip-scale %d transport", n), start, n, opts.sipConcurrency, simp.pid(), func(ctx context.Context, i int) error {
		s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: generatedUser(i, users.total)}}, ev.handler(users.uri(i)))
		if err == nil {
			sessions[i] = s
		}
		return err
	})
	if run.Transport.Registered < n {
		return run, fmt.Errorf("%d of %d endpoints registered; first error: %s", run.Transport.Registered, n, run.Transport.FirstError)
	}
	registeredAt := time.Now()

	// The idle cost, once the registrations' garbage is collected as it
	// would be in a process that runs on.
	if !ctxtime.Sleep(ctx, opts.sipSettle) {
		return run, ctx.Err()
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	run.Idle = SIPIdle{RSSBeforeMiB: float64(rss0) / (1 << 20), Goroutines: runtime.NumGoroutine() - goroutines0,
		HeapPerEndpointKiB: (float64(ms.HeapAlloc) - float64(heap0)) / 1024 / float64(n)}
	if rss, err := rssBytes(self); err == nil {
		run.Idle.RSSAfterMiB = float64(rss) / (1 << 20)
		run.Idle.RSSPerEndpointKiB = float64(rss-rss0) / 1024 / float64(n)
	}
	run.Idle.OpenFiles, _ = openFiles(self)
	fmt.Fprintf(out, "sip-scale: %d endpoints idle: RSS %.1f -> %.1f MiB (%.1f KiB each), heap %.1f KiB each, %d goroutines\n",
		n, run.Idle.RSSBeforeMiB, run.Idle.RSSAfterMiB, run.Idle.RSSPerEndpointKiB, run.Idle.HeapPerEndpointKiB, run.Idle.Goroutines)

	// The first refresh wave, then the live check (whose presence
	// subscriptions would add their own refreshes).
	run.Refresh = refreshWave(ctx, out, obs, simp.pid(), n, registeredAt.Add(time.Duration(0.85*float64(opts.sipExpiry))+5*time.Second))
	lifetime := opts.sipExpiry.Seconds()
	run.Refresh.SteadyPerSec = float64(n) / (0.725 * lifetime)
	run.Refresh.SteadyPerSecAt7200 = float64(n) / (0.725 * 7200)
	run.Refresh.SteadyCPUPercent = run.Refresh.SteadyPerSec * run.Refresh.CPUPerRefreshMs / 10
	run.Refresh.SteadyCPUPercentAt72 = run.Refresh.SteadyPerSecAt7200 * run.Refresh.CPUPerRefreshMs / 10

	run.Live = liveCheck(ctx, out, simp, ev, sessions, users, n, sample, opts.stall)

	// The transport's endpoints go with its connections; then the bare
	// client registers the same users.
	_ = tr.Close()
	run.Baseline = rawTrustedRegistrations(ctx, out, simp, users, n, opts)
	if run.Baseline.Rate > 0 {
		run.RateRatio = run.Transport.Rate / run.Baseline.Rate
	}
	return run, nil
}

// signInAll runs signIn for users 1..n, conc at a time, and measures how
// fast they completed, counting from start.
func signInAll(ctx context.Context, out io.Writer, label string, start time.Time, n, conc, simPID int, signIn func(context.Context, int) error) SIPRegistrations {
	t := newTracker(label, 1, conc)
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go progress(pctx, out, label, "registered", n, t, nil)
	use, simUse := startUsage(os.Getpid()), startUsage(simPID)

	var (
		mu       sync.Mutex
		failed   int
		firstErr string
		done     []time.Time
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for i := 1; i <= n; i++ {
		g.Go(func() error {
			key := fmt.Sprint(i)
			err := t.offer(gctx, 0, key)
			if err == nil {
				if err = signIn(gctx, i); err != nil {
					t.abandon(key)
				}
			}
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				if firstErr == "" {
					firstErr = fmt.Sprintf("user %d: %v", i, err)
				}
				return nil
			}
			done = append(done, now)
			t.arrive(key, now)
			return nil
		})
	}
	_ = g.Wait()
	stop()
	r := SIPRegistrations{Failed: failed, FirstError: firstErr}
	r.CPU, _ = use.stop()
	r.SimCPU, _ = simUse.stop()
	t.mu.Lock()
	r.Registered, r.Latency = len(t.latencies), summarize(t.latencies)
	if r.Registered > 0 {
		r.Seconds = t.last.Sub(start).Seconds()
		r.Rate = float64(r.Registered) / r.Seconds
	}
	t.mu.Unlock()
	r.PeakRate = peakPerSecond(start, done)
	if len(done) > 1 {
		first, last := slices.MinFunc(done, time.Time.Compare), slices.MaxFunc(done, time.Time.Compare)
		r.SustainedRate = float64(len(done)-1) / last.Sub(first).Seconds()
	}
	fmt.Fprintf(out, "%s: %d done, %d failed in %.1fs (%.1f/s, peak %d/s)\n", label, r.Registered, r.Failed, r.Seconds, r.Rate, r.PeakRate)
	if firstErr != "" {
		fmt.Fprintf(out, "%s: first error: %s\n", label, firstErr)
	}
	return r
}

// refreshWave counts the refreshes the server answers until end, with the
// CPU both processes use.
func refreshWave(ctx context.Context, out io.Writer, obs *sipObserver, simPID, n int, end time.Time) SIPRefresh {
	fmt.Fprintf(out, "sip-scale: counting the first refresh wave for %s\n", time.Until(end).Round(time.Second))
	answered0, reconnects0 := obs.read()
	use, simUse := startUsage(os.Getpid()), startUsage(simPID)
	start := time.Now()
	var peak uint64
	last := answered0
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Now().Before(end) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			a, _ := obs.read()
			peak = max(peak, a-last)
			last = a
			fmt.Fprintf(out, "%7.1fs  %-32s %6d/%d refreshed\n", time.Since(start).Seconds(), "sip-scale refresh wave", a-answered0, n)
		}
	}
	r := SIPRefresh{Seconds: time.Since(start).Seconds(), PeakPerSec: peak}
	r.CPUSeconds, _ = use.stop()
	r.SimCPUSeconds, _ = simUse.stop()
	answered, reconnects := obs.read()
	r.Refreshed, r.Reconnects = answered-answered0, reconnects-reconnects0
	if r.Refreshed > 0 {
		r.CPUPerRefreshMs = 1000 * r.CPUSeconds / float64(r.Refreshed)
	}
	fmt.Fprintf(out, "sip-scale: %d of %d refreshed in %.0fs (peak %d/s), CPU %.2fs (%.3f ms per refresh), simulator %.2fs, %d reconnects\n",
		r.Refreshed, n, r.Seconds, r.PeakPerSec, r.CPUSeconds, r.CPUPerRefreshMs, r.SimCPUSeconds, r.Reconnects)
	return r
}

// sipEvents collects what the endpoints' handlers get, for the live check.
type sipEvents struct {
	mu sync.Mutex
	// messages and presence are trackers of the check running, nil
	// before.
	messages, presence *tracker
	// watched is delivered the first state of a watched person, per
	// endpoint.
	watched map[string]chan struct{}
}

func newSIPEvents() *sipEvents { return &sipEvents{watched: map[string]chan struct{}{}} }

func (e *sipEvents) handler(self string) sfb.EventHandler {
	return func(_ context.Context, evt sfb.Event) {
		now := time.Now()
		e.mu.Lock()
		messages, presence, watched := e.messages, e.presence, e.watched[self]
		e.mu.Unlock()
		switch ev := evt.(type) {
		case sfb.MessageReceived:
			if messages != nil {
				messages.arrive(ev.Message.Text, now)
			}
		case sfb.PresenceChanged:
			if watched != nil {
				select {
				case <-watched:
				default:
					close(watched)
				}
			}
			if presence != nil {
				presence.arrive(ev.Presence.Note, now)
			}
		}
	}
}

// liveCheck sends a message to each of a random sample of the endpoints
// from the user whose presence it then watches, and changes that
// presence: each must reach its endpoint.
func liveCheck(ctx context.Context, out io.Writer, simp *simProcess, ev *sipEvents, sessions []sfb.Session, users sipUsers, n, sample int, stall time.Duration) SIPLive {
	live := SIPLive{Sample: sample}
	endpoints := rand.Perm(n)[:sample]
	// Endpoint endpoints[k]+1 hears from person n+1+k.
	person := func(k int) string { return users.uri(n + 1 + k) }
	const conc = 50

	msgs := newTracker("live messages", 1, sample)
	ev.mu.Lock()
	ev.messages = msgs
	ev.mu.Unlock()
	live.Messages.Sent, live.Messages.Error = fanOut(ctx, sample, conc, func(ctx context.Context, k int) error {
		text := fmt.Sprintf("sip-scale live %d %s", k, randomHex(4))
		if err := msgs.offer(ctx, 0, text); err != nil {
			return err
		}
		if err := simp.sendMessage(ctx, person(k), users.uri(endpoints[k]+1), text); err != nil {
			msgs.abandon(text)
			return err
		}
		return nil
	})
	if err := msgs.waitAll(ctx, live.Messages.Sent, stall); err != nil && live.Messages.Error == "" {
		live.Messages.Error = err.Error()
	}
	live.Messages.Arrived, live.Messages.Latency = resultOf(msgs)
	fmt.Fprintf(out, "sip-scale live: %d/%d messages arrived (p95 %.0f ms) %s\n", live.Messages.Arrived, live.Messages.Sent, live.Messages.P95, live.Messages.Error)

	// Presence: each endpoint of the sample watches its person; once the
	// first state arrived, the person's presence changes.
	pres := newTracker("live presence", 1, sample)
	_, werr := fanOut(ctx, sample, conc, func(ctx context.Context, k int) error {
		self := users.uri(endpoints[k] + 1)
		first := make(chan struct{})
		ev.mu.Lock()
		ev.watched[self] = first
		ev.mu.Unlock()
		s := sessions[endpoints[k]+1]
		if _, err := s.Watch(ctx, []sfb.URI{sfb.URI(person(k))}); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		select {
		case <-first:
			return nil
		case <-time.After(stall):
			return fmt.Errorf("%s: the watched person's state did not arrive within %s", self, stall)
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if werr != "" {
		live.Presence.Error = werr
		fmt.Fprintf(out, "sip-scale live: presence: %s\n", werr)
		return live
	}
	ev.mu.Lock()
	ev.presence = pres
	ev.mu.Unlock()
	live.Presence.Sent, live.Presence.Error = fanOut(ctx, sample, conc, func(ctx context.Context, k int) error {
		note := fmt.Sprintf("sip-scale note %d %s", k, randomHex(4))
		if err := pres.offer(ctx, 0, note); err != nil {
			return err
		}
		if err := simp.setPresence(ctx, strings.TrimPrefix(person(k), "sip:"), "Busy", note); err != nil {
			pres.abandon(note)
			return err
		}
		return nil
	})
	if err := pres.waitAll(ctx, live.Presence.Sent, stall); err != nil && live.Presence.Error == "" {
		live.Presence.Error = err.Error()
	}
	live.Presence.Arrived, live.Presence.Latency = resultOf(pres)
	fmt.Fprintf(out, "sip-scale live: %d/%d presence changes arrived (p95 %.0f ms) %s\n", live.Presence.Arrived, live.Presence.Sent, live.Presence.P95, live.Presence.Error)
	return live
}

// fanOut runs f for 0..n-1, conc at a time; it returns how many succeeded
// and the first error.
func fanOut(ctx context.Context, n, conc int, f func(context.Context, int) error) (ok int, firstErr string) {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for k := range n {
		g.Go(func() error {
			err := f(gctx, k)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
			} else if firstErr == "" {
				firstErr = err.Error()
			}
			return nil
		})
	}
	_ = g.Wait()
	return ok, firstErr
}

func resultOf(t *tracker) (int, Latency) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.latencies), summarize(t.latencies)
}

// runSIPPerUser: the simulator as a process; users signing in over their
// own connections with NTLM through the transport at the default rate,
// then n with the rate lifted, then n with the bare client.
func runSIPPerUser(ctx context.Context, opts options, out io.Writer, n int) (SIPPerUserRun, error) {
	run := SIPPerUserRun{Users: n, Concurrency: opts.loginConcurrency, RampUsers: opts.sipRampUsers, SignInRate: sfb.DefaultConfig().SignInRate, LiftedRate: opts.liftedRate}
	users := sipUsers{total: opts.sipRampUsers + 2*n}
	simp, err := startSimProcess(ctx, opts, opts.dir, simFlags{users: users.total, registrationExpiry: opts.sipExpiry})
	if err != nil {
		return run, err
	}
	defer simp.close()
	fmt.Fprintf(out, "simulator up (pid %d): SIP TCP %s, %d users\n", simp.pid(), simp.sipTCP, users.total)
	logFile, err := os.Create(filepath.Join(opts.dir, "transport.log"))
	if err != nil {
		return run, err
	}
	// Not closed: the transport's goroutines may log after Close returns;
	// the process's end closes it.
	log := zerolog.New(logFile).Level(zerolog.WarnLevel).With().Timestamp().Logger()

	// Users [from, from+count) sign in through a transport with rate (0:
	// the default).
	perUser := func(label string, from, count int, rate float64) SIPRegistrations {
		cfg := sfb.Config{Transport: sfb.TransportSIP, AllowInsecureLoopback: true, UserAgent: "sfb-bench",
			SIP: sfb.SIPConfig{Mode: sfb.SIPModePerUser, Server: "tcp://" + simp.sipTCP, MaxOutstanding: sfb.MaxSIPOutstandingPerUser}}
		if rate > 0 {
			cfg.SignInRate, cfg.SimulatorSignInRate = rate, true
		}
		tr, err := sip.New(cfg, log)
		if err != nil {
			return SIPRegistrations{FirstError: fmt.Sprintf("sip transport: %v", err)}
		}
		defer tr.Close()
		var mu sync.Mutex
		var sessions []sfb.Session
		defer func() {
			for _, s := range sessions {
				_ = s.Close(context.WithoutCancel(ctx))
			}
		}()
		return signInAll(ctx, out, label, time.Now(), count, opts.loginConcurrency, simp.pid(), func(ctx context.Context, i int) error {
			s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{
				SignInAddress: generatedUser(from+i-1, users.total), Password: sim.GeneratedPassword}}, func(context.Context, sfb.Event) {})
			if err == nil {
				mu.Lock()
				sessions = append(sessions, s)
				mu.Unlock()
			}
			return err
		})
	}
	if opts.sipRampUsers > 0 {
		run.Ramp = perUser(fmt.Sprintf("sip-per-user %d at 10/s", opts.sipRampUsers), 1, opts.sipRampUsers, 0)
	}
	if opts.liftedRate > 0 {
		run.Lifted = perUser(fmt.Sprintf("sip-per-user %d lifted", n), opts.sipRampUsers+1, n, opts.liftedRate)
	}
	run.Baseline = rawPerUserSignIns(ctx, out, simp, users, opts.sipRampUsers+n+1, n, opts)
	if run.Baseline.Rate > 0 {
		run.RateRatio = run.Lifted.Rate / run.Baseline.Rate
	}
	return run, nil
}
