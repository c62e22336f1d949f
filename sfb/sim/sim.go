// Package sim is a Skype for Business server for tests, the demo and load
// tests: a UCWA 2.0 server faithful to Microsoft's reference (discovery,
// the MsRtcOAuth challenge, applications, the event channel, messaging),
// users acting from simulated native clients, and fault injection. It
// holds tens of thousands of users in one process: per-user state is only
// created for users that sign in or talk.
package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Options configure a Server. Zero durations take the defaults given.
type Options struct {
	Users  []User
	Logger zerolog.Logger
	// Now is the clock for timestamps and expiry; nil means time.Now.
	Now func() time.Time
	// TokenLifetime is the OAuth token lifetime (expires_in); default 8h.
	TokenLifetime time.Duration
	// EventWait is how long a pending GET on events is held before it is
	// answered with an empty batch, unless the client asked otherwise
	// ("timeout"); default 180s as in the reference.
	EventWait time.Duration
	// ConversationIdleTimeout ends conversations without messages for that
	// long; default 10 minutes.
	ConversationIdleTimeout time.Duration
	// ApplicationIdleTimeout expires applications whose event channel is
	// not polled (and that make no other request) for that long; default
	// 15 minutes.
	ApplicationIdleTimeout time.Duration

	// Additions to the agreed API:

	// EventAggregation is how long medium-priority events (me,
	// communication updates) are held back to be batched with others; the
	// reference's default for "medium" is 5s, which a client may change
	// on its events link (5 to 1800s). High-priority events
	// (conversations, messages, typing) release a pending GET at once.
	EventAggregation time.Duration
	// InvitationTimeout fails a messaging invitation nobody accepted;
	// default 30s ("approximately thirty seconds" in the reference).
	InvitationTimeout time.Duration
	// TypingTimeout is how long a setIsTyping shows the user as typing;
	// default 10s.
	TypingTimeout time.Duration
	// Base64Messages makes every data URI the server writes base64; by
	// default only non-ASCII text is base64, everything else URL-encoded.
	Base64Messages bool
	// Colleague, when set, is a scripted user: it greets every UCWA user
	// that makes itself available (typing, a plain message, typing, an
	// HTML message) and answers every message with a quote of it.
	Colleague sfb.URI
	// ColleagueTypingDelay is how long the colleague types before each
	// message; default 1s.
	ColleagueTypingDelay time.Duration
	// ReceivedLimit bounds the messages kept per user for Received;
	// default 1000.
	ReceivedLimit int
	// MaxPresenceSubscriptions is how many presence subscriptions one
	// application may hold, MaxSubscribedPeople how many people they may
	// hold together; beyond, 403 LimitExceeded. The reference names the
	// error, not the numbers: defaults 64 and 1000.
	MaxPresenceSubscriptions int
	MaxSubscribedPeople      int
	// MaxCategorySubscriptions is how many category subscriptions (people
	// × categories) a user's SIP endpoints may hold together; a batched
	// SUBSCRIBE beyond it gets the rest terminated with quotaExceeded.
	// Default 1000, the default of SfB's presence policy (250 people at the
	// 4 categories pidgin-sipe asks for).
	MaxCategorySubscriptions int
	// IdleTimeout and AwayTimeout lower what a UCWA application published
	// (Online, Busy) to IdleOnline/IdleBusy, then Away, when it reports no
	// activity for that long (reportMyActivity_ref.md: "at least once every
	// four minutes"); defaults 5 and 15 minutes.
	IdleTimeout time.Duration
	AwayTimeout time.Duration
	// MaxBatchRequests is how many requests one batch may carry; more are
	// refused with 429 (BatchingRequests.md: 100).
	MaxBatchRequests int
	// SIP configures the SIP front end (ServeSIP).
	SIP SIPOptions
	// SweepInterval is how often idle applications, conversations,
	// invitations and typing states are expired; default derived from the
	// timeouts. Sweep runs the same check on demand.
	SweepInterval time.Duration
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.TokenLifetime, 8*time.Hour)
	def(&o.EventWait, 180*time.Second)
	def(&o.ConversationIdleTimeout, 10*time.Minute)
	def(&o.ApplicationIdleTimeout, 15*time.Minute)
	def(&o.EventAggregation, 5*time.Second)
	def(&o.InvitationTimeout, 30*time.Second)
	def(&o.TypingTimeout, 10*time.Second)
	def(&o.ColleagueTypingDelay, time.Second)
	def(&o.IdleTimeout, 5*time.Minute)
	def(&o.AwayTimeout, 15*time.Minute)
	o.SIP.setDefaults()
	for _, n := range []struct {
		v   *int
		def int
	}{{&o.ReceivedLimit, 1000}, {&o.MaxPresenceSubscriptions, 64}, {&o.MaxSubscribedPeople, 1000}, {&o.MaxBatchRequests, 100}, {&o.MaxCategorySubscriptions, 1000}} {
		if *n.v <= 0 {
			*n.v = n.def
		}
	}
	if o.SweepInterval <= 0 {
		d := min(o.ConversationIdleTimeout, o.ApplicationIdleTimeout, o.InvitationTimeout, o.TypingTimeout) / 4
		o.SweepInterval = max(5*time.Millisecond, min(d, time.Second))
	}
}

