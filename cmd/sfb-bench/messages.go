package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/e2e/stack"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Measure is one side of a run: the bridge, or the homeserver's own ingest
// of the same messages (the baseline).
type Measure struct {
	Sent       int     `json:"sent"`
	Arrived    int     `json:"arrived"`
	Doubled    int     `json:"doubled"`
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"throughput_per_s"`
	Latency
	BridgeCPU     float64 `json:"bridge_cpu_s"`
	BridgePeakRSS float64 `json:"bridge_peak_rss_mib"`
	SynapseCPU    float64 `json:"synapse_cpu_s"`
	Error         string  `json:"error,omitempty"`
}

// Run is one mode of a message scenario, both sides and their ratios.
type Run struct {
	Mode          string  `json:"mode"`
	Conversations int     `json:"conversations"`
	Window        int     `json:"window"`
	Bridge        Measure `json:"bridge"`
	Baseline      Measure `json:"baseline"`
	// P99Ratio is the bridge's p99 over the baseline's (goal <= 1.10);
	// ThroughputRatio the bridge's throughput over the baseline's (goal
	// >= 0.90).
	P99Ratio        float64 `json:"p99_ratio"`
	ThroughputRatio float64 `json:"throughput_ratio"`
}

// mode is how messages are offered: sequential is one conversation with
// one message at a time (each offered when the previous arrived); the
// others stream over Conversations conversations, each with at most the
// window of messages offered and not yet arrived.
type mode struct {
	name   string
	convs  int
	window int
}

func parseModes(spec string, window int) ([]mode, error) {
	var modes []mode
	for _, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		if f == "sequential" {
			modes = append(modes, mode{name: "sequential", convs: 1, window: 1})
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 1000 {
			return nil, fmt.Errorf("mode %q: want \"sequential\" or a number of concurrent conversations (1-1000)", f)
		}
		modes = append(modes, mode{name: fmt.Sprintf("concurrent-%d", n), convs: n, window: window})
	}
	return modes, nil
}

// side is how one side of a message scenario sends a message into a
// conversation, and where its arrivals are seen.
type side struct {
	name    string
	fromSim bool
	send    func(ctx context.Context, c *conversation, body string) error
}

// sfbToMatrix: simulated SfB colleagues write to migrated users; a message
// arrives when the migrated user's sync shows it. Baseline: the colleague's
// ghost sends the same messages with the appservice token into a room with
// the portal's members.
func (e *env) sfbToMatrix() (bridge, baseline side) {
	bridge = side{name: "bridge", send: func(ctx context.Context, c *conversation, body string) error {
		return e.sim.SendMessage(ctx, c.colleague.URI, c.owner.sfb.URI, sfb.Message{Text: body})
	}}
	baseline = side{name: "baseline", send: func(ctx context.Context, c *conversation, body string) error {
		_, err := c.ghostClient.SendText(ctx, c.baseline, body)
		return err
	}}
	return bridge, baseline
}

// matrixToSfB: migrated users write in the portals; a message arrives when
// the simulator records it for the colleague. Baseline: the same user
// sends into the baseline room, and the message arrives when the user's own
// sync shows it (the homeserver's send and sync).
func (e *env) matrixToSfB() (bridge, baseline side) {
	send := func(room func(*conversation) id.RoomID) func(context.Context, *conversation, string) error {
		return func(ctx context.Context, c *conversation, body string) error {
			_, err := c.owner.client.SendText(ctx, room(c), body)
			return err
		}
	}
	bridge = side{name: "bridge", fromSim: true, send: send(func(c *conversation) id.RoomID { return c.portal })}
	baseline = side{name: "baseline", send: send(func(c *conversation) id.RoomID { return c.baseline })}
	return bridge, baseline
}

// runMessages runs every mode. The machine is shared and its load drifts,
// so the N messages go in opts.rounds rounds, each the baseline's share
// then the bridge's, and each side's rounds are summed up together.
func (e *env) runMessages(ctx context.Context, scenario string, n int, modes []mode, bridge, baseline side) ([]Run, error) {
	var runs []Run
	rounds := max(1, min(e.opts.rounds, n))
	for _, m := range modes {
		convs, err := e.conversations(ctx, m.convs)
		if err != nil {
			return runs, err
		}
		run := Run{Mode: m.name, Conversations: m.convs, Window: m.window}
		var bridgeParts, baseParts []part
		for r := range rounds {
			from, to := n*r/rounds, n*(r+1)/rounds
			round := fmt.Sprintf("%d/%d", r+1, rounds)
			base := e.measure(ctx, scenario, m, round, convs, from, to, baseline, nil)
			baseParts = append(baseParts, base)
			var prof *profiler
			if scenario == "sfb-to-matrix" && m.name == e.opts.profileMode && r == 0 {
				seconds := min(max(int(base.Seconds+0.999), 3), 60)
				prof = &profiler{e: e, seconds: seconds, path: filepath.Join(e.opts.out, "bridge-cpu-"+scenario+"-"+m.name+".pprof")}
			}
			bridgeParts = append(bridgeParts, e.measure(ctx, scenario, m, round, convs, from, to, bridge, prof))
			if ctx.Err() != nil {
				return runs, ctx.Err()
			}
		}
		run.Baseline, run.Bridge = merge(baseParts), merge(bridgeParts)
		if run.Baseline.P99 > 0 {
			run.P99Ratio = run.Bridge.P99 / run.Baseline.P99
		}
		if run.Baseline.Throughput > 0 {
			run.ThroughputRatio = run.Bridge.Throughput / run.Baseline.Throughput
		}
		fmt.Fprintf(e.out, "%s %s: p99 %.1f ms vs %.1f ms baseline (x%.2f), %.1f vs %.1f msg/s (x%.2f)\n",
			scenario, m.name, run.Bridge.P99, run.Baseline.P99, run.P99Ratio,
			run.Bridge.Throughput, run.Baseline.Throughput, run.ThroughputRatio)
		runs = append(runs, run)
	}
	return runs, nil
}

// part is one round of one side: its measure and its latencies.
type part struct {
	Measure
	latencies []time.Duration
}

// merge sums up the rounds of one side: counts, times and CPU add up, the
// latencies are summarised together, the peak RSS is the highest.
func merge(parts []part) Measure {
	var m Measure
	var all []time.Duration
	var errs []string
	for _, p := range parts {
		m.Sent += p.Sent
		m.Arrived += p.Arrived
		m.Doubled += p.Doubled
		m.Seconds += p.Seconds
		m.BridgeCPU += p.BridgeCPU
		m.SynapseCPU += p.SynapseCPU
		m.BridgePeakRSS = max(m.BridgePeakRSS, p.BridgePeakRSS)
		all = append(all, p.latencies...)
		if p.Error != "" {
			errs = append(errs, p.Error)
		}
	}
	m.Latency = summarize(all)
	if m.Seconds > 0 {
		m.Throughput = float64(m.Arrived) / m.Seconds
	}
	m.Error = strings.Join(errs, "; ")
	return m
}

// measure sends messages from to to (message i in conversation i mod
// len(convs)) in mode m through s and measures their arrival. Failures are
// recorded in the measure, not returned: the other runs still say
// something.
func (e *env) measure(ctx context.Context, scenario string, m mode, round string, convs []*conversation, from, to int, s side, prof *profiler) part {
	label := scenario + " " + m.name + " " + s.name
	t := newTracker(label, len(convs), m.window)
	e.route.Store(&route{t: t, fromSim: s.fromSim})
	defer e.route.Store(nil)
	bridgeUse := startUsage(e.st.Bridge.PID())
	hsUse := startUsage(e.st.HS.PID())

	pctx, stopProgress := context.WithCancel(ctx)
	defer stopProgress()
	go progress(pctx, e.out, label+" "+round, "messages", to-from, t, bridgeUse.sample)
	if prof != nil {
		// Not pctx: the profile may outlast the run.
		prof.start(ctx)
	}

	// Per conversation, a producer offers messages as the window allows
	// and one sender sends them in order, as a portal does: both sides get
	// the same offered load and the same per-room ordering.
	g, gctx := errgroup.WithContext(ctx)
	for k, c := range convs {
		queue := make(chan string, m.window)
		g.Go(func() error {
			defer close(queue)
			for i := from + (k-from%len(convs)+len(convs))%len(convs); i < to; i += len(convs) {
				body := fmt.Sprintf("bench %s %d", strings.ReplaceAll(label, " ", "/"), i)
				if err := t.offer(gctx, k, body); err != nil {
					return err
				}
				queue <- body
			}
			return nil
		})
		g.Go(func() error {
			for body := range queue {
				if err := s.send(gctx, c, body); err != nil {
					t.abandon(body)
					return fmt.Errorf("send %q in conversation %d: %w", body, k, err)
				}
			}
			return nil
		})
	}
	err := g.Wait()
	if err == nil {
		err = t.waitAll(ctx, to-from, e.opts.stall)
	}
	stopProgress()
	if prof != nil {
		prof.wait()
	}

	t.mu.Lock()
	res := part{
		Measure:   Measure{Sent: len(t.pending) + len(t.latencies), Arrived: len(t.latencies), Doubled: t.doubled, Latency: summarize(t.latencies)},
		latencies: t.latencies,
	}
	if res.Arrived > 0 {
		res.Seconds = t.last.Sub(t.first).Seconds()
		res.Throughput = float64(res.Arrived) / res.Seconds
	}
	t.mu.Unlock()
	res.BridgeCPU, res.BridgePeakRSS = bridgeUse.stop()
	res.SynapseCPU, _ = hsUse.stop()
	if err != nil {
		res.Error = err.Error()
		fmt.Fprintf(e.out, "%s: %v\n", label, err)
	}
	return res
}

// profiler takes a CPU profile of the bridge through its pprof endpoint
// (provisioning.debug_endpoints, behind the provisioning secret) and
// writes it, and the top of it as text, next to the results.
type profiler struct {
	e       *env
	seconds int
	path    string
	done    sync.WaitGroup
	top     string
	err     error
}

func (p *profiler) start(ctx context.Context) {
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		p.err = p.take(ctx)
		if p.err != nil {
			fmt.Fprintf(p.e.out, "CPU profile: %v\n", p.err)
		}
	}()
}

func (p *profiler) wait() { p.done.Wait() }

func (p *profiler) take(ctx context.Context) error {
	st := p.e.st
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", st.Bridge.URL(), p.seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+st.ProvisioningSecret)
	resp, err := p.e.http.Do(req)
	if err != nil {
		return fmt.Errorf("fetch the profile: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch the profile: HTTP %d, %v", resp.StatusCode, err)
	}
	if err := os.WriteFile(p.path, data, 0o644); err != nil {
		return err
	}
	top, err := exec.CommandContext(ctx, stack.GoCommand(), "tool", "pprof", "-top", "-nodecount=40", st.Bridge.Binary, p.path).Output()
	if err != nil {
		return fmt.Errorf("go tool pprof -top %s: %w", p.path, err)
	}
	p.top = string(top)
	return os.WriteFile(strings.TrimSuffix(p.path, ".pprof")+".txt", top, 0o644)
}
