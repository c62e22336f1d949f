// Command sfb-bench measures the bridge side by side with the homeserver's
// own ingest, in one run on one machine. It starts on loopback a throwaway
// Synapse, the SfB simulator and the bridge (on a throwaway PostgreSQL, or
// SQLite with -sqlite), runs the named scenarios, prints a progress line
// per second and writes each scenario's result as JSON and as a Markdown
// table into -out.
//
// Scenarios:
//
//	sfb-to-matrix  N messages from simulated SfB colleagues to migrated
//	               users, per mode (-modes); latency from the simulator's
//	               send to a syncing Matrix client seeing the event.
//	               Baseline: the colleague's ghost sends the same messages
//	               with the appservice token into a room with the same
//	               members.
//	matrix-to-sfb  N messages from migrated users into the portals; latency
//	               from the Matrix send to the simulator recording the
//	               message. Baseline: the same sends into the baseline room,
//	               until the sender's own sync shows them.
//	logins         N users signed in through the provisioning API: time to
//	               all connected, sign-ins per second, bridge RSS per idle
//	               login, the requests idle logins put on the pool.
//	               Baseline: a bare UCWA client signing in N other users.
//	crash          N messages both ways over 10 conversations while the
//	               bridge is killed (SIGKILL) 20 times at random moments,
//	               then every message counted: none lost, none doubled, order
//	               kept (e2e/crash, with its own homeserver and bridge).
//	presence-storm N simulated SfB people (default 70,000) watched by
//	               -presence-logins logins through their contact lists,
//	               then -presence-rate changes per second for
//	               -presence-duration; latency from the simulator's change
//	               to a syncing Matrix client seeing the ghost's presence
//	               (a sample of ghosts that observers share rooms with),
//	               writes per second to the homeserver, requests per second
//	               to SfB; then the refresh load with no changes. Baseline:
//	               the same writes by a raw appservice client.
//	sip-scale      N trusted-application endpoints (default 70,000)
//	               registered by this process through the SIP transport
//	               (sfb/sip) against the simulator's SIP front end, run as
//	               a process of its own (cmd/sfb-sim): time from cold start
//	               to all registered, RSS per idle endpoint, the steady
//	               load (REGISTER refreshes/s, CPU), then a message and a
//	               presence change to a random -sip-live-sample of them.
//	               Baseline: a bare client registering the same users with
//	               raw REGISTERs over as many connections.
//	sip-per-user   sign-ins over SIP in per-user mode (one connection and
//	               an NTLM handshake each) against the simulator process:
//	               -sip-ramp-users at the default pool rate (10/s, which
//	               must hold), then N with the rate lifted (-lifted-rate).
//	               Baseline: a bare client doing the NTLM handshake with
//	               raw REGISTERs for N other users, no rate.
//	standard       sfb-to-matrix, matrix-to-sfb, logins and crash with
//	               their default N.
//
// The scenarios that run the bridge reach SfB over UCWA, or over SIP with
// -sfb-transport sip-per-user or sip-trusted (the simulator's SIP listener
// over TLS; the baselines stay what they are).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/e2e/crash"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

type options struct {
	scenario         string
	n                int
	modes            string
	window           int
	rounds           int
	logins           int
	loginConcurrency int
	idle             time.Duration
	liftedRate       float64
	liftedOnly       bool
	kills            int
	// presence-storm
	presenceLogins    int
	presenceRate      int
	presenceDuration  time.Duration
	presenceSample    int
	presenceObservers int
	presenceVisible   int
	presenceWriteRate float64
	refreshInterval   time.Duration
	steady            time.Duration
	// simAggregation is the simulator's hold of medium-priority events
	// (presence updates); 0 is its default, the reference's minimum of 5s.
	simAggregation time.Duration
	crashConvs     int
	stall          time.Duration
	sqlite         bool
	bridgeBin      string
	repoRoot       string
	out            string
	dir            string
	keep           bool
	logLevel       string
	profileMode    string
	race           bool
	network        map[string]any
	// sfbTransport is how the bridge reaches SfB in the scenarios that
	// run it: ucwa, sip-per-user or sip-trusted.
	sfbTransport string
	// sip-scale and sip-per-user
	sipConnections    int
	sipMaxOutstanding int
	sipRegisterRate   float64
	sipConcurrency    int
	sipExpiry         time.Duration
	sipSettle         time.Duration
	sipLiveSample     int
	sipRampUsers      int
	// command is how the bench was started, for the results.
	command string
}

