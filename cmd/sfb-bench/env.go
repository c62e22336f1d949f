package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/e2e/stack"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pgtest"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// env is one running set of homeserver, simulator and bridge, and the
// people and rooms the message scenarios use.
type env struct {
	opts options
	out  io.Writer
	dir  string

	pg      *pgtest.Server
	sim     *sim.Server
	simHTTP *http.Server
	// sipLn is the simulator's SIP listener when the bridge is on SIP.
	sipLn   net.Listener
	simReqs requestCounter
	st      *stack.Stack
	// http is shared by every client the bench drives, with enough idle
	// connections for 100 concurrent senders on each side.
	http *http.Client

	// users are the migrated employees: a Matrix account that syncs and an
	// SfB login through the bridge. convs are conversations, each between
	// one of them and an SfB colleague, with the portal room the bridge
	// made for it and a baseline room with the same members.
	users []*migrated
	convs []*conversation

	// route is where arrivals of the current run go; presence where the
	// observers' syncs report ghosts' presence during a presence storm.
	route    atomic.Pointer[route]
	presence atomic.Pointer[presenceTracker]

	mu      sync.Mutex
	setup   map[string]id.RoomID // bodies of setup messages -> room seen in
	changed chan struct{}

	simSeen map[sfb.URI]int // messages of each colleague already polled
}

// route sends arrivals to a run's tracker: those seen by a syncing Matrix
// client, or those the simulator recorded.
type route struct {
	t       *tracker
	fromSim bool
}

type migrated struct {
	acct   id.UserID
	client *mautrix.Client
	sfb    sim.User
	// seesPresence: the user's sync asks for presence (presence-storm's
	// observers); the message scenarios leave it out.
	seesPresence bool
}

type conversation struct {
	idx       int
	owner     *migrated
	colleague sim.User
	ghost     id.UserID
	// ghostClient acts as the colleague's ghost through the appservice
	// token: the raw appservice sender of the baseline.
	ghostClient *mautrix.Client
	portal      id.RoomID
	baseline    id.RoomID
}

const sfbDomain = "contoso.com"

func startEnv(ctx context.Context, opts options, out io.Writer) (e *env, err error) {
	e = &env{
		opts:    opts,
		out:     out,
		dir:     opts.dir,
		setup:   make(map[string]id.RoomID),
		changed: make(chan struct{}),
		simSeen: make(map[sfb.URI]int),
		http: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			MaxIdleConns:        1000,
			MaxIdleConnsPerHost: 500,
			IdleConnTimeout:     90 * time.Second,
		}},
	}
	defer func() {
		if err != nil {
			_ = e.close()
		}
	}()
	var dsn string
	if !opts.sqlite {
		if e.pg, err = pgtest.Launch(ctx, pgtest.Options{}); err != nil {
			return e, fmt.Errorf("start PostgreSQL: %w", err)
		}
		if dsn, err = e.pg.CreateDatabaseContext(ctx, "sfb_bench"); err != nil {
			return e, err
		}
	}
	simLog, err := os.Create(filepath.Join(e.dir, "sim.log"))
	if err != nil {
		return e, err
	}
	simOpts := sim.Options{
		Logger: zerolog.New(simLog).Level(zerolog.InfoLevel).With().Timestamp().Logger(),
		// Every message a colleague receives is kept for the matrix-to-sfb
		// count.
		ReceivedLimit:    1 << 20,
		EventAggregation: opts.simAggregation,
	}
	sipMode := opts.sipMode()
	if sipMode != "" {
		simOpts.SIP = sim.SIPOptions{FQDN: stack.SimFrontEnd, TrustedApplications: []string{stack.SimAppFQDN}}
	}
	e.sim, err = sim.New(simOpts)
	if err != nil {
		return e, fmt.Errorf("create simulator: %w", err)
	}
	var sipStack *stack.SIP
	if sipMode != "" {
		sipStack, e.sipLn, err = stack.ServeSIP(e.dir, e.sim, sipMode, func(err error) { fmt.Fprintf(simLog, "ServeSIP: %v\n", err) })
		if err != nil {
			return e, err
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return e, fmt.Errorf("listen for the simulator: %w", err)
	}
	e.simHTTP = &http.Server{Handler: e.simReqs.wrap(e.sim.Handler()), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.simHTTP.Serve(ln) }()
	e.sim.SetBaseURL("http://" + ln.Addr().String())

	network := map[string]any{}
	for k, v := range opts.network {
		network[k] = v
	}
	e.st, err = stack.Start(ctx, stack.Options{
		Dir:          e.dir,
		RepoRoot:     opts.repoRoot,
		BridgeBinary: opts.bridgeBin,
		Race:         opts.race,
		DatabaseURI:  dsn,
		DiscoveryURL: e.sim.DiscoveryURL(),
		Network:      network,
		SIP:          sipStack,
		LogLevel:     opts.logLevel,
		// The CPU profile comes from the bridge's own pprof endpoints,
		// behind the provisioning secret.
		Config: map[string]any{"provisioning.debug_endpoints": true},
		// Matrix accounts for thousands of logins: cheap password hashes.
		SynapseConfig: map[string]any{"bcrypt_rounds": 4},
	})
	if err != nil {
		return e, err
	}
	e.st.ProvisioningClient = e.http
	return e, nil
}

