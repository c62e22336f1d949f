package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/presence"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/secret"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/testlog"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// fakeTransport is an SfB server in memory: users with passwords, tokens
// it issued, people in its directory.
type fakeTransport struct {
	mu        sync.Mutex
	passwords map[string]string // address -> password
	// trusted signs anyone in without a password, as a trusted
	// application does.
	trusted  bool
	names    map[string]string // address -> display name
	tokens   map[string]sfb.Token
	signIns  []sfb.SignInRequest
	sessions []*fakeSession
	// failNext, when set, is what the next sign-ins return.
	failNext []error
	// sendHook, when set, runs at the start of every session's
	// SendMessage, outside the locks; it may block, and an error it
	// returns is the send's.
	sendHook func(to sfb.URI, msg sfb.Message) error
	// sendCtxHook is sendHook with the send's context, for a transport
	// that stops when the send is cancelled.
	sendCtxHook func(ctx context.Context, to sfb.URI, msg sfb.Message) error
	now         func() time.Time
	issued      int
	// afterSignIn, when set, runs at the end of every successful SignIn,
	// with ft.mu held; a session's first events start there.
	afterSignIn func(*fakeSession)
	// onStop, when set, runs in every session's Close and Detach before
	// they return, outside the locks: a session reporting its end while
	// it is being stopped.
	onStop func(*fakeSession)
	// turn, when set, is every sign-in's wait for its turn towards the
	// pool (the ramp), given the request's Turn; its error is the
	// sign-in's, and such a sign-in is not recorded.
	turn func(context.Context) error
	// delivery is what DeliveryStatus says about a message ID; unknown
	// when absent.
	delivery map[string]sfb.DeliveryStatus
	// watchCapacity is every session's WatchCapacity.
	watchCapacity int
}

func newFakeTransport() *fakeTransport {
	return &fakeTransport{
		passwords: map[string]string{"alice@contoso.com": "alice-pw"},
		names:     map[string]string{"alice@contoso.com": "Alice Example", "bob@contoso.com": "Bob Builder"},
		tokens:    map[string]sfb.Token{},
		now:       time.Now,
	}
}

func (ft *fakeTransport) SignIn(ctx context.Context, req sfb.SignInRequest, handler sfb.EventHandler) (sfb.Session, error) {
	if ft.turn != nil {
		if err := ft.turn(req.Turn); err != nil {
			return nil, err
		}
	}
	if req.OnTurn != nil {
		req.OnTurn()
	}
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.signIns = append(ft.signIns, req)
	if len(ft.failNext) > 0 {
		err := ft.failNext[0]
		ft.failNext = ft.failNext[1:]
		return nil, err
	}
	uri, err := sfb.ParseURI(req.Credentials.SignInAddress)
	if err != nil {
		return nil, err
	}
	addr := uri.Address()
	var tok sfb.Token
	switch {
	case req.Token.Valid(ft.now(), time.Minute) && ft.tokens[addr].Value == req.Token.Value:
		tok = *req.Token
	case ft.trusted:
	case req.Credentials.Password == "":
		return nil, fmt.Errorf("sign in %s: %w", addr, sfb.ErrCredentialsRequired)
	case ft.passwords[addr] == "" || ft.passwords[addr] != req.Credentials.Password:
		return nil, fmt.Errorf("sign in %s: %w", addr, sfb.ErrBadCredentials)
	default:
		ft.issued++
		tok = sfb.Token{Value: fmt.Sprintf("token-%d", ft.issued), ExpiresAt: ft.now().Add(8 * time.Hour).Truncate(time.Millisecond)}
		ft.tokens[addr] = tok
	}
	s := &fakeSession{ft: ft, self: sfb.Person{URI: uri, DisplayName: ft.names[addr]}, token: tok, handler: handler}
	ft.sessions = append(ft.sessions, s)
	if ft.afterSignIn != nil {
		ft.afterSignIn(s)
	}
	return s, nil
}

func (ft *fakeTransport) signInRequests() []sfb.SignInRequest {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return append([]sfb.SignInRequest(nil), ft.signIns...)
}

