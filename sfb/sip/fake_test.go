package sip

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/ntlm"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipae"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipconn"
)

// fakePool is a scripted SfB Front End for the tests: a registrar that
// runs MS-SIPAE's NTLM handshake as an SfB server does (401 offering
// NTLM and Kerberos, 401 with the CHALLENGE and an opaque, a signed 200
// with the endpoint's GRUU), checks every signature of the client, and
// signs what it sends. It listens on loopback TCP.
type fakePool struct {
	t      testing.TB
	ln     net.Listener
	target string
	// users maps user names (as authenticated, without domain) to
	// passwords.
	users map[string]string
	// trusted: REGISTERs are accepted without a challenge.
	trusted bool
	// expires is the lifetime granted (seconds).
	expires int
	// tls, when set, makes the pool listen with TLS.
	tls *tls.Config
	// proxy challenges as a proxy does (407, Proxy-Authenticate, as
	// the OCS 2007 R2 of pidgin-sipe's recording), not as a registrar.
	proxy bool

	mu    sync.Mutex
	conns []*fakeConn
	// byUser is the connection each user last registered on.
	byUser map[string]*fakeConn
	// registers and requests receive what the clients send.
	registers chan *sipmsg.Request
	requests  chan *sipmsg.Request
	// override answers a REGISTER itself when it returns true.
	override func(fc *fakeConn, req *sipmsg.Request) bool
}

type fakeConn struct {
	p *fakePool
	c *sipconn.Conn

	mu sync.Mutex
	hs *sipae.Server
	sa *sipae.SA
	// forgotten: the association is gone (as after a Front End restart),
	// requests are challenged.
	forgotten bool
}

// forget drops the connection's security association.
func (fc *fakeConn) forget() {
	fc.mu.Lock()
	fc.sa, fc.forgotten = nil, true
	fc.mu.Unlock()
}

const fakeOpaque = "1A2B3C4D"

// newFakePool starts a pool; edits set it up before it accepts.
func newFakePool(t testing.TB, edits ...func(*fakePool)) *fakePool {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &fakePool{t: t, ln: ln, target: "fe01.contoso.com", users: map[string]string{"alice@contoso.com": "correct horse"},
		expires: 7200, byUser: map[string]*fakeConn{}, registers: make(chan *sipmsg.Request, 100), requests: make(chan *sipmsg.Request, 100)}
	for _, edit := range edits {
		edit(p)
	}
	if p.tls != nil {
		p.ln = tls.NewListener(ln, p.tls)
	}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, fc := range p.conns {
			if c := fc.conn(); c != nil {
				c.Close()
			}
		}
	})
	return p
}

// challenge is the status and header of the pool's challenges.
func (p *fakePool) challenge() (int, string) {
	if p.proxy {
		return 407, "Proxy-Authenticate"
	}
	return 401, "WWW-Authenticate"
}

// authorization is the header the client's credentials and signatures
// come in.
func (p *fakePool) authorization() string {
	if p.proxy {
		return "Proxy-Authorization"
	}
	return "Authorization"
}

// setOverride makes fn answer the REGISTERs it takes.
func (p *fakePool) setOverride(fn func(fc *fakeConn, req *sipmsg.Request) bool) {
	p.mu.Lock()
	p.override = fn
	p.mu.Unlock()
}

// server is the pool's address as sip.server.
func (p *fakePool) server() string { return "tcp://" + p.ln.Addr().String() }

func (p *fakePool) accept() {
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			return
		}
		if tc, ok := nc.(*tls.Conn); ok {
			if err := tc.Handshake(); err != nil {
				nc.Close()
				continue
			}
		}
		// Counted before it reads: a client may be done before New
		// returns.
		fc := &fakeConn{p: p}
		p.mu.Lock()
		p.conns = append(p.conns, fc)
		p.mu.Unlock()
		fc.setConn(sipconn.New(context.Background(), nc, sipconn.Options{Logger: zerolog.Nop(), Handler: fc.handle}))
	}
}

