package sim

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipae"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipconn"
)

// The SIP front end: the same users, conversations and presence as the
// UCWA side, reached over SIP as SfB's own clients (and pidgin-sipe) reach
// a Front End, and as trusted applications (UCMA) do over mutual TLS.

// SIPOptions configure the SIP front end (Options.SIP).
type SIPOptions struct {
	// FQDN is the Front End's name: the NTLM targetname, the host in the
	// Contact of requests the server sends and in ms-diagnostics' source;
	// default "fe.sfb-sim.local".
	FQDN string
	// TrustedApplications are the FQDNs of trusted applications. A TLS
	// peer whose certificate the listener's tls.Config verified (ClientCAs)
	// and that names one of them (DNS name or common name) is a trusted
	// application: it registers endpoints for any user without a
	// challenge, and neither its messages nor the server's are signed.
	TrustedApplications []string
	// RegistrationExpiry is the longest registration granted (Expires of
	// the 200); a REGISTER asking less gets what it asked. Default 7200s,
	// what SfB grants.
	RegistrationExpiry time.Duration
	// MaxEndpointsPerUser bounds the registrations of one user (SfB's
	// registrar setting of that name, 8 by default); a REGISTER of one
	// more endpoint is refused with 403.
	MaxEndpointsPerUser int
	// KeepAliveTimeout is the ms-keep-alive timeout the 200 to REGISTER
	// announces; default 300s as in MS-SIPREGE's examples.
	KeepAliveTimeout time.Duration
	// Rand is the random source of NTLM challenges, opaque values and
	// signatures; nil means crypto/rand. A test replaying a recorded
	// sign-in gives the recorded challenge.
	Rand io.Reader
	// QueueLength bounds the requests waiting to be handled per
	// connection; the connection's reader waits beyond. Default 64 (it is
	// allocated with every connection, and per-user mode has one per user).
	QueueLength int
}

func (o *SIPOptions) setDefaults() {
	if o.FQDN == "" {
		o.FQDN = "fe.sfb-sim.local"
	}
	if o.RegistrationExpiry <= 0 {
		o.RegistrationExpiry = 7200 * time.Second
	}
	if o.MaxEndpointsPerUser <= 0 {
		o.MaxEndpointsPerUser = 8
	}
	if o.KeepAliveTimeout <= 0 {
		o.KeepAliveTimeout = 300 * time.Second
	}
	if o.QueueLength <= 0 {
		o.QueueLength = 64
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	} else {
		o.Rand = &lockedReader{r: o.Rand}
	}
}

// lockedReader lets a caller's reader be shared by every connection.
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

// sipServerHeader is the Server header of SfB 2015 (RTC/6.0); pidgin-sipe
// takes a major version of 6 or more for Skype for Business.
const sipServerHeader = "RTC/6.0"

// sipState is the server's SIP side, under Server.mu.
type sipState struct {
	listeners map[net.Listener]struct{}
	conns     map[*sipConn]struct{}
	// served counts the connections being served, for Close to wait.
	served sync.WaitGroup
	// legs are the established SIP legs of dialogs and the inviters'
	// legs, by Call-ID and the endpoint's tag.
	legs map[legKey]*sipLeg
	// registrations counts live registrations (all users).
	registrations int
	faults        sipFaults
	// homes are the pools users are homed on elsewhere: their REGISTER
	// is redirected there (301).
	homes map[sfb.URI]string
}

type sipFaults struct {
	// failCount requests are answered failStatus (503 carries
	// Retry-After).
	failCount  int
	failStatus int
	retryAfter time.Duration
	latency    time.Duration
}

