package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/presence"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// PresenceRun is the presence-storm scenario: Users simulated SfB people,
// watched by Logins logins through their contact lists, then Rate
// presence changes per second for Seconds; the latency from the
// simulator's change to a syncing Matrix client seeing the ghost's new
// presence, measured on a sample of ghosts that Observers migrated users
// share a room with. Baseline: the same writes sent directly by a raw
// appservice client at the same rate, seen by the same clients.
type PresenceRun struct {
	Users     int `json:"users"`
	Logins    int `json:"logins"`
	Observers int `json:"observers"`
	Sample    int `json:"sample"`
	// Visible is how many of the sample have a portal with an observer:
	// the ghosts the bridge refreshes.
	Visible int     `json:"visible"`
	Rate    int     `json:"changes_per_s"`
	Seconds float64 `json:"storm_seconds"`
	// Rounds: the storm is split into rounds, each the bridge's share of
	// Seconds then the raw client's.
	Rounds int `json:"rounds"`
	// WriteRate is the bridge's network.presence.write_rate in this run;
	// RefreshInterval its refresh_interval.
	WriteRate       float64       `json:"write_rate"`
	RefreshInterval string        `json:"refresh_interval"`
	Setup           PresenceSetup `json:"setup"`
	Bridge          PresenceSide  `json:"bridge"`
	Baseline        PresenceSide  `json:"raw_appservice"`
	Steady          Steady        `json:"steady"`
	// P95Ratio and P99Ratio are the bridge's latency over the baseline's.
	P95Ratio float64 `json:"p95_ratio"`
	P99Ratio float64 `json:"p99_ratio"`
}

// PresenceSetup is what it took to get every person watched and every
// ghost written once (which registers the ghosts on the homeserver).
type PresenceSetup struct {
	Seconds    float64 `json:"seconds"`
	Connected  int     `json:"logins_connected"`
	Failed     int     `json:"logins_failed"`
	Watched    int     `json:"watched"`
	Unplaced   int     `json:"unplaced"`
	Writes     uint64  `json:"writes"`
	BridgeCPU  float64 `json:"bridge_cpu_s"`
	BridgeRSS  float64 `json:"bridge_rss_mib"`
	SynapseCPU float64 `json:"synapse_cpu_s"`
	FirstError string  `json:"first_error,omitempty"`
}

// PresenceSide is one side of the storm: the bridge, or the raw
// appservice client.
type PresenceSide struct {
	// Changes is the presence changes made (SfB changes, or raw writes
	// scheduled); Sampled those of sample ghosts, Arrived those a syncing
	// client saw.
	Changes int `json:"changes"`
	Sampled int `json:"sampled"`
	Arrived int `json:"arrived"`
	Latency
	// Seconds is from the first change to the last write of the storm
	// (the backlog written).
	Seconds float64 `json:"seconds"`
	// Writes is the presence writes the homeserver accepted in Seconds;
	// for the bridge from its counters, refreshes included.
	Writes       uint64  `json:"writes"`
	WritesPerSec float64 `json:"writes_per_s"`
	PeakWrites   uint64  `json:"peak_writes_per_s"`
	Refreshes    uint64  `json:"refreshes"`
	Coalesced    uint64  `json:"coalesced"`
	Unchanged    uint64  `json:"unchanged"`
	Failed       uint64  `json:"failed"`
	// SfBPerSec is the requests per second to SfB by kind, BatchedPerSec
	// the requests inside batches.
	SfBPerSec     map[string]float64 `json:"sfb_requests_per_s,omitempty"`
	BatchedPerSec float64            `json:"sfb_batched_per_s"`
	BridgeCPU     float64            `json:"bridge_cpu_s"`
	BridgePeakRSS float64            `json:"bridge_peak_rss_mib"`
	SynapseCPU    float64            `json:"synapse_cpu_s"`
	Error         string             `json:"error,omitempty"`

	latencies []time.Duration
}

