package ucwa

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// appState is what the session knows about its UCWA application.
type appState struct {
	base             *url.URL // the applications URL; hrefs resolve against it
	self             string
	events           string
	makeMeAvailable  string
	reportMyActivity string
	me               string
	startMessaging   string
	conversations    string // the communication's conversations collection
	people           string
	search           string
	// Presence: the application's batch resource, people's
	// presenceSubscriptions and myContacts, me's presence and note.
	batch                 string
	presenceSubscriptions string
	myContacts            string
	myPresence            string
	myNote                string
}

// session is one signed-in user. It implements sfb.Session.
type session struct {
	t          *Transport
	c          *conn
	log        zerolog.Logger
	self       sfb.URI
	handler    sfb.EventHandler
	endpointID string
	// renewAt is the fraction of a token's lifetime after which this
	// user's token is renewed (renewFraction).
	renewAt float64

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup

	closed    atomic.Bool
	inHandler atomic.Bool

	recreateMu sync.Mutex

	mu           sync.Mutex
	app          appState
	appGen       int
	person       sfb.Person
	issued       time.Time
	convs        map[string]*conv // by conversation href
	participants map[string]sfb.Person
	ops          *operations
	seen         *seenSet
	outgoing     map[string]sfb.URI
	// groupStarts are the multi-party conversations being started, by
	// the operation ID of their startMessaging (group.go).
	groupStarts map[string]sfb.Group
	// convWake is closed (and replaced) when a conversation's messaging
	// changes, for awaitAccept; acceptWaiters counts those waiting.
	convWake      chan struct{}
	acceptWaiters atomic.Int32
	// typing holds the refresher of setIsTyping per peer while the user
	// types.
	typing map[sfb.URI]context.CancelFunc
	// firsts holds invitations' first messages by conversation href until
	// their repeat arrives. Not in conv: a resync between the invitation
	// and the repeat forgets the conversation, not the repeat.
	firsts map[string]firstMessage
	// resume is where a later session continues: the events URL whose
	// ack covers exactly the batches the handler finished, with the
	// invitations' first messages as of then. Never ahead of the handler.
	resume resumePoint
	// startEvents is where the event loop starts: the resumed events URL,
	// else the application's events link.
	startEvents string

	emitMu sync.Mutex

	pres *presenceState
	// meetings: open meeting invitations and ringing calls (meeting.go).
	meetings meetingState
}

// resumePoint is the part of ResumeState that moves with the event channel.
type resumePoint struct {
	events string
	firsts map[string]firstMessage
}

var (
	_ sfb.Session         = (*session)(nil)
	_ sfb.DeliveryTracker = (*session)(nil)
)

func newSession(t *Transport, c *conn, self sfb.URI, handler sfb.EventHandler) *session {
	s := &session{t: t, c: c, log: c.log, self: self, handler: handler, endpointID: newUUID(),
		renewAt: renewFraction(self, t.timings),
		convs:   map[string]*conv{}, participants: map[string]sfb.Person{}, firsts: map[string]firstMessage{},
		ops: newOperations(), seen: newSeenSet(4096), issued: t.now(), pres: newPresenceState(t.cfg.PresenceWatchLimit),
		meetings: newMeetingState()}
	s.person = sfb.Person{URI: self, DisplayName: self.Address()}
	c.onToken = func(sfb.Token) {
		s.mu.Lock()
		s.issued = t.now()
		s.mu.Unlock()
	}
	return s
}

// signInTurn is a sign-in's wait for its turn towards the pool
// (sfb.SignInRequest.Turn and OnTurn).
type signInTurn struct {
	// ctx bounds the wait, and discovery before it: it ends with the
	// caller's Turn or with SignIn's ctx.
	ctx    context.Context
	once   sync.Once
	onTurn func()
}

// waitTurn waits for a sign-in slot of the pool of the applications URL
// apps: within turn during SignIn, within ctx for an application created
// again later (turn nil).
func (s *session) waitTurn(ctx context.Context, turn *signInTurn, apps string) error {
	if turn == nil {
		return s.t.waitSignIn(ctx, apps)
	}
	if err := s.t.waitSignIn(turn.ctx, apps); err != nil {
		return err
	}
	if turn.onTurn != nil {
		turn.once.Do(turn.onTurn)
	}
	return nil
}

