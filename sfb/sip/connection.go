package sip

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/pool"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipconn"
)

// maxRedirects bounds the 301/302 a sign-in follows (director to home
// pool, once more for a user being moved).
const maxRedirects = 3

// connOptions are the options of every connection the transport opens.
func (t *Transport) connOptions(log zerolog.Logger, h sipconn.Handler) sipconn.Options {
	return sipconn.Options{Logger: log, Handler: h, MaxOutstanding: t.cfg.SIP.MaxOutstanding,
		KeepAlive: t.timings.KeepAlive, TransactionTimeout: t.timings.RequestTimeout}
}

// registerPerUser signs s in as an SfB client does: its own connection
// to the user's pool, REGISTER with the NTLM handshake, then a goroutine
// that reconnects when the connection drops.
func (t *Transport) registerPerUser(ctx context.Context, s *Session, turn *signInTurn) error {
	c, reg, err := s.connectAndRegister(ctx, turn)
	if err != nil {
		return err
	}
	s.install(c, reg)
	t.refresh.schedule(s, refreshTime(t.timings, reg.registered, reg.lifetime))
	s.goTracked(func() { s.watch(c) })
	return nil
}

// connectAndRegister finds the user's pool, waits for the sign-in's turn
// (turn nil: a reconnect's, within ctx), connects and registers, following
// redirects to the home pool (pidgin-sipe's 301 handling) and trying the
// next discovered server when one cannot be reached.
func (s *Session) connectAndRegister(ctx context.Context, turn *signInTurn) (*sipconn.Conn, registration, error) {
	t := s.t
	servers, err := t.servers(ctx, s.self.Domain())
	if err != nil {
		return nil, registration{}, err
	}
	if err := t.waitTurn(ctx, turn, servers[0]); err != nil {
		return nil, registration{}, err
	}
	var errs []error
	for redirects := 0; ; redirects++ {
		var to *sfb.SIPServer
		for _, srv := range servers {
			if err := t.guard(srv).WaitPause(ctx); err != nil {
				return nil, registration{}, pool.WaitError(err)
			}
			c, err := s.dial(ctx, srv)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			reg := s.newRegistration(c, srv, "")
			err = s.register(ctx, c, &reg, false)
			if err == nil {
				return c, reg, nil
			}
			c.Close()
			var rd *redirectError
			if errors.As(err, &rd) {
				to = &rd.to
				break
			}
			var se *Error
			if errors.As(err, &se) || !errors.Is(err, sfb.ErrServerUnavailable) || ctx.Err() != nil {
				// The pool answered, or the failure is not the server's.
				return nil, registration{}, err
			}
			errs = append(errs, err)
		}
		if to == nil {
			t.forgetServers(s.self.Domain())
			return nil, registration{}, fmt.Errorf("no SIP server of %s took the connection: %w", s.self.Domain(), errors.Join(errs...))
		}
		if redirects >= maxRedirects {
			return nil, registration{}, fmt.Errorf("register: more than %d redirects (last to %s): %w", maxRedirects, to.Addr(), sfb.ErrServerUnavailable)
		}
		if to.TCP && (!t.cfg.AllowInsecureLoopback || !sfb.IsLoopback(to.Host)) {
			return nil, registration{}, fmt.Errorf("register: redirected to plain TCP at %s, refused", to.Addr())
		}
		s.log.Info().Str("pool", to.Addr()).Msg("Redirected to the user's home pool")
		servers = []sfb.SIPServer{*to}
	}
}

// dial opens the endpoint's own connection to srv.
func (s *Session) dial(ctx context.Context, srv sfb.SIPServer) (*sipconn.Conn, error) {
	nc, err := s.t.connect(ctx, srv)
	if err != nil {
		return nil, err
	}
	// Not s.ctx: the connection outlives Close's cancel for the
	// deregistration, and leave closes it.
	return sipconn.New(context.Background(), nc, s.t.connOptions(s.log, s.deliver)), nil
}

// install makes c and reg the endpoint's connection and registration;
// false when the session was closed meanwhile.
func (s *Session) install(c *sipconn.Conn, reg registration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	s.conn, s.reg = c, reg
	return true
}

