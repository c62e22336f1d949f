package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/pool"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipae"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipconn"
)

// Session is one signed-in user: the user's endpoint on the pool. It
// implements sfb.Session.
//
// # Internal API (for im.go and presence.go)
//
// Outgoing requests:
//   - newRequest builds a request outside any dialog (new Call-ID, CSeq 1,
//     From the user with a new tag and the epid, Contact, User-Agent);
//     request(d, method) builds one inside Dialog d, requestCSeq an ACK or
//     CANCEL with the INVITE's CSeq; newDialog starts a dialog,
//     dialogFromRequest takes one from the server's INVITE or SUBSCRIBE,
//     Dialog.update completes it from a 2xx (dialog.go).
//   - do sends a request and returns its final response: signed in
//     per-user mode, the server's signature of the answer verified, the
//     answer told to the observer and the pool's guard. A failure status
//     (>= 300) comes back as *Error, with the response too, so that a
//     caller can look at it (409 of a publication). It fails at once with
//     sfb.ErrServerUnavailable while the endpoint is not registered
//     (reconnecting).
//   - send writes an ACK (no transaction; it gets a Via of its own).
//
// Requests from the server arrive in order, one at a time per endpoint,
// on a goroutine that exists only while the endpoint has requests queued
// (no goroutine per idle endpoint), through dispatch, which calls:
//   - handleIM (im.go) for INVITE, MESSAGE, INFO, BYE, ACK and CANCEL;
//   - handlePresence (presence.go) for NOTIFY and BENOTIFY of every event
//     but registration-notify (register.go's).
//
// A hook answers the request itself with respond, exactly once (never an
// ACK nor a BENOTIFY, which get no answer), after it emitted what the
// request brought: the server sees the 200 only once the handler has the
// event. The signature of the request has been verified before.
//
// emit hands an event to the bridge's handler: one at a time, never after
// Close. ctx is the session's context, ended by Close/Detach or the end
// of the session. When the endpoint registers anew (reconnect,
// deregistration by the server), connected calls presenceReregistered
// before the handler hears SessionState{Connected: true}: the server ended
// the old registration's subscriptions and dialogs.
//
// The state im.go and presence.go keep per session lives in imState and
// presenceState, fields of Session that those files define: in trusted
// mode 70,000 sessions live in one process, so what an idle session holds
// must stay small (no goroutine, timer or preallocated map).
type Session struct {
	t       *Transport
	self    sfb.URI
	log     zerolog.Logger
	handler sfb.EventHandler
	// creds are kept in per-user mode to authenticate again (a new
	// security association every eight hours, reconnects); trusted mode
	// keeps no password.
	creds sfb.Credentials

	// epid and instance identify the endpoint (From's epid parameter,
	// Contact's +sip.instance); stable per user (identity.go).
	epid     string
	instance string

	ctx    context.Context
	cancel context.CancelCauseFunc
	closed atomic.Bool
	// inHandler: the handler runs; Close from it must not wait for itself.
	inHandler atomic.Bool
	wg        sync.WaitGroup

	// regMu serialises the endpoint's REGISTERs (refresh, new handshake,
	// registering again, deregistering): they share one Call-ID and CSeq.
	regMu sync.Mutex

	mu sync.Mutex
	// conn is the connection the endpoint is registered on; nil while it
	// is not (reconnecting, redirected, closed).
	conn *sipconn.Conn
	reg  registration
	// trunk is the shared connection of a trusted-mode endpoint.
	trunk *trunk
	// inbox holds the server's requests in arrival order until dispatch
	// takes them; draining tells whether a goroutine does.
	inbox    []inbound
	draining bool
	// arrival is the connection of the request being dispatched: its
	// answer goes there even once the endpoint is no longer registered
	// on it (closing), as a response goes back on the request's
	// connection.
	arrival *sipconn.Conn

	// refreshAt and heapIndex are the refresh scheduler's (refresh.go).
	refreshAt time.Time
	heapIndex int

	emitMu sync.Mutex

	//lint:ignore U1000 im.go's, filled as it grows
	im imState
	//lint:ignore U1000 presence.go's, filled as it grows
	pres presenceState
}

var _ sfb.Session = (*Session)(nil)

// maxInbox bounds the requests queued for one endpoint; beyond it the
// server is answered 503 with Retry-After rather than buffered without end.
const maxInbox = 256

