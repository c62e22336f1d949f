// Package e2e tests the bridge from the outside: a real Synapse, the bridge
// binary on a real PostgreSQL, the SfB simulator on the other side, and a
// Matrix client acting as a migrated employee.
//
// The tests run when SFB_E2E=1 or CI is set (make test sets both in CI);
// in CI a homeserver or database that cannot start fails the run.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/e2e/stack"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pgtest"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/synapse"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// How long one hop (SfB -> Matrix or back) may take before a test fails.
// Generous: the race detector and a busy 2-core machine slow everything.
const hop = 45 * time.Second

// syncOnlineTimeout is Synapse's presence.sync_online_timeout in the tests
// (30 s by default): how long a ghost's presence lasts unless the bridge
// writes it again.
const syncOnlineTimeout = 10 * time.Second

// testEnv is shared by every test of the binary: starting Synapse,
// PostgreSQL and the bridge once keeps the suite fast. Tests stay
// independent by using their own Matrix and SfB users.
type testEnv struct {
	dir     string
	pg      *pgtest.Server
	sim     *sim.Server
	simHTTP *httptest.Server
	st      *stack.Stack
	simLog  *os.File
	// states receives the bridge states the bridge pushes
	// (homeserver.status_endpoint).
	states *stateLog
	// metricsAddr is the bridge's metrics listener (metrics_test.go).
	metricsAddr string
	// sipListener is the simulator's SIP listener when the bridge is on
	// SIP (sip_test.go), in sipMode.
	sipListener net.Listener
	sipMode     string
}

var shared struct {
	once sync.Once
	env  *testEnv
	err  error
}

// built is the bridge binary every environment of the run shares.
var built struct {
	once      sync.Once
	dir, path string
	err       error
}

// bridgeBinary builds the bridge on first use; SFB_E2E_BRIDGE_BIN names a
// prebuilt one instead, which saves the build when iterating on the tests.
func bridgeBinary(ctx context.Context) (string, error) {
	if bin := os.Getenv("SFB_E2E_BRIDGE_BIN"); bin != "" {
		return bin, nil
	}
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "sfb-e2e-bin-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "sfb-matrix-bridge")
		built.err = stack.BuildBridge(ctx, "..", built.path, raceEnabled)
	})
	return built.path, built.err
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.env != nil {
		if err := shared.env.close(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: teardown: %v\n", err)
		}
	}
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// setup returns the shared environment, starting it on first use.
func setup(t *testing.T) *testEnv {
	t.Helper()
	if wanted, reason := synapse.Wanted(); !wanted {
		t.Skip(reason)
	}
	shared.once.Do(func() {
		start := time.Now()
		shared.env, shared.err = startEnv()
		if shared.err == nil {
			t.Logf("e2e environment up in %s (bridge log %s)", time.Since(start).Round(time.Millisecond), shared.env.st.Bridge.LogPath)
		}
	})
	if shared.err != nil {
		if errors.Is(shared.err, pgtest.ErrNotInstalled) && !synapse.Required() {
			t.Skipf("e2e: %v", shared.err)
		}
		t.Fatalf("e2e: start environment: %v", shared.err)
	}
	env := shared.env
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bridge running: %v\n%s", env.st.Bridge.Running(), env.st.Bridge.LogTail(60))
		}
	})
	return env
}

// startEnv starts an environment; options, if any, change the stack's.
func startEnv(options ...func(*stack.Options)) (env *testEnv, err error) {
	return startEnvOn("", options...)
}

// ownEnv starts an environment for t alone (startEnvOn), closed when t
// ends, with the end of the bridge's log in t's output when t failed.
func ownEnv(t *testing.T, sipMode string, options ...func(*stack.Options)) *testEnv {
	t.Helper()
	if wanted, reason := synapse.Wanted(); !wanted {
		t.Skip(reason)
	}
	env, err := startEnvOn(sipMode, options...)
	if env != nil {
		t.Cleanup(func() {
			if t.Failed() && env.st != nil {
				t.Logf("bridge running: %v\n%s", env.st.Bridge.Running(), env.st.Bridge.LogTail(80))
			}
			_ = env.close()
		})
	}
	require.NoError(t, err)
	return env
}