// mergeSides sums up the rounds of one side: counts, times and CPU add
// up, the latencies are summarised together, rates are over the summed
// time, peaks are the highest.
func mergeSides(parts []PresenceSide) PresenceSide {
	var m PresenceSide
	var errs []string
	for _, p := range parts {
		m.Changes += p.Changes
		m.Sampled += p.Sampled
		m.Arrived += p.Arrived
		m.latencies = append(m.latencies, p.latencies...)
		m.Seconds += p.Seconds
		m.Writes += p.Writes
		m.PeakWrites = max(m.PeakWrites, p.PeakWrites)
		m.Refreshes += p.Refreshes
		m.Coalesced += p.Coalesced
		m.Unchanged += p.Unchanged
		m.Failed += p.Failed
		for k, v := range p.SfBPerSec {
			if m.SfBPerSec == nil {
				m.SfBPerSec = map[string]float64{}
			}
			m.SfBPerSec[k] += v * p.Seconds
		}
		m.BatchedPerSec += p.BatchedPerSec * p.Seconds
		m.BridgeCPU += p.BridgeCPU
		m.BridgePeakRSS = max(m.BridgePeakRSS, p.BridgePeakRSS)
		m.SynapseCPU += p.SynapseCPU
		if p.Error != "" {
			errs = append(errs, p.Error)
		}
	}
	m.Latency = summarize(m.latencies)
	if m.Seconds > 0 {
		m.WritesPerSec = float64(m.Writes) / m.Seconds
		m.BatchedPerSec /= m.Seconds
		for k := range m.SfBPerSec {
			m.SfBPerSec[k] /= m.Seconds
		}
	}
	m.Error = strings.Join(errs, "; ")
	return m
}

// Steady is the load with no changes, after the storm: the refreshes that
// keep visible ghosts from decaying.
type Steady struct {
	Seconds float64 `json:"seconds"`
	// Visible is the ghosts a present Matrix user shares a room with;
	// ExpectedRefreshes is Visible / refresh_interval.
	Visible           int                `json:"visible_ghosts"`
	Watched           int                `json:"watched"`
	ExpectedRefreshes float64            `json:"expected_refreshes_per_s"`
	WritesPerSec      float64            `json:"writes_per_s"`
	RefreshesPerSec   float64            `json:"refreshes_per_s"`
	SfBPerSec         map[string]float64 `json:"sfb_requests_per_s,omitempty"`
	BatchedPerSec     float64            `json:"sfb_batched_per_s"`
	BridgeCPU         float64            `json:"bridge_cpu_s"`
	SynapseCPU        float64            `json:"synapse_cpu_s"`
}

// presenceStats are the bridge's presence counters (/debug/sfb/presence).
type presenceStats struct {
	presence.Stats
	Watched  int `json:"watched"`
	Unplaced int `json:"unplaced"`
}

// presenceDomain holds the storm's SfB people, loginDomain the logins
// that watch them.
const (
	presenceDomain = "presence." + sfbDomain
	loginDomain    = "watchers." + sfbDomain
)

// rawOffset shifts the raw client's states against the simulator's
// storm: both sides make as many changes, so in any round a person's raw
// state is three steps from the bridge's, and a write always changes
// what the ghost shows (a write that changes nothing is never seen).
const rawOffset = 3

func (e *env) runPresenceStorm(ctx context.Context, users int) (PresenceRun, error) {
	o := e.opts
	run := PresenceRun{
		Users: users, Logins: o.presenceLogins, Observers: min(o.presenceObservers, o.presenceSample),
		Sample: min(o.presenceSample, users), Visible: min(o.presenceVisible, o.presenceSample, users),
		Rate: o.presenceRate, Seconds: o.presenceDuration.Seconds(), Rounds: max(1, o.rounds),
		WriteRate: o.presenceWriteRate, RefreshInterval: o.refreshInterval.String(),
	}
	// A bridge of its own: a fresh database, no other scenario's logins,
	// the sign-in ramp lifted (the logins are setup, not measured here).
	if err := e.restartBridge(ctx, fmt.Sprintf("sfb_bench_presence_%d", users), map[string]any{
		"network.simulator_sign_in_rate":    true,
		"network.sign_in_rate":              1000,
		"network.presence.write_rate":       o.presenceWriteRate,
		"network.presence.refresh_interval": o.refreshInterval.String(),
	}); err != nil {
		return run, fmt.Errorf("restart the bridge for the storm: %w", err)
	}

	people, err := e.presenceSetup(ctx, &run)
	if err != nil {
		return run, err
	}
	sample, err := e.presenceObservers(ctx, &run, people)
	if err != nil {
		return run, err
	}

	// The storm goes through the people in an order that spreads its
	// changes over the logins, as a real organisation's would be (each
	// login's share is contiguous in address order); the same order, and
	// so the same load per login, on both sides.
	order := slices.Clone(people)
	rand.New(rand.NewPCG(uint64(users), 7)).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })

	// The machine is shared and its load drifts: the storm goes in
	// rounds, each the bridge's share then the raw client's, and each
	// side's rounds are summed up. Both continue where their last round
	// stopped, through the people and the states.
	var bridgeParts, rawParts []PresenceSide
	var bridgeNext, rawNext int
	for r := range run.Rounds {
		round := fmt.Sprintf("%d/%d", r+1, run.Rounds)
		bridgeParts = append(bridgeParts, e.bridgeStorm(ctx, run, round, order, sample, &bridgeNext))
		rawParts = append(rawParts, e.rawStorm(ctx, run, round, order, sample, &rawNext))
		if ctx.Err() != nil {
			return run, ctx.Err()
		}
	}
	run.Bridge, run.Baseline = mergeSides(bridgeParts), mergeSides(rawParts)
	run.Steady, err = e.steadyPresence(ctx, run.Visible)
	if err != nil {
		return run, err
	}
	if run.Baseline.P95 > 0 {
		run.P95Ratio = run.Bridge.P95 / run.Baseline.P95
	}
	if run.Baseline.P99 > 0 {
		run.P99Ratio = run.Bridge.P99 / run.Baseline.P99
	}
	fmt.Fprintf(e.out, "presence-storm: p95 %.1f ms vs %.1f ms raw appservice (x%.2f), %.1f vs %.1f writes/s; steady %.1f refreshes/s for %d visible ghosts\n",
		run.Bridge.P95, run.Baseline.P95, run.P95Ratio, run.Bridge.WritesPerSec, run.Baseline.WritesPerSec,
		run.Steady.RefreshesPerSec, run.Steady.Visible)
	return run, nil
}