// SignIn implements sfb.Transport: in per-user mode it connects, registers
// and authenticates as the user (the password is needed); in trusted mode
// it registers the user's endpoint on a shared connection.
func (t *Transport) SignIn(ctx context.Context, req sfb.SignInRequest, handler sfb.EventHandler) (sfb.Session, error) {
	self, err := sfb.ParseURI(req.Credentials.SignInAddress)
	if err != nil {
		return nil, fmt.Errorf("sign in: %w", err)
	}
	if t.mode == sfb.SIPModePerUser && req.Credentials.Password == "" {
		return nil, fmt.Errorf("sign in %s: SIP registration needs the password: %w", self, sfb.ErrCredentialsRequired)
	}
	s := &Session{t: t, self: self, handler: handler, log: t.log.With().Str("user", self.Address()).Logger(),
		epid: epidOf(self), heapIndex: -1}
	if t.mode == sfb.SIPModePerUser {
		s.creds = req.Credentials
	}
	s.instance = instanceOf(s.epid)
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	turn := newSignInTurn(ctx, req)
	defer turn.release()
	t.claim(s)
	if t.mode == sfb.SIPModeTrusted {
		err = t.registerTrusted(ctx, s, turn)
	} else {
		err = t.registerPerUser(ctx, s, turn)
	}
	if err != nil {
		t.release(s)
		s.cancel(err)
		return nil, fmt.Errorf("sign in %s: %w", self, err)
	}
	return s, nil
}

// claim makes s the user's endpoint. A session of the same user still
// registered is closed first: one endpoint per user, and both would share
// the epid and +sip.instance, so the server would take them for one.
func (t *Transport) claim(s *Session) {
	t.mu.Lock()
	old := t.endpoints[s.self]
	t.endpoints[s.self] = s
	t.mu.Unlock()
	if old != nil {
		ctx, cancel := context.WithTimeout(context.Background(), t.timings.RequestTimeout)
		defer cancel()
		s.log.Info().Msg("The user signs in again: the earlier session ends")
		_ = old.Close(ctx)
	}
}

// release forgets s as its user's endpoint, unless a newer session took
// the place.
func (t *Transport) release(s *Session) {
	t.mu.Lock()
	if t.endpoints[s.self] == s {
		delete(t.endpoints, s.self)
	}
	t.mu.Unlock()
}

// endpointFor finds the session a request on a shared connection is for:
// by the user of its To header (our AOR, or our GRUU, whose user part is
// the AOR), else of its Request-URI.
func (t *Transport) endpointFor(req *sipmsg.Request) *Session {
	var candidates []sipmsg.Uri
	if to := req.To(); to != nil {
		candidates = append(candidates, to.Address)
	}
	candidates = append(candidates, req.Recipient)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, u := range candidates {
		if u.User == "" || u.Host == "" {
			continue
		}
		if s := t.endpoints[sfb.URI("sip:"+strings.ToLower(u.User+"@"+u.Host))]; s != nil {
			return s
		}
	}
	return nil
}

// signInTurn is a sign-in's wait for its turn towards the pool
// (sfb.SignInRequest.Turn and OnTurn), as in the UCWA transport.
type signInTurn struct {
	ctx    context.Context
	once   sync.Once
	onTurn func()
	stop   func()
}

func newSignInTurn(ctx context.Context, req sfb.SignInRequest) *signInTurn {
	turn := &signInTurn{ctx: ctx, onTurn: req.OnTurn, stop: func() {}}
	if req.Turn != nil {
		tctx, cancel := context.WithCancelCause(req.Turn)
		stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
		turn.ctx, turn.stop = tctx, func() { stop(); cancel(nil) }
	}
	return turn
}

func (turn *signInTurn) release() { turn.stop() }

// waitTurn waits for a sign-in slot of srv's pool, then tells the caller the
// sign-in got its turn. turn nil (a session's own re-registration) waits
// within ctx.
func (t *Transport) waitTurn(ctx context.Context, turn *signInTurn, srv sfb.SIPServer) error {
	if turn == nil {
		return pool.WaitError(t.guard(srv).WaitSignIn(ctx))
	}
	if err := pool.WaitError(t.guard(srv).WaitSignIn(turn.ctx)); err != nil {
		return err
	}
	if turn.onTurn != nil {
		turn.once.Do(turn.onTurn)
	}
	return nil
}

// Self implements sfb.Session: the name is the one the registrar gave
// (From of the 200 to REGISTER), else the address.
func (s *Session) Self() sfb.Person {
	_, reg := s.connection()
	name := reg.displayName
	if name == "" {
		name = s.self.Address()
	}
	return sfb.Person{URI: s.self, DisplayName: name}
}