// connections is how many connections the pool accepted.
func (p *fakePool) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// conn is the pool's i-th connection.
func (p *fakePool) conn(i int) *fakeConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[i]
}

func (p *fakePool) ntlmServer() *ntlm.Server {
	return &ntlm.Server{NetBIOSDomain: "CONTOSO", NetBIOSComputer: "FE01", NTHash: func(user, domain string) ([]byte, bool) {
		pw, ok := p.users[strings.ToLower(user)]
		return ntlm.NTOWFv1(pw), ok
	}}
}

// setConn records the connection (the handler may run before New
// returns).
func (fc *fakeConn) setConn(c *sipconn.Conn) {
	fc.mu.Lock()
	fc.c = c
	fc.mu.Unlock()
}

// conn is the fake's side of the connection.
func (fc *fakeConn) conn() *sipconn.Conn {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.c
}

func (fc *fakeConn) handle(c *sipconn.Conn, req *sipmsg.Request) {
	fc.setConn(c)
	if req.Method == sipmsg.REGISTER {
		fc.p.mu.Lock()
		fc.p.byUser[req.From().Address.String()] = fc
		fc.p.mu.Unlock()
		select {
		case fc.p.registers <- req:
		default: // nobody reads them (a benchmark)
		}
		fc.p.mu.Lock()
		override := fc.p.override
		fc.p.mu.Unlock()
		if override != nil && override(fc, req) {
			return
		}
		fc.register(req)
		return
	}
	fc.mu.Lock()
	forgotten := fc.forgotten && fc.sa == nil
	fc.mu.Unlock()
	if forgotten {
		fc.offer(req)
		return
	}
	if err := fc.verify(req, 0); err != nil {
		fc.p.t.Errorf("%s from the client: %v", req.Method, err)
		fc.answer(req, 403, nil)
		return
	}
	select {
	case fc.p.requests <- req:
	default:
	}
	if req.Method != sipmsg.ACK {
		fc.answer(req, 200, nil)
	}
}

// verify checks the client's signature of m (nothing before the
// handshake).
func (fc *fakeConn) verify(m sipmsg.Message, status int) error {
	fc.mu.Lock()
	sa := fc.sa
	fc.mu.Unlock()
	if sa == nil {
		return nil
	}
	v := headerValue(m, fc.p.authorization())
	if v == "" {
		return sipae.ErrNotSigned
	}
	p, err := sipae.ParseHeader(v)
	if err != nil {
		return err
	}
	return sa.Verify(fields(m, status), p)
}

func fields(m sipmsg.Message, status int) sipae.Fields {
	f, err := sipae.FieldsFrom(func(name string) string { return headerValue(m, name) }, status)
	if err != nil {
		panic(err)
	}
	return f
}

// answer responds to req, signed once the handshake is done.
func (fc *fakeConn) answer(req *sipmsg.Request, status int, edit func(*sipmsg.Response)) {
	res := sipmsg.NewResponseFromRequest(req, status, "Reason", nil)
	if edit != nil {
		edit(res)
	}
	fc.sign(res, status)
	// An error is a connection the test closed; it sees what it needs.
	_ = fc.conn().Send(res)
}

// sign adds the server's Authentication-Info to m.
func (fc *fakeConn) sign(m sipmsg.Message, status int) {
	fc.mu.Lock()
	sa := fc.sa
	fc.mu.Unlock()
	if sa == nil {
		return
	}
	p, err := sa.Sign(fields(m, status))
	if err != nil {
		panic(err)
	}
	m.AppendHeader(sipmsg.NewHeader("Authentication-Info", p.String()))
}