// presenceSetup creates the storm's people and the logins that watch
// them, each with its share in its SfB contact list (and a fifth of the
// next login's share, so that people wanted by two logins are watched
// once), signs the logins in and waits until every person is watched and
// their ghost written.
func (e *env) presenceSetup(ctx context.Context, run *PresenceRun) ([]sfb.URI, error) {
	start := time.Now()
	bridgeUse, hsUse := startUsage(e.st.Bridge.PID()), startUsage(e.st.HS.PID())
	generated := e.sim.GenerateUsers(run.Users, presenceDomain)
	if len(generated) != run.Users {
		return nil, fmt.Errorf("presence storm: %d of %d people were new to the simulator (run it once per process)", len(generated), run.Users)
	}
	people := make([]sfb.URI, len(generated))
	for i, u := range generated {
		people[i] = u.URI
	}
	logins := e.sim.GenerateUsers(run.Logins, loginDomain)
	for i, l := range logins {
		from, to := i*len(people)/len(logins), (i+1)*len(people)/len(logins)
		next := (i + 1) % len(logins)
		nextFrom, nextTo := next*len(people)/len(logins), (next+1)*len(people)/len(logins)
		members := append(append([]sfb.URI(nil), people[from:to]...), people[nextFrom:nextFrom+(nextTo-nextFrom)/5]...)
		if err := e.sim.SetContacts(l.URI, []sim.ContactGroup{{Name: "Team", Members: members}}); err != nil {
			return nil, err
		}
	}
	res := e.signIns(ctx, fmt.Sprintf("presence %d logins", len(logins)), logins, func(ctx context.Context, i int, u sim.User) error {
		mxid := id.NewUserID(fmt.Sprintf("bench-watcher%d", i), e.st.HS.ServerName)
		_, err := e.st.ProvisionLogin(ctx, mxid, u.URI.Address(), u.Password)
		return err
	}, bridgeUse.sample)
	run.Setup.Connected, run.Setup.Failed, run.Setup.FirstError = res.Connected, res.Failed, res.FirstError
	if res.Connected == 0 {
		return nil, fmt.Errorf("no login connected: %s", res.FirstError)
	}

	// Every person watched (or known unplaceable) and written once.
	var st presenceStats
	lastWrites, lastChange := uint64(0), time.Now()
	for {
		var err error
		if st, err = e.presenceStats(ctx); err != nil {
			return nil, err
		}
		bridgeUse.sample()
		rss, _ := rssBytes(e.st.Bridge.PID())
		fmt.Fprintf(e.out, "%7.1fs  presence setup: %d of %d people watched, %d unplaced, %d ghosts written, bridge RSS %.0f MiB\n",
			time.Since(start).Seconds(), st.Watched, len(people), st.Unplaced, st.Writes, float64(rss)/(1<<20))
		if st.Writes != lastWrites {
			lastWrites, lastChange = st.Writes, time.Now()
		}
		if st.Watched+st.Unplaced >= len(people) && st.Writes >= uint64(st.Watched) && time.Since(lastChange) >= 3*time.Second {
			break
		}
		if time.Since(lastChange) > e.opts.stall {
			return nil, fmt.Errorf("presence setup: %d of %d people watched, %d ghosts written, nothing new for %s", st.Watched, len(people), st.Writes, e.opts.stall)
		}
		if !ctxtime.Sleep(ctx, time.Second) {
			return nil, ctx.Err()
		}
	}
	run.Setup.Seconds = time.Since(start).Seconds()
	run.Setup.Watched, run.Setup.Unplaced, run.Setup.Writes = st.Watched, st.Unplaced, st.Writes
	run.Setup.BridgeCPU, run.Setup.BridgeRSS = bridgeUse.stop()
	run.Setup.SynapseCPU, _ = hsUse.stop()
	return people, nil
}