// start continues the application of resume when the server still has it,
// else creates a new one, and starts the session's goroutines.
func (s *session) start(ctx context.Context, turn *signInTurn, resume string) error {
	resumed := false
	if resume != "" {
		err := s.resumeApplication(ctx, turn, resume)
		switch {
		case err == nil:
			resumed = true
		case errors.Is(err, sfb.ErrBadCredentials) || errors.Is(err, sfb.ErrCredentialsRequired) || ctx.Err() != nil ||
			(turn != nil && turn.ctx.Err() != nil):
			return err
		case errors.Is(err, sfb.ErrServerUnavailable):
			// The application may well be alive: a new one would give
			// up what it holds. The caller retries with the same state.
			return fmt.Errorf("resume application: %w", err)
		default:
			// Gone (404/410), unreadable state, another server: what it
			// held is lost either way, a new application is all we can do.
			s.log.Info().Err(err).Msg("Cannot continue the earlier UCWA application, creating a new one")
		}
	}
	if !resumed {
		if err := s.createApplication(ctx, turn, false); err != nil {
			return err
		}
	}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	if resumed {
		// Before the event loop: its redelivered events and the caller's
		// first send then find the conversations. After s.ctx exists:
		// resolving a participant uses it.
		lctx, lcancel := context.WithCancel(s.ctx)
		stop := context.AfterFunc(ctx, lcancel)
		s.loadConversations(lctx)
		stop()
		lcancel()
	}
	s.wg.Add(4)
	go s.eventLoop()
	go s.activityLoop()
	go s.tokenLoop()
	go s.presenceLoop(resumed)
	return nil
}

// createApplication discovers (or takes from the cache) the applications
// URL, creates the UCWA application and makes the user available.
func (s *session) createApplication(ctx context.Context, turn *signInTurn, rediscover bool) error {
	if rediscover {
		s.t.forgetApplicationsURL(s.self.Domain())
	}
	// Discovery leaves nothing on the server: the caller may end it.
	dctx := ctx
	if turn != nil {
		dctx = turn.ctx
	}
	apps, err := s.t.applicationsURL(dctx, s.c, s.self)
	if err != nil {
		return err
	}
	if err := s.waitTurn(ctx, turn, apps); err != nil {
		return fmt.Errorf("create application: %w", err)
	}
	body, _ := json.Marshal(map[string]string{"UserAgent": s.t.cfg.UserAgent, "EndpointId": s.endpointID, "Culture": "en-US"})
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	defer cancel()
	var app Application
	_, err = s.c.doJSON(rctx, request{op: "create application", method: http.MethodPost, url: apps, body: body, contentType: "application/json", signIn: true}, &app)
	if err != nil {
		if st := statusOf(err); (st == http.StatusForbidden || st == http.StatusBadGateway || st == http.StatusNotFound) && !rediscover {
			// RootURL.md: 403 and 502 invalidate the cached URL.
			s.log.Info().Err(err).Msg("Applications URL failed, discovering again")
			return s.createApplication(ctx, turn, true)
		}
		return err
	}
	if err := s.useApplication(apps, &app, "create application"); err != nil {
		return err
	}
	s.mu.Lock()
	s.startEvents = s.app.events
	// Nothing of this application is handled yet.
	s.resume = resumePoint{events: s.app.events}
	self := s.app.self
	s.mu.Unlock()
	s.log.Debug().Str("application", self).Msg("Created UCWA application")
	return s.makeMeAvailable(ctx)
}