// startEnvOn starts an environment with the bridge on the SIP transport in
// sipMode (sfb.SIPModePerUser or sfb.SIPModeTrusted), or on UCWA when it is
// empty. On SIP the simulator also listens for SIP over TLS, with a
// certificate of a CA made for the run that the bridge trusts (ca_file),
// and takes the bridge's certificate of the same CA as the trusted
// application's.
func startEnvOn(sipMode string, options ...func(*stack.Options)) (env *testEnv, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env = &testEnv{sipMode: sipMode}
	defer func() {
		if err != nil {
			_ = env.close()
		}
	}()
	if env.dir, err = os.MkdirTemp("", "sfb-e2e-"); err != nil {
		return nil, err
	}

	env.pg, err = pgtest.Launch(ctx, pgtest.Options{})
	if err != nil {
		return env, fmt.Errorf("start PostgreSQL: %w", err)
	}
	dsn, err := env.pg.CreateDatabaseContext(ctx, "sfb_bridge")
	if err != nil {
		return env, fmt.Errorf("create bridge database: %w", err)
	}

	env.simLog, err = os.Create(filepath.Join(env.dir, "sim.log"))
	if err != nil {
		return env, err
	}
	env.sim, err = sim.New(sim.Options{
		Logger: zerolog.New(env.simLog).With().Timestamp().Logger(),
		// Short long-polls: the bridge's event channel turns over often,
		// which exercises it, and a dropped channel is noticed quickly.
		EventWait: 5 * time.Second,
		SIP:       sim.SIPOptions{FQDN: stack.SimFrontEnd, TrustedApplications: []string{stack.SimAppFQDN}},
	})
	if err != nil {
		return env, fmt.Errorf("create simulator: %w", err)
	}
	env.simHTTP = httptest.NewServer(env.sim.Handler())
	env.sim.SetBaseURL(env.simHTTP.URL)
	var sipServer *stack.SIP
	if sipMode != "" {
		sipServer, env.sipListener, err = stack.ServeSIP(env.dir, env.sim, sipMode, func(err error) {
			fmt.Fprintf(env.simLog, "ServeSIP: %v\n", err)
		})
		if err != nil {
			return env, err
		}
	}

	bin, err := bridgeBinary(ctx)
	if err != nil {
		return env, err
	}
	env.states = newStateLog()
	metricsPort, err := synapse.FreePort()
	if err != nil {
		return env, fmt.Errorf("port of the metrics listener: %w", err)
	}
	env.metricsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(metricsPort))
	stackOpts := stack.Options{
		StatusEndpoint: env.states.URL(),
		Dir:            env.dir,
		RepoRoot:       "..",
		BridgeBinary:   bin,
		Race:           raceEnabled,
		DatabaseURI:    dsn,
		DiscoveryURL:   env.sim.DiscoveryURL(),
		SIP:            sipServer,
		// Everyone may log in; the migration team's member is a bridge
		// admin (waves_test.go).
		Permissions: map[string]string{"localhost": "user", string(wavesAdmin): "admin"},
		// The highest rate the configuration allows, as an operator
		// signing a wave in would set it.
		Network: map[string]any{"sign_in_rate": 12,
			// Prometheus metrics, behind a token (metrics_test.go).
			"metrics": map[string]any{"listen": env.metricsAddr, "bearer_token": metricsToken}},
		// Files from Matrix reach SfB as links to the bridge.
		MediaLinks: true,
		// Presence decays within seconds rather than half a minute, so
		// that a test sees within seconds whether the bridge refreshes
		// its ghosts in time; refresh_interval follows it as
		// docs/presence.md tells operators to. A short debounce keeps
		// Matrix -> SfB tests short.
		SynapseConfig: map[string]any{"presence": map[string]any{
			"enabled":             true,
			"sync_online_timeout": syncOnlineTimeout.Milliseconds(),
		}},
		Config: map[string]any{
			"network.presence.refresh_interval": (syncOnlineTimeout / 2).String(),
			"network.presence.publish_debounce": "1s",
			// meet --sfb (meeting_test.go).
			"network.meetings.sfb_meetings": true,
		},
	}
	for _, o := range options {
		o(&stackOpts)
	}
	env.st, err = stack.Start(ctx, stackOpts)
	if err != nil {
		return env, err
	}
	return env, nil
}

