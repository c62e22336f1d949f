// Command sfb-demo shows the bridge working end to end on one machine, with
// nothing but loopback: a throwaway Synapse, the Skype for Business
// simulator with a scripted colleague, and the bridge (on SQLite). It
// registers a Matrix user "demo", signs it in to SfB through the bridge's
// provisioning API (as a migration portal would), and prints the
// conversation as it crosses the bridge in both directions.
//
// It always runs one scripted round trip first (the colleague greets, the
// demo user answers from Matrix, the colleague quotes the answer back);
// then log in with any Matrix client at the printed address to chat with
// the colleague yourself. -once exits after the round trip, non-zero if it
// failed. -sip per_user or -sip trusted puts the bridge on the SIP transport
// instead of UCWA: the simulator then also listens for SIP over TLS, with a
// certificate of a CA made for the run.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/e2e/stack"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

const (
	demoSfB      = sfb.URI("sip:demo@contoso.com")
	colleagueSfB = sfb.URI("sip:colleague@contoso.com")
	matrixReply  = "Hello from Matrix! This reply went through the bridge."
)

func main() {
	os.Exit(run())
}

type options struct {
	bridgeBin string
	port      int
	once      bool
	duration  time.Duration
	dir       string
	sipMode   string
}

func run() int {
	var opts options
	flag.StringVar(&opts.bridgeBin, "bridge", "", "prebuilt sfb-matrix-bridge binary (default: build ./cmd/sfb-matrix-bridge from the working directory)")
	flag.IntVar(&opts.port, "port", 8008, "loopback port for the homeserver's client API (0: any free port)")
	flag.BoolVar(&opts.once, "once", false, "exit after the scripted round trip SfB -> Matrix -> SfB -> Matrix (non-zero on failure) instead of staying up for a Matrix client")
	flag.DurationVar(&opts.duration, "duration", 0, "stop after this long (default: until Ctrl-C; with -once: 5m deadline)")
	flag.StringVar(&opts.dir, "dir", "", "keep configuration, databases and logs here (default: a temporary directory, removed at exit)")
	flag.StringVar(&opts.sipMode, "sip", "", "put the bridge on the SIP transport in this mode: "+sfb.SIPModePerUser+" or "+sfb.SIPModeTrusted+" (default: UCWA)")
	flag.Parse()
	if opts.once && opts.duration == 0 {
		opts.duration = 5 * time.Minute
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if opts.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.duration)
		defer cancel()
	}
	out := &printer{w: os.Stdout, start: time.Now()}
	if err := demo(ctx, opts, out); err != nil {
		out.say("FAILED: %v", err)
		return 1
	}
	return 0
}