func (ft *fakeTransport) lastSession() *fakeSession {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if len(ft.sessions) == 0 {
		return nil
	}
	return ft.sessions[len(ft.sessions)-1]
}

func (ft *fakeTransport) sessionCount() int {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return len(ft.sessions)
}

func (ft *fakeTransport) failWith(errs ...error) {
	ft.mu.Lock()
	ft.failNext = append(ft.failNext, errs...)
	ft.mu.Unlock()
}

type sentMessage struct {
	To  sfb.URI
	Msg sfb.Message
}

type fakeSession struct {
	ft      *fakeTransport
	self    sfb.Person
	handler sfb.EventHandler

	mu       sync.Mutex
	token    sfb.Token
	sent     []sentMessage
	typing   []bool
	closed   bool
	detached bool
	sendErr  error
	n        int
	// handled counts events whose handler returned: the fake's resume
	// state, like UCWA's ack.
	handled int
	resume  string

	presence fakePresence
	meetings fakeMeetings
	groups   fakeGroups
}

func (s *fakeSession) Self() sfb.Person { return s.self }

func (s *fakeSession) Token() sfb.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// renew simulates the transport renewing its token.
func (s *fakeSession) renew(tok sfb.Token) {
	s.ft.mu.Lock()
	s.ft.tokens[s.self.URI.Address()] = tok
	s.ft.mu.Unlock()
	s.mu.Lock()
	s.token = tok
	s.mu.Unlock()
}

func (s *fakeSession) SendMessage(ctx context.Context, to sfb.URI, msg sfb.Message) (sfb.SentMessage, error) {
	s.ft.mu.Lock()
	hook, ctxHook := s.ft.sendHook, s.ft.sendCtxHook
	s.ft.mu.Unlock()
	if ctxHook != nil {
		if err := ctxHook(ctx, to, msg); err != nil {
			return sfb.SentMessage{}, err
		}
	}
	if hook != nil {
		if err := hook(to, msg); err != nil {
			return sfb.SentMessage{}, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sendErr != nil {
		return sfb.SentMessage{}, s.sendErr
	}
	s.n++
	s.sent = append(s.sent, sentMessage{to, msg})
	return sfb.SentMessage{ID: fmt.Sprintf("sfb-msg-%d", s.n), Time: time.UnixMilli(1700000000000)}, nil
}

// SendMessageTracked implements sfb.DeliveryTracker: the fake takes a
// message it does not refuse at once.
func (s *fakeSession) SendMessageTracked(ctx context.Context, to sfb.URI, msg sfb.Message, accepted func(id string)) (sfb.SentMessage, error) {
	sent, err := s.SendMessage(ctx, to, msg)
	if err == nil && accepted != nil {
		accepted(sent.ID)
	}
	return sent, err
}

// DeliveryStatus implements sfb.DeliveryTracker.
func (s *fakeSession) DeliveryStatus(_ context.Context, id string) (sfb.DeliveryStatus, error) {
	s.ft.mu.Lock()
	defer s.ft.mu.Unlock()
	return s.ft.delivery[id], nil
}

func (ft *fakeTransport) setDelivery(id string, status sfb.DeliveryStatus) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.delivery == nil {
		ft.delivery = map[string]sfb.DeliveryStatus{}
	}
	ft.delivery[id] = status
}

func (s *fakeSession) setSendErr(err error) {
	s.mu.Lock()
	s.sendErr = err
	s.mu.Unlock()
}

func (ft *fakeTransport) setSendHook(hook func(to sfb.URI, msg sfb.Message) error) {
	ft.mu.Lock()
	ft.sendHook = hook
	ft.mu.Unlock()
}

func (ft *fakeTransport) setSendCtxHook(hook func(ctx context.Context, to sfb.URI, msg sfb.Message) error) {
	ft.mu.Lock()
	ft.sendCtxHook = hook
	ft.mu.Unlock()
}

func (s *fakeSession) SetTyping(ctx context.Context, to sfb.URI, typing bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.typing = append(s.typing, typing)
	return nil
}

func (s *fakeSession) LookupPerson(ctx context.Context, uri sfb.URI) (sfb.Person, error) {
	s.ft.mu.Lock()
	defer s.ft.mu.Unlock()
	name, ok := s.ft.names[uri.Address()]
	if !ok {
		return sfb.Person{}, fmt.Errorf("look up %s: %w", uri, sfb.ErrNotFound)
	}
	return sfb.Person{URI: uri, DisplayName: name}, nil
}

func (s *fakeSession) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stopped()
	return nil
}