// sipConn is one SIP connection to the server.
type sipConn struct {
	c   *sipconn.Conn
	log zerolog.Logger
	// trusted is the FQDN of the trusted application at the other end, ""
	// for a client connection.
	trusted string
	queue   chan *sip.Request
	done    chan struct{}

	// Under Server.mu:

	// handshakes are the NTLM handshakes in progress, by opaque.
	handshakes map[string]*sipae.Server
	// user is the user authenticated on this connection (client
	// connections only).
	user *user
	// regs are the registrations made over this connection.
	regs map[*sipReg]struct{}
	// legs are the dialog legs of endpoints on this connection.
	legs map[*sipLeg]struct{}

	// sa signs and verifies the messages of the authenticated user; it is
	// read without the server's lock by whoever sends on the connection.
	sa atomic.Pointer[sipae.SA]
}

// ServeSIP accepts SIP connections on ln until ln fails or the server is
// closed. With tlsConf the connections are TLS (the caller's server
// certificate; for trusted applications ClientCAs must hold their
// issuers); without, plain TCP, meant for loopback. Several listeners may
// be served at once.
func (s *Server) ServeSIP(ln net.Listener, tlsConf *tls.Config) error {
	if tlsConf != nil {
		tlsConf = tlsConf.Clone()
		if len(s.opts.SIP.TrustedApplications) > 0 && tlsConf.ClientAuth < tls.VerifyClientCertIfGiven {
			tlsConf.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.sip.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sip.listeners, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: wait and go on,
				// as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("accept SIP connection: %w", err)
		}
		delay = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return nil
		}
		s.sip.served.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.sip.served.Done()
			s.serveSIPConn(nc, tlsConf)
		}()
	}
}

// ErrClosed is returned by ServeSIP once the server is closed.
var ErrClosed = errors.New("sfb simulator closed")

func (s *Server) serveSIPConn(nc net.Conn, tlsConf *tls.Config) {
	log := s.log.With().Str("component", "sfb-sim-sip").Stringer("remote", nc.RemoteAddr()).Logger()
	sc := &sipConn{
		log:        log,
		queue:      make(chan *sip.Request, s.opts.SIP.QueueLength),
		done:       make(chan struct{}),
		handshakes: make(map[string]*sipae.Server),
		regs:       make(map[*sipReg]struct{}),
		legs:       make(map[*sipLeg]struct{}),
	}
	if tlsConf != nil {
		tc := tls.Server(nc, tlsConf)
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			log.Debug().Err(err).Msg("SIP TLS handshake failed")
			_ = nc.Close()
			return
		}
		sc.trusted = s.trustedApplication(tc.ConnectionState())
		nc = tc
	}
	if sc.trusted != "" {
		sc.log = sc.log.With().Str("trusted_application", sc.trusted).Logger()
	}
	// Requests wait in the queue until the worker starts.
	sc.c = sipconn.New(s.ctx, nc, sipconn.Options{
		Logger: sc.log,
		Handler: func(_ *sipconn.Conn, req *sip.Request) {
			select {
			case sc.queue <- req:
			case <-sc.done:
			}
		},
	})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		close(sc.done)
		_ = sc.c.Close()
		return
	}
	s.sip.conns[sc] = struct{}{}
	s.mu.Unlock()
	sc.log.Debug().Str("transport", sc.c.Transport()).Msg("SIP connection accepted")
	go s.sipWorker(sc)
	<-sc.c.Done()
	close(sc.done)
	s.mu.Lock()
	delete(s.sip.conns, sc)
	for r := range sc.regs {
		s.removeRegistration(r)
	}
	s.sipConnGone(sc)
	s.mu.Unlock()
	sc.log.Debug().AnErr("reason", sc.c.Err()).Msg("SIP connection ended")
}

// trustedApplication returns the trusted application a verified client
// certificate names, or "".
func (s *Server) trustedApplication(st tls.ConnectionState) string {
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return ""
	}
	cert := st.PeerCertificates[0]
	names := append([]string{cert.Subject.CommonName}, cert.DNSNames...)
	for _, app := range s.opts.SIP.TrustedApplications {
		for _, n := range names {
			if n != "" && strings.EqualFold(n, app) {
				return app
			}
		}
	}
	return ""
}