// Token implements sfb.Session: SIP has no bearer token; the password (per
// user) or the certificate (trusted) authenticates every registration.
func (s *Session) Token() sfb.Token { return sfb.Token{} }

// ResumeState implements sfb.Session: a SIP endpoint cannot be continued
// by a later process; what arrives while none is registered is refused by
// the server, and senders are told.
func (s *Session) ResumeState() string { return "" }

// LookupPerson implements sfb.Session with the person's contact card; a
// person the server has no card for is known by address.
func (s *Session) LookupPerson(ctx context.Context, uri sfb.URI) (sfb.Person, error) {
	person := sfb.Person{URI: uri, DisplayName: uri.Address()}
	card, err := s.contactCard(ctx, uri)
	if err != nil {
		return person, err
	}
	if card != nil && card.DisplayName != "" {
		person.DisplayName = card.DisplayName
	}
	return person, nil
}

// Close implements sfb.Session: it deregisters the endpoint (REGISTER with
// Expires: 0) and, in per-user mode, closes its connection.
func (s *Session) Close(ctx context.Context) error {
	if !s.stop(ctx) {
		return nil
	}
	s.closeIM(ctx)
	return s.deregister(ctx)
}

// Detach implements sfb.Session as Close: a SIP registration cannot wait
// for a later process (the server routes to a registered endpoint at once
// and fails what it cannot deliver), so it is removed rather than left to
// swallow messages until it expires.
func (s *Session) Detach(ctx context.Context) error { return s.Close(ctx) }

// stop ends the session's work once; false when already stopped.
func (s *Session) stop(ctx context.Context) bool {
	if s.closed.Swap(true) {
		return false
	}
	s.shutdown(ctx, errClosed)
	return true
}

// shutdown stops what the session runs, once it is marked closed, and
// waits for it within ctx (not from the handler, which runs on it).
func (s *Session) shutdown(ctx context.Context, cause error) {
	s.t.refresh.remove(s)
	s.t.release(s)
	s.cancel(cause)
	// closed is set: once past this, nothing starts a goroutine of the
	// session (goTracked and deliver check it under mu), so Wait does
	// not race an Add.
	s.mu.Lock()
	//lint:ignore SA2001 the empty critical section is the barrier
	s.mu.Unlock()
	if !s.inHandler.Load() {
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
}

// errClosed is the cause of a session's context after Close or Detach.
var errClosed = errors.New("session closed")

// end stops a session that ended by itself and tells the handler why, as
// its last event: closed is set under emitMu, so no event follows.
func (s *Session) end(err error) {
	s.emitMu.Lock()
	if s.closed.Swap(true) {
		s.emitMu.Unlock()
		return
	}
	s.log.Warn().Err(err).Msg("SIP session ended")
	s.callHandler(sfb.SessionEnded{Err: err})
	s.emitMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.t.timings.RequestTimeout)
	defer cancel()
	s.shutdown(ctx, err)
	s.dropConnection()
}

// emit hands evt to the handler unless the session is closed, one event
// at a time, and reports whether the handler took it.
func (s *Session) emit(evt sfb.Event) (handled bool) {
	s.emitMu.Lock()
	defer s.emitMu.Unlock()
	if s.closed.Load() {
		return false
	}
	s.callHandler(evt)
	// A handler returns early when the session's context ends, without
	// having kept the event: what the server is told must say so.
	return s.ctx.Err() == nil
}

// callHandler runs the handler on evt; emitMu is held.
func (s *Session) callHandler(evt sfb.Event) {
	s.inHandler.Store(true)
	defer s.inHandler.Store(false)
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Any("panic", r).Type("event", evt).Msg("Event handler panicked")
		}
	}()
	s.handler(s.ctx, evt)
}

// connection is the connection the endpoint is registered on, with its
// registration state; nil while not registered.
func (s *Session) connection() (*sipconn.Conn, registration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn, s.reg
}

// inbound is a request from the server and the connection it came on.
type inbound struct {
	c   *sipconn.Conn
	req *sipmsg.Request
}