func (s *fakeSession) stopped() {
	s.ft.mu.Lock()
	hook := s.ft.onStop
	s.ft.mu.Unlock()
	if hook != nil {
		hook(s)
	}
}

func (s *fakeSession) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *fakeSession) sentMessages() []sentMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sentMessage(nil), s.sent...)
}

func (s *fakeSession) emit(evt sfb.Event) { s.emitCtx(context.Background(), evt) }

// emitCtx delivers evt with the session context ctx and, like UCWA's
// ack, counts it as handled once the handler returned.
func (s *fakeSession) emitCtx(ctx context.Context, evt sfb.Event) {
	s.handler(ctx, evt)
	s.mu.Lock()
	s.handled++
	s.resume = fmt.Sprintf("%s@%d", s.self.URI.Address(), s.handled)
	s.mu.Unlock()
}

func (s *fakeSession) ResumeState() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resume
}

func (s *fakeSession) Detach(ctx context.Context) error {
	s.mu.Lock()
	s.detached = true
	s.mu.Unlock()
	s.stopped()
	return nil
}

func (s *fakeSession) isDetached() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.detached
}

// fakeMatrix is the Matrix side of bridgev2 as far as the connector's
// tests reach it: it records bridge states. Methods the tests never reach
// are left to the embedded nil interface and would panic.
type fakeMatrix struct {
	bridgev2.MatrixConnector

	mu       sync.Mutex
	states   []status.BridgeState
	statuses []sentStatus
	// bot, when set (withBot), is the bridge bot's intent.
	bot *fakeBot
}

// fakeBot is the bridge bot's intent as far as the connector uses it:
// reading events of portal rooms.
type fakeBot struct {
	bridgev2.MatrixAPI
	events map[id.EventID]*event.Event
}

func (b *fakeBot) GetEvent(_ context.Context, roomID id.RoomID, eventID id.EventID) (*event.Event, error) {
	if evt, ok := b.events[eventID]; ok && evt.RoomID == roomID {
		return evt, nil
	}
	return nil, fmt.Errorf("event %s in %s: %w", eventID, roomID, mautrix.MNotFound)
}

// withBot gives the bridge a bot that can read events (events, with their
// room set).
func withBot(events ...*event.Event) envOption {
	return func(e *testEnv, _ *Config) {
		bot := &fakeBot{events: map[id.EventID]*event.Event{}}
		for _, evt := range events {
			bot.events[evt.ID] = evt
		}
		e.matrix.bot = bot
	}
}

// sentStatus is a message status the connector sent itself (bridgev2's own
// go through the same method).
type sentStatus struct {
	Status bridgev2.MessageStatus
	Info   bridgev2.MessageStatusEventInfo
	// Ctx is what the status was sent with: the real connector sends it
	// in a goroutine of its own, so it must outlive the caller.
	Ctx context.Context
}

func (fm *fakeMatrix) SendMessageStatus(ctx context.Context, ms *bridgev2.MessageStatus, info *bridgev2.MessageStatusEventInfo) {
	fm.mu.Lock()
	fm.statuses = append(fm.statuses, sentStatus{*ms, *info, ctx})
	fm.mu.Unlock()
}

func (fm *fakeMatrix) messageStatuses() []sentStatus {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	return append([]sentStatus(nil), fm.statuses...)
}