func (env *testEnv) close() error {
	var errs []error
	if env.st != nil {
		errs = append(errs, env.st.Close())
	}
	if env.simHTTP != nil {
		env.simHTTP.Close()
	}
	if env.sipListener != nil {
		_ = env.sipListener.Close()
	}
	if env.states != nil {
		env.states.Close()
	}
	if env.sim != nil {
		errs = append(errs, env.sim.Close())
	}
	if env.simLog != nil {
		env.simLog.Close()
	}
	if env.pg != nil {
		errs = append(errs, env.pg.Stop())
	}
	if env.dir != "" && os.Getenv("SFB_E2E_KEEP") == "" {
		_ = os.RemoveAll(env.dir)
	}
	return errors.Join(errs...)
}

// pair is one migrated employee (a Matrix user logged in to SfB through the
// bridge) and one SfB colleague they chat with.
type pair struct {
	mx        *matrixUser
	self      sim.User
	colleague sim.User
	mgmt      id.RoomID
	ghost     id.UserID
}

// newPair registers <name> on Matrix and sip:<name>@contoso.com plus
// sip:<name>.colleague@contoso.com on SfB, and logs the Matrix user in to
// SfB with the bridge bot's login command, answering its prompts.
func (env *testEnv) newPair(t *testing.T, name string) *pair {
	t.Helper()
	p := env.newPairSignedOut(t, name)
	if env.sipMode == sfb.SIPModeTrusted {
		env.assign(t, p)
	}
	env.login(t, p)
	return p
}

// assign gives p's SfB address to p's Matrix user in the migration table,
// without which a trusted-application bridge lets nobody sign in as it.
func (env *testEnv) assign(t *testing.T, p *pair) {
	t.Helper()
	csv := "sip_address;matrix_id;wave;mode\n" + p.self.URI.Address() + ";" + string(p.mx.ID) + ";SIP trusted;\n"
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "POST", "/import?dry_run=false", env.st.ProvisioningSecret, csv, nil))
}

// newPairSignedOut is newPair up to the bot's welcome in the management
// room, without logging in.
func (env *testEnv) newPairSignedOut(t *testing.T, name string) *pair {
	t.Helper()
	return env.newPairOf(t, name, newMatrixUser)
}

// newPairOf is newPairSignedOut with the Matrix user's client made by
// newUser.
func (env *testEnv) newPairOf(t *testing.T, name string, newUser func(testing.TB, *synapse.Server, synapse.Account) *matrixUser) *pair {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*hop)
	defer cancel()
	p := &pair{
		self:      sim.User{URI: sfb.URI("sip:" + name + "@contoso.com"), DisplayName: strings.ToUpper(name[:1]) + name[1:], Password: name + "-sfb-password"},
		colleague: sim.User{URI: sfb.URI("sip:" + name + ".colleague@contoso.com"), DisplayName: "Colleague of " + name, Password: "unused"},
	}
	// The e2e tests share one simulator and homeserver: each test needs
	// a name of its own.
	require.NoError(t, env.sim.AddUser(p.self), "another test already uses the name %q", name)
	require.NoError(t, env.sim.AddUser(p.colleague))
	p.ghost = env.st.GhostID(p.colleague.URI.Address())

	acct, err := env.st.HS.RegisterUser(ctx, name, name+"-matrix-password", false)
	require.NoError(t, err)
	p.mx = newUser(t, env.st.HS, acct)

	room, err := p.mx.Client.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset:   "trusted_private_chat",
		IsDirect: true,
		Invite:   []id.UserID{env.st.Bot},
	})
	require.NoError(t, err)
	p.mgmt = room.RoomID
	p.mx.waitFor(0, hop, "the bridge bot to join the management room", isJoin(p.mgmt, env.st.Bot))
	p.mx.waitFor(0, hop, "the bot's welcome", isMessage(p.mgmt, env.st.Bot, func(b string) bool {
		return strings.Contains(b, "login")
	}))
	return p
}