func demo(ctx context.Context, opts options, out *printer) (err error) {
	if err := checkPort(opts.port); err != nil {
		return err
	}
	if opts.sipMode != "" && opts.sipMode != sfb.SIPModePerUser && opts.sipMode != sfb.SIPModeTrusted {
		return fmt.Errorf("-sip %q: want %s or %s", opts.sipMode, sfb.SIPModePerUser, sfb.SIPModeTrusted)
	}
	dir := opts.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "sfb-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}

	// The SfB side: the simulator with a scripted colleague who greets every
	// user that signs in and quotes back whatever it receives.
	simLog, err := os.Create(filepath.Join(dir, "sim.log"))
	if err != nil {
		return err
	}
	defer simLog.Close()
	sfbPassword := randomHex(8)
	simulator, err := sim.New(sim.Options{
		Users:     []sim.User{{URI: demoSfB, DisplayName: "Demo User", Password: sfbPassword}},
		Colleague: colleagueSfB,
		Logger:    zerolog.New(simLog).With().Timestamp().Logger(),
		SIP:       sim.SIPOptions{FQDN: stack.SimFrontEnd, TrustedApplications: []string{stack.SimAppFQDN}},
	})
	if err != nil {
		return fmt.Errorf("start simulator: %w", err)
	}
	defer simulator.Close()
	// The demo user is migrated: the bridge is their only SfB endpoint,
	// so while it is signed out, what the colleague sends them fails.
	if err := simulator.SetNativeClient(demoSfB, false); err != nil {
		return fmt.Errorf("sign out the demo user's SfB client: %w", err)
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the simulator: %w", err)
	}
	simServer := &http.Server{Handler: simulator.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = simServer.Serve(listener) }()
	defer simServer.Close()
	simulator.SetBaseURL("http://" + listener.Addr().String())
	out.say("SfB simulator at %s (colleague %s)", simulator.BaseURL(), colleagueSfB)
	var sipServer *stack.SIP
	if opts.sipMode != "" {
		sipServer, _, err = stack.ServeSIP(dir, simulator, opts.sipMode, func(err error) { out.say("SIP listener: %v", err) })
		if err != nil {
			return err
		}
		out.say("SfB simulator's SIP listener at %s (TLS, CA %s); the bridge is on SIP, %s", sipServer.Server, sipServer.PKI.CAFile, opts.sipMode)
	}

	out.say("starting Synapse and the bridge (the first run builds the bridge and may install Synapse)...")
	st, err := stack.Start(ctx, stack.Options{
		Dir:          dir,
		RepoRoot:     ".",
		BridgeBinary: opts.bridgeBin,
		SynapsePort:  opts.port,
		DiscoveryURL: simulator.DiscoveryURL(),
		SIP:          sipServer,
		// As docs/operator-guide.md sets it up: what the demo user
		// writes from their own SfB client appears as them in Matrix.
		DoublePuppet: true,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			fmt.Fprintf(os.Stderr, "\n%s\n", st.Bridge.LogTail(30))
		}
		_ = st.Close()
	}()
	out.say("Synapse at %s, bridge bot %s", st.HS.URL, st.Bot)

	password := randomHex(8)
	acct, err := st.HS.RegisterUser(ctx, "demo", password, false)
	if err != nil {
		return err
	}
	client, err := mautrix.NewClient(st.HS.URL, acct.UserID, acct.AccessToken)
	if err != nil {
		return err
	}
	client.DeviceID = acct.DeviceID
	watch := newMatrixWatch(client, st.Bot, out)
	go watch.run(ctx)

	out.say("signing %s in to SfB as %s through the provisioning API", acct.UserID, demoSfB.Address())
	if _, err := st.ProvisionLogin(ctx, acct.UserID, demoSfB.Address(), sfbPassword); err != nil {
		return err
	}
	out.say("signed in")

	go watchSfB(ctx, simulator, out)

	// Scripted round trip: the colleague's greeting reaches Matrix, the
	// Matrix user answers, the answer reaches SfB, the colleague's quote of
	// it comes back to Matrix.
	room, err := watch.waitGhostMessage(ctx, "", func(string) bool { return true })
	if err != nil {
		return fmt.Errorf("the colleague's greeting never reached Matrix: %w", err)
	}
	if _, err := client.SendText(ctx, room, matrixReply); err != nil {
		return fmt.Errorf("send the Matrix reply: %w", err)
	}
	if err := waitReceived(ctx, simulator, colleagueSfB, matrixReply); err != nil {
		return fmt.Errorf("the Matrix reply never reached SfB: %w", err)
	}
	if _, err := watch.waitGhostMessage(ctx, room, func(body string) bool { return strings.Contains(body, matrixReply) }); err != nil {
		return fmt.Errorf("the colleague's answer never reached Matrix: %w", err)
	}
	out.say("round trip complete: SfB -> Matrix -> SfB -> Matrix")
	if opts.once {
		return nil
	}
	fmt.Fprintf(out.w, `
  Chat with the SfB colleague from any Matrix client:
    homeserver  %s   (loopback only)
    user        %s
    password    %s
  Anything you send in the colleague's room reaches SfB, and the colleague
  answers. To write as the colleague yourself, use the SfB simulator's
  control API (docs/simulator.md), for example:
    %s
  Ctrl-C stops everything.

`, st.HS.URL, acct.UserID, password, newControlExample(simulator.BaseURL()).curl())
	<-ctx.Done()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		out.say("duration elapsed, stopping")
	} else {
		out.say("stopping")
	}
	return nil
}