// sipWorker handles the requests of one connection in order, so that the
// connection's reader never waits for the server's lock. It never waits
// for a response from the peer (that needs the reader): requests the
// server sends go out from goroutines of their own.
func (s *Server) sipWorker(sc *sipConn) {
	for {
		select {
		case <-sc.done:
			return
		case req := <-sc.queue:
			s.handleSIP(sc, req)
		}
	}
}

// handleSIP dispatches one request by method, after the faults and the
// authentication every request but REGISTER needs.
func (s *Server) handleSIP(sc *sipConn, req *sip.Request) {
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil {
		if req.Method != sip.ACK {
			sc.respond(req, sip.StatusBadRequest, sipReason(400), nil, sipDiagnostics(s.opts.SIP.FQDN, 5004, "Failed parsing the incoming request: no From, To, Call-ID or CSeq"))
		}
		return
	}
	if !s.applySIPFaults(sc, req) {
		return
	}
	if req.Method == sip.REGISTER {
		s.sipRegister(sc, req)
		return
	}
	from, ok := s.sipAuthenticate(sc, req)
	if !ok {
		return
	}
	switch req.Method {
	case sip.SUBSCRIBE, sip.PUBLISH, sip.NOTIFY, "SERVICE", "BENOTIFY":
		s.serveSIPPresence(sc, req, from)
	case sip.INVITE, sip.ACK, sip.MESSAGE, sip.INFO, sip.BYE, sip.CANCEL:
		s.serveSIPIM(sc, req, from)
	case sip.OPTIONS:
		sc.respond(req, sip.StatusOK, "OK", nil,
			sip.NewHeader("Allow", "INVITE, MESSAGE, INFO, SUBSCRIBE, OPTIONS, BYE, CANCEL, NOTIFY, ACK, REFER, BENOTIFY, SERVICE"),
			sip.NewHeader("Supported", "ms-forking, gruu-10, adhoclist, msrtc-event-categories"))
	default:
		sc.respond(req, sip.StatusNotImplemented, "Not Implemented", nil)
	}
}

// sipAuthenticate checks who sends req: on a trusted application's
// connection any directory user in From, else the user authenticated on
// the connection, whose signature the request must carry (MS-SIPAE 3.2.5.2:
// an unsigned or badly signed request is challenged again).
func (s *Server) sipAuthenticate(sc *sipConn, req *sip.Request) (*user, bool) {
	fromURI, err := sipFromURI(req)
	if err != nil {
		if req.Method != sip.ACK {
			sc.respond(req, sip.StatusBadRequest, "Bad Request", nil, sipDiagnostics(s.opts.SIP.FQDN, 5004, "Failed parsing the incoming request: From"))
		}
		return nil, false
	}
	sa := sc.sa.Load()
	s.mu.Lock()
	authUser := sc.user
	u := s.users[fromURI]
	s.mu.Unlock()
	if sc.trusted != "" {
		if u == nil {
			if req.Method != sip.ACK {
				sc.respond(req, sip.StatusNotFound, "Not Found", nil, sipDiagnostics(s.opts.SIP.FQDN, 1003, "User does not exist"))
			}
			return nil, false
		}
		return u, true
	}
	if sa == nil {
		if req.Method != sip.ACK {
			sc.respond(req, sip.StatusUnauthorized, "Unauthorized", nil, s.ntlmOffer())
		}
		return nil, false
	}
	if err := sipVerify(sa, req); err != nil {
		sc.log.Debug().Err(err).Str("method", string(req.Method)).Msg("SIP request without a valid signature")
		if req.Method != sip.ACK {
			sc.respond(req, sip.StatusUnauthorized, "Unauthorized", nil, s.ntlmOffer())
		}
		return nil, false
	}
	if u != authUser {
		if req.Method != sip.ACK {
			sc.respond(req, sip.StatusForbidden, "Forbidden", nil, sipNotAuthorized(s.opts.SIP.FQDN))
		}
		return nil, false
	}
	return u, true
}