// offer is the 401 to an unauthenticated REGISTER: Kerberos and NTLM, as
// an SfB Front End offers them.
func (fc *fakeConn) offer(req *sipmsg.Request) {
	fc.mu.Lock()
	fc.sa, fc.hs = nil, nil
	fc.mu.Unlock()
	status, name := fc.p.challenge()
	fc.answer(req, status, func(res *sipmsg.Response) {
		res.AppendHeader(sipmsg.NewHeader(name, `Kerberos realm="SIP Communications Service", targetname="sip/`+fc.p.target+`", version=4`))
		res.AppendHeader(sipmsg.NewHeader(name, `NTLM realm="SIP Communications Service", targetname="`+fc.p.target+`", version=4`))
	})
}

func (fc *fakeConn) register(req *sipmsg.Request) {
	if fc.p.trusted {
		fc.ok(req)
		return
	}
	v := headerValue(req, fc.p.authorization())
	if v == "" {
		fc.offer(req)
		return
	}
	p, err := sipae.ParseHeader(v)
	if err != nil {
		fc.p.t.Errorf("REGISTER's Authorization %q: %v", v, err)
		fc.offer(req)
		return
	}
	switch {
	case !p.HasGSSAPIData:
		// A re-REGISTER signed with the association.
		if err := fc.verify(req, 0); err != nil {
			fc.offer(req)
			return
		}
		fc.ok(req)
	case len(p.GSSAPIData) == 0:
		hs := sipae.NewServer(fc.p.ntlmServer())
		token, _, err := hs.Next(nil)
		require.NoError(fc.p.t, err)
		fc.mu.Lock()
		fc.hs, fc.sa = hs, nil
		fc.mu.Unlock()
		status, name := fc.p.challenge()
		fc.answer(req, status, func(res *sipmsg.Response) {
			res.AppendHeader(sipmsg.NewHeader(name, (&sipae.Params{Scheme: sipae.SchemeNTLM, Opaque: fakeOpaque,
				GSSAPIData: token, TargetName: fc.p.target, Realm: sipae.Realm, Version: sipae.ProtocolVersion}).String()))
		})
	default:
		fc.mu.Lock()
		hs := fc.hs
		fc.mu.Unlock()
		if hs == nil {
			fc.offer(req)
			return
		}
		if _, _, err := hs.Next(p.GSSAPIData); err != nil {
			fc.offer(req)
			return
		}
		sa, err := hs.SA(sipae.Realm, fc.p.target, fakeOpaque, sipae.ProtocolVersion)
		require.NoError(fc.p.t, err)
		if err := sa.Verify(fields(req, 0), p); err != nil {
			fc.p.t.Errorf("the REGISTER carrying the AUTHENTICATE: %v", err)
			fc.offer(req)
			return
		}
		fc.mu.Lock()
		fc.sa, fc.forgotten = sa, false
		fc.mu.Unlock()
		fc.ok(req)
	}
}

// gruuOf is the GRUU the fake gives the endpoint with instance.
func gruuOf(user, instance string) string {
	return user + ";opaque=user:epid:" + instance[:8] + ";gruu"
}

// ok is the 200 to a REGISTER: the registered Contact with its GRUU, and
// another endpoint of the user, as a Front End lists them.
func (fc *fakeConn) ok(req *sipmsg.Request) {
	expires := fc.p.expires
	if headerValue(req, "Expires") == "0" {
		expires = 0
	}
	contact := headerValue(req, "Contact")
	inst := contact[strings.Index(contact, "urn:uuid:")+len("urn:uuid:"):]
	inst = inst[:strings.IndexByte(inst, '>')]
	addr := contact[:strings.IndexByte(contact, '>')+1]
	user := req.From().Address.String()
	fc.answer(req, 200, func(res *sipmsg.Response) {
		if user == "sip:alice@contoso.com" {
			res.From().DisplayName = "Alice Liddell"
		}
		res.AppendHeader(sipmsg.NewHeader("Contact", `<sip:10.9.9.9:1234;transport=tls>;expires=300;+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000000>";gruu="`+user+`;opaque=user:epid:other;gruu"`))
		if expires > 0 {
			res.AppendHeader(sipmsg.NewHeader("Contact", addr+";expires="+strconv.Itoa(expires)+`;+sip.instance="<urn:uuid:`+strings.ToUpper(inst)+`>";gruu="`+gruuOf(user, inst)+`"`))
		}
		res.AppendHeader(sipmsg.NewHeader("Expires", strconv.Itoa(expires)))
		res.AppendHeader(sipmsg.NewHeader("ms-keep-alive", "UAS; tcp=no; hop-hop=yes; end-end=no; timeout=300"))
		res.AppendHeader(sipmsg.NewHeader("Supported", "msrtc-event-categories"))
		res.AppendHeader(sipmsg.NewHeader("Server", "RTC/7.0"))
	})
}