func (fm *fakeMatrix) Init(*bridgev2.Bridge)           {}
func (fm *fakeMatrix) Start(ctx context.Context) error { return nil }
func (fm *fakeMatrix) PreStop()                        {}
func (fm *fakeMatrix) Stop()                           {}
func (fm *fakeMatrix) BotIntent() bridgev2.MatrixAPI {
	if fm.bot == nil {
		return nil
	}
	return fm.bot
}
func (fm *fakeMatrix) GhostIntent(networkid.UserID) bridgev2.MatrixAPI {
	return nil
}
func (fm *fakeMatrix) ServerName() string { return "example.org" }
func (fm *fakeMatrix) SendBridgeStatus(ctx context.Context, state *status.BridgeState) error {
	fm.mu.Lock()
	fm.states = append(fm.states, *state)
	fm.mu.Unlock()
	return nil
}

func (fm *fakeMatrix) stateEvents() []status.BridgeState {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	return append([]status.BridgeState(nil), fm.states...)
}

// testEnv is a real bridgev2.Bridge on a SQLite database in a temporary
// directory, with the connector under test, the fake transport and the
// fake Matrix side.
type testEnv struct {
	t         *testing.T
	ctx       context.Context
	br        *bridgev2.Bridge
	conn      *Connector
	transport *fakeTransport
	matrix    *fakeMatrix
	user      *bridgev2.User
	dbPath    string
	// dbURI and dbDialect, when set (withPostgres), replace the SQLite
	// file.
	dbURI, dbDialect string
	key              string

	qmu    sync.Mutex
	queued []bridgev2.RemoteEvent
	// portalMu, when set, is taken by every queued message event, like
	// bridgev2's portal lock with portal_event_buffer 0: a test holds it
	// around HandleMatrixMessage as bridgev2 does.
	portalMu *sync.Mutex
	// results, when not empty, are what the next queued events return
	// (default: success).
	results []bridgev2.EventHandlingResult

	logMu sync.Mutex
	logs  []map[string]any

	// presenceSet, when set, turns presence on with it as the
	// homeserver's presence API (see withPresence).
	presenceSet presence.SetFunc
}

// Write keeps each JSON log line of the bridge for logged.
func (e *testEnv) Write(p []byte) (int, error) {
	var line map[string]any
	if err := json.Unmarshal(p, &line); err == nil {
		e.logMu.Lock()
		e.logs = append(e.logs, line)
		e.logMu.Unlock()
	}
	return len(p), nil
}

// logged returns the log lines with message msg.
func (e *testEnv) logged(msg string) []map[string]any {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	var out []map[string]any
	for _, l := range e.logs {
		if l["message"] == msg {
			out = append(out, l)
		}
	}
	return out
}

const testKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // base64 of 32 bytes

type envOption func(*testEnv, *Config)

func withKeepPassword(keep bool) envOption {
	return func(_ *testEnv, c *Config) { c.KeepPassword = keep }
}

func withDB(path string) envOption {
	return func(e *testEnv, _ *Config) { e.dbPath = path }
}

func withTransport(ft *fakeTransport) envOption {
	return func(e *testEnv, _ *Config) { e.transport = ft }
}