// loginFailure recognises the bot's answer to a failed login step.
var loginFailure = regexp.MustCompile(`(?i)\b(fail|invalid|error|not found|rejected)`)

// login runs the bot's "login" command and answers each "Please enter your
// <field>" prompt, then waits for the outcome. Other bot messages (the
// flow's instructions) are read and passed over.
func (env *testEnv) login(t *testing.T, p *pair) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*hop)
	defer cancel()
	from := p.mx.mark()
	_, err := p.mx.Client.SendText(ctx, p.mgmt, "login")
	require.NoError(t, err)
	for replies := 0; ; replies++ {
		require.Less(t, replies, 10, "the login conversation went on too long")
		reply := p.mx.waitFor(from, hop, "the bot's next login prompt or result", isMessage(p.mgmt, env.st.Bot, anyBody))
		from = p.mx.indexOf(reply) + 1
		body := reply.Content.AsMessage().Body
		// The prompt's first line names the field; further lines describe it.
		lower, _, _ := strings.Cut(strings.ToLower(body), "\n")
		var answer string
		switch {
		case strings.HasPrefix(lower, "logged in") || strings.Contains(lower, "successfully logged in"):
			return
		case loginFailure.MatchString(body):
			t.Fatalf("login failed: %s", body)
		case !strings.HasPrefix(lower, "please enter your"):
			continue // instructions
		case strings.Contains(lower, "password"):
			answer = p.self.Password
		case strings.Contains(lower, "user name") || strings.Contains(lower, "username"):
			answer = "-" // the prompt's way of saying "same as the sign-in address"
		case strings.Contains(lower, "address") || strings.Contains(lower, "sign-in") || strings.Contains(lower, "sip"):
			answer = p.self.URI.Address()
		default:
			t.Fatalf("unexpected login prompt %q", body)
		}
		_, err := p.mx.Client.SendText(ctx, p.mgmt, answer)
		require.NoError(t, err)
	}
}

// openPortal has the colleague write first on SfB and returns the Matrix
// room the bridge creates for the pair, after the Matrix user joined it.
func (env *testEnv) openPortal(t *testing.T, p *pair, first string) id.RoomID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*hop)
	defer cancel()
	from := p.mx.mark()
	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: first}))
	invite := p.mx.waitFor(from, hop, "an invite to the portal", func(evt *event.Event) bool {
		return isInvite(p.mx.ID)(evt) && evt.RoomID != p.mgmt && !p.mx.isSpace(evt.RoomID)
	})
	room := invite.RoomID
	_, err := p.mx.Client.JoinRoomByID(ctx, room)
	require.NoError(t, err)
	p.mx.waitFor(from, hop, "the colleague's first message in the portal", isMessage(room, p.ghost, equals(first)))
	return room
}

// waitReceived polls the simulator until the colleague received a message
// from the pair's SfB user that matches, and returns it.
func (env *testEnv) waitReceived(t *testing.T, p *pair, what string, match func(sim.Received) bool) sim.Received {
	t.Helper()
	return env.waitReceivedBy(t, p.colleague.URI, what, func(r sim.Received) bool {
		return r.From == p.self.URI && match(r)
	})
}

// waitReceivedBy waits until the simulated SfB user to received a message
// that match accepts and returns it.
func (env *testEnv) waitReceivedBy(t *testing.T, to sfb.URI, what string, match func(sim.Received) bool) sim.Received {
	t.Helper()
	var found sim.Received
	ok := assert.Eventually(t, func() bool {
		for _, r := range env.sim.Received(to) {
			if match(r) {
				found = r
				return true
			}
		}
		return false
	}, hop, 50*time.Millisecond, "%s never received %s", to, what)
	if !ok {
		t.Fatalf("received so far: %+v", env.sim.Received(to))
	}
	return found
}