// Server is the simulated SfB deployment. All methods are safe for
// concurrent use.
type Server struct {
	opts Options
	log  zerolog.Logger
	now  func() time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	baseURL string
	users   map[sfb.URI]*user
	// fileTransfers are the files each user's native client received.
	fileTransfers map[sfb.URI][]FileTransfer
	tokens        map[tokenKey]*token
	apps          map[string]*app
	gone          map[string]goneApp
	dialogs       map[pairKey]*dialog
	// confs are the live conferences by thread ID.
	confs  map[string]*conference
	faults faults
	seq    uint64
	// watchers indexes presence subscriptions by the person they watch.
	watchers map[sfb.URI]map[*presenceSub]struct{}
	// sipPres is presence over SIP (sippresence*.go).
	sipPres         sipPresenceState
	presenceChanges int64
	closed          bool
	// meetings holds online meetings and calls (meeting.go, call.go).
	meetings meetState
	// sip is the SIP front end (sip.go).
	sip sipState

	colleague chan colleagueTask

	// sfbRequests counts HTTP requests to the SfB side, batched the
	// requests inside batches.
	sfbRequests, batched atomic.Int64
}

type faults struct {
	failCount  int
	failStatus int
	retryAfter time.Duration
	latency    time.Duration
}

// goneApp remembers why an application vanished, so that its next request
// is answered the way the reference describes.
type goneApp struct {
	status  int
	code    string
	subcode string
	at      time.Time
}