func (e *env) close() error {
	var errs []error
	if e.st != nil {
		errs = append(errs, e.st.Close())
	}
	if e.simHTTP != nil {
		errs = append(errs, e.simHTTP.Close())
	}
	if e.sipLn != nil {
		_ = e.sipLn.Close()
	}
	if e.sim != nil {
		errs = append(errs, e.sim.Close())
	}
	if e.pg != nil {
		errs = append(errs, e.pg.Stop())
	}
	return errors.Join(errs...)
}

// restartBridge stops the bridge and starts it again on a new, empty
// database with the options in changes (dotted paths). When it does not
// start so, it is started again as it was.
func (e *env) restartBridge(ctx context.Context, dbName string, changes map[string]any) error {
	before, err := os.ReadFile(e.st.ConfigPath)
	if err != nil {
		return err
	}
	if e.pg != nil {
		dsn, err := e.pg.CreateDatabaseContext(ctx, dbName)
		if err != nil {
			return err
		}
		changes["database.uri"] = dsn
	} else {
		changes["database.uri"] = "file:" + filepath.Join(e.dir, dbName+".db") + "?_txlock=immediate"
	}
	if err := e.st.Bridge.Stop(); err != nil {
		return err
	}
	if err := e.st.Reconfigure(changes); err != nil {
		return err
	}
	err = e.st.Bridge.Start(ctx)
	if err == nil {
		return nil
	}
	if werr := os.WriteFile(e.st.ConfigPath, before, 0o600); werr != nil {
		return errors.Join(err, werr)
	}
	return errors.Join(err, e.st.Bridge.Start(ctx))
}

// newMigrated registers Matrix user bench-<kind><i>, SfB user
// sip:bench.<kind><i>@contoso.com, signs the one in to the other through
// the provisioning API and starts the Matrix user's sync.
func (e *env) newMigrated(ctx context.Context, kind string, i int, seesPresence bool) (*migrated, error) {
	name := fmt.Sprintf("bench-%s%d", kind, i)
	u := &migrated{seesPresence: seesPresence, sfb: sim.User{
		URI:         sfb.URI(fmt.Sprintf("sip:bench.%s%d@%s", kind, i, sfbDomain)),
		DisplayName: fmt.Sprintf("Bench User %s%d", kind, i),
		Password:    randomHex(8),
	}}
	if err := e.sim.AddUser(u.sfb); err != nil {
		return nil, err
	}
	acct, err := e.st.HS.RegisterUser(ctx, name, randomHex(8), false)
	if err != nil {
		return nil, err
	}
	u.acct = acct.UserID
	if u.client, err = e.client(acct.UserID, acct.AccessToken); err != nil {
		return nil, err
	}
	u.client.DeviceID = acct.DeviceID
	u.client.Syncer = &syncer{e: e, u: u}
	go func() {
		for ctx.Err() == nil {
			if err := u.client.SyncWithContext(ctx); err != nil && ctx.Err() == nil {
				fmt.Fprintf(e.out, "%s: sync failed: %v; again\n", u.acct, err)
				ctxtime.Sleep(ctx, time.Second)
			}
		}
	}()
	if _, err := e.st.ProvisionLogin(ctx, u.acct, u.sfb.URI.Address(), u.sfb.Password); err != nil {
		return nil, fmt.Errorf("sign %s in to SfB: %w", u.acct, err)
	}
	return u, nil
}

func (e *env) client(user id.UserID, token string) (*mautrix.Client, error) {
	c, err := mautrix.NewClient(e.st.HS.URL, user, token)
	if err != nil {
		return nil, err
	}
	c.Client = e.http
	return c, nil
}