func TestChatBothWays(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()

	room := env.openPortal(t, p, "Hello from Skype for Business")

	// The portal is a DM with the colleague's ghost, named after them.
	members, err := p.mx.Client.JoinedMembers(ctx, room)
	require.NoError(t, err)
	assert.Contains(t, members.Joined, p.ghost)
	assert.Contains(t, members.Joined, p.mx.ID)
	// The display name comes from the SfB directory (through the
	// network.displayname_template, which may decorate it).
	assert.Contains(t, members.Joined[p.ghost].DisplayName, p.colleague.DisplayName)

	env.chatFormattedBothWays(t, p, room)

	// Nothing was delivered twice.
	assertNoDuplicates(t, env.sim.Received(p.colleague.URI))
}

// chatFormattedBothWays has the colleague send formatted text and the
// Matrix user answer in plain text, then formatted: each arrives in the
// other's format.
func (env *testEnv) chatFormattedBothWays(t *testing.T, p *pair, room id.RoomID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*hop)
	defer cancel()
	// Formatted text from SfB arrives as HTML.
	from := p.mx.mark()
	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{
		Text: "this is important",
		HTML: "this is <b>important</b>",
	}))
	evt := p.mx.waitFor(from, hop, "the formatted message", isMessage(room, p.ghost, func(b string) bool {
		return strings.Contains(b, "important")
	}))
	msg := evt.Content.AsMessage()
	assert.Equal(t, "this is important", strings.TrimSpace(strings.ReplaceAll(msg.Body, "*", "")))
	assert.Equal(t, event.FormatHTML, msg.Format)
	assert.Regexp(t, `<(b|strong)>important</(b|strong)>`, msg.FormattedBody)

	// Plain text from Matrix.
	_, err := p.mx.Client.SendText(ctx, room, "Hi! Replying from Matrix")
	require.NoError(t, err)
	got := env.waitReceived(t, p, "the plain reply", func(r sim.Received) bool {
		return r.Message.Text == "Hi! Replying from Matrix"
	})
	if got.Message.HTML != "" {
		assert.Contains(t, stripTags(got.Message.HTML), "Replying from Matrix", "the HTML form, if any, carries the same text")
	}

	// Formatted text from Matrix.
	_, err = p.mx.Client.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{
		MsgType:       event.MsgText,
		Body:          "a bold reply",
		Format:        event.FormatHTML,
		FormattedBody: "a <strong>bold</strong> reply",
	})
	require.NoError(t, err)
	got = env.waitReceived(t, p, "the formatted reply", func(r sim.Received) bool {
		return strings.Contains(r.Message.Text, "bold reply")
	})
	assert.Equal(t, "a bold reply", got.Message.Text)
	assert.Regexp(t, `<(b|strong)>bold</(b|strong)>`, got.Message.HTML)
}

func TestConversationExpiryKeepsRoom(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()

	room := env.openPortal(t, p, "before expiry")
	_, err := p.mx.Client.SendText(ctx, room, "reply before expiry")
	require.NoError(t, err)
	env.waitReceived(t, p, "the reply before expiry", func(r sim.Received) bool { return r.Message.Text == "reply before expiry" })
	before := env.sim.Received(p.colleague.URI)

	// SfB ends idle conversations; the next ones get new IDs.
	env.sim.ExpireConversations(p.self.URI)

	// SfB -> Matrix after expiry: same room.
	from := p.mx.mark()
	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: "after expiry from SfB"}))
	evt := p.mx.waitFor(from, hop, "the message after expiry", isMessage("", p.ghost, equals("after expiry from SfB")))
	assert.Equal(t, room, evt.RoomID, "a restarted SfB conversation must land in the same Matrix room")

	// Matrix -> SfB after another expiry: a new conversation is started
	// transparently.
	env.sim.ExpireConversations(p.self.URI)
	_, err = p.mx.Client.SendText(ctx, room, "after expiry from Matrix")
	require.NoError(t, err)
	got := env.waitReceived(t, p, "the message after expiry", func(r sim.Received) bool { return r.Message.Text == "after expiry from Matrix" })
	if last := before[len(before)-1]; last.ThreadID != "" && got.ThreadID != "" {
		assert.NotEqual(t, last.ThreadID, got.ThreadID, "the simulator should have started a new conversation")
	}

	// No second portal appeared for the same colleague.
	for _, e := range p.mx.Events(0) {
		if isInvite(p.mx.ID)(e) && e.RoomID != p.mgmt && !p.mx.isSpace(e.RoomID) {
			assert.Equal(t, room, e.RoomID, "unexpected second room invite")
		}
	}
}