// applySIPFaults delays and fails requests as configured; false means the
// request was answered.
func (s *Server) applySIPFaults(sc *sipConn, req *sip.Request) bool {
	s.mu.Lock()
	f := &s.sip.faults
	latency := f.latency
	fail, status, retry := false, 0, time.Duration(0)
	if f.failCount > 0 && req.Method != sip.ACK {
		f.failCount--
		fail, status, retry = true, f.failStatus, f.retryAfter
	}
	s.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-sc.done:
			t.Stop()
			return false
		}
	}
	if !fail {
		return true
	}
	var hdrs []sip.Header
	if status == sip.StatusServiceUnavailable {
		hdrs = append(hdrs, sip.NewHeader("Retry-After", strconv.Itoa(max(1, int(retry.Round(time.Second)/time.Second)))))
	}
	hdrs = append(hdrs, sipDiagnostics(s.opts.SIP.FQDN, 1, "Service unavailable"))
	sc.respond(req, status, sipReason(status), nil, hdrs...)
	return false
}

// FailSIPRequests makes the next n requests to the SIP front end (ACK
// excepted) fail with status; 503 carries Retry-After.
func (s *Server) FailSIPRequests(n, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sip.faults.failCount = max(0, n)
	s.sip.faults.failStatus = status
	s.sip.faults.retryAfter = retryAfter
}

// SetSIPLatency delays the handling of every SIP request by d (the
// requests of one connection stay in order).
func (s *Server) SetSIPLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sip.faults.latency = max(0, d)
}