// New builds a server with opts.Users and starts its expiry loop; Close
// stops it.
func New(opts Options) (*Server, error) {
	opts.setDefaults()
	s := &Server{
		opts:     opts,
		log:      opts.Logger.With().Str("component", "sfb-sim").Logger(),
		now:      opts.Now,
		baseURL:  "http://127.0.0.1",
		users:    make(map[sfb.URI]*user, len(opts.Users)),
		tokens:   make(map[tokenKey]*token),
		apps:     make(map[string]*app),
		gone:     make(map[string]goneApp),
		dialogs:  make(map[pairKey]*dialog),
		confs:    make(map[string]*conference),
		watchers: make(map[sfb.URI]map[*presenceSub]struct{}),
		sip:      sipState{listeners: map[net.Listener]struct{}{}, conns: map[*sipConn]struct{}{}, legs: map[legKey]*sipLeg{}, homes: map[sfb.URI]string{}},
		meetings: meetState{
			meetings: map[meetingKey]*meeting{}, calls: map[string]*call{},
			invs: map[string]*mview{}, convs: map[string]*mview{},
		},
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, u := range opts.Users {
		if err := s.AddUser(u); err != nil {
			return nil, fmt.Errorf("create simulator: %w", err)
		}
	}
	if opts.Colleague != "" {
		uri, err := sfb.ParseURI(string(opts.Colleague))
		if err != nil {
			return nil, fmt.Errorf("create simulator: colleague: %w", err)
		}
		s.opts.Colleague = uri
		if _, ok := s.users[uri]; !ok {
			if err := s.AddUser(User{URI: uri, DisplayName: "Colleague", Password: randomHex(16)}); err != nil {
				return nil, fmt.Errorf("create simulator: colleague: %w", err)
			}
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.sweepLoop()
	if s.opts.Colleague != "" {
		s.startColleague()
	}
	return s, nil
}

// Close stops the expiry loop and the scripted colleague and releases
// pending GETs. The handler keeps answering ordinary requests.
func (s *Server) Close() error {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.closeSIP()
	s.wg.Wait()
	return nil
}

// SetBaseURL sets the absolute base (scheme://host:port) used in discovery
// documents; call it after the listener is known (httptest.NewServer).
func (s *Server) SetBaseURL(u string) {
	s.mu.Lock()
	s.baseURL = strings.TrimRight(u, "/")
	s.mu.Unlock()
}

// BaseURL is the base set with SetBaseURL.
func (s *Server) BaseURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL
}

// DiscoveryURL is the autodiscovery root a client starts from.
func (s *Server) DiscoveryURL() string {
	return s.BaseURL() + "/autodiscover/autodiscoverservice.svc/root"
}

// AddUser adds a user to the directory.
func (s *Server) AddUser(u User) error {
	u, err := validateUser(u)
	if err != nil {
		return fmt.Errorf("add user: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[u.URI]; ok {
		return fmt.Errorf("add user %s: already exists", u.URI)
	}
	s.users[u.URI] = &user{uri: u.URI, name: u.DisplayName, password: u.Password}
	return nil
}

// GeneratedPassword is the password of users made by GenerateUsers.
const GeneratedPassword = "password"

// GenerateUsers adds n users user00001@domain ... (display names "User
// 00001" ...) with the password GeneratedPassword and returns them.
// Addresses that already exist are skipped.
func (s *Server) GenerateUsers(n int, domain string) []User {
	width := max(5, len(fmt.Sprint(n)))
	out := make([]User, 0, n)
	s.mu.Lock()
	defer s.mu.Unlock()
	domain = strings.ToLower(strings.TrimSpace(domain))
	for i := 1; i <= n; i++ {
		num := fmt.Sprintf("%0*d", width, i)
		uri := sfb.URI("sip:user" + num + "@" + domain)
		if _, ok := s.users[uri]; ok {
			continue
		}
		u := User{URI: uri, DisplayName: "User " + num, Password: GeneratedPassword}
		s.users[uri] = &user{uri: uri, name: u.DisplayName, password: GeneratedPassword}
		out = append(out, u)
	}
	return out
}

// Users is the number of users in the directory.
func (s *Server) Users() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.users)
}

// Received is a message delivered to a user.
type Received struct {
	From     sfb.URI
	Message  sfb.Message
	Time     time.Time
	ThreadID string
	// Group: the message was sent in a multi-party conversation.
	Group bool
}

// Received returns everything delivered to uri (from UCWA clients or other
// simulated users), oldest first, at most Options.ReceivedLimit.
func (s *Server) Received(uri sfb.URI) []Received {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[uri]
	if u == nil || u.st == nil {
		return nil
	}
	return append([]Received(nil), u.st.received...)
}

// SendMessage sends msg from a user on a native SfB client (not through
// UCWA). It starts a conversation (a messagingInvitation with the message
// inside) when none is active, else sends in it. Messages sent while the
// invitation is not yet accepted are delivered once it is.
func (s *Server) SendMessage(ctx context.Context, from, to sfb.URI, msg sfb.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	from, to = canonical(from), canonical(to)
	msg, err := normalizeMessage(msg)
	if err != nil {
		return fmt.Errorf("send message from %s to %s: %w", from, to, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[from] == nil {
		return fmt.Errorf("send message from %s: %w", from, sfb.ErrNotFound)
	}
	if s.users[to] == nil {
		return fmt.Errorf("send message to %s: %w", to, sfb.ErrNotFound)
	}
	if from == to {
		return fmt.Errorf("send message from %s to itself: %w", from, sfb.ErrUnsupported)
	}
	if s.users[from].st != nil && s.users[from].st.nativeSignedOut {
		return fmt.Errorf("send message from %s: %w", from, errNativeSignedOut)
	}
	if err := s.nativeSend(from, to, msg); err != nil {
		return fmt.Errorf("send message from %s to %s: %w", from, to, err)
	}
	return nil
}

// errNativeSignedOut: a native action of a user whose native client is
// signed out (see SetNativeClient).
var errNativeSignedOut = errors.New("the native SfB client is signed out")

// SetTyping shows or hides from as typing in its active conversation with
// to. Without an active conversation it does nothing.
func (s *Server) SetTyping(ctx context.Context, from, to sfb.URI, typing bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	from, to = canonical(from), canonical(to)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[from] == nil || s.users[to] == nil {
		return fmt.Errorf("set typing from %s to %s: %w", from, to, sfb.ErrNotFound)
	}
	d := s.dialogs[keyOf(from, to)]
	if d == nil || d.state != dialogConnected {
		return nil
	}
	s.setTyping(d, d.sideOf(from), typing)
	return nil
}

// Typing reports whether from is currently shown as typing to uri.
func (s *Server) Typing(uri, from sfb.URI) bool {
	uri, from = canonical(uri), canonical(from)
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dialogs[keyOf(uri, from)]
	if d == nil || d.state == dialogEnded {
		return false
	}
	return d.parties[d.sideOf(from)].typingUntil.After(s.now())
}

// Applications is the number of live UCWA applications of uri.
func (s *Server) Applications(uri sfb.URI) int {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[uri]; u != nil && u.st != nil {
		return len(u.st.apps)
	}
	return 0
}

// PendingGETs is the number of applications of uri with a pending GET on
// their event channel (for tests that must know a P-GET is parked).
func (s *Server) PendingGETs(uri sfb.URI) int {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	if u := s.users[uri]; u != nil && u.st != nil {
		for _, a := range u.st.apps {
			if a.ec.waiter != nil {
				n++
			}
		}
	}
	return n
}

// DropEventChannel makes the pending GET of every application of uri fail
// with a connection closed in the middle of the answer; an application
// without one loses its next. The batch that answer carried is not
// acknowledged: asking again with the same ack gets it whole.
func (s *Server) DropEventChannel(uri sfb.URI) {
	s.forApps(uri, s.dropEvents)
}

// ForceResume makes the next event response of every application of uri
// carry a resume link instead of next, after resetting its transient state
// (its conversations end) as the server does after long inactivity.
func (s *Server) ForceResume(uri sfb.URI) {
	s.forApps(uri, func(a *app) {
		for _, v := range a.views() {
			if v.conf != nil {
				s.leaveView(v, nil, true)
				continue
			}
			s.endDialog(v.d, reasonResumed, v)
		}
		s.dropAppMeetings(a)
		a.ec.forceResume = true
		// The channel is re-created: the client's aggregation settings
		// are lost and must be sent again after the resume link.
		a.ec.settings = channelSettings{}
	})
}

// ForceResync makes the next event response of every application of uri
// consist of nothing but a resync link to the first unacknowledged batch.
func (s *Server) ForceResync(uri sfb.URI) {
	s.forApps(uri, func(a *app) {
		a.ec.forceResync = true
		a.ec.notify()
	})
}

// ExpireTokens invalidates every token issued to uri so far (401).
func (s *Server) ExpireTokens(uri sfb.URI) {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[uri]; u != nil {
		u.state().tokenGen++
	}
}

// ExpireConversations ends every conversation of uri now, as idle expiry
// would.
func (s *Server) ExpireConversations(uri sfb.URI) {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, d := range s.dialogs {
		if k.a == uri || k.b == uri {
			s.endDialog(d, reasonIdle, nil)
		}
	}
	for _, c := range s.confs {
		if m := c.member(uri); m != nil && m.joined() {
			s.endConference(c, reasonIdle)
		}
	}
}

// FailRequests makes the next n requests to the SfB side (discovery,
// OAuth, UCWA; not the control API) fail with status; 503 and 429 carry
// Retry-After: 1.
func (s *Server) FailRequests(n int, status int) {
	s.FailRequestsRetryAfter(n, status, time.Second)
}

// FailRequestsRetryAfter is FailRequests with the Retry-After to send.
func (s *Server) FailRequestsRetryAfter(n, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.failCount = max(0, n)
	s.faults.failStatus = status
	s.faults.retryAfter = retryAfter
}

// SetLatency adds d before every response of the SfB side.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.latency = max(0, d)
}

// DeleteApplications removes every application of uri as the server would:
// the next request on one answers 404 ApplicationNotFound.
func (s *Server) DeleteApplications(uri sfb.URI) {
	s.forApps(uri, func(a *app) {
		s.removeApp(a, goneApp{status: http.StatusNotFound, code: "NotFound", subcode: "ApplicationNotFound"})
	})
}

// RejectMessages makes deliveries to uri fail (invitations and messages
// complete with Failure) until called again with false.
func (s *Server) RejectMessages(uri sfb.URI, reject bool) error {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[uri]
	if u == nil {
		return fmt.Errorf("reject messages to %s: %w", uri, sfb.ErrNotFound)
	}
	u.state().rejectMessages = reject
	return nil
}

// SetNativeClient signs uri's native SfB client in or out. Every user
// starts signed in. Signed out, with no UCWA application either (a user
// migrated to Matrix whose bridge login ended), an invitation to uri fails
// with RemoteFailure/Unreachable and a native sender's SendMessage returns
// an error wrapping sfb.ErrDeliveryFailed, instead of the message going to
// a client nobody reads. Signing out ends the conversations the native
// client held, as leaving them would.
func (s *Server) SetNativeClient(uri sfb.URI, signedIn bool) error {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[uri]
	if u == nil {
		return fmt.Errorf("sign in native client of %s: %w", uri, sfb.ErrNotFound)
	}
	u.state().nativeSignedOut = !signedIn
	if signedIn {
		return nil
	}
	for _, c := range s.confs {
		if m := c.member(uri); m != nil && m.native {
			m.native = false
			if !m.joined() {
				s.memberLeft(c, m)
			}
		}
	}
	for _, d := range s.dialogs {
		if d.state == dialogEnded {
			continue
		}
		side := d.sideOf(uri)
		if d.parties[side].uri != uri || !d.parties[side].native() {
			continue
		}
		// A conversation the native client held ends; an invitation it
		// sent and nobody answered yet is withdrawn with it, or an accept
		// racing the sign-out would connect the peer to a client that is
		// gone.
		switch d.state {
		case dialogConnected:
			s.endDialog(d, reasonEnded, nil)
		case dialogOffering:
			s.endDialog(d, reasonCanceled, nil)
		}
	}
	return nil
}

func (s *Server) forApps(uri sfb.URI, f func(*app)) {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[uri]
	if u == nil || u.st == nil {
		return
	}
	for _, a := range append([]*app(nil), u.st.apps...) {
		f(a)
	}
}

// Sweep expires idle applications, conversations, unanswered invitations
// and typing states now, against Options.Now. The server also does this
// every SweepInterval.
func (s *Server) Sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, a := range s.apps {
		if a.ec.waiter == nil && now.Sub(a.lastActive) >= s.opts.ApplicationIdleTimeout {
			s.log.Debug().Str("app", a.id).Stringer("user", a.user.uri).Msg("application expired")
			s.removeApp(a, goneApp{status: http.StatusGone, code: "Gone", subcode: "InactiveApplicationExpired"})
		}
	}
	for _, d := range s.dialogs {
		switch d.state {
		case dialogOffering:
			if now.Sub(d.offeredAt) >= s.opts.InvitationTimeout {
				s.failDialog(d, reason{"Timeout", "", "The invitation was not answered in time."})
			}
		case dialogConnected:
			if now.Sub(d.lastActivity) >= s.opts.ConversationIdleTimeout {
				s.endDialog(d, reasonIdle, nil)
				continue
			}
			for side := range d.parties {
				if t := d.parties[side].typingUntil; !t.IsZero() && !t.After(now) {
					s.setTyping(d, side, false)
				}
			}
		}
	}
	s.sweepConferences(now)
	s.sweepPresence(now)
	s.sweepSIP(now)
	s.sweepCalls(now)
	for id, g := range s.gone {
		if now.Sub(g.at) > time.Hour {
			delete(s.gone, id)
		}
	}
}

func (s *Server) sweepLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// SfBRequests is how many HTTP requests the SfB side received so far (a
// batch is one), for the bench and tests.
func (s *Server) SfBRequests() int64 { return s.sfbRequests.Load() }

// BatchedRequests is how many requests arrived inside batches so far.
func (s *Server) BatchedRequests() int64 { return s.batched.Load() }

// Handler serves everything: autodiscovery, the WebTicket OAuth endpoint,
// UCWA under /ucwa/oauth/v1/ and the control API under /sim/v1/.
func (s *Server) Handler() http.Handler {
	control := s.controlHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/sim/v1/") {
			control.ServeHTTP(w, r)
			return
		}
		s.sfbRequests.Add(1)
		if !s.applyFaults(w, r) {
			return
		}
		s.serveSfB(w, r)
	})
}