// installOn updates the registration on c, the endpoint's connection;
// false when that is no longer c (dropped, replaced) or the session was
// closed.
func (s *Session) installOn(c *sipconn.Conn, reg registration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reg.callID == reg.callID {
		// Whatever else happened, the REGISTERs' CSeq went on.
		s.reg.cseq = max(s.reg.cseq, reg.cseq)
	}
	if s.closed.Load() || s.conn != c {
		return false
	}
	s.reg = reg
	return true
}

// watch is a per-user session's supervisor: when the connection drops, it
// tells the handler (SessionState) and connects and registers again with
// backoff, through the pool's sign-in ramp.
func (s *Session) watch(c *sipconn.Conn) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-c.Done():
		}
		if s.closed.Load() {
			return
		}
		s.mu.Lock()
		if s.conn == c {
			s.conn = nil
		}
		s.mu.Unlock()
		s.t.refresh.remove(s)
		s.t.observer.EventChannelReconnect()
		s.emit(sfb.SessionState{Connected: false, Err: fmt.Errorf("SIP connection lost: %w: %w", sfb.ErrServerUnavailable, c.Err())})
		if c = s.reconnect(); c == nil {
			return
		}
		s.connected()
	}
}

// reconnect connects and registers again with backoff until it works
// (the new connection), the session is closed or the failure is one that
// retrying cannot mend (the session ends; nil).
func (s *Session) reconnect() *sipconn.Conn {
	var step time.Duration
	for {
		step = pool.NextBackoff(step, s.t.timings.BackoffMin, s.t.timings.BackoffMax)
		if !ctxtime.Sleep(s.ctx, pool.Jitter(step)) {
			return nil
		}
		c, reg, err := s.connectAndRegister(s.ctx, nil)
		if err == nil {
			if !s.install(c, reg) {
				c.Close()
				return nil
			}
			s.t.refresh.schedule(s, refreshTime(s.t.timings, reg.registered, reg.lifetime))
			s.log.Info().Msg("Registered again")
			return c
		}
		if s.ctx.Err() != nil {
			return nil
		}
		if isFatal(err) {
			go s.end(err)
			return nil
		}
		s.log.Warn().Err(err).Dur("backoff", step).Msg("Registering again failed")
	}
}

// connected tells the handler the endpoint is registered again after it
// was told SessionState{Connected: false}. A new registration is a new
// endpoint to the server: what it held for the old one (subscriptions,
// dialogs) is gone, so presence.go makes its subscriptions again first.
func (s *Session) connected() {
	s.presenceReregistered()
	s.emit(sfb.SessionState{Connected: true})
}

// isFatal reports whether a registration failure cannot be mended by
// trying again: the session ends with it.
func isFatal(err error) bool {
	return errors.Is(err, sfb.ErrBadCredentials) || errors.Is(err, sfb.ErrCredentialsRequired) ||
		errors.Is(err, errRefused) || errors.Is(err, errUntrusted) || errors.Is(err, sfb.ErrNotFound) ||
		errors.Is(err, sfb.ErrUnsupported)
}

// reregister registers the endpoint anew after the server dropped its
// registration (registration-notify), or when refreshing it kept failing,
// in a goroutine that lives until that is done: on the same connection
// first (a user moved to another pool is redirected there); per user, a
// failure closes the connection and watch connects again, trusted mode
// retries on the shared connection with backoff.
func (s *Session) reregister(cause error) {
	s.mu.Lock()
	c, reg, tr := s.conn, s.reg, s.trunk
	s.conn = nil
	s.mu.Unlock()
	if c == nil {
		return
	}
	s.t.refresh.remove(s)
	started := s.goTracked(func() {
		s.emit(sfb.SessionState{Connected: false, Err: cause})
		if tr != nil {
			if s.registerOnTrunk(tr) {
				s.connected()
			}
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.t.timings.RequestTimeout)
		defer cancel()
		s.regMu.Lock()
		defer s.regMu.Unlock()
		s.mu.Lock()
		reg.cseq = max(reg.cseq, s.reg.cseq)
		s.mu.Unlock()
		reg.gruu = ""
		err := s.register(ctx, c, &reg, false)
		switch {
		case err == nil:
			if !s.install(c, reg) {
				c.Close() // closed meanwhile
				return
			}
			s.t.refresh.schedule(s, refreshTime(s.t.timings, reg.registered, reg.lifetime))
			s.connected()
		case isFatal(err):
			go s.end(err)
		default:
			s.log.Info().Err(err).Msg("Registering again on the connection failed: connecting again")
			c.Close()
		}
	})
	if !started && tr == nil {
		c.Close() // closed meanwhile, and Close no longer sees c
	}
}