// DropSIPConnections closes every SIP connection carrying a registration
// of uri (for a trusted application's connection: every endpoint on it
// goes with it), as a Front End going down does. It returns how many were
// closed.
func (s *Server) DropSIPConnections(uri sfb.URI) int {
	uri = canonical(uri)
	s.mu.Lock()
	var conns []*sipConn
	if u := s.users[uri]; u != nil && u.st != nil {
		seen := map[*sipConn]bool{}
		for _, r := range u.st.sipRegs {
			if !seen[r.conn] {
				seen[r.conn] = true
				conns = append(conns, r.conn)
			}
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.c.Close()
	}
	return len(conns)
}

func (s *Server) closeSIP() {
	s.mu.Lock()
	var lns []net.Listener
	for ln := range s.sip.listeners {
		lns = append(lns, ln)
	}
	var conns []*sipConn
	for c := range s.sip.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, ln := range lns {
		_ = ln.Close()
	}
	for _, c := range conns {
		_ = c.c.Close()
	}
	s.sip.served.Wait()
}

// respond answers req, signed when the connection's user authenticated
// (once the security association is established every message of the
// server carries Authentication-Info; pidgin-sipe drops unsigned ones).
func (sc *sipConn) respond(req *sip.Request, status int, reason string, body []byte, hdrs ...sip.Header) {
	sc.send(sc.sa.Load(), sipResponse(req, status, reason, body, hdrs...))
}

// sipResponse builds the response to req with the server's headers.
func sipResponse(req *sip.Request, status int, reason string, body []byte, hdrs ...sip.Header) *sip.Response {
	resp := sip.NewResponseFromRequest(req, status, reason, nil)
	for _, h := range hdrs {
		if h != nil {
			resp.AppendHeader(h)
		}
	}
	resp.AppendHeader(sip.NewHeader("Server", sipServerHeader))
	if body != nil {
		resp.SetBody(body)
	}
	return resp
}

// send signs resp with sa (when not nil) and sends it.
func (sc *sipConn) send(sa *sipae.SA, resp *sip.Response) {
	if sa != nil {
		if err := sipSign(sa, resp, resp.StatusCode); err != nil {
			sc.log.Warn().Err(err).Msg("signing a SIP response")
		}
	}
	if err := sc.c.Send(resp); err != nil {
		sc.log.Debug().Err(err).Int("status", resp.StatusCode).Msg("sending a SIP response")
	}
}

// sipSign adds the signature of sa to msg (status 0 for a request): the
// Authentication-Info of the server's side.
func sipSign(sa *sipae.SA, msg sip.Message, status int) error {
	f, err := sipae.FieldsFrom(sipHeader(msg), status)
	if err != nil {
		return err
	}
	p, err := sa.Sign(f)
	if err != nil {
		return err
	}
	msg.AppendHeader(sip.NewHeader("Authentication-Info", p.String()))
	return nil
}

// sipVerify checks the signature (Authorization or Proxy-Authorization) of
// a client's message.
func sipVerify(sa *sipae.SA, msg sip.Message) error {
	v := sipHeader(msg)("Authorization")
	if v == "" {
		v = sipHeader(msg)("Proxy-Authorization")
	}
	if v == "" {
		return sipae.ErrNotSigned
	}
	p, err := sipae.ParseHeader(v)
	if err != nil {
		return err
	}
	status := 0
	if r, ok := msg.(*sip.Response); ok {
		status = r.StatusCode
	}
	f, err := sipae.FieldsFrom(sipHeader(msg), status)
	if err != nil {
		return err
	}
	return sa.Verify(f, p)
}

// sipHeader reads the first value of a header of msg by name.
func sipHeader(msg sip.Message) func(string) string {
	return func(name string) string {
		if hs := msg.GetHeaders(name); len(hs) > 0 {
			return hs[0].Value()
		}
		return ""
	}
}

// sipDiagnostics is the ms-diagnostics header SfB adds to its failures,
// with an error ID of MS-OCER's lists and its reason.
func sipDiagnostics(fqdn string, code int, reason string) sip.Header {
	return sip.NewHeader("ms-diagnostics", fmt.Sprintf("%d;reason=%q;source=%q", code, reason, fqdn))
}

// sipNotAuthorized answers a request whose From is not the user signed in
// on the connection (MS-OCER 4004, a public diagnostic).
func sipNotAuthorized(fqdn string) sip.Header {
	return sip.NewHeader("ms-diagnostics-public", fmt.Sprintf("4004;reason=%q;source=%q", "Credentials provided are not authorized to act as specified from URI", fqdn))
}

// sipReason is the reason phrase of a status.
func sipReason(status int) string {
	switch status {
	case 200:
		return "OK"
	case 202:
		return "Accepted"
	case 301:
		return "Moved Permanently"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 408:
		return "Request Timeout"
	case 415:
		return "Unsupported Media Type"
	case 480:
		return "Temporarily Unavailable"
	case 481:
		return "Call Leg/Transaction Does Not Exist"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 500:
		return "Server Internal Error"
	case 501:
		return "Not Implemented"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Server Time-out"
	case 603:
		return "Decline"
	}
	return "Error"
}

// sipFromURI and sipToURI are the directory addresses of a message's From
// and To (parameters such as a GRUU's opaque dropped).
func sipFromURI(msg sip.Message) (sfb.URI, error) {
	if h := msg.From(); h != nil {
		return sipAddress(h.Address)
	}
	return "", errors.New("no From header")
}

func sipToURI(msg sip.Message) (sfb.URI, error) {
	if h := msg.To(); h != nil {
		return sipAddress(h.Address)
	}
	return "", errors.New("no To header")
}

// sipAddress is the directory address of a SIP URI.
func sipAddress(u sip.Uri) (sfb.URI, error) {
	if u.User == "" || u.Host == "" {
		return "", fmt.Errorf("SIP URI %q has no user@host", u.String())
	}
	return sfb.ParseURI("sip:" + u.User + "@" + u.Host)
}

// sipSendTimeout bounds a request the server sends to an endpoint: a
// transaction's timeout (64*T1).
const sipSendTimeout = 32 * time.Second

// goSIP runs f in its own goroutine, counted in the server's wait group
// (under s.mu: nothing starts once the server is closed, so that Close's
// Wait never races an Add).
func (s *Server) goSIP(f func()) {
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}