// newRequest builds a request to uri (a SIP URI, "sip:bob@contoso.com" or
// a GRUU) outside any dialog, with To the same URI: a new Call-ID, CSeq 1,
// From the user with a new tag and the epid (as pidgin-sipe's
// sip_transport_request_timeout), Contact, Max-Forwards and User-Agent.
// The caller adds the body (SetBody and Content-Type) and what else the
// method needs.
func (s *Session) newRequest(method sipmsg.RequestMethod, uri string) (*sipmsg.Request, error) {
	var ru sipmsg.Uri
	if err := sipmsg.ParseUri(uri, &ru); err != nil {
		return nil, fmt.Errorf("request URI %q: %w", uri, err)
	}
	req := sipmsg.NewRequest(method, ru)
	s.addCommon(req, newTag(), "<"+uri+">", newCallID(), 1, method)
	return req, nil
}

// addCommon adds the headers every request of the endpoint carries.
func (s *Session) addCommon(req *sipmsg.Request, fromTag, to, callID string, cseq uint32, method sipmsg.RequestMethod) {
	req.AppendHeader(sipmsg.NewHeader("From", "<"+string(s.self)+">;tag="+fromTag+";epid="+s.epid))
	req.AppendHeader(sipmsg.NewHeader("To", to))
	req.AppendHeader(sipmsg.NewHeader("Call-ID", callID))
	req.AppendHeader(sipmsg.NewHeader("CSeq", fmt.Sprintf("%d %s", cseq, method)))
	req.AppendHeader(sipmsg.NewHeader("Max-Forwards", "70"))
	if method != sipmsg.ACK && method != sipmsg.CANCEL {
		req.AppendHeader(sipmsg.NewHeader("Contact", s.contact()))
	}
	req.AppendHeader(sipmsg.NewHeader("User-Agent", s.t.cfg.UserAgent))
}

// contact is the Contact of the endpoint's requests and responses: its
// GRUU once registered (pidgin-sipe), else its registered address.
func (s *Session) contact() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reg.gruu != "" {
		return "<" + s.reg.gruu + ">"
	}
	return s.reg.contactAddr
}

// do sends req on the endpoint's connection and returns its final
// response (see Session's documentation). op names what is being done, for
// errors.
func (s *Session) do(ctx context.Context, op string, req *sipmsg.Request) (*sipmsg.Response, error) {
	c, reg := s.connection()
	if c == nil {
		return nil, fmt.Errorf("%s: not registered (reconnecting): %w", op, sfb.ErrServerUnavailable)
	}
	return s.doOn(ctx, c, reg, op, req)
}

// doOn is do on a given connection and registration: re-registration
// uses it before the endpoint's connection is set.
func (s *Session) doOn(ctx context.Context, c *sipconn.Conn, reg registration, op string, req *sipmsg.Request) (*sipmsg.Response, error) {
	method := string(req.Method)
	for attempt := 0; ; attempt++ {
		if err := s.sign(reg, req); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		sent := time.Now()
		res, err := c.Do(ctx, req)
		if err != nil {
			s.t.observer.ServerAnswered(0, "")
			if errors.Is(err, sipconn.ErrClosed) || errors.Is(err, sipconn.ErrTimeout) {
				return nil, fmt.Errorf("%s: %s: %w: %w", op, method, sfb.ErrServerUnavailable, err)
			}
			return nil, fmt.Errorf("%s: %s: %w", op, method, err)
		}
		if err := s.verifyResponse(reg, res); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", op, method, err)
		}
		s.observe(reg.server, sent, res)
		if res.StatusCode == 401 && reg.sa != nil && attempt == 0 && req.Method != sipmsg.REGISTER {
			// The server no longer knows the security association
			// (MS-SIPAE 3.2.5.2 challenges a request it cannot
			// verify): a new handshake, then the request once more,
			// signed anew, as pidgin-sipe resends it.
			if reg, err = s.reauthenticate(ctx, c, reg.sa); err != nil {
				return res, fmt.Errorf("%s: %s: %w", op, method, err)
			}
			req.RemoveHeader("Via")
			continue
		}
		if res.StatusCode >= 300 {
			return res, responseError(op, method, res)
		}
		return res, nil
	}
}

// reauthenticate runs a new handshake on c after the server refused the
// security association old, unless another request did so meanwhile; it
// returns the registration to sign with from now on.
func (s *Session) reauthenticate(ctx context.Context, c *sipconn.Conn, old *sipae.SA) (registration, error) {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	cur, reg := s.connection()
	if cur != c {
		return reg, fmt.Errorf("authenticate again: the connection was replaced: %w", sfb.ErrServerUnavailable)
	}
	if reg.sa != old {
		return reg, nil
	}
	s.log.Info().Msg("The server refused the security association: authenticating again")
	reg.sa, reg.saSince = nil, time.Time{}
	if err := s.register(ctx, c, &reg, false); err != nil {
		if isFatal(err) {
			go s.end(err)
		}
		return reg, fmt.Errorf("authenticate again: %w", err)
	}
	if !s.installOn(c, reg) {
		return reg, fmt.Errorf("authenticate again: the connection was replaced: %w", sfb.ErrServerUnavailable)
	}
	s.t.refresh.schedule(s, refreshTime(s.t.timings, reg.registered, reg.lifetime))
	return reg, nil
}