// presenceObservers makes the migrated users whose syncing clients see
// the sample: every (users / sample)-th person's ghost joins a room of one
// of them (a room per observer, joined through the appservice), and every
// (sample / visible)-th of those also opens a 1:1 portal with that
// observer (a message, as a colleague writes first): the bridge knows the
// observer sees that ghost and refreshes it. It returns the sample.
func (e *env) presenceObservers(ctx context.Context, run *PresenceRun, people []sfb.URI) (map[id.UserID]sfb.URI, error) {
	start := time.Now()
	observers := make([]*migrated, run.Observers)
	rooms := make([]id.RoomID, run.Observers)
	for i := range observers {
		u, err := e.newMigrated(ctx, "observer", i, true)
		if err != nil {
			return nil, err
		}
		// Public, so that the ghosts join without an invitation.
		resp, err := u.client.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: fmt.Sprintf("presence sample %d", i)})
		if err != nil {
			return nil, fmt.Errorf("create the sample room of %s: %w", u.acct, err)
		}
		observers[i], rooms[i] = u, resp.RoomID
	}
	sample := make(map[id.UserID]sfb.URI, run.Sample)
	var (
		mu   sync.Mutex
		done int
	)
	step := func(what string) {
		mu.Lock()
		defer mu.Unlock()
		if done++; done%100 == 0 {
			fmt.Fprintf(e.out, "%7.1fs  presence sample: %d %s\n", time.Since(start).Seconds(), done, what)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for j := range run.Sample {
		person := people[j*len(people)/run.Sample]
		ghost := e.st.GhostID(person.Address())
		sample[ghost] = person
		g.Go(func() error {
			c, err := e.client(ghost, e.st.ASToken)
			if err != nil {
				return err
			}
			c.SetAppServiceUserID = true
			if _, err := c.JoinRoomByID(gctx, rooms[j%len(rooms)]); err != nil {
				return fmt.Errorf("%s joins the sample room: %w", ghost, err)
			}
			step("ghosts joined")
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	done = 0
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(8)
	for v := range run.Visible {
		j := v * run.Sample / run.Visible
		person, obs := people[j*len(people)/run.Sample], observers[j%len(observers)]
		g.Go(func() error {
			text := fmt.Sprintf("setup presence room %d", j)
			if err := e.sim.SendMessage(gctx, person, obs.sfb.URI, sfb.Message{Text: text}); err != nil {
				return err
			}
			if _, err := e.waitSetup(gctx, text); err != nil {
				return fmt.Errorf("the room of %s with %s: %w", person, obs.acct, err)
			}
			step("portals")
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	fmt.Fprintf(e.out, "%d observers see %d sample ghosts, %d of them through a portal (%s)\n", len(observers), len(sample), run.Visible, time.Since(start).Round(time.Millisecond))
	return sample, nil
}

// presenceTracker matches the changes of sample ghosts with what the
// observers' syncs show: a change arrives when a sync shows the ghost in
// the expected state, after the change was made.
type presenceTracker struct {
	sample map[id.UserID]sfb.URI

	mu        sync.Mutex
	pending   map[id.UserID]expected
	changes   int
	sampled   int
	latencies []time.Duration
}

type expected struct {
	state presence.MatrixState
	at    time.Time
}

func newPresenceTracker(sample map[id.UserID]sfb.URI) *presenceTracker {
	return &presenceTracker{sample: sample, pending: map[id.UserID]expected{}}
}

// changed records a change of ghost to state at at.
func (t *presenceTracker) changed(ghost id.UserID, state presence.MatrixState, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.changes++
	if _, ok := t.sample[ghost]; !ok {
		return
	}
	// A newer change of the same ghost replaces one not seen yet: the
	// older one was coalesced away and never counted.
	if _, ok := t.pending[ghost]; !ok {
		t.sampled++
	}
	t.pending[ghost] = expected{state: state, at: at}
}

// seen records that a sync showed ghost in the given state at at.
func (t *presenceTracker) seen(ghost id.UserID, p *event.PresenceEventContent, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	want, ok := t.pending[ghost]
	if !ok || want.state.Presence != p.Presence || want.state.StatusMsg != p.StatusMessage || at.Before(want.at) {
		return
	}
	delete(t.pending, ghost)
	t.latencies = append(t.latencies, at.Sub(want.at))
}

func (t *presenceTracker) snapshot() (changes, sampled, arrived int, p95 float64) {
	t.mu.Lock()
	lat := append([]time.Duration(nil), t.latencies...)
	changes, sampled = t.changes, t.sampled
	t.mu.Unlock()
	return changes, sampled, len(lat), summarize(lat).P95
}

func (t *presenceTracker) result(side *PresenceSide) {
	t.mu.Lock()
	defer t.mu.Unlock()
	side.Changes, side.Sampled, side.Arrived = t.changes, t.sampled, len(t.latencies)
	side.Latency = summarize(t.latencies)
}

func (e *env) onMatrixPresence(sender id.UserID, p *event.PresenceEventContent, at time.Time) {
	if t := e.presence.Load(); t != nil {
		t.seen(sender, p, at)
	}
}

// expectedState is what the bridge shows for a simulator presence.
func expectedState(p sim.Presence, now time.Time) presence.MatrixState {
	return presence.ToMatrix(sfb.Presence{Availability: sfb.Availability(p.Availability), Activity: p.Activity, Note: p.Note}, now)
}

// bridgeStorm changes the presence of the people in turn through the
// simulator, rate changes per second for the round's share of the storm,
// starting with change *next (the k-th change sets person k mod users to
// the simulator's storm state k / users), and measures until the bridge
// wrote its backlog and the sample arrived.
func (e *env) bridgeStorm(ctx context.Context, run PresenceRun, round string, people []sfb.URI, sample map[id.UserID]sfb.URI, next *int) PresenceSide {
	t := newPresenceTracker(sample)
	states := sim.StormStates()
	return e.storm(ctx, "bridge "+round, run, t, func(stormCtx context.Context) error {
		return pace(stormCtx, run.Rate, next, func(k int, _ time.Time) error {
			uri, p := people[k%len(people)], states[(k/len(people))%len(states)]
			if err := e.sim.SetPresence(uri, p); err != nil {
				return err
			}
			now := time.Now()
			t.changed(e.st.GhostID(uri.Address()), expectedState(p, now), now)
			return nil
		})
	}, nil)
}

// rawStorm is the baseline: the same number of presence writes, at the
// same rate over the same ghosts in the same order, sent by a raw
// appservice client (PUT /presence/{ghost}/status?user_id={ghost}) with
// as many writes in flight as the bridge's writer has workers. Each write
// is scheduled at its turn and its latency counts from there, so a client
// that falls behind is measured as the bridge is. The states are the
// storm's, shifted by rawOffset, so that a write always changes what the
// ghost shows (the bridge's last state or the raw client's).
func (e *env) rawStorm(ctx context.Context, run PresenceRun, round string, people []sfb.URI, sample map[id.UserID]sfb.URI, next *int) PresenceSide {
	t := newPresenceTracker(sample)
	var writes, failed counter
	type job struct {
		ghost id.UserID
		state presence.MatrixState
	}
	states := sim.StormStates()
	storm := func(stormCtx context.Context) error {
		jobs := make(chan job, 1<<16)
		// The writes scheduled are all written, after the storm too.
		g, gctx := errgroup.WithContext(ctx)
		for range rawWorkers {
			g.Go(func() error {
				for j := range jobs {
					if err := e.rawPresence(gctx, j.ghost, j.state); err != nil {
						failed.add(1)
						fmt.Fprintf(e.out, "raw presence write: %v\n", err)
						continue
					}
					writes.add(1)
				}
				return nil
			})
		}
		err := pace(stormCtx, run.Rate, next, func(k int, at time.Time) error {
			ghost := e.st.GhostID(people[k%len(people)].Address())
			state := expectedState(states[(k/len(people)+rawOffset)%len(states)], at)
			t.changed(ghost, state, at)
			select {
			case jobs <- job{ghost: ghost, state: state}:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		close(jobs)
		return errors.Join(err, g.Wait())
	}
	side := e.storm(ctx, "raw appservice "+round, run, t, storm, func() (uint64, uint64) { return writes.get(), writes.swap() })
	side.Failed = failed.get()
	return side
}

// pace calls do(k, at) for k = *next, *next+1, ... at rate calls per second
// until ctx ends, at being when call k is due; *next is where the next
// round starts.
func pace(ctx context.Context, rate int, next *int, do func(k int, at time.Time) error) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start, first := time.Now(), *next
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			for due := first + int(now.Sub(start).Seconds()*float64(rate)); *next < due; *next++ {
				if err := do(*next, start.Add(time.Duration(*next-first)*time.Second/time.Duration(rate))); err != nil {
					return err
				}
			}
		}
	}
}

// rawWorkers is how many writes the raw client has in flight: as many as
// the bridge's presence writer.
const rawWorkers = 16

// storm runs one side: makeChanges for the storm's duration, then waits
// until the writes stopped and the sample arrived (or nothing arrived for
// the stall time). writes, for the raw client, returns the writes so far
// and those since the last call; nil reads the bridge's counters.
func (e *env) storm(ctx context.Context, name string, run PresenceRun, t *presenceTracker, makeChanges func(context.Context) error, writes func() (total, sinceLast uint64)) PresenceSide {
	label := "presence-storm " + name
	var side PresenceSide
	e.presence.Store(t)
	defer e.presence.Store(nil)
	bridgeUse, hsUse := startUsage(e.st.Bridge.PID()), startUsage(e.st.HS.PID())
	st0, err := e.presenceStats(ctx)
	if err != nil {
		side.Error = err.Error()
		return side
	}
	reqs0, batched0 := e.simReqs.read(), e.sim.BatchedRequests()
	start := time.Now()

	stormCtx, stop := context.WithTimeout(ctx, time.Duration(run.Seconds*float64(time.Second))/time.Duration(run.Rounds))
	defer stop()
	stormErr := make(chan error, 1)
	go func() { stormErr <- makeChanges(stormCtx) }()

	// A line per second until the storm is over, the writes stopped and
	// the sample arrived.
	var (
		last                     = st0
		lastWritten              uint64
		lastProgress, idleSince  = time.Now(), time.Time{}
		stormDone                bool
		lastArrived, lastChanges int
	)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			side.Error = ctx.Err().Error()
			return side
		case err := <-stormErr:
			stormDone = true
			if err != nil {
				side.Error = err.Error()
			}
			stormErr = nil
			continue
		case <-tick.C:
		}
		bridgeUse.sample()
		st, err := e.presenceStats(ctx)
		if err != nil {
			side.Error = err.Error()
			break
		}
		var written, perSecond uint64
		if writes != nil {
			written, perSecond = writes()
		} else {
			written, perSecond = st.Writes-st0.Writes, st.Writes-last.Writes
		}
		side.PeakWrites = max(side.PeakWrites, perSecond)
		changes, sampled, arrived, p95 := t.snapshot()
		fmt.Fprintf(e.out, "%7.1fs  %-30s %8d changes  %6.0f writes/s  %4d/%d sample arrived  p95 %7.1f ms\n",
			time.Since(start).Seconds(), label, changes, float64(perSecond), arrived, sampled, p95)
		if written != lastWritten || arrived != lastArrived || changes != lastChanges {
			lastProgress = time.Now()
		}
		// The backlog is written when only refreshes are left.
		busy := written-lastWritten > st.Refreshes-last.Refreshes || !stormDone
		if busy {
			idleSince = time.Time{}
		} else if idleSince.IsZero() {
			idleSince = time.Now()
		}
		last, lastWritten, lastArrived, lastChanges = st, written, arrived, changes
		if stormDone && arrived >= sampled && !idleSince.IsZero() && time.Since(idleSince) >= 2*time.Second {
			break
		}
		if stormDone && time.Since(lastProgress) > e.opts.stall {
			side.Error = fmt.Sprintf("%s: %d of %d sample changes arrived, nothing new for %s", label, arrived, sampled, e.opts.stall)
			break
		}
	}
	end := time.Now()
	if !idleSince.IsZero() {
		end = idleSince
	}
	side.Seconds = end.Sub(start).Seconds()
	t.result(&side)
	side.latencies = t.latencies
	st, _ := e.presenceStats(ctx)
	if writes != nil {
		side.Writes, _ = writes()
	} else {
		side.Writes, side.Refreshes = st.Writes-st0.Writes, st.Refreshes-st0.Refreshes
		side.Coalesced, side.Unchanged, side.Failed = st.Coalesced-st0.Coalesced, st.Unchanged-st0.Unchanged, st.Failed-st0.Failed
	}
	side.WritesPerSec = float64(side.Writes) / side.Seconds
	d := end.Sub(start)
	side.SfBPerSec = e.simReqs.read().perSecond(reqs0, d)
	side.BatchedPerSec = float64(e.sim.BatchedRequests()-batched0) / d.Seconds()
	side.BridgeCPU, side.BridgePeakRSS = bridgeUse.stop()
	side.SynapseCPU, _ = hsUse.stop()
	if side.Error != "" {
		fmt.Fprintf(e.out, "%s: %s\n", label, side.Error)
	}
	return side
}

// steadyPresence measures the writes with no changes: the refreshes of
// the ghosts present Matrix users see.
func (e *env) steadyPresence(ctx context.Context, visible int) (Steady, error) {
	s := Steady{Seconds: e.opts.steady.Seconds(), Visible: visible, ExpectedRefreshes: float64(visible) / e.opts.refreshInterval.Seconds()}
	st0, err := e.presenceStats(ctx)
	if err != nil {
		return s, err
	}
	reqs0, batched0 := e.simReqs.read(), e.sim.BatchedRequests()
	bridgeUse, hsUse := startUsage(e.st.Bridge.PID()), startUsage(e.st.HS.PID())
	fmt.Fprintf(e.out, "counting the presence writes with no changes for %s (%d visible ghosts)\n", e.opts.steady, visible)
	// Where an idle bridge's CPU goes with everyone watched.
	prof := &profiler{e: e, seconds: max(int(e.opts.steady.Seconds()), 1), path: filepath.Join(e.opts.out, "bridge-cpu-presence-steady.pprof")}
	prof.start(ctx)
	defer prof.wait()
	if !ctxtime.Sleep(ctx, e.opts.steady) {
		return s, ctx.Err()
	}
	st, err := e.presenceStats(ctx)
	if err != nil {
		return s, err
	}
	s.Watched = st.Watched
	s.WritesPerSec = float64(st.Writes-st0.Writes) / s.Seconds
	s.RefreshesPerSec = float64(st.Refreshes-st0.Refreshes) / s.Seconds
	s.SfBPerSec = e.simReqs.read().perSecond(reqs0, e.opts.steady)
	s.BatchedPerSec = float64(e.sim.BatchedRequests()-batched0) / s.Seconds
	s.BridgeCPU, _ = bridgeUse.stop()
	s.SynapseCPU, _ = hsUse.stop()
	return s, nil
}

// presenceStats reads the bridge's presence counters.
func (e *env) presenceStats(ctx context.Context) (presenceStats, error) {
	var st presenceStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.st.Bridge.URL()+"/debug/sfb/presence", nil)
	if err != nil {
		return st, err
	}
	req.Header.Set("Authorization", "Bearer "+e.st.ProvisioningSecret)
	resp, err := e.http.Do(req)
	if err != nil {
		return st, fmt.Errorf("read the bridge's presence counters: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("read the bridge's presence counters: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("read the bridge's presence counters: %w", err)
	}
	return st, nil
}

// rawPresence writes a ghost's presence as the appservice, without the
// bridge.
func (e *env) rawPresence(ctx context.Context, ghost id.UserID, state presence.MatrixState) error {
	body, _ := json.Marshal(map[string]any{"presence": state.Presence, "status_msg": state.StatusMsg})
	u := fmt.Sprintf("%s/_matrix/client/v3/presence/%s/status?user_id=%s", e.st.HS.URL, url.PathEscape(ghost.String()), url.QueryEscape(ghost.String()))
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+e.st.ASToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(req)
	if err != nil {
		return fmt.Errorf("set presence of %s: %w", ghost, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("set presence of %s: HTTP %d", ghost, resp.StatusCode)
	}
	return nil
}

// counter is a count with a reading since the last swap.
type counter struct {
	mu         sync.Mutex
	n, swapped uint64
}

func (c *counter) add(d uint64) { c.mu.Lock(); c.n += d; c.mu.Unlock() }
func (c *counter) get() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// swap returns the count since the last swap.
func (c *counter) swap() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.n - c.swapped
	c.swapped = c.n
	return d
}

func presenceMarkdown(b *strings.Builder, p *PresenceRun) {
	fmt.Fprintf(b, "%d SfB people watched by %d logins through their contact lists; %d changes/s for %.0f s in %d rounds (each the bridge's share, then the raw client's); write ceiling %g/s, refresh interval %s. "+
		"Latency on a sample of %d ghosts (every %d-th person) in a room with one of %d observers (migrated users with a syncing client); %d of them also in a 1:1 portal with their observer, which makes them visible (refreshed).\n\n",
		p.Users, p.Logins, p.Rate, p.Seconds, p.Rounds, p.WriteRate, p.RefreshInterval, p.Sample, p.Users/max(p.Sample, 1), p.Observers, p.Visible)
	s := p.Setup
	fmt.Fprintf(b, "Setup: %d logins connected (%d failed), %d people watched, %d unplaced, %d ghost writes (each ghost registered and written once) in %.1f s; bridge CPU %.2f s, RSS %.1f MiB; Synapse CPU %.2f s.\n\n",
		s.Connected, s.Failed, s.Watched, s.Unplaced, s.Writes, s.Seconds, s.BridgeCPU, s.BridgeRSS, s.SynapseCPU)
	b.WriteString("| side | changes | sample changes | arrived | p50 ms | p95 ms | p99 ms | max ms | s to all written | writes/s | peak writes/s | refreshes | coalesced | unchanged | failed | bridge CPU s | bridge peak RSS MiB | Synapse CPU s |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range []struct {
		name string
		s    PresenceSide
	}{{"raw appservice (baseline)", p.Baseline}, {"bridge", p.Bridge}} {
		fmt.Fprintf(b, "| %s | %d | %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %d | %d | %d | %d | %d | %.2f | %.1f | %.2f |\n",
			r.name, r.s.Changes, r.s.Sampled, r.s.Arrived, r.s.P50, r.s.P95, r.s.P99, r.s.Max, r.s.Seconds, r.s.WritesPerSec, r.s.PeakWrites,
			r.s.Refreshes, r.s.Coalesced, r.s.Unchanged, r.s.Failed, r.s.BridgeCPU, r.s.BridgePeakRSS, r.s.SynapseCPU)
	}
	fmt.Fprintf(b, "\n| | bridge | raw appservice | ratio |\n|---|---:|---:|---:|\n")
	fmt.Fprintf(b, "| p95 ms (goal <= 2000) | %.1f %s | %.1f | %.2f |\n", p.Bridge.P95, verdict(p.Bridge.P95 > 0 && p.Bridge.P95 <= 2000), p.Baseline.P95, p.P95Ratio)
	fmt.Fprintf(b, "| p99 ms | %.1f | %.1f | %.2f |\n", p.Bridge.P99, p.Baseline.P99, p.P99Ratio)
	if p.Baseline.WritesPerSec > 0 {
		fmt.Fprintf(b, "| writes/s | %.1f | %.1f | %.2f |\n", p.Bridge.WritesPerSec, p.Baseline.WritesPerSec, p.Bridge.WritesPerSec/p.Baseline.WritesPerSec)
	}
	st := p.Steady
	fmt.Fprintf(b, "\nWith no changes (after the storm, %.0f s): %.2f writes/s, %.2f of them refreshes, for %d visible ghosts of %d watched (%d / %s = %.2f/s expected).\n\n",
		st.Seconds, st.WritesPerSec, st.RefreshesPerSec, st.Visible, st.Watched, st.Visible, p.RefreshInterval, st.ExpectedRefreshes)
	b.WriteString("| requests/s to SfB | " + strings.Join(requestKindNames[:], " | ") + " | inside batches | bridge CPU s |\n")
	b.WriteString("|---|" + strings.Repeat("---:|", int(numRequestKinds)+2) + "\n")
	for _, r := range []struct {
		name    string
		per     map[string]float64
		batched float64
		cpu     float64
	}{{"bridge storm", p.Bridge.SfBPerSec, p.Bridge.BatchedPerSec, p.Bridge.BridgeCPU}, {"no changes", st.SfBPerSec, st.BatchedPerSec, st.BridgeCPU}} {
		fmt.Fprintf(b, "| %s |", r.name)
		for _, k := range requestKindNames {
			fmt.Fprintf(b, " %.2f |", r.per[k])
		}
		fmt.Fprintf(b, " %.2f | %.2f |\n", r.batched, r.cpu)
	}
	for _, r := range []struct {
		name string
		s    PresenceSide
	}{{"raw appservice", p.Baseline}, {"bridge", p.Bridge}} {
		if r.s.Error != "" {
			fmt.Fprintf(b, "\n%s: %s\n", r.name, r.s.Error)
		}
	}
	if s.FirstError != "" {
		fmt.Fprintf(b, "\nsetup, first login error: %s\n", s.FirstError)
	}
}