// defaultN is each scenario's N when -n is not given.
var defaultN = map[string]int{
	"sfb-to-matrix": 2000,
	"matrix-to-sfb": 2000,
	"logins":        1000,
	"crash":         2000,
	// presence-storm: simulated SfB people.
	"presence-storm": 70000,
	// sip-scale: endpoints; sip-per-user: users signing in lifted.
	"sip-scale":    70000,
	"sip-per-user": 1000,
}

var standard = []string{"sfb-to-matrix", "matrix-to-sfb", "logins", "crash"}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	opts, err := parseFlags(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, opts, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "sfb-bench: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string) (options, error) {
	opts := options{network: map[string]any{}, command: strings.Join(append([]string{"sfb-bench"}, args...), " ")}
	fs := flag.NewFlagSet("sfb-bench", flag.ContinueOnError)
	fs.StringVar(&opts.scenario, "scenario", "standard", "scenario: sfb-to-matrix, matrix-to-sfb, logins, crash, presence-storm, sip-scale, sip-per-user, or standard (the first four); comma-separated for several")
	fs.IntVar(&opts.n, "n", 0, "messages, users for logins, simulated SfB people for presence-storm (default per scenario: 2000 messages, 1000 users, 70000 people)")
	fs.StringVar(&opts.modes, "modes", "sequential,1,10,100", "message modes: sequential and numbers of concurrent conversations")
	fs.IntVar(&opts.window, "window", 10, "most messages of one conversation sent and not yet arrived (concurrent modes)")
	fs.IntVar(&opts.rounds, "rounds", 4, "split each mode's N messages into this many rounds, each baseline then bridge, and presence-storm's storm likewise, each bridge then baseline (the machine's load drifts)")
	fs.IntVar(&opts.logins, "logins", 10, "migrated users the message scenarios share their conversations among")
	fs.IntVar(&opts.loginConcurrency, "login-concurrency", 100, "provisioning API calls in flight at once (logins)")
	fs.DurationVar(&opts.idle, "idle", 3*time.Minute, "how long idle logins' requests are counted (logins; one event channel cycle is 3m)")
	fs.Float64Var(&opts.liftedRate, "lifted-rate", 1000, "sign-in rate of the logins scenario's second bridge run, with network.simulator_sign_in_rate (0: no second run)")
	fs.BoolVar(&opts.liftedOnly, "lifted-only", false, "logins: only the bare client and the bridge with the ramp lifted (no run at the ramp, no idle count)")
	fs.IntVar(&opts.kills, "kills", 20, "crash: how often the bridge is killed (SIGKILL)")
	fs.IntVar(&opts.crashConvs, "crash-conversations", 10, "crash: conversations the messages flow in, both ways")
	fs.IntVar(&opts.presenceLogins, "presence-logins", 1000, "presence-storm: logins watching the people, each with its share in its SfB contact list")
	fs.IntVar(&opts.presenceRate, "presence-rate", 1000, "presence-storm: presence changes per second")
	fs.DurationVar(&opts.presenceDuration, "presence-duration", time.Minute, "presence-storm: how long the storm lasts")
	fs.IntVar(&opts.presenceSample, "presence-sample", 1000, "presence-storm: ghosts whose latency is measured (each shares a room with an observer)")
	fs.IntVar(&opts.presenceVisible, "presence-visible", 100, "presence-storm: ghosts of the sample that also have a portal with their observer (visible: refreshed)")
	fs.IntVar(&opts.presenceObservers, "presence-observers", 5, "presence-storm: migrated users whose syncing clients see the sample")
	fs.Float64Var(&opts.presenceWriteRate, "presence-write-rate", 1500, "presence-storm: the bridge's network.presence.write_rate (its default, 300, is below a storm of 1000/s)")
	fs.DurationVar(&opts.refreshInterval, "refresh-interval", 20*time.Second, "presence-storm: the bridge's network.presence.refresh_interval")
	fs.DurationVar(&opts.steady, "steady", time.Minute, "presence-storm: how long the writes with no changes are counted after the storm")
	fs.DurationVar(&opts.simAggregation, "sim-event-aggregation", 0, "how long the simulator holds medium-priority events such as presence updates (default: 5s, the least UCWA allows); shorter shows what a transport without that hold would get")
	fs.StringVar(&opts.sfbTransport, "sfb-transport", "ucwa", "how the bridge reaches SfB in the scenarios that run it: ucwa, sip-per-user or sip-trusted (the simulator's SIP listener over TLS with a test CA)")
	fs.IntVar(&opts.sipConnections, "sip-connections", 4, "sip-scale: the transport's shared connections (sip.connections)")
	fs.IntVar(&opts.sipMaxOutstanding, "sip-max-outstanding", 1000, "sip-scale: requests in flight per shared connection (sip.max_outstanding)")
	fs.Float64Var(&opts.sipRegisterRate, "sip-register-rate", 1000, "sip-scale: registrations started per second (sip.register_rate)")
	fs.IntVar(&opts.sipConcurrency, "sip-concurrency", 2000, "sip-scale: sign-ins in flight at once (each waits for its turn at the register rate)")
	fs.DurationVar(&opts.sipExpiry, "sip-registration-expiry", 300*time.Second, "SIP scenarios: the simulator's longest registration (SfB grants 7200s; shorter so that the refreshes start within the run)")
	fs.DurationVar(&opts.sipSettle, "sip-settle", 10*time.Second, "sip-scale: how long the registered endpoints idle before their memory is read")
	fs.IntVar(&opts.sipLiveSample, "sip-live-sample", 1000, "sip-scale: endpoints that get a message and a presence change")
	fs.IntVar(&opts.sipRampUsers, "sip-ramp-users", 100, "sip-per-user: users signed in at the default rate of 10/s (0: none)")
	fs.DurationVar(&opts.stall, "stall", time.Minute, "give up on a run when nothing arrived for this long")
	fs.BoolVar(&opts.sqlite, "sqlite", false, "run the bridge on SQLite instead of PostgreSQL")
	fs.StringVar(&opts.bridgeBin, "bridge", "", "prebuilt sfb-matrix-bridge binary (default: build ./cmd/sfb-matrix-bridge)")
	fs.StringVar(&opts.repoRoot, "repo", ".", "module root the bridge is built from")
	fs.StringVar(&opts.out, "out", "bench-results", "directory for the JSON and Markdown results and the CPU profile")
	fs.StringVar(&opts.dir, "dir", "", "work directory for configuration, databases and logs (default: temporary, removed unless -keep)")
	fs.BoolVar(&opts.keep, "keep", false, "keep the work directory")
	fs.StringVar(&opts.logLevel, "log-level", "info", "the bridge's log level")
	fs.StringVar(&opts.profileMode, "profile", "concurrent-10", "take a CPU profile of the bridge during this sfb-to-matrix mode (empty: none)")
	fs.Func("network", "set a network option of the bridge, key=value (e.g. sign_in_rate=12); repeatable", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want key=value, got %q", s)
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			opts.network[k] = f
		} else if b, err := strconv.ParseBool(v); err == nil {
			opts.network[k] = b
		} else {
			opts.network[k] = v
		}
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	for _, s := range opts.scenarios() {
		if _, ok := defaultN[s]; !ok {
			return opts, fmt.Errorf("unknown scenario %q (want sfb-to-matrix, matrix-to-sfb, logins, crash, presence-storm, sip-scale, sip-per-user or standard)", s)
		}
	}
	if _, err := parseModes(opts.modes, opts.window); err != nil {
		return opts, err
	}
	if opts.n < 0 || opts.logins < 1 || opts.loginConcurrency < 1 {
		return opts, errors.New("-n must not be negative; -logins and -login-concurrency must be positive")
	}
	if opts.presenceLogins < 1 || opts.presenceRate < 1 || opts.presenceDuration <= 0 || opts.presenceSample < 1 || opts.presenceVisible < 0 ||
		opts.presenceObservers < 1 || opts.presenceWriteRate <= 0 || opts.refreshInterval < time.Second || opts.steady <= 0 {
		return opts, errors.New("the -presence-* flags, -refresh-interval (at least 1s) and -steady must be positive")
	}
	if opts.sipConnections < 1 || opts.sipMaxOutstanding < 1 || opts.sipRegisterRate <= 0 || opts.sipConcurrency < 1 ||
		opts.sipExpiry < 10*time.Second || opts.sipSettle < 0 || opts.sipLiveSample < 1 || opts.sipRampUsers < 0 {
		return opts, errors.New("the -sip-* flags must be positive (-sip-registration-expiry at least 10s)")
	}
	if opts.sfbTransport != "ucwa" && opts.sipMode() == "" {
		return opts, fmt.Errorf("-sfb-transport %q: want ucwa, sip-per-user or sip-trusted", opts.sfbTransport)
	}
	return opts, nil
}