// observe tells the observer and the pool's guard how the pool answered a
// request sent at sent.
func (s *Session) observe(srv sfb.SIPServer, sent time.Time, res *sipmsg.Response) {
	s.t.observer.ServerAnswered(res.StatusCode, diagnostics(res))
	g := s.t.guard(srv)
	ra := retryAfter(res)
	switch {
	case res.StatusCode == 503 || (res.StatusCode >= 400 && ra > 0):
		g.Refused(sent, ra)
	case res.StatusCode < 500:
		g.Succeeded(sent)
	}
}

// send writes msg (an ACK) on the endpoint's connection, signed.
func (s *Session) send(req *sipmsg.Request) error {
	c, reg := s.connection()
	if c == nil {
		return fmt.Errorf("send %s: not registered (reconnecting): %w", req.Method, sfb.ErrServerUnavailable)
	}
	if req.Via() == nil {
		// Send, unlike Do, adds none; an ACK to a 2xx is a transaction
		// of its own, with a branch of its own.
		host, port := hostPort(c.LocalAddr())
		params := sipmsg.NewParams()
		params.Add("branch", sipmsg.GenerateBranch())
		req.PrependHeader(&sipmsg.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: c.Transport(),
			Host: host, Port: port, Params: params})
	}
	if err := s.sign(reg, req); err != nil {
		return fmt.Errorf("send %s: %w", req.Method, err)
	}
	return c.Send(req)
}

// hostPort splits a stream's address for Via.
func hostPort(a net.Addr) (string, int) {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), 0
	}
	n, _ := strconv.Atoi(port)
	return host, n
}

// respond answers a request from the server: the response pidgin-sipe's
// sip_transport_response builds (To, From, Call-ID, CSeq, Via and
// Record-Route of the request, a To tag, Contact, User-Agent), signed in
// per-user mode. headers are added as given (Content-Type with a body).
func (s *Session) respond(req *sipmsg.Request, status int, reason string, body []byte, headers ...sipmsg.Header) error {
	s.mu.Lock()
	c, reg := s.conn, s.reg
	if c == nil {
		c = s.arrival
	}
	s.mu.Unlock()
	if c == nil {
		return fmt.Errorf("answer %s %d: not registered (reconnecting): %w", req.Method, status, sfb.ErrServerUnavailable)
	}
	return s.respondOn(c, reg, req, status, reason, body, headers...)
}

func (s *Session) respondOn(c *sipconn.Conn, reg registration, req *sipmsg.Request, status int, reason string, body []byte, headers ...sipmsg.Header) error {
	res := sipmsg.NewResponseFromRequest(req, status, reason, nil)
	if status >= 200 && status < 300 {
		res.AppendHeader(sipmsg.NewHeader("Contact", s.contact()))
	}
	for _, h := range headers {
		res.AppendHeader(h)
	}
	res.AppendHeader(sipmsg.NewHeader("User-Agent", s.t.cfg.UserAgent))
	res.SetBody(body)
	if reg.sa != nil {
		f, err := sipae.FieldsFrom(func(name string) string { return headerValue(res, name) }, status)
		if err != nil {
			return fmt.Errorf("answer %s %d: %w", req.Method, status, err)
		}
		p, err := reg.sa.Sign(f)
		if err != nil {
			return fmt.Errorf("answer %s %d: %w", req.Method, status, err)
		}
		// An SfB client signs its responses as its requests, in
		// Authorization (pidgin-sipe's sip_transport_response).
		res.AppendHeader(sipmsg.NewHeader(reg.authHeader, p.String()))
	}
	if err := c.Send(res); err != nil {
		return fmt.Errorf("answer %s %d: %w", req.Method, status, err)
	}
	return nil
}