// useApplication makes app, read from the applications URL apps, the
// session's application.
func (s *session) useApplication(apps string, app *Application, op string) error {
	base, err := url.Parse(apps)
	if err != nil {
		return fmt.Errorf("parse applications URL: %w", err)
	}
	st := appState{base: base}
	res := func(h string) string { return resolveHref(base, h) }
	st.self = res(app.Self())
	st.events = res(app.Links.Href("events"))
	if st.events == "" {
		return fmt.Errorf("%s: response has no events link", op)
	}
	var me Me
	if ok, err := decodeEmbedded(app.Embedded, "me", &me); err != nil || !ok {
		return fmt.Errorf("%s: embedded me: present=%v: %v", op, ok, err)
	}
	st.me = res(me.Self())
	st.makeMeAvailable = res(me.Links.Href("makeMeAvailable"))
	st.reportMyActivity = res(me.Links.Href("reportMyActivity"))
	st.myPresence = res(me.Links.Href("presence"))
	st.myNote = res(me.Links.Href("note"))
	st.batch = res(app.Links.Href("batch"))
	var comm Communication
	if ok, err := decodeEmbedded(app.Embedded, "communication", &comm); err != nil || !ok {
		return fmt.Errorf("%s: embedded communication: present=%v: %v", op, ok, err)
	}
	st.startMessaging = res(comm.Links.Href("startMessaging"))
	st.conversations = res(comm.Links.Href("conversations"))
	var people Resource
	if ok, _ := decodeEmbedded(app.Embedded, "people", &people); ok {
		st.people = res(people.Self())
		st.search = res(people.Links.Href("search"))
		st.presenceSubscriptions = res(people.Links.Href("presenceSubscriptions"))
		st.myContacts = res(people.Links.Href("myContacts"))
	}
	if st.startMessaging == "" {
		return fmt.Errorf("%s: communication has no startMessaging link", op)
	}
	s.mu.Lock()
	s.app = st
	s.appGen++
	if me.Name != "" {
		s.person.DisplayName = me.Name
	}
	s.mu.Unlock()
	return nil
}

func (s *session) makeMeAvailable(ctx context.Context) error {
	s.mu.Lock()
	st := s.app
	s.mu.Unlock()
	if st.makeMeAvailable != "" {
		body, _ := json.Marshal(map[string][]string{"SupportedModalities": {"Messaging"}, "SupportedMessageFormats": {"Plain", "Html"}})
		rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
		_, err := s.c.do(rctx, request{op: "make me available", method: http.MethodPost, url: st.makeMeAvailable, body: body, contentType: "application/json", signIn: true})
		cancel()
		// 409 AlreadyExists: this application was already made available.
		if err != nil && statusOf(err) != http.StatusConflict {
			return err
		}
	}
	// reportMyActivity, presence and note appear on me once the user is
	// available.
	if (st.reportMyActivity == "" || st.myPresence == "") && st.me != "" {
		rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
		var me Me
		_, err := s.c.doJSON(rctx, request{op: "get me", method: http.MethodGet, url: st.me, signIn: true}, &me)
		cancel()
		if err == nil {
			s.mu.Lock()
			s.app.reportMyActivity = resolveHref(st.base, me.Links.Href("reportMyActivity"))
			s.app.myPresence = resolveHref(st.base, me.Links.Href("presence"))
			s.app.myNote = resolveHref(st.base, me.Links.Href("note"))
			if me.Name != "" {
				s.person.DisplayName = me.Name
			}
			s.mu.Unlock()
		} else {
			s.log.Warn().Err(err).Msg("Could not read me after makeMeAvailable")
		}
	}
	return nil
}

// recreate creates a new application after the server lost ours (404
// ApplicationNotFound / InactiveApplicationExpired) or, with rediscover,
// refused its URL (RootURL.md: 403/502 invalidate the cached applications
// URL). gen is the application generation the caller saw fail, so
// concurrent callers recreate once.
func (s *session) recreate(ctx context.Context, gen int, rediscover bool) error {
	s.recreateMu.Lock()
	defer s.recreateMu.Unlock()
	s.mu.Lock()
	cur := s.appGen
	s.mu.Unlock()
	if cur != gen {
		return nil
	}
	why := "the UCWA application was lost and created again"
	if rediscover {
		why = "the UCWA application was created again after rediscovery"
	}
	s.log.Info().Bool("rediscover", rediscover).Msg("UCWA application is gone, creating a new one")
	if err := s.createApplication(ctx, nil, rediscover); err != nil {
		return fmt.Errorf("recreate application: %w", err)
	}
	s.resetTransient("application recreated")
	s.failPending(why)
	s.subscriptionsLost()
	return nil
}