func newTestEnv(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	t.Setenv(secret.EnvKey, "")
	e := &testEnv{
		t:         t,
		ctx:       context.Background(),
		transport: newFakeTransport(),
		matrix:    &fakeMatrix{},
		dbPath:    filepath.Join(t.TempDir(), "bridge.db"),
		key:       testKey,
	}
	cfg := defaultConfig()
	cfg.SecretKey = e.key
	cfg.SignInRate = 12
	for _, o := range opts {
		o(e, &cfg)
	}
	e.conn = NewConnector(func(sfb.Config, zerolog.Logger) (sfb.Transport, error) { return e.transport, nil })
	e.conn.Config = cfg
	if e.presenceSet != nil {
		e.conn.presenceSet = e.presenceSet
		e.conn.bridgeUser = func(user id.UserID) bool { return strings.HasPrefix(user.Localpart(), "sfb_") }
	}
	e.conn.tokenCheckInterval = 5 * time.Millisecond
	e.conn.retryMin = time.Millisecond
	e.conn.retryMax = 5 * time.Millisecond
	e.conn.deliverRetryMin = time.Millisecond
	e.conn.deliverRetryMax = 5 * time.Millisecond
	e.conn.resumeSaveDelay = time.Millisecond
	e.conn.sessionWait = 100 * time.Millisecond
	e.conn.queueEvent = func(_ *bridgev2.UserLogin, evt bridgev2.RemoteEvent) bridgev2.EventHandlingResult {
		e.qmu.Lock()
		pmu := e.portalMu
		e.qmu.Unlock()
		if _, ok := evt.(bridgev2.RemoteMessage); ok && pmu != nil {
			pmu.Lock()
			defer pmu.Unlock()
		}
		e.qmu.Lock()
		defer e.qmu.Unlock()
		e.queued = append(e.queued, evt)
		if len(e.results) > 0 {
			res := e.results[0]
			e.results = e.results[1:]
			return res
		}
		return bridgev2.EventHandlingResultSuccess
	}

	uri, dialect := "file:"+e.dbPath+"?_txlock=immediate", "sqlite3-fk-wal"
	if e.dbURI != "" {
		uri, dialect = e.dbURI, e.dbDialect
	}
	db, err := dbutil.NewWithDialect(uri, dialect)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	log := zerolog.New(zerolog.MultiLevelWriter(testlog.Writer(t), e)).Level(zerolog.InfoLevel)
	e.br = bridgev2.NewBridge("", db, log, &bridgeconfig.BridgeConfig{
		CommandPrefix: "!sfb",
		Permissions:   bridgeconfig.PermissionConfig{"*": &bridgeconfig.PermissionLevelUser},
	}, e.matrix, e.conn, func(*bridgev2.Bridge) bridgev2.CommandProcessor { return nil })
	require.NoError(t, e.br.StartConnectors(e.ctx))
	e.user, err = e.br.GetUserByMXID(e.ctx, id.UserID("@alice:example.org"))
	require.NoError(t, err)
	t.Cleanup(func() {
		for _, ul := range e.br.GetAllCachedUserLogins() {
			ul.Client.Disconnect()
		}
		// Ends what runs in the bridge's background context (the
		// migration modes' poll) before the database closes.
		e.br.Stop()
	})
	return e
}

// login runs the password flow as a user would.
func (e *testEnv) login(address, username, password string) (*bridgev2.UserLogin, error) {
	e.t.Helper()
	step, err := e.loginStep(address, username, password)
	if err != nil {
		return nil, err
	}
	if step.Type != bridgev2.LoginStepTypeComplete {
		return nil, fmt.Errorf("the login asks again (%s): %s", step.StepID, step.Instructions)
	}
	return step.CompleteParams.UserLogin, nil
}

// loginStep starts a login, submits the first step and returns the step
// that follows; a login that does not complete is cancelled.
func (e *testEnv) loginStep(address, username, password string) (*bridgev2.LoginStep, error) {
	e.t.Helper()
	proc, err := e.conn.CreateLogin(e.ctx, e.user, FlowPassword)
	require.NoError(e.t, err)
	step, err := proc.Start(e.ctx)
	require.NoError(e.t, err)
	require.Equal(e.t, bridgev2.LoginStepTypeUserInput, step.Type)
	step, err = proc.(bridgev2.LoginProcessUserInput).SubmitUserInput(e.ctx, map[string]string{
		FieldSignInAddress: address, FieldUsername: username, FieldPassword: password,
	})
	if err != nil || step.Type != bridgev2.LoginStepTypeComplete {
		proc.Cancel()
	}
	return step, err
}

func (e *testEnv) mustLogin() (*bridgev2.UserLogin, *Client, *fakeSession) {
	e.t.Helper()
	ul, err := e.login("Alice@Contoso.com", "-", "alice-pw")
	require.NoError(e.t, err)
	e.waitState(status.StateConnected)
	return ul, ul.Client.(*Client), e.transport.lastSession()
}