// watchSfB prints what crosses the SfB side: what the colleague sends to
// the demo user (which the bridge receives) and what the demo user sends
// (which the bridge delivered from Matrix).
func watchSfB(ctx context.Context, s *sim.Server, out *printer) {
	seen := map[sfb.URI]int{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, to := range []sfb.URI{demoSfB, colleagueSfB} {
			msgs := s.Received(to)
			for _, m := range msgs[min(seen[to], len(msgs)):] {
				text := m.Message.Text
				if m.Message.HTML != "" {
					text += "   (HTML: " + m.Message.HTML + ")"
				}
				out.say("SfB     %s -> %s: %q", m.From.Address(), to.Address(), text)
			}
			seen[to] = len(msgs)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func waitReceived(ctx context.Context, s *sim.Server, to sfb.URI, text string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, m := range s.Received(to) {
			if m.Message.Text == text {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// matrixWatch syncs as the demo user, joins the rooms the bridge invites it
// to and prints what appears there.
type matrixWatch struct {
	client *mautrix.Client
	bot    id.UserID
	out    *printer

	mu      sync.Mutex
	names   map[id.UserID]string
	msgs    []ghostMessage
	changed chan struct{}
}

type ghostMessage struct {
	room id.RoomID
	body string
}

func newMatrixWatch(client *mautrix.Client, bot id.UserID, out *printer) *matrixWatch {
	w := &matrixWatch{client: client, bot: bot, out: out, names: map[id.UserID]string{}, changed: make(chan struct{})}
	syncer := client.Syncer.(*mautrix.DefaultSyncer)
	syncer.OnEventType(event.StateMember, w.onMember)
	syncer.OnEventType(event.EventMessage, w.onMessage)
	syncer.OnEventType(event.EphemeralEventTyping, w.onTyping)
	return w
}

func (w *matrixWatch) run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := w.client.SyncWithContext(ctx); err != nil && ctx.Err() == nil {
			w.out.say("Matrix  sync failed: %v; retrying", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (w *matrixWatch) onMember(ctx context.Context, evt *event.Event) {
	if evt.Mautrix.EventSource&event.SourceInvite == 0 || evt.GetStateKey() != w.client.UserID.String() {
		return
	}
	if evt.Content.AsMember().Membership != event.MembershipInvite {
		return
	}
	if _, err := w.client.JoinRoomByID(ctx, evt.RoomID); err != nil {
		w.out.say("Matrix  join %s failed: %v", evt.RoomID, err)
		return
	}
	var name event.RoomNameEventContent
	_ = w.client.StateEvent(ctx, evt.RoomID, event.StateRoomName, "", &name)
	kind := "room"
	var create event.CreateEventContent
	if err := w.client.StateEvent(ctx, evt.RoomID, event.StateCreate, "", &create); err == nil && create.Type == event.RoomTypeSpace {
		kind = "space"
	}
	label := string(evt.RoomID)
	if name.Name != "" {
		label = fmt.Sprintf("%q (%s)", name.Name, evt.RoomID)
	}
	w.out.say("Matrix  %s invited %s to the %s %s; joined", w.name(ctx, evt.Sender), w.client.UserID, kind, label)
}

func (w *matrixWatch) onMessage(ctx context.Context, evt *event.Event) {
	msg := evt.Content.AsMessage()
	if evt.Sender == w.bot {
		return
	}
	who := w.name(ctx, evt.Sender)
	if evt.Sender == w.client.UserID {
		who = "you (" + evt.Sender.String() + ")"
		if !w.isBridged(ctx, evt.RoomID) {
			// What a user types to the bridge bot may be their SfB
			// password (the login command asks for it).
			w.out.say("Matrix  %s wrote to the bridge bot (not shown: it may be a password)", who)
			return
		}
	}
	line := fmt.Sprintf("Matrix  %s: %q", who, msg.Body)
	if msg.FormattedBody != "" {
		line += "   (HTML: " + msg.FormattedBody + ")"
	}
	w.out.say("%s", line)
	if evt.Sender == w.client.UserID {
		return
	}
	w.mu.Lock()
	w.msgs = append(w.msgs, ghostMessage{room: evt.RoomID, body: msg.Body})
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

func (w *matrixWatch) onTyping(ctx context.Context, evt *event.Event) {
	for _, user := range evt.Content.AsTyping().UserIDs {
		if user != w.client.UserID {
			w.out.say("Matrix  %s is typing...", w.name(ctx, user))
		}
	}
}

// isBridged reports whether room has a member besides the demo user and
// the bridge bot (an SfB colleague's ghost). When the members cannot be
// read, it says no: better a line not shown than a password printed.
func (w *matrixWatch) isBridged(ctx context.Context, room id.RoomID) bool {
	members, err := w.client.JoinedMembers(ctx, room)
	if err != nil {
		return false
	}
	for user := range members.Joined {
		if user != w.client.UserID && user != w.bot {
			return true
		}
	}
	return false
}

// waitGhostMessage waits for a message from someone other than the demo
// user and the bot, in room (any room when empty), and returns its room.
func (w *matrixWatch) waitGhostMessage(ctx context.Context, room id.RoomID, match func(string) bool) (id.RoomID, error) {
	for {
		w.mu.Lock()
		for _, m := range w.msgs {
			if (room == "" || m.room == room) && match(m.body) {
				w.mu.Unlock()
				return m.room, nil
			}
		}
		changed := w.changed
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-changed:
		}
	}
}

func (w *matrixWatch) name(ctx context.Context, user id.UserID) string {
	w.mu.Lock()
	name, ok := w.names[user]
	w.mu.Unlock()
	if ok {
		return name
	}
	name = user.String()
	if resp, err := w.client.GetDisplayName(ctx, user); err == nil && resp.DisplayName != "" {
		name = fmt.Sprintf("%s (%s)", resp.DisplayName, user)
	}
	w.mu.Lock()
	w.names[user] = name
	w.mu.Unlock()
	return name
}

// printer writes timestamped lines from several goroutines.
type printer struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (p *printer) say(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%6.1fs  %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