// conversations returns n conversations, creating what is missing: the
// migrated users (at most opts.logins, shared round robin), the
// colleagues, the portals (the colleague writes first) and the baseline
// rooms.
func (e *env) conversations(ctx context.Context, n int) ([]*conversation, error) {
	for len(e.users) < min(n, e.opts.logins) {
		u, err := e.newMigrated(ctx, "u", len(e.users), false)
		if err != nil {
			return nil, err
		}
		e.users = append(e.users, u)
	}
	if len(e.convs) >= n {
		return e.convs[:n], nil
	}
	start := time.Now()
	fresh := make([]*conversation, n-len(e.convs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range fresh {
		idx := len(e.convs) + i
		g.Go(func() error {
			c, err := e.newConversation(gctx, idx, e.users[idx%len(e.users)])
			fresh[i] = c
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	e.convs = append(e.convs, fresh...)
	fmt.Fprintf(e.out, "%d conversations ready (%d migrated users) in %s\n", n, len(e.users), time.Since(start).Round(time.Millisecond))
	return e.convs, nil
}

func (e *env) newConversation(ctx context.Context, idx int, owner *migrated) (*conversation, error) {
	c := &conversation{idx: idx, owner: owner, colleague: sim.User{
		URI:         sfb.URI(fmt.Sprintf("sip:bench.c%d@%s", idx, sfbDomain)),
		DisplayName: fmt.Sprintf("Colleague %d", idx),
		Password:    randomHex(8),
	}}
	if err := e.sim.AddUser(c.colleague); err != nil {
		return nil, err
	}
	c.ghost = e.st.GhostID(c.colleague.URI.Address())
	first := fmt.Sprintf("setup portal %d", idx)
	if err := e.sim.SendMessage(ctx, c.colleague.URI, owner.sfb.URI, sfb.Message{Text: first}); err != nil {
		return nil, err
	}
	var err error
	if c.portal, err = e.waitSetup(ctx, first); err != nil {
		return nil, fmt.Errorf("conversation %d: the portal: %w", idx, err)
	}
	if c.ghostClient, err = e.client(c.ghost, e.st.ASToken); err != nil {
		return nil, err
	}
	c.ghostClient.SetAppServiceUserID = true
	if c.baseline, err = e.baselineRoom(ctx, c); err != nil {
		return nil, fmt.Errorf("conversation %d: the baseline room: %w", idx, err)
	}
	return c, nil
}

// baselineRoom creates, as the colleague's ghost, a room with the members
// of the portal (the migrated user, the ghost, the bridge bot if it is
// there), where the baseline's raw appservice sends go.
func (e *env) baselineRoom(ctx context.Context, c *conversation) (id.RoomID, error) {
	members, err := c.owner.client.JoinedMembers(ctx, c.portal)
	if err != nil {
		return "", fmt.Errorf("members of the portal: %w", err)
	}
	// A public room lets every member join without an invitation, which
	// the bridge would otherwise see and act on.
	resp, err := c.ghostClient.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: fmt.Sprintf("baseline %d", c.idx)})
	if err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	for member := range members.Joined {
		switch member {
		case c.ghost:
		case c.owner.acct:
			if _, err := c.owner.client.JoinRoomByID(ctx, resp.RoomID); err != nil {
				return "", fmt.Errorf("join %s: %w", member, err)
			}
		default:
			mc, err := e.client(member, e.st.ASToken)
			if err != nil {
				return "", err
			}
			mc.SetAppServiceUserID = true
			if _, err := mc.JoinRoomByID(ctx, resp.RoomID); err != nil {
				return "", fmt.Errorf("join %s: %w", member, err)
			}
		}
	}
	// The migrated user sees the room before the runs start.
	text := fmt.Sprintf("setup baseline %d", c.idx)
	if _, err := c.ghostClient.SendText(ctx, resp.RoomID, text); err != nil {
		return "", err
	}
	if _, err := e.waitSetup(ctx, text); err != nil {
		return "", err
	}
	return resp.RoomID, nil
}

// waitSetup waits until a Matrix client saw a message with body text and
// returns its room.
func (e *env) waitSetup(ctx context.Context, text string) (id.RoomID, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		e.mu.Lock()
		room, ok := e.setup[text]
		changed := e.changed
		e.mu.Unlock()
		if ok {
			return room, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%q never reached Matrix: %w", text, ctx.Err())
		case <-changed:
		}
	}
}

func (e *env) onMatrixMessage(room id.RoomID, body string, at time.Time) {
	if strings.HasPrefix(body, "setup ") {
		e.mu.Lock()
		e.setup[body] = room
		close(e.changed)
		e.changed = make(chan struct{})
		e.mu.Unlock()
		return
	}
	if r := e.route.Load(); r != nil && !r.fromSim {
		r.t.arrive(body, at)
	}
}

// pollSim hands what the colleagues received to the current run while
// it counts arrivals at the simulator; the simulator's own timestamp is
// the arrival time.
func (e *env) pollSim(ctx context.Context) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r := e.route.Load()
		if r == nil || !r.fromSim {
			continue
		}
		for _, c := range e.convs {
			got := e.sim.Received(c.colleague.URI)
			for _, m := range got[min(e.simSeen[c.colleague.URI], len(got)):] {
				r.t.arrive(m.Message.Text, m.Time)
			}
			e.simSeen[c.colleague.URI] = len(got)
		}
	}
}