// portalFor is the real bridgev2 portal of the pair (created in the
// database without a room), so that pending messages can be registered.
func (e *testEnv) portalFor(loginID networkid.UserLoginID, peer sfb.URI) *bridgev2.Portal {
	e.t.Helper()
	portal, err := e.br.GetPortalByKey(e.ctx, portalKeyFor(peer, loginID))
	require.NoError(e.t, err)
	if portal.MXID == "" {
		portal.MXID = id.RoomID("!" + peer.Address() + ":example.org")
	}
	return portal
}

// echoes are the outbox echoes queued so far, by the Matrix event they
// settle.
func (e *testEnv) echoes() map[string]*simplevent.Message[outboxOutcome] {
	out := map[string]*simplevent.Message[outboxOutcome]{}
	for _, evt := range e.queuedEvents() {
		if echo, ok := evt.(*simplevent.Message[outboxOutcome]); ok {
			out[string(echo.TransactionID)] = echo
		}
	}
	return out
}

// waitEcho waits for the echo that settles the Matrix event eventID.
func (e *testEnv) waitEcho(eventID string) *simplevent.Message[outboxOutcome] {
	e.t.Helper()
	var echo *simplevent.Message[outboxOutcome]
	require.Eventually(e.t, func() bool {
		echo = e.echoes()[eventID]
		return echo != nil
	}, 5*time.Second, time.Millisecond, "no echo for %s", eventID)
	return echo
}

func (e *testEnv) queuedEvents() []bridgev2.RemoteEvent {
	e.qmu.Lock()
	defer e.qmu.Unlock()
	return append([]bridgev2.RemoteEvent(nil), e.queued...)
}

// waitState waits until the last bridge state sent is want and returns it.
func (e *testEnv) waitState(want status.BridgeStateEvent) status.BridgeState {
	e.t.Helper()
	var last status.BridgeState
	require.Eventually(e.t, func() bool {
		states := e.matrix.stateEvents()
		if len(states) == 0 {
			return false
		}
		last = states[len(states)-1]
		return last.StateEvent == want
	}, 5*time.Second, 2*time.Millisecond, "bridge state %s never came; got %+v", want, e.matrix.stateEvents())
	return last
}

// stateMark remembers how many bridge states were sent so far.
func (e *testEnv) stateMark() int { return len(e.matrix.stateEvents()) }

// waitStates waits until the states sent after mark contain wants in that
// order (others may come between) and returns the last one matched.
func (e *testEnv) waitStates(mark int, wants ...status.BridgeStateEvent) status.BridgeState {
	e.t.Helper()
	var matched status.BridgeState
	require.Eventually(e.t, func() bool {
		states := e.matrix.stateEvents()
		if mark > len(states) {
			return false
		}
		i := 0
		for _, s := range states[mark:] {
			if i < len(wants) && s.StateEvent == wants[i] {
				matched = s
				i++
			}
		}
		return i == len(wants)
	}, 5*time.Second, 2*time.Millisecond, "bridge states %v never came; got %+v", wants, e.matrix.stateEvents())
	return matched
}

func (e *testEnv) credential(loginID string) *database.Credential {
	e.t.Helper()
	cred, err := e.conn.db.GetCredential(e.ctx, loginID)
	require.NoError(e.t, err)
	return cred
}

// audit lists the login's audit actions, newest first, without the state
// changes (TestLoginStateChangesAreAudited looks at those).
func (e *testEnv) audit(loginID string) []string {
	e.t.Helper()
	events, err := e.conn.db.ListAudit(e.ctx, loginID, 100)
	require.NoError(e.t, err)
	var actions []string
	for _, ev := range events {
		if ev.Action == database.AuditLoginState {
			continue
		}
		actions = append(actions, ev.Action)
	}
	return actions
}

func (e *testEnv) open(sealed []byte, ad []byte) string {
	e.t.Helper()
	key, err := secret.ParseKey(e.key)
	require.NoError(e.t, err)
	box, err := secret.NewBox(key)
	require.NoError(e.t, err)
	plain, err := box.Open(sealed, ad)
	require.NoError(e.t, err)
	return string(plain)
}