// applyFaults delays and fails requests as configured; false means the
// request was answered.
func (s *Server) applyFaults(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	latency := s.faults.latency
	fail, status, retry := false, 0, time.Duration(0)
	if s.faults.failCount > 0 {
		s.faults.failCount--
		fail, status, retry = true, s.faults.failStatus, s.faults.retryAfter
	}
	s.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return false
		}
	}
	if fail {
		if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", fmt.Sprint(max(1, int(retry.Round(time.Second)/time.Second))))
		}
		code := strings.ReplaceAll(http.StatusText(status), " ", "")
		if status == http.StatusInternalServerError {
			code = "ServiceFailure"
		}
		writeError(w, status, code, "", "The service is temporarily unavailable (simulated fault).")
		return false
	}
	return true
}

func canonical(u sfb.URI) sfb.URI {
	if c, err := sfb.ParseURI(string(u)); err == nil {
		return c
	}
	return u
}

func normalizeMessage(m sfb.Message) (sfb.Message, error) {
	if m.Text == "" && m.HTML != "" {
		m.Text = htmlToText(m.HTML)
	}
	if strings.TrimSpace(m.Text) == "" {
		return m, errors.New("empty message")
	}
	if len(m.Text)+len(m.HTML) > maxMessageBytes {
		return m, fmt.Errorf("message of %d bytes is too large", len(m.Text)+len(m.HTML))
	}
	return m, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