// registerOnTrunk registers a trusted-mode endpoint again with backoff;
// false when the session was closed or ended.
func (s *Session) registerOnTrunk(tr *trunk) bool {
	var step time.Duration
	for {
		err := s.t.registerTrusted(s.ctx, s, nil)
		if err == nil {
			return true
		}
		if s.ctx.Err() != nil {
			return false
		}
		if isFatal(err) {
			go s.end(err)
			return false
		}
		step = pool.NextBackoff(step, s.t.timings.BackoffMin, s.t.timings.BackoffMax)
		s.log.Warn().Err(err).Dur("backoff", step).Msg("Registering again failed")
		if !ctxtime.Sleep(s.ctx, pool.Jitter(step)) {
			return false
		}
	}
}

// leave lets go of c after a deregistration: per-user it is the
// endpoint's own, trusted it stays for the others.
func (s *Session) leave(c *sipconn.Conn) {
	s.mu.Lock()
	tr := s.trunk
	s.mu.Unlock()
	if tr != nil {
		tr.remove(s)
		return
	}
	c.Close()
}

// dropConnection lets go of the endpoint's connection without
// deregistering (the session ended).
func (s *Session) dropConnection() {
	s.mu.Lock()
	c, tr := s.conn, s.trunk
	s.conn = nil
	s.mu.Unlock()
	switch {
	case tr != nil:
		tr.remove(s)
	case c != nil:
		// Not at once: the answer to what ended the session (the 200 to
		// a registration-notify) may still be queued, and Close drops
		// the queue.
		time.AfterFunc(closeLinger, func() { c.Close() })
	}
}

// closeLinger is how long an ended session's own connection stays open
// for what is queued on it.
const closeLinger = time.Second

// trunk is one of trusted mode's shared connections: it carries the
// endpoints of many users, reconnects with backoff when it drops, and then
// registers its endpoints again at the configured registration rate.
type trunk struct {
	t   *Transport
	srv sfb.SIPServer
	log zerolog.Logger

	mu      sync.Mutex
	conn    *sipconn.Conn
	ready   chan struct{} // closed while conn is set
	members map[*Session]struct{}
	started bool
	done    chan struct{}
	closed  bool
	// stopped is closed when run returned.
	stopped chan struct{}
}

// trunkFor is the shared connection user's endpoint lives on: fixed per
// user, so that a user's endpoint comes back on the same connection.
func (t *Transport) trunkFor(user sfb.URI) *trunk {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.trunks == nil {
		for i := range t.cfg.SIP.Connections {
			t.trunks = append(t.trunks, &trunk{t: t, srv: *t.server, log: t.log.With().Int("connection", i).Logger(),
				ready: make(chan struct{}), members: map[*Session]struct{}{}, done: make(chan struct{}), stopped: make(chan struct{})})
		}
	}
	h := fnv.New32a()
	h.Write([]byte(user))
	return t.trunks[h.Sum32()%uint32(len(t.trunks))]
}

// registerTrusted registers s's endpoint on its shared connection,
// without a challenge (the connection's certificate vouches for the
// application), at the transport's registration rate (turn nil: within
// ctx).
func (t *Transport) registerTrusted(ctx context.Context, s *Session, turn *signInTurn) error {
	tr := t.trunkFor(s.self)
	if err := t.waitTurn(ctx, turn, tr.srv); err != nil {
		return err
	}
	c, err := tr.get(ctx)
	if err != nil {
		return err
	}
	reg := s.newRegistration(c, tr.srv, t.cfg.SIP.ApplicationFQDN)
	if err := s.register(ctx, c, &reg, false); err != nil {
		return err
	}
	s.mu.Lock()
	s.trunk = tr
	s.mu.Unlock()
	if !s.install(c, reg) {
		return errClosed
	}
	tr.add(s)
	t.refresh.schedule(s, refreshTime(t.timings, reg.registered, reg.lifetime))
	return nil
}