// errOutcomeUnknown ends a SendMessage whose completion event the server
// will never send; the message may or may not have reached the peer.
var errOutcomeUnknown = errors.New("delivery outcome unknown")

// failPending ends the waits of in-flight operations at once instead of
// letting their callers run into OperationTimeout.
func (s *session) failPending(why string) {
	if n := s.ops.failAll(fmt.Errorf("%w: %s: %w", errOutcomeUnknown, why, sfb.ErrServerUnavailable)); n > 0 {
		s.log.Warn().Int("operations", n).Str("why", why).Msg("In-flight operations failed")
	}
}

func (s *session) appSnapshot() (appState, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app, s.appGen
}

// emit hands evt to the handler unless the session is closed, one event
// at a time; the event goroutine emits in the server's order.
func (s *session) emit(evt sfb.Event) {
	s.emitMu.Lock()
	defer s.emitMu.Unlock()
	if s.closed.Load() {
		return
	}
	s.inHandler.Store(true)
	defer s.inHandler.Store(false)
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Any("panic", r).Type("event", evt).Msg("Event handler panicked")
		}
	}()
	s.handler(s.ctx, evt)
}

// end stops the session because of err; the event goroutine reports it
// as SessionEnded.
func (s *session) end(err error) {
	s.cancel(err)
}

func (s *session) Self() sfb.Person {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.person
}

func (s *session) Token() sfb.Token { return s.c.currentToken() }

// Close signs out: stops the goroutines, deletes the application and
// forgets the cached applications URL (RootURL.md: explicit sign-out).
func (s *session) Close(ctx context.Context) error {
	if !s.stop(ctx) {
		return nil
	}
	st, _ := s.appSnapshot()
	s.t.forgetApplicationsURL(s.self.Domain())
	if st.self == "" {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	defer cancel()
	_, err := s.c.do(rctx, request{op: "delete application", method: http.MethodDelete, url: st.self, noRetry401: true})
	if err != nil && !applicationGone(err) {
		return fmt.Errorf("sign out %s: %w", s.self, err)
	}
	return nil
}

// Detach stops the goroutines and leaves the application on the server,
// which keeps events for it until it expires, for a later session that
// resumes from ResumeState.
func (s *session) Detach(ctx context.Context) error {
	s.stop(ctx)
	return nil
}

// stop ends the goroutines once; false when already stopped. It does not
// wait for them when called from the handler, which runs on one of them.
func (s *session) stop(ctx context.Context) bool {
	if s.closed.Swap(true) {
		return false
	}
	s.cancel(errStopped)
	if !s.inHandler.Load() {
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	return true
}

// renewFraction is where in a token's lifetime user renews it: a point
// between RenewFrom and RenewTo that a hash of the address fixes. Tokens
// obtained in the same minute (all logins signing in after a restart) are
// then renewed spread over the window, not in the same minute again, and a
// user's renewal time is the same on every run.
func renewFraction(user sfb.URI, tm Timings) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(user.Address()))
	return tm.RenewFrom + (tm.RenewTo-tm.RenewFrom)*float64(h.Sum64()>>11)/(1<<53)
}