func TestEventChannelDropLosesNothing(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "carol")
	ctx, cancel := context.WithTimeout(context.Background(), 6*hop)
	defer cancel()
	room := env.openPortal(t, p, "start of stream")

	const n = 20
	from := p.mx.mark()
	for i := 1; i <= n/2; i++ {
		require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: streamText(i)}))
	}
	p.mx.waitFor(from, hop, "the first half of the stream", isMessage(room, p.ghost, equals(streamText(n/2))))

	// Drop the parked GET, twice. The simulator cuts the answer in the
	// middle and closes the connection, so the UCWA client sees each drop
	// and asks again with the same ack; nothing may be lost or doubled.
	for drop := 0; drop < 2; drop++ {
		require.Eventually(t, func() bool { return env.sim.PendingGETs(p.self.URI) > 0 }, hop, 10*time.Millisecond,
			"the bridge never parked a GET on the event channel")
		env.sim.DropEventChannel(p.self.URI)
	}
	// The second half is sent while the bridge reconnects.
	for i := n/2 + 1; i <= n; i++ {
		require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: streamText(i)}))
	}
	// A sentinel after the stream: once it arrived, any duplicate of the
	// stream would have arrived too (the bridge keeps order).
	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: "end of stream"}))
	p.mx.waitFor(from, 2*hop, "the end of the stream", isMessage(room, p.ghost, equals("end of stream")))

	want := append(series(streamText, n), "end of stream")
	assert.Equal(t, want, ghostMessages(t, p, room, from), "every message exactly once, in order")

	// The other direction still works after the drop.
	_, err := p.mx.Client.SendText(ctx, room, "still there?")
	require.NoError(t, err)
	env.waitReceived(t, p, "the reply after the drop", func(r sim.Received) bool { return r.Message.Text == "still there?" })
}

func streamText(i int) string { return fmt.Sprintf("stream message %02d", i) }

// series is text(1), ..., text(n).
func series(text func(int) string, n int) []string {
	s := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		s = append(s, text(i))
	}
	return s
}

// ghostMessages returns the bodies of the messages the pair's ghost sent
// from position from on, in order, failing the test for one outside room.
func ghostMessages(t *testing.T, p *pair, room id.RoomID, from int) []string {
	t.Helper()
	var bodies []string
	for _, evt := range p.mx.Events(from) {
		if isMessage("", p.ghost, anyBody)(evt) {
			assert.Equal(t, room, evt.RoomID, "message %q in another room", evt.Content.AsMessage().Body)
			bodies = append(bodies, evt.Content.AsMessage().Body)
		}
	}
	return bodies
}

// sentToColleague returns the texts the colleague received from the pair's
// SfB user, in order.
func (env *testEnv) sentToColleague(p *pair) []string {
	var texts []string
	for _, r := range env.sim.Received(p.colleague.URI) {
		if r.From == p.self.URI {
			texts = append(texts, r.Message.Text)
		}
	}
	return texts
}

func assertNoDuplicates(t *testing.T, received []sim.Received) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range received {
		seen[string(r.From)+"\x00"+r.Message.Text]++
	}
	for k, n := range seen {
		assert.Equal(t, 1, n, "delivered %d times: %q", n, strings.ReplaceAll(k, "\x00", ": "))
	}
}

func stripTags(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
		case r == '>':
			in = false
		case !in:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// bearerRequest sends a request to one of the bridge's operator endpoints
// with token (none when empty) and returns the status and body.
func bearerRequest(t *testing.T, ctx context.Context, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, data
}