// get returns the trunk's connection, connecting on first use and waiting
// while it reconnects.
func (tr *trunk) get(ctx context.Context) (*sipconn.Conn, error) {
	for {
		tr.mu.Lock()
		if tr.closed {
			tr.mu.Unlock()
			return nil, fmt.Errorf("shared SIP connection: %w", sipconn.ErrClosed)
		}
		if !tr.started {
			tr.started = true
			go tr.run()
		}
		c, ready := tr.conn, tr.ready
		tr.mu.Unlock()
		if c != nil {
			return c, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the shared SIP connection to %s: %w: %w", tr.srv.Addr(), sfb.ErrServerUnavailable, ctx.Err())
		}
	}
}

func (tr *trunk) add(s *Session) {
	tr.mu.Lock()
	tr.members[s] = struct{}{}
	tr.mu.Unlock()
}

func (tr *trunk) remove(s *Session) {
	tr.mu.Lock()
	delete(tr.members, s)
	tr.mu.Unlock()
}

// close ends the trunk and waits for its goroutine; its endpoints are
// gone with it.
func (tr *trunk) close() {
	tr.mu.Lock()
	if tr.closed {
		tr.mu.Unlock()
		return
	}
	tr.closed = true
	close(tr.done)
	if tr.conn != nil {
		tr.conn.Close()
	}
	started := tr.started
	tr.mu.Unlock()
	if started {
		<-tr.stopped
	}
}

// handle routes a request on the shared connection to the endpoint it is
// for; one for no registered endpoint is answered 480.
func (tr *trunk) handle(c *sipconn.Conn, req *sipmsg.Request) {
	if s := tr.t.endpointFor(req); s != nil {
		s.deliver(c, req)
		return
	}
	if req.Method != sipmsg.ACK && req.Method != "BENOTIFY" {
		_ = c.Respond(req, 480, "Temporarily Unavailable", nil)
	}
}

// run keeps the trunk connected.
func (tr *trunk) run() {
	defer close(tr.stopped)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-tr.done
		cancel()
	}()
	var step time.Duration
	for ctx.Err() == nil {
		nc, err := tr.t.connect(ctx, tr.srv)
		if err != nil {
			step = pool.NextBackoff(step, tr.t.timings.BackoffMin, tr.t.timings.BackoffMax)
			tr.log.Warn().Err(err).Dur("backoff", step).Msg("Shared SIP connection failed")
			ctxtime.Sleep(ctx, pool.Jitter(step))
			continue
		}
		step = 0
		c := sipconn.New(context.Background(), nc, tr.t.connOptions(tr.log, tr.handle))
		tr.mu.Lock()
		if tr.closed {
			tr.mu.Unlock()
			c.Close()
			return
		}
		tr.conn = c
		close(tr.ready)
		tr.mu.Unlock()
		tr.log.Info().Msg("Shared SIP connection up")
		select {
		case <-c.Done():
		case <-ctx.Done():
			c.Close()
			return
		}
		tr.mu.Lock()
		tr.conn, tr.ready = nil, make(chan struct{})
		members := make([]*Session, 0, len(tr.members))
		for s := range tr.members {
			members = append(members, s)
		}
		tr.mu.Unlock()
		tr.log.Warn().Err(c.Err()).Int("endpoints", len(members)).Msg("Shared SIP connection lost: its endpoints register again")
		go tr.reregisterAll(members, fmt.Errorf("shared SIP connection lost: %w: %w", sfb.ErrServerUnavailable, c.Err()))
	}
}

// reregisterWorkers bounds the goroutines that register a lost trunk's
// endpoints again; the registration rate paces them anyway.
const reregisterWorkers = 32

// reregisterAll registers members again after their shared connection
// dropped, each telling its handler it is disconnected, then connected.
func (tr *trunk) reregisterAll(members []*Session, cause error) {
	next := make(chan *Session)
	var wg sync.WaitGroup
	for range min(reregisterWorkers, len(members)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range next {
				s.mu.Lock()
				s.conn = nil
				s.mu.Unlock()
				s.t.refresh.remove(s)
				s.emit(sfb.SessionState{Connected: false, Err: cause})
				if s.registerOnTrunk(tr) {
					s.connected()
				}
			}
		}()
	}
	for _, s := range members {
		if !s.closed.Load() {
			next <- s
		}
	}
	close(next)
	wg.Wait()
}