// syncer records the messages a migrated user's sync delivers and joins
// every room the user is invited to.
type syncer struct {
	e *env
	u *migrated
}

func (s *syncer) ProcessResponse(ctx context.Context, resp *mautrix.RespSync, _ string) error {
	now := time.Now()
	for room, joined := range resp.Rooms.Join {
		for _, evt := range joined.Timeline.Events {
			if evt.Type != event.EventMessage {
				continue
			}
			if err := evt.Content.ParseRaw(evt.Type); err != nil {
				continue
			}
			s.e.onMatrixMessage(room, evt.Content.AsMessage().Body, now)
		}
	}
	if s.u.seesPresence {
		for _, evt := range resp.Presence.Events {
			if err := evt.Content.ParseRaw(evt.Type); err != nil {
				continue
			}
			if p := evt.Content.AsPresence(); p != nil {
				s.e.onMatrixPresence(evt.Sender, p, now)
			}
		}
	}
	for room := range resp.Rooms.Invite {
		go func() {
			if _, err := s.u.client.JoinRoomByID(ctx, room); err != nil && ctx.Err() == nil {
				fmt.Fprintf(s.e.out, "%s: join %s: %v\n", s.u.acct, room, err)
			}
		}()
	}
	return nil
}

func (s *syncer) OnFailedSync(_ *mautrix.RespSync, err error) (time.Duration, error) {
	if errors.Is(err, context.Canceled) {
		return 0, err
	}
	return 200 * time.Millisecond, nil
}

// GetFilterJSON asks for long timelines, so that a burst between two syncs
// is not cut short, and leaves out account data, and presence unless the
// user watches it.
func (s *syncer) GetFilterJSON(id.UserID) *mautrix.Filter {
	f := &mautrix.Filter{
		Room:        &mautrix.RoomFilter{Timeline: &mautrix.FilterPart{Limit: 1000}},
		AccountData: &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
	}
	if !s.u.seesPresence {
		f.Presence = &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}}
	}
	return f
}

// requestKind is what a request to the simulator's UCWA side is for.
type requestKind int

const (
	reqEvents          requestKind = iota // the event channel's pending GETs
	reqActivity                           // reportMyActivity
	reqBatch                              // UCWA batches (their parts are BatchedRequests)
	reqSubscriptions                      // presence subscriptions: create, extend, add, memberships
	reqContactPresence                    // a contact's presence or note, fetched alone
	reqOther
	numRequestKinds
)

var requestKindNames = [numRequestKinds]string{"events", "reportMyActivity", "batch", "presenceSubscriptions", "contactPresence", "other"}

func classifyRequest(path string) requestKind {
	switch {
	case strings.Contains(path, "/events"):
		return reqEvents
	case strings.HasSuffix(path, "/reportMyActivity"):
		return reqActivity
	case strings.HasSuffix(path, "/batch"):
		return reqBatch
	case strings.Contains(path, "/presenceSubscription"):
		return reqSubscriptions
	case strings.Contains(path, "/people/") && (strings.HasSuffix(path, "/presence") || strings.HasSuffix(path, "/note")):
		return reqContactPresence
	}
	return reqOther
}

// requestCounter counts the requests the simulator answers, by kind.
type requestCounter struct {
	n [numRequestKinds]atomic.Int64
}

// requestCounts is a reading of a requestCounter.
type requestCounts [numRequestKinds]int64

func (rc *requestCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/sim/") {
			rc.n[classifyRequest(r.URL.Path)].Add(1)
		}
		h.ServeHTTP(w, r)
	})
}

func (rc *requestCounter) read() requestCounts {
	var c requestCounts
	for k := range c {
		c[k] = rc.n[k].Load()
	}
	return c
}

// perSecond is what happened between before and c, per second of d, by
// kind name.
func (c requestCounts) perSecond(before requestCounts, d time.Duration) map[string]float64 {
	out := make(map[string]float64, numRequestKinds)
	for k := range c {
		out[requestKindNames[k]] = float64(c[k]-before[k]) / d.Seconds()
	}
	return out
}