// deliver queues a request from the server for the endpoint's ordered
// dispatch; the connection's reader calls it and must not block.
func (s *Session) deliver(c *sipconn.Conn, req *sipmsg.Request) {
	s.mu.Lock()
	if s.closed.Load() {
		// Closed while the reader routed the request here: no
		// goroutine may start once shutdown waits for them.
		s.mu.Unlock()
		if req.Method != sipmsg.ACK && req.Method != "BENOTIFY" {
			_ = c.Respond(req, 480, "Temporarily Unavailable", nil)
		}
		return
	}
	if len(s.inbox) >= maxInbox {
		s.mu.Unlock()
		s.log.Warn().Str("method", string(req.Method)).Msg("Too many requests queued for the endpoint: answered 503")
		if req.Method != sipmsg.ACK && req.Method != "BENOTIFY" {
			_ = c.Respond(req, 503, "Service Unavailable", nil, sipmsg.NewHeader("Retry-After", "5"))
		}
		return
	}
	s.inbox = append(s.inbox, inbound{c, req})
	if s.draining {
		s.mu.Unlock()
		return
	}
	s.draining = true
	s.wg.Add(1)
	s.mu.Unlock()
	go s.drain()
}

// goTracked runs fn on a goroutine Close waits for; false (fn not run)
// once the session is closed.
func (s *Session) goTracked(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

// drain dispatches queued requests in order until none is left.
func (s *Session) drain() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if len(s.inbox) == 0 || s.closed.Load() {
			left := s.inbox
			s.inbox, s.draining, s.arrival = nil, false, nil
			s.mu.Unlock()
			// Closed: what waited is refused rather than left for the
			// server to time out.
			for _, in := range left {
				if in.req.Method != sipmsg.ACK && in.req.Method != "BENOTIFY" {
					_ = in.c.Respond(in.req, 480, "Temporarily Unavailable", nil)
				}
			}
			return
		}
		in := s.inbox[0]
		s.inbox[0] = inbound{}
		s.inbox = s.inbox[1:]
		s.arrival = in.c
		s.mu.Unlock()
		s.dispatchSafely(in.req)
	}
}

// dispatchSafely dispatches req; a panic in a hook is logged and answered
// 500, never the end of the connection others share.
func (s *Session) dispatchSafely(req *sipmsg.Request) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Any("panic", r).Str("method", string(req.Method)).Msg("Handling a request from the server panicked")
			if req.Method != sipmsg.ACK && req.Method != "BENOTIFY" {
				_ = s.respond(req, 500, "Server Internal Error", nil)
			}
		}
	}()
	if err := s.verifyRequest(req); err != nil {
		// pidgin-sipe drops the connection on a bad signature; the
		// request is refused here, the connection kept: a shared one
		// carries others, and a forged request only fails itself.
		s.log.Warn().Err(err).Str("method", string(req.Method)).Msg("Request from the server refused: signature")
		if req.Method != sipmsg.ACK && req.Method != "BENOTIFY" {
			_ = s.respond(req, 403, "Forbidden", nil)
		}
		return
	}
	s.dispatch(s.ctx, req)
}

// dispatch routes one request from the server by method (pidgin-sipe's
// process_input_message).
func (s *Session) dispatch(ctx context.Context, req *sipmsg.Request) {
	switch req.Method {
	case sipmsg.INVITE, sipmsg.MESSAGE, sipmsg.INFO, sipmsg.BYE, sipmsg.ACK, sipmsg.CANCEL:
		s.handleIM(ctx, req)
	case sipmsg.NOTIFY, "BENOTIFY":
		if strings.EqualFold(eventName(req), "registration-notify") {
			s.handleRegistrationNotify(ctx, req)
			return
		}
		s.handlePresence(ctx, req)
	case sipmsg.OPTIONS:
		_ = s.respond(req, 200, "OK", nil, sipmsg.NewHeader("Allow", allowedMethods))
	case sipmsg.PRACK, sipmsg.SUBSCRIBE:
		// pidgin-sipe answers both 200 (LCS 2005 sends SUBSCRIBE).
		_ = s.respond(req, 200, "OK", nil)
	default:
		_ = s.respond(req, 501, "Not Implemented", nil)
	}
}

// allowedMethods are the methods the endpoint takes, as SfB clients list
// them in Contact's methods parameter.
const allowedMethods = "INVITE, MESSAGE, INFO, SUBSCRIBE, OPTIONS, BYE, CANCEL, NOTIFY, ACK, REFER, BENOTIFY"

// eventName is the event package of an Event header, without parameters.
func eventName(m sipmsg.Message) string {
	v := headerValue(m, "Event")
	if v == "" {
		v = headerValue(m, "o")
	}
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}