// tokenLoop renews the token at renewAt of its lifetime when the password
// is known, and ends the session when it expires otherwise.
func (s *session) tokenLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(s.t.timings.TokenCheck)
	defer tick.Stop()
	var backoff time.Duration
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		tok := s.c.currentToken()
		s.mu.Lock()
		issued := s.issued
		s.mu.Unlock()
		now := s.t.now()
		lifetime := tok.ExpiresAt.Sub(issued)
		renewAt := issued.Add(time.Duration(float64(lifetime) * s.renewAt))
		if now.Before(renewAt) {
			continue
		}
		if s.c.creds.Password == "" {
			if !now.Before(tok.ExpiresAt) {
				s.end(fmt.Errorf("token expired at %s: %w", tok.ExpiresAt.Format(time.RFC3339), sfb.ErrCredentialsRequired))
				return
			}
			continue
		}
		rctx, cancel := context.WithTimeout(s.ctx, s.t.cfg.RequestTimeout)
		err := s.c.renew(rctx)
		cancel()
		s.t.observer.TokenRenewed(err)
		if err != nil {
			// The server refusing the password (invalid_grant) or the
			// password grant itself (unsupported_grant_type,
			// invalid_request) will not change by asking again.
			if errors.Is(err, sfb.ErrBadCredentials) || errors.Is(err, sfb.ErrCredentialsRequired) || errors.Is(err, sfb.ErrUnsupported) {
				s.end(fmt.Errorf("renew token: %w", err))
				return
			}
			// Many sessions share the token endpoint: back off (capped,
			// jittered, or as long as Retry-After says) so that a
			// struggling server is not asked by all of them every tick.
			backoff = nextBackoff(backoff, s.t.timings)
			wait := retryWait(err, backoff, s.t.timings)
			s.log.Warn().Err(err).Dur("retry_in", wait).Msg("Token renewal failed, retrying")
			if !now.Before(tok.ExpiresAt) {
				s.log.Warn().Msg("Token expired while renewal keeps failing")
			}
			if !ctxtime.Sleep(s.ctx, wait) {
				return
			}
			continue
		}
		backoff = 0
		s.log.Debug().Msg("Renewed UCWA token")
	}
}

func resolveHref(base *url.URL, h string) string {
	if h == "" || base == nil {
		return h
	}
	u, err := base.Parse(h)
	if err != nil {
		return ""
	}
	return u.String()
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// seenSet remembers recent message IDs so a message delivered twice (after
// a resume, or in the invitation and again as a message) is emitted once.
type seenSet struct {
	max   int
	set   map[string]struct{}
	order []string
}

func newSeenSet(n int) *seenSet { return &seenSet{max: n, set: map[string]struct{}{}} }

// add reports whether id is new.
func (s *seenSet) add(id string) bool {
	if _, ok := s.set[id]; ok {
		return false
	}
	s.set[id] = struct{}{}
	s.order = append(s.order, id)
	if len(s.order) > s.max {
		delete(s.set, s.order[0])
		s.order = s.order[1:]
	}
	return true
}

// opResult is how an operation (an outgoing invitation or message)
// completed in the event channel.
type opResult struct {
	status     string
	reason     *ErrorBody
	invitation *MessagingInvitation
	// err, when set, says the completion will never come (the server
	// closed the conversations or the application is gone).
	err error
}

// operations matches completed events to the requests waiting for them.
// Keys are "op:<operationId>" and "href:<resource>"; a result that
// arrives before its waiter registered (the POST's answer and the event
// race) is kept in early.
type operations struct {
	mu      sync.Mutex
	waiters map[string]chan opResult
	early   map[string]opResult
	order   []string
}

func newOperations() *operations {
	return &operations{waiters: map[string]chan opResult{}, early: map[string]opResult{}}
}

// register registers ch for keys; it returns a result already seen, if any.
func (o *operations) register(ch chan opResult, keys ...string) (opResult, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range keys {
		if r, ok := o.early[k]; ok {
			delete(o.early, k)
			return r, true
		}
	}
	for _, k := range keys {
		o.waiters[k] = ch
	}
	return opResult{}, false
}

func (o *operations) unregister(keys ...string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range keys {
		delete(o.waiters, k)
	}
}

// failAll ends every wait with err: after a new application or a resumed
// event channel the server closed the conversations, so the completions
// the waiters expect will never arrive.
func (o *operations) failAll(err error) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	seen := map[chan opResult]bool{}
	for k, ch := range o.waiters {
		if !seen[ch] {
			seen[ch] = true
			select {
			case ch <- opResult{err: err}:
			default:
			}
		}
		delete(o.waiters, k)
	}
	clear(o.early)
	o.order = nil
	return len(seen)
}

func (o *operations) complete(res opResult, keys ...string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range keys {
		if ch, ok := o.waiters[k]; ok {
			select {
			case ch <- res:
			default:
			}
			return
		}
	}
	for _, k := range keys {
		o.early[k] = res
		o.order = append(o.order, k)
	}
	for len(o.order) > 512 {
		delete(o.early, o.order[0])
		o.order = o.order[1:]
	}
}
