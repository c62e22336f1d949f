// Package crash is the crash scenario: messages flow both ways between
// migrated Matrix users and their SfB colleagues while the bridge (on
// PostgreSQL) is killed with SIGKILL at random moments; afterwards every
// message is counted: none may be lost, none doubled, and each
// conversation's order kept. The e2e tests run a short form, the bench
// command the full one. The random moments come from a seed that Run
// logs, so that a failing run can be replayed.
package crash

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/e2e/stack"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pgtest"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// Options configure Run. Zero values take the defaults noted.
type Options struct {
	// Kills is how many times the bridge is killed.
	Kills int
	// Messages is how many messages are sent, both directions together,
	// spread evenly over the conversations and directions.
	Messages int
	// Conversations is how many migrated users each chat with one SfB
	// colleague.
	Conversations int
	// Seed drives the kill moments, the down times and the pacing; 0
	// picks one from the clock. Result.Seed replays a run.
	Seed uint64
	// Rate is messages per second over all conversations and both
	// directions; default 10.
	Rate float64
	// MaxDown is the longest time a killed bridge stays down; default 1s.
	MaxDown time.Duration
	// Settle bounds the wait, after the last message was sent, for every
	// message to arrive; default 3 minutes.
	Settle time.Duration

	// Dir holds the bridge, Synapse and simulator files; empty means a
	// temporary directory, removed afterwards unless Keep is set.
	Dir  string
	Keep bool
	// RepoRoot, BridgeBinary, Race and SynapseVenv are passed to
	// stack.Options.
	RepoRoot     string
	BridgeBinary string
	Race         bool
	SynapseVenv  string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Direction counts one direction of the flow.
type Direction struct {
	// Sent messages; Received copies of them, duplicates included.
	Sent     int `json:"sent"`
	Received int `json:"received"`
	// Lost were sent and never arrived; Doubled are copies beyond the
	// first; OutOfOrder arrived (first copy) after a later message of
	// the same conversation.
	Lost       int `json:"lost"`
	Doubled    int `json:"doubled"`
	OutOfOrder int `json:"out_of_order"`
	// Repeated are the copies, not counted in Doubled, that Matrix -> SfB
	// delivery makes by design (at least once, docs/architecture.md): the
	// bridge was killed after SfB took the message and before the outbox
	// marked it accepted, and the restarted bridge sent it again at once.
	Repeated int `json:"repeated"`
}

// Result is what Run counted.
type Result struct {
	Seed          uint64    `json:"seed"`
	Conversations int       `json:"conversations"`
	SfBToMatrix   Direction `json:"sfb_to_matrix"`
	MatrixToSfB   Direction `json:"matrix_to_sfb"`
	// Kills done (all of Options.Kills unless Run failed).
	Kills int `json:"kills"`
	// Setup is the time to start everything and open the conversations;
	// Duration the time from the first message to the count.
	Setup    time.Duration `json:"setup_ns"`
	Duration time.Duration `json:"duration_ns"`
	// Problems names the first lost, doubled or misordered messages.
	Problems []string `json:"problems,omitempty"`
	// DuplicateWindow is, over the Matrix messages delivered to SfB, the
	// time from the simulator accepting one to the bridge having marked
	// it accepted in its outbox: a crash inside it sends the message
	// twice. A repeated message counts with its last copy before the mark.
	DuplicateWindow Window `json:"duplicate_window"`
}

// Window summarises durations.
type Window struct {
	Count int           `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P95   time.Duration `json:"p95_ns"`
	Max   time.Duration `json:"max_ns"`
}

func newWindow(ds []time.Duration) Window {
	if len(ds) == 0 {
		return Window{}
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return Window{Count: len(ds), P50: at(0.50), P95: at(0.95), Max: ds[len(ds)-1]}
}

// OK reports whether every message arrived, in order, and exactly once but
// for the repeats Matrix -> SfB delivery makes inside its duplicate window.
func (r Result) OK() bool {
	for _, d := range []Direction{r.SfBToMatrix, r.MatrixToSfB} {
		if d.Lost != 0 || d.Doubled != 0 || d.OutOfOrder != 0 || d.Received != d.Sent+d.Repeated {
			return false
		}
	}
	return r.SfBToMatrix.Repeated == 0
}

func (r Result) String() string {
	return fmt.Sprintf("seed %d, %d conversations, %d kills in %s: SfB->Matrix %+v, Matrix->SfB %+v, duplicate window %+v",
		r.Seed, r.Conversations, r.Kills, r.Duration.Round(time.Millisecond), r.SfBToMatrix, r.MatrixToSfB, r.DuplicateWindow)
}

func (o *Options) setDefaults() {
	if o.Rate <= 0 {
		o.Rate = 10
	}
	if o.MaxDown <= 0 {
		o.MaxDown = time.Second
	}
	if o.Settle <= 0 {
		o.Settle = 3 * time.Minute
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Run starts PostgreSQL, the simulator, Synapse and the bridge, runs the
// scenario and counts. An error means the scenario could not run; what
// it found is in Result.
func Run(ctx context.Context, opts Options) (res Result, err error) {
	opts.setDefaults()
	switch {
	case opts.Conversations < 1:
		return res, errors.New("crash: at least one conversation")
	case opts.Messages < 2*opts.Conversations:
		return res, fmt.Errorf("crash: %d messages do not give each of %d conversations one per direction", opts.Messages, opts.Conversations)
	case opts.Kills < 0:
		return res, errors.New("crash: negative kills")
	}
	res.Seed, res.Conversations = opts.Seed, opts.Conversations
	opts.Logf("crash: seed %d (set Options.Seed to replay): %d kills, %d messages, %d conversations, %.0f messages/s",
		opts.Seed, opts.Kills, opts.Messages, opts.Conversations, opts.Rate)
	start := time.Now()

	if opts.Dir == "" {
		if opts.Dir, err = os.MkdirTemp("", "sfb-crash-"); err != nil {
			return res, err
		}
		if opts.Keep {
			opts.Logf("crash: files in %s", opts.Dir)
		} else {
			defer os.RemoveAll(opts.Dir)
		}
	}
	env, err := startEnv(ctx, opts)
	if env != nil {
		defer env.close()
	}
	if err != nil {
		return res, err
	}
	convs, err := env.openConversations(ctx, opts.Conversations)
	if err != nil {
		return res, err
	}
	res.Setup = time.Since(start)
	opts.Logf("crash: %d conversations open after %s", len(convs), res.Setup.Round(time.Millisecond))

	flowStart := time.Now()
	kills, err := env.flow(ctx, opts, convs)
	res.Kills = kills
	if err != nil {
		return res, fmt.Errorf("%w\n%s", err, env.st.Bridge.LogTail(30))
	}
	if err := env.settle(ctx, opts, convs); err != nil {
		opts.Logf("crash: %v", err)
	}
	marks, err := env.readMarks()
	if err != nil {
		opts.Logf("crash: read the bridge's accepted marks: %v", err)
	}
	env.count(ctx, convs, marks, &res)
	res.Duration = time.Since(flowStart)
	res.DuplicateWindow = env.duplicateWindow(convs, marks)
	opts.Logf("crash: %s", res)
	return res, nil
}

// env is the running scenario: database, simulator, homeserver and bridge.
type env struct {
	pg      *pgtest.Server
	sim     *sim.Server
	simHTTP *httptest.Server
	simLog  *os.File
	st      *stack.Stack
	// killedAt are the times of the kills, written by flow only.
	killedAt []time.Time
}

func startEnv(ctx context.Context, opts Options) (*env, error) {
	e := &env{}
	var err error
	e.pg, err = pgtest.Launch(ctx, pgtest.Options{})
	if err != nil {
		return e, fmt.Errorf("start PostgreSQL: %w", err)
	}
	dsn, err := e.pg.CreateDatabaseContext(ctx, "sfb_crash")
	if err != nil {
		return e, fmt.Errorf("create the bridge database: %w", err)
	}
	if e.simLog, err = os.Create(filepath.Join(opts.Dir, "sim.log")); err != nil {
		return e, err
	}
	e.sim, err = sim.New(sim.Options{
		Logger: zerolog.New(e.simLog).With().Timestamp().Logger(),
		// Short long-polls, as in the e2e tests: a restarted bridge's
		// event channel is back quickly.
		EventWait: 5 * time.Second,
	})
	if err != nil {
		return e, fmt.Errorf("create the simulator: %w", err)
	}
	e.simHTTP = httptest.NewServer(e.sim.Handler())
	e.sim.SetBaseURL(e.simHTTP.URL)
	e.st, err = stack.Start(ctx, stack.Options{
		Dir:          opts.Dir,
		RepoRoot:     opts.RepoRoot,
		BridgeBinary: opts.BridgeBinary,
		Race:         opts.Race,
		SynapseVenv:  opts.SynapseVenv,
		DatabaseURI:  dsn,
		DiscoveryURL: e.sim.DiscoveryURL(),
	})
	if err != nil {
		return e, err
	}
	return e, nil
}

func (e *env) close() {
	if e.st != nil {
		_ = e.st.Close()
	}
	if e.simHTTP != nil {
		e.simHTTP.Close()
	}
	if e.sim != nil {
		_ = e.sim.Close()
	}
	if e.simLog != nil {
		_ = e.simLog.Close()
	}
	if e.pg != nil {
		_ = e.pg.Stop()
	}
}

// conversation is one migrated user and the SfB colleague they chat with.
type conversation struct {
	n     int
	self  sim.User
	peer  sim.User
	mx    *mautrix.Client
	room  id.RoomID
	ghost id.UserID
	// sent per direction, written by the direction's sender only and
	// read after it ended.
	sentS2M, sentM2S int
	// m2sEvents maps the Matrix events of the messages to SfB to their
	// sequence numbers; written by the sender only.
	m2sEvents map[id.EventID]int
}

func (e *env) openConversations(ctx context.Context, n int) ([]*conversation, error) {
	convs := make([]*conversation, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range convs {
		wg.Go(func() { convs[i], errs[i] = e.openConversation(ctx, i) })
	}
	wg.Wait()
	return convs, errors.Join(errs...)
}

// openConversation signs the user in through the provisioning API, has
// the colleague write first so that the bridge creates the portal, and
// joins the user to it.
func (e *env) openConversation(ctx context.Context, n int) (*conversation, error) {
	name := fmt.Sprintf("crash%02d", n)
	password := fmt.Sprintf("%s-sfb-password", name)
	c := &conversation{
		n:    n,
		self: sim.User{URI: sfb.URI("sip:" + name + "@contoso.com"), DisplayName: "Crash " + name, Password: password},
		peer: sim.User{URI: sfb.URI("sip:" + name + ".peer@contoso.com"), DisplayName: "Peer of " + name, Password: "unused"},
	}
	for _, u := range []sim.User{c.self, c.peer} {
		if err := e.sim.AddUser(u); err != nil {
			return nil, err
		}
	}
	acct, err := e.st.HS.RegisterUser(ctx, name, name+"-matrix-password", false)
	if err != nil {
		return nil, err
	}
	if c.mx, err = mautrix.NewClient(e.st.HS.URL, acct.UserID, acct.AccessToken); err != nil {
		return nil, err
	}
	c.mx.DeviceID = acct.DeviceID
	if _, err := e.st.ProvisionLogin(ctx, acct.UserID, c.self.URI.Address(), password); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c.ghost = e.st.GhostID(c.peer.URI.Address())
	if err := e.sim.SendMessage(ctx, c.peer.URI, c.self.URI, sfb.Message{Text: "hello " + name}); err != nil {
		return nil, err
	}
	if c.room, err = waitPortalInvite(ctx, c.mx); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if _, err := c.mx.JoinRoomByID(ctx, c.room); err != nil {
		return nil, fmt.Errorf("%s: join the portal: %w", name, err)
	}
	return c, nil
}

// waitPortalInvite syncs until the user is invited to a room that is not
// a space (the bridge may invite to a personal space too).
func waitPortalInvite(ctx context.Context, mx *mautrix.Client) (id.RoomID, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	since := ""
	for {
		resp, err := mx.SyncRequest(ctx, 5000, since, "", false, "")
		if err != nil {
			return "", fmt.Errorf("wait for the portal invite: %w", err)
		}
		since = resp.NextBatch
		for roomID, room := range resp.Rooms.Invite {
			space := false
			for _, evt := range room.State.Events {
				if evt.Type == event.StateCreate {
					_ = evt.Content.ParseRaw(evt.Type)
					space = evt.Content.AsCreate().Type == event.RoomTypeSpace
				}
			}
			if !space {
				return roomID, nil
			}
		}
	}
}

func s2mText(conv, seq int) string { return fmt.Sprintf("s2m %02d %05d", conv, seq) }
func m2sText(conv, seq int) string { return fmt.Sprintf("m2s %02d %05d", conv, seq) }

// endSeq is the sequence number of the sentinel that closes a direction.
const endSeq = 99999

// flow sends the messages, paced, from every conversation in both
// directions, while it kills the bridge when the number of messages sent
// reaches each of opts.Kills random positions; then it sends each
// direction's sentinel.
func (e *env) flow(ctx context.Context, opts Options, convs []*conversation) (kills int, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rng := rand.New(rand.NewPCG(opts.Seed, 0x5fb))
	positions := make([]int64, opts.Kills)
	for i := range positions {
		positions[i] = 1 + rng.Int64N(int64(opts.Messages))
	}
	slices.Sort(positions)

	senders := 2 * len(convs)
	interval := time.Duration(float64(senders) / opts.Rate * float64(time.Second))
	var sent atomic.Int64
	var wg sync.WaitGroup
	for i, c := range convs {
		s2m := opts.Messages / senders
		if i < (opts.Messages%senders+1)/2 {
			s2m++
		}
		m2s := opts.Messages / senders
		if i < (opts.Messages%senders)/2 {
			m2s++
		}
		s2mSeed, m2sSeed := rng.Uint64(), rng.Uint64()
		wg.Go(func() {
			c.sentS2M = e.send(ctx, cancel, s2m, interval, s2mSeed, &sent, func(seq int) error {
				return e.sim.SendMessage(ctx, c.peer.URI, c.self.URI, sfb.Message{Text: s2mText(c.n, seq)})
			})
		})
		wg.Go(func() {
			c.m2sEvents = map[id.EventID]int{}
			c.sentM2S = e.send(ctx, cancel, m2s, interval, m2sSeed, &sent, func(seq int) error {
				resp, err := c.mx.SendText(ctx, c.room, m2sText(c.n, seq))
				if err == nil {
					c.m2sEvents[resp.EventID] = seq
				}
				return err
			})
		})
	}

	for _, pos := range positions {
		for sent.Load() < pos && ctx.Err() == nil {
			ctxtime.Sleep(ctx, 10*time.Millisecond)
		}
		ctxtime.Sleep(ctx, time.Duration(rng.Int64N(int64(300*time.Millisecond))))
		if ctx.Err() != nil {
			break
		}
		if err := e.st.Bridge.Kill(); err != nil {
			cancel(fmt.Errorf("kill the bridge: %w", err))
			break
		}
		e.killedAt = append(e.killedAt, time.Now())
		kills++
		down := time.Duration(rng.Int64N(int64(opts.MaxDown)))
		opts.Logf("crash: kill %d/%d after %d messages, down for %s", kills, opts.Kills, sent.Load(), down.Round(time.Millisecond))
		ctxtime.Sleep(ctx, down)
		if err := e.st.Bridge.Start(ctx); err != nil {
			cancel(fmt.Errorf("restart the bridge after kill %d: %w", kills, err))
			break
		}
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return kills, err
	}
	opts.Logf("crash: %d messages sent, %d kills; sending the sentinels", sent.Load(), kills)
	for _, c := range convs {
		if err := e.sim.SendMessage(ctx, c.peer.URI, c.self.URI, sfb.Message{Text: s2mText(c.n, endSeq)}); err != nil {
			return kills, fmt.Errorf("send the SfB sentinel: %w", err)
		}
		if _, err := c.mx.SendText(ctx, c.room, m2sText(c.n, endSeq)); err != nil {
			return kills, fmt.Errorf("send the Matrix sentinel: %w", err)
		}
	}
	return kills, nil
}

// send calls sendOne for 1..n, interval apart with jitter, and returns how
// many were sent. A message the sending side refuses (the simulator, the
// homeserver; neither is killed) is tried again a few times before the
// whole flow is cancelled.
func (e *env) send(ctx context.Context, cancel context.CancelCauseFunc, n int, interval time.Duration, seed uint64, sent *atomic.Int64, sendOne func(seq int) error) int {
	jitter := rand.New(rand.NewPCG(seed, 1))
	for seq := 1; seq <= n; seq++ {
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			if err = sendOne(seq); err == nil || ctx.Err() != nil {
				break
			}
			ctxtime.Sleep(ctx, 200*time.Millisecond)
		}
		if err != nil {
			cancel(fmt.Errorf("send message %d: %w", seq, err))
			return seq - 1
		}
		sent.Add(1)
		ctxtime.Sleep(ctx, interval/2+time.Duration(jitter.Int64N(int64(interval)+1)))
	}
	return n
}

// settle waits until every sentinel arrived. Each direction of a
// conversation keeps its order, so a copy of an earlier message arrives
// before its sentinel.
func (e *env) settle(ctx context.Context, opts Options, convs []*conversation) error {
	ctx, cancel := context.WithTimeout(ctx, opts.Settle)
	defer cancel()
	pending := slices.Clone(convs)
	for len(pending) > 0 {
		pending = slices.DeleteFunc(pending, func(c *conversation) bool {
			s2m, err := e.matrixSeqs(ctx, c)
			return err == nil && slices.Contains(s2m, endSeq) && slices.Contains(e.sfbSeqs(c), endSeq)
		})
		if len(pending) == 0 {
			return nil
		}
		if !ctxtime.Sleep(ctx, time.Second) {
			return fmt.Errorf("%d conversations still incomplete after %s", len(pending), opts.Settle)
		}
	}
	return nil
}

// count tallies what arrived on both sides.
func (e *env) count(ctx context.Context, convs []*conversation, marks map[id.EventID][]time.Time, res *Result) {
	for _, c := range convs {
		s2m, err := e.matrixSeqs(ctx, c)
		if err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("conversation %02d: read the Matrix room: %v", c.n, err))
		}
		d, found := tally(c.sentS2M, s2m)
		add(&res.SfBToMatrix, &res.Problems, fmt.Sprintf("SfB->Matrix %02d", c.n), d, found)
		arrivals := e.sfbArrivals(c)
		repeats := windowRepeats(arrivals, c.marksBySeq(marks), e.killedAt)
		var m2s []int
		for i, a := range arrivals {
			if !repeats[i] {
				m2s = append(m2s, a.seq)
			}
		}
		d, found = tally(c.sentM2S, m2s)
		d.Repeated = len(repeats)
		d.Received += d.Repeated
		add(&res.MatrixToSfB, &res.Problems, fmt.Sprintf("Matrix->SfB %02d", c.n), d, found)
	}
}

// arrival is one copy of a Matrix message that SfB received.
type arrival struct {
	seq int
	at  time.Time
}

// windowRepeats returns the indexes of the arrivals that are repeats by
// design: the copy right after the first copy of the same message, with a
// kill of the bridge between the two and no accepted mark of the message
// (marks, by sequence number) from the first copy to the kill, so that the
// restarted bridge could not know that SfB had it. Any other copy, a third
// one too, is a double.
func windowRepeats(arrivals []arrival, marks map[int][]time.Time, kills []time.Time) map[int]bool {
	repeats := map[int]bool{}
	copies := map[int]int{}
	for i, a := range arrivals {
		copies[a.seq]++
		if copies[a.seq] != 2 || arrivals[i-1].seq != a.seq {
			continue
		}
		first := arrivals[i-1].at
		k := slices.IndexFunc(kills, func(k time.Time) bool { return k.After(first) && k.Before(a.at) })
		if k >= 0 && !slices.ContainsFunc(marks[a.seq], func(m time.Time) bool { return !m.Before(first) && m.Before(kills[k]) }) {
			repeats[i] = true
		}
	}
	return repeats
}

// markedAccepted is the bridge's log line written once an outbox entry is
// marked accepted by SfB (bridge/outbox.go), at debug level: from then on
// a restarted bridge asks SfB about the message instead of sending it
// again.
const markedAccepted = "Matrix message taken by SfB and marked accepted"

// readMarks returns, per Matrix event, the times of the bridge's log lines
// of its accepted marks, from the logs of every run of the bridge.
func (e *env) readMarks() (map[id.EventID][]time.Time, error) {
	// The bridge starts a new log at each start and keeps the old ones
	// beside it, named bridge-<time>.log.
	logPath := e.st.Bridge.LogPath
	logs, err := filepath.Glob(strings.TrimSuffix(logPath, ".log") + "-*.log")
	if err != nil {
		return nil, err
	}
	marked := map[id.EventID][]time.Time{}
	for _, path := range append(logs, logPath) {
		if err := readMarks(path, marked); err != nil {
			return marked, err
		}
	}
	for _, times := range marked {
		slices.SortFunc(times, time.Time.Compare)
	}
	return marked, nil
}

// marksBySeq returns the accepted marks of the conversation's Matrix
// messages by sequence number.
func (c *conversation) marksBySeq(marks map[id.EventID][]time.Time) map[int][]time.Time {
	bySeq := map[int][]time.Time{}
	for eventID, seq := range c.m2sEvents {
		bySeq[seq] = marks[eventID]
	}
	return bySeq
}

// duplicateWindow measures, for each Matrix message that reached SfB, the
// time from the simulator recording it to the bridge's log line of its
// first accepted mark after that, from the copy that mark is for (the
// last one before it). Both clocks are this machine's.
func (e *env) duplicateWindow(convs []*conversation, marks map[id.EventID][]time.Time) Window {
	var windows []time.Duration
	for _, c := range convs {
		copies := map[int][]time.Time{}
		for _, a := range e.sfbArrivals(c) {
			copies[a.seq] = append(copies[a.seq], a.at)
		}
		for seq, times := range c.marksBySeq(marks) {
			if d, ok := markDelay(copies[seq], times); ok {
				windows = append(windows, d)
			}
		}
	}
	return newWindow(windows)
}

// markDelay is the time from the copy an accepted mark is for (the last
// copy before the first mark after the first copy) to that mark.
func markDelay(copies, marks []time.Time) (time.Duration, bool) {
	if len(copies) == 0 {
		return 0, false
	}
	i := slices.IndexFunc(marks, func(m time.Time) bool { return !m.Before(copies[0]) })
	if i < 0 {
		return 0, false
	}
	var from time.Time
	for _, c := range copies {
		if !c.After(marks[i]) {
			from = c
		}
	}
	return marks[i].Sub(from), true
}

// readMarks adds the times of the mark log lines in the log at path.
func readMarks(path string, marked map[id.EventID][]time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for scanner.Scan() {
		line := scanner.Bytes()
		if !bytes.Contains(line, []byte(markedAccepted)) {
			continue
		}
		var entry struct {
			Message string     `json:"message"`
			EventID id.EventID `json:"event_id"`
			Time    time.Time  `json:"time"`
		}
		if json.Unmarshal(line, &entry) == nil && entry.Message == markedAccepted {
			marked[entry.EventID] = append(marked[entry.EventID], entry.Time)
		}
	}
	return scanner.Err()
}

// matrixSeqs returns the sequence numbers of the scenario's messages from
// the colleague's ghost in the portal, in timeline order.
func (e *env) matrixSeqs(ctx context.Context, c *conversation) ([]int, error) {
	var seqs []int
	from := ""
	for {
		resp, err := c.mx.Messages(ctx, c.room, from, "", mautrix.DirectionForward, nil, 1000)
		if err != nil {
			return seqs, err
		}
		for _, evt := range resp.Chunk {
			if evt.Type != event.EventMessage || evt.Sender != c.ghost {
				continue
			}
			if err := evt.Content.ParseRaw(evt.Type); err != nil {
				continue
			}
			if seq, ok := parseSeq(evt.Content.AsMessage().Body, "s2m", c.n); ok {
				seqs = append(seqs, seq)
			}
		}
		if len(resp.Chunk) == 0 || resp.End == "" || resp.End == from {
			return seqs, nil
		}
		from = resp.End
	}
}

// sfbSeqs returns the sequence numbers of the scenario's messages the
// colleague received from the user, in order.
func (e *env) sfbSeqs(c *conversation) []int {
	var seqs []int
	for _, a := range e.sfbArrivals(c) {
		seqs = append(seqs, a.seq)
	}
	return seqs
}

// sfbArrivals returns the scenario's messages the colleague received from
// the user, in order.
func (e *env) sfbArrivals(c *conversation) []arrival {
	var arrivals []arrival
	for _, r := range e.sim.Received(c.peer.URI) {
		if r.From != c.self.URI {
			continue
		}
		if seq, ok := parseSeq(r.Message.Text, "m2s", c.n); ok {
			arrivals = append(arrivals, arrival{seq: seq, at: r.Time})
		}
	}
	return arrivals
}

func parseSeq(body, dir string, conv int) (int, bool) {
	var gotDir string
	var gotConv, seq int
	if _, err := fmt.Sscanf(strings.TrimSpace(body), "%s %d %d", &gotDir, &gotConv, &seq); err != nil {
		return 0, false
	}
	return seq, gotDir == dir && gotConv == conv
}

// tally counts one direction of one conversation: sent messages numbered
// 1..sent, got the numbers that arrived in arrival order (the sentinel
// ignored). It returns the counts and a description of each problem.
func tally(sent int, got []int) (Direction, []string) {
	d := Direction{Sent: sent}
	var problems []string
	seen := map[int]bool{}
	highest := 0
	for _, seq := range got {
		if seq == endSeq {
			continue
		}
		d.Received++
		switch {
		case seq < 1 || seq > sent:
			problems = append(problems, fmt.Sprintf("unexpected message %d", seq))
		case seen[seq]:
			d.Doubled++
			problems = append(problems, fmt.Sprintf("message %d doubled", seq))
		case seq < highest:
			seen[seq] = true
			d.OutOfOrder++
			problems = append(problems, fmt.Sprintf("message %d after %d", seq, highest))
		default:
			seen[seq] = true
			highest = seq
		}
	}
	for seq := 1; seq <= sent; seq++ {
		if !seen[seq] {
			d.Lost++
			problems = append(problems, fmt.Sprintf("message %d lost", seq))
		}
	}
	return d, problems
}

// maxProblems bounds Result.Problems.
const maxProblems = 20

func add(total *Direction, problems *[]string, what string, d Direction, found []string) {
	total.Sent += d.Sent
	total.Received += d.Received
	total.Lost += d.Lost
	total.Doubled += d.Doubled
	total.OutOfOrder += d.OutOfOrder
	total.Repeated += d.Repeated
	for _, p := range found {
		if len(*problems) < maxProblems {
			*problems = append(*problems, what+": "+p)
		}
	}
}