// request sends a request of the server to the client's endpoint user on
// fc and returns the client's answer.
func (fc *fakeConn) request(t *testing.T, method sipmsg.RequestMethod, user string, edit func(*sipmsg.Request)) *sipmsg.Response {
	t.Helper()
	var ru sipmsg.Uri
	require.NoError(t, sipmsg.ParseUri(user, &ru))
	req := sipmsg.NewRequest(method, ru)
	req.AppendHeader(sipmsg.NewHeader("From", "<sip:bob@contoso.com>;tag=b1;epid=bbbb"))
	req.AppendHeader(sipmsg.NewHeader("To", "<"+user+">"))
	req.AppendHeader(sipmsg.NewHeader("Call-ID", newCallID()))
	req.AppendHeader(sipmsg.NewHeader("CSeq", "1 "+string(method)))
	req.AppendHeader(sipmsg.NewHeader("Max-Forwards", "70"))
	if edit != nil {
		edit(req)
	}
	fc.sign(req, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := fc.conn().Do(ctx, req)
	require.NoError(t, err)
	return res
}

// events collects a session's events for the tests.
type events struct {
	ch chan sfb.Event
}

func newEvents() *events { return &events{ch: make(chan sfb.Event, 100)} }

func (e *events) handler(_ context.Context, evt sfb.Event) { e.ch <- evt }

// next waits for the next event of type T, skipping others.
func next[T sfb.Event](t *testing.T, e *events) T {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case evt := <-e.ch:
			if v, ok := evt.(T); ok {
				return v
			}
		case <-deadline:
			var zero T
			t.Fatalf("no %T within 10 s", zero)
			return zero
		}
	}
}

// connOf is the connection user last registered on.
func (p *fakePool) connOf(user string) *fakeConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byUser[user]
}

// nextRequest waits for the next request other than REGISTER the pool
// received.
func (p *fakePool) nextRequest(t *testing.T) *sipmsg.Request {
	t.Helper()
	select {
	case req := <-p.requests:
		return req
	case <-time.After(10 * time.Second):
		t.Fatal("no request within 10 s")
		return nil
	}
}

// nextRegister waits for the next REGISTER the pool received.
func (p *fakePool) nextRegister(t *testing.T) *sipmsg.Request {
	t.Helper()
	select {
	case req := <-p.registers:
		return req
	case <-time.After(10 * time.Second):
		t.Fatal("no REGISTER within 10 s")
		return nil
	}
}

// testConfig is a configuration for the fake pool at server.
func testConfig(server string) sfb.Config {
	cfg := sfb.DefaultConfig()
	cfg.Transport = sfb.TransportSIP
	cfg.AllowInsecureLoopback = true
	cfg.SIP.Server = server
	cfg.SignInRate = 12
	return cfg
}

// testTimings are short for the tests.
func testTimings() Timings {
	tm := DefaultTimings()
	tm.BackoffMin, tm.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	tm.RequestTimeout = 5 * time.Second
	return tm
}

func signIn(t *testing.T, tr *Transport, user, password string, e *events) *Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: user, Password: password}}, e.handler)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s.(*Session)
}