// fakePresence is the presence state of a fake session.
type fakePresence struct {
	watching  map[sfb.URI]bool
	contacts  []sfb.Person
	published []sfb.Publication
	activity  int
}

// Watch takes people up to the transport's watchCapacity (0: none, as a
// transport without presence).
func (s *fakeSession) Watch(ctx context.Context, people []sfb.URI) ([]sfb.URI, error) {
	capacity := s.WatchCapacity()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.presence.watching == nil {
		s.presence.watching = map[sfb.URI]bool{}
	}
	var taken []sfb.URI
	for _, p := range people {
		if len(s.presence.watching) >= capacity {
			return taken, fmt.Errorf("watch %s: %w", p, sfb.ErrWatchLimit)
		}
		s.presence.watching[p] = true
		taken = append(taken, p)
	}
	return taken, nil
}

func (s *fakeSession) Unwatch(ctx context.Context, people []sfb.URI) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range people {
		delete(s.presence.watching, p)
	}
	return nil
}

func (s *fakeSession) WatchCapacity() int {
	s.ft.mu.Lock()
	defer s.ft.mu.Unlock()
	return s.ft.watchCapacity
}

func (s *fakeSession) Contacts(ctx context.Context) ([]sfb.Person, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sfb.Person(nil), s.presence.contacts...), nil
}

func (s *fakeSession) Publish(ctx context.Context, p sfb.Publication) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.presence.published = append(s.presence.published, p)
	return nil
}

func (s *fakeSession) ReportActivity(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.presence.activity++
	return nil
}

func (s *fakeSession) watches(p sfb.URI) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.presence.watching[p]
}

func (s *fakeSession) setContacts(people ...sfb.Person) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.presence.contacts = people
}

func (s *fakeSession) publications() []sfb.Publication {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sfb.Publication(nil), s.presence.published...)
}

func (s *fakeSession) activityReports() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.presence.activity
}

// fakeGroups is what a fake session did in multi-party conversations.
type fakeGroups struct {
	sent    []groupSent
	typing  []groupTyping
	left    []string
	added   []groupAdded
	sendErr error
}

type groupSent struct {
	Group sfb.Group
	Msg   sfb.Message
}

type groupTyping struct {
	ThreadID string
	Typing   bool
}

type groupAdded struct {
	Group sfb.Group
	URI   sfb.URI
}

func (s *fakeSession) SendGroupMessage(ctx context.Context, g sfb.Group, msg sfb.Message) (sfb.SentMessage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups.sendErr != nil {
		return sfb.SentMessage{}, s.groups.sendErr
	}
	s.n++
	s.groups.sent = append(s.groups.sent, groupSent{g, msg})
	return sfb.SentMessage{ID: fmt.Sprintf("%s-group-msg-%d", s.self.URI.Address(), s.n), Time: time.Now()}, nil
}

func (s *fakeSession) AddParticipant(ctx context.Context, g sfb.Group, uri sfb.URI) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups.added = append(s.groups.added, groupAdded{g, uri})
	return nil
}

func (s *fakeSession) LeaveGroup(ctx context.Context, threadID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups.left = append(s.groups.left, threadID)
	return nil
}

func (s *fakeSession) SetGroupTyping(ctx context.Context, threadID string, typing bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups.typing = append(s.groups.typing, groupTyping{threadID, typing})
	return nil
}

// groupState returns a copy of what the session did in groups.
func (s *fakeSession) groupState() fakeGroups {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups
	g.sent = append([]groupSent(nil), g.sent...)
	g.typing = append([]groupTyping(nil), g.typing...)
	g.left = append([]string(nil), g.left...)
	g.added = append([]groupAdded(nil), g.added...)
	return g
}

func (s *fakeSession) CreateMeeting(ctx context.Context, req sfb.MeetingRequest) (sfb.Meeting, error) {
	return s.meetings.create(&s.mu, req)
}

func (s *fakeSession) DeclineCall(ctx context.Context, callID string, reason sfb.CallDeclineReason) error {
	return s.meetings.decline(&s.mu, callID, reason)
}