// sipMode is the bridge's SIP mode, "" when it is on UCWA.
func (o options) sipMode() string {
	switch o.sfbTransport {
	case "sip-per-user":
		return sfb.SIPModePerUser
	case "sip-trusted":
		return sfb.SIPModeTrusted
	}
	return ""
}

// ownEnv: the scenario brings its own processes (no Synapse, no bridge).
func ownEnv(scenario string) bool { return scenario == "crash" || strings.HasPrefix(scenario, "sip-") }

func (o options) scenarios() []string {
	var out []string
	for _, s := range strings.Split(o.scenario, ",") {
		if s = strings.TrimSpace(s); s == "standard" {
			out = append(out, standard...)
		} else if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func bench(ctx context.Context, opts options, out io.Writer) (err error) {
	if err := os.MkdirAll(opts.out, 0o755); err != nil {
		return err
	}
	if opts.dir == "" {
		if opts.dir, err = os.MkdirTemp("", "sfb-bench-"); err != nil {
			return err
		}
		if !opts.keep {
			defer os.RemoveAll(opts.dir)
		}
	} else if err := os.MkdirAll(opts.dir, 0o700); err != nil {
		return err
	}
	if opts.out, err = filepath.Abs(opts.out); err != nil {
		return err
	}
	// The crash and SIP scenarios bring their own processes.
	var e *env
	if slices.ContainsFunc(opts.scenarios(), func(s string) bool { return !ownEnv(s) }) {
		fmt.Fprintf(out, "starting Synapse, the simulator and the bridge (%s) in %s\n", map[bool]string{true: "SQLite", false: "PostgreSQL"}[opts.sqlite], opts.dir)
		start := time.Now()
		if e, err = startEnv(ctx, opts, out); err != nil {
			return err
		}
		defer func() {
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s\n", e.st.Bridge.LogTail(30))
			}
			_ = e.close()
		}()
		fmt.Fprintf(out, "up in %s: Synapse %s, bridge %s, simulator %s\n", time.Since(start).Round(time.Millisecond), e.st.HS.URL, e.st.Bridge.URL(), e.sim.BaseURL())
		go e.pollSim(ctx)
	}

	modes, _ := parseModes(opts.modes, opts.window)
	for _, name := range opts.scenarios() {
		n := opts.n
		if n == 0 {
			n = defaultN[name]
		}
		res := newResult(name, n, opts)
		var runErr error
		switch name {
		case "sfb-to-matrix":
			bridge, baseline := e.sfbToMatrix()
			res.Runs, runErr = e.runMessages(ctx, name, n, modes, bridge, baseline)
		case "matrix-to-sfb":
			bridge, baseline := e.matrixToSfB()
			res.Runs, runErr = e.runMessages(ctx, name, n, modes, bridge, baseline)
		case "logins":
			var lr LoginRun
			lr, runErr = e.runLogins(ctx, n)
			res.Logins = &lr
		case "presence-storm":
			var pr PresenceRun
			pr, runErr = e.runPresenceStorm(ctx, n)
			res.Presence = &pr
		case "sip-scale":
			var sr SIPScaleRun
			sr, runErr = runSIPScale(ctx, opts, out, n)
			res.SIPScale = &sr
		case "sip-per-user":
			var pr SIPPerUserRun
			pr, runErr = runSIPPerUser(ctx, opts, out, n)
			res.SIPPerUser = &pr
		case "crash":
			var cr crash.Result
			cr, runErr = runCrash(ctx, opts, n, out)
			res.Crash = &cr
		}
		res.finish()
		if runErr != nil {
			res.Error = runErr.Error()
		}
		md, err := res.write(opts.out)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "\n%s\n", md)
		if runErr != nil {
			return fmt.Errorf("%s: %w", name, runErr)
		}
	}
	return nil
}
