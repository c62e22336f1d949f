package sim_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipae"
)

// A SIP client writing what pidgin-sipe writes (sip-transport.c's
// sip_transport_request_timeout and do_register, byte for byte but for
// addresses and random values) over a raw connection, so that the
// simulator is tested against the dialect rather than against our own
// transport. It verifies every signed message of the server as pidgin-sipe
// does (sip_transport_input) and fails the test on a bad signature.

const fe = "fe01.contoso.com"

// sipEnv is a simulator with a SIP listener.
type sipEnv struct {
	*env
	addr string
	// tls is set for a TLS listener: the server's CA for clients.
	roots *x509.CertPool
	ca    *testCA
}

// newSIPEnv serves SIP over plain TCP on loopback, or over TLS with
// trusted applications when withTLS.
func newSIPEnv(t testing.TB, opts sim.Options, withTLS bool) *sipEnv {
	t.Helper()
	if opts.SIP.FQDN == "" {
		opts.SIP.FQDN = fe
	}
	e := &sipEnv{env: newEnv(t, opts)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var conf *tls.Config
	if withTLS {
		e.ca = newTestCA(t)
		e.roots = e.ca.pool
		conf = &tls.Config{
			Certificates: []tls.Certificate{e.ca.issue(t, fe)},
			ClientCAs:    e.ca.pool,
			MinVersion:   tls.VersionTLS12,
		}
	}
	done := make(chan error, 1)
	go func() { done <- e.sim.ServeSIP(ln, conf) }()
	t.Cleanup(func() {
		_ = ln.Close()
		require.NoError(t, <-done)
	})
	e.addr = ln.Addr().String()
	return e
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sfb-sim test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue makes a certificate for name, good for servers and clients.
func (ca *testCA) issue(t testing.TB, name string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// sipeClient is one pidgin-sipe-like connection.
type sipeClient struct {
	t        testing.TB
	nc       net.Conn
	uri      sfb.URI
	password string
	epid     string
	uuid     string
	regTag   string
	regCall  string
	cseq     int
	port     int
	sa       *sipae.SA
	auth     *sipae.Params // the server's challenge, for signed requests
	// trusted: a trusted application's connection, nothing signed.
	trusted bool
	// discard drops what arrives unread (benchmarks).
	discard bool

	mu      sync.Mutex
	cond    *sync.Cond
	pending []received
	err     error
}

type received struct {
	raw string
	msg sip.Message
}

func (e *sipEnv) dial(t testing.TB, uri sfb.URI, password string) *sipeClient {
	t.Helper()
	nc, err := net.Dial("tcp", e.addr)
	require.NoError(t, err)
	return newSipeClient(t, nc, uri, password)
}

// dialTrusted connects over mutual TLS with a certificate for name.
func (e *sipEnv) dialTrusted(t testing.TB, name string) *sipeClient {
	t.Helper()
	cert := e.ca.issue(t, name)
	nc, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.roots, ServerName: fe, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	require.NoError(t, err)
	c := newSipeClient(t, nc, "", "")
	c.trusted = true
	return c
}

func newSipeClient(t testing.TB, nc net.Conn, uri sfb.URI, password string) *sipeClient {
	c := &sipeClient{
		t: t, nc: nc, uri: uri, password: password,
		epid: randHex(5), uuid: strings.ToUpper(randUUID()), regTag: randHex(5), regCall: randHex(16),
		port: nc.LocalAddr().(*net.TCPAddr).Port,
	}
	c.cond = sync.NewCond(&c.mu)
	go c.read()
	t.Cleanup(func() { _ = nc.Close() })
	return c
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randUUID() string {
	h := randHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// read frames the stream as pidgin-sipe's sip_transport_input does
// (headers up to CRLFCRLF, then Content-Length bytes).
func (c *sipeClient) read() {
	br := bufio.NewReader(c.nc)
	tp := textproto.NewReader(br)
	for {
		var head bytes.Buffer
		length := 0
		for {
			line, err := tp.ReadLine()
			if err != nil {
				c.fail(err)
				return
			}
			if line == "" {
				if head.Len() == 0 {
					continue // keep-alive CRLF
				}
				break
			}
			head.WriteString(line + "\r\n")
			if name, v, ok := strings.Cut(line, ":"); ok && (strings.EqualFold(name, "Content-Length") || name == "l") {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil {
			c.fail(err)
			return
		}
		raw := head.String() + "\r\n" + string(body)
		c.mu.Lock()
		discard := c.discard
		c.mu.Unlock()
		if discard {
			continue
		}
		msg, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			c.fail(fmt.Errorf("parse %q: %w", raw, err))
			return
		}
		c.mu.Lock()
		sa := c.sa
		c.mu.Unlock()
		if sa != nil {
			if err := c.verify(sa, msg); err != nil {
				c.fail(fmt.Errorf("server message %q: %w", raw, err))
				return
			}
		}
		c.mu.Lock()
		c.pending = append(c.pending, received{raw, msg})
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

func (c *sipeClient) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.cond.Broadcast()
	c.mu.Unlock()
}

func hdr(msg sip.Message) func(string) string {
	return func(name string) string {
		if hs := msg.GetHeaders(name); len(hs) > 0 {
			return hs[0].Value()
		}
		return ""
	}
}

// verify checks the Authentication-Info of a server message, as
// pidgin-sipe does once its security context is ready.
func (c *sipeClient) verify(sa *sipae.SA, msg sip.Message) error {
	info := hdr(msg)("Authentication-Info")
	status := 0
	if r, ok := msg.(*sip.Response); ok {
		status = r.StatusCode
	}
	if info == "" {
		if status == 401 {
			return nil
		}
		return sipae.ErrNotSigned
	}
	p, err := sipae.ParseHeader(info)
	if err != nil {
		return err
	}
	f, err := sipae.FieldsFrom(hdr(msg), status)
	if err != nil {
		return err
	}
	return sa.Verify(f, p)
}

// next waits for the first message match accepts and removes it.
func (c *sipeClient) next(what string, match func(sip.Message) bool) received {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	timer := time.AfterFunc(5*time.Second, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for i, r := range c.pending {
			if match(r.msg) {
				c.pending = append(c.pending[:i:i], c.pending[i+1:]...)
				return r
			}
		}
		if c.err != nil {
			c.t.Fatalf("waiting for %s: %v", what, c.err)
		}
		if time.Now().After(deadline) {
			for _, p := range c.pending {
				c.t.Logf("left: %T %q", p.msg, p.raw[:min(60, len(p.raw))])
			}
			c.t.Fatalf("no %s within 5s; pending: %d", what, len(c.pending))
		}
		c.cond.Wait()
	}
}

// response waits for the response to the request of cseq and method.
func (c *sipeClient) response(cseq int, method string) (*sip.Response, string) {
	c.t.Helper()
	r := c.next(fmt.Sprintf("response to %d %s", cseq, method), func(m sip.Message) bool {
		res, ok := m.(*sip.Response)
		return ok && res.CSeq() != nil && int(res.CSeq().SeqNo) == cseq && string(res.CSeq().MethodName) == method && res.StatusCode >= 200
	})
	return r.msg.(*sip.Response), r.raw
}

// request waits for a request of method from the server.
func (c *sipeClient) request(method string) (*sip.Request, string) {
	c.t.Helper()
	r := c.next("request "+method, func(m sip.Message) bool {
		req, ok := m.(*sip.Request)
		return ok && string(req.Method) == method
	})
	return r.msg.(*sip.Request), r.raw
}

func (c *sipeClient) transport() string {
	if c.trusted {
		return "TLS"
	}
	return "TCP"
}

// send writes a request as sip_transport_request_timeout formats it,
// signed when the security context is ready.
func (c *sipeClient) send(method, url, to, callID string, cseq int, fromTag, toTag, extra, body string) {
	c.t.Helper()
	c.mu.Lock()
	sa := c.sa
	c.mu.Unlock()
	c.write(sa, true, method, url, to, callID, cseq, fromTag, toTag, extra, body)
}

// write writes a request; pidgin-sipe gives a Via branch only to requests
// outside a dialog (branch false for those in one, the INVITE included).
func (c *sipeClient) write(sa *sipae.SA, branch bool, method, url, to, callID string, cseq int, fromTag, toTag, extra, body string) {
	c.t.Helper()
	from := c.uri
	if fromTag != "" {
		fromTag = ";tag=" + fromTag
	}
	if toTag != "" {
		toTag = ";tag=" + toTag
	}
	via := ""
	if branch {
		via = ";branch=z9hG4bK" + randHex(8)
	}
	msg := fmt.Sprintf("%s %s SIP/2.0\r\n"+
		"Via: SIP/2.0/%s 127.0.0.1:%d%s\r\n"+
		"From: <%s>%s;epid=%s\r\n"+
		"To: <%s>%s\r\n"+
		"Max-Forwards: 70\r\n"+
		"CSeq: %d %s\r\n"+
		"User-Agent: Purple/2.14.12 Sipe/1.25.0 (linux-gnu-x86_64; 127.0.0.1)\r\n"+
		"Call-ID: %s\r\n"+
		"%s",
		method, url, c.transport(), c.port, via, from, fromTag, c.epid, to, toTag, cseq, method, callID, extra)
	if sa != nil {
		parsed, err := sip.ParseMessage([]byte(msg + "Content-Length: 0\r\n\r\n"))
		require.NoError(c.t, err)
		f, err := sipae.FieldsFrom(hdr(parsed), 0)
		require.NoError(c.t, err)
		sig, err := sa.Sign(f)
		require.NoError(c.t, err)
		msg += fmt.Sprintf("Authorization: NTLM qop=\"auth\", opaque=\"%s\", realm=\"%s\", targetname=\"%s\", crand=\"%s\", cnum=\"%d\", response=\"%s\"\r\n",
			c.auth.Opaque, c.auth.Realm, c.auth.TargetName, sig.CRand, sig.CNum, sig.Response)
	}
	msg += fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
	_, err := io.WriteString(c.nc, msg)
	require.NoError(c.t, err)
}

// registerHeaders are do_register's.
func (c *sipeClient) registerHeaders(expires string) string {
	h := fmt.Sprintf("Contact: <sip:127.0.0.1:%d;transport=%s;ms-opaque=d3470f2e1d>;methods=\"INVITE, MESSAGE, INFO, SUBSCRIBE, OPTIONS, BYE, CANCEL, NOTIFY, ACK, REFER, BENOTIFY\";proxy=replace;+sip.instance=\"<urn:uuid:%s>\"\r\n"+
		"Supported: gruu-10, adhoclist, msrtc-event-categories, com.microsoft.msrtc.presence\r\n"+
		"Event: registration\r\n"+
		"Allow-Events: presence\r\n"+
		"ms-keep-alive: UAC;hop-hop=yes\r\n", c.port, strings.ToLower(c.transport()), c.uuid)
	if expires != "" {
		h += "Expires: " + expires + "\r\n"
	}
	return h
}

// register sends one REGISTER with extra authorization (unsigned: the
// handshake's steps) and returns the final response.
func (c *sipeClient) register(authz, expires string) (*sip.Response, string) {
	c.t.Helper()
	c.cseq++
	extra := c.registerHeaders(expires)
	if authz != "" {
		extra += "Authorization: " + authz + "\r\n"
	}
	c.send("REGISTER", "sip:"+c.uri.Domain(), string(c.uri), c.regCall, c.cseq, c.regTag, "", extra, "")
	return c.response(c.cseq, "REGISTER")
}

// signIn runs the whole NTLM handshake as pidgin-sipe does and returns
// the 200.
func (c *sipeClient) signIn(user, domain string) (*sip.Response, string) {
	c.t.Helper()
	res, raw := c.register("", "")
	require.Equal(c.t, 401, res.StatusCode, raw)
	offer, err := sipae.ParseHeader(hdr(res)("WWW-Authenticate"))
	require.NoError(c.t, err, raw)
	client := sipae.NewClient(user, domain, c.password)
	_, ir, err := client.Start()
	require.NoError(c.t, err)
	res, raw = c.register(sipae.Credentials(offer, ir).String(), "")
	require.Equal(c.t, 401, res.StatusCode, raw)
	challenge, err := sipae.ParseHeader(hdr(res)("WWW-Authenticate"))
	require.NoError(c.t, err, raw)
	token, err := client.Next(challenge.GSSAPIData)
	if err != nil {
		c.t.Fatalf("NTLM: %v", err)
	}
	sa, err := client.SA(challenge)
	require.NoError(c.t, err)

	// The REGISTER carrying the AUTHENTICATE is signed (version 4).
	c.cseq++
	head := fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nFrom: <%s>;tag=%s;epid=%s\r\nTo: <%s>\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\n\r\n",
		c.uri.Domain(), c.uri, c.regTag, c.epid, c.uri, c.regCall, c.cseq)
	parsed, err := sip.ParseMessage([]byte(head))
	require.NoError(c.t, err)
	f, err := sipae.FieldsFrom(hdr(parsed), 0)
	require.NoError(c.t, err)
	sig, err := sa.Sign(f)
	require.NoError(c.t, err)
	authz := sipae.Credentials(challenge, token)
	authz.CRand, authz.CNum, authz.Response = sig.CRand, sig.CNum, sig.Response
	c.mu.Lock()
	c.sa, c.auth = sa, challenge
	c.mu.Unlock()
	// Signed already: written without a second signature.
	extra := c.registerHeaders("") + "Authorization: " + authz.String() + "\r\n"
	c.write(nil, true, "REGISTER", "sip:"+c.uri.Domain(), string(c.uri), c.regCall, c.cseq, c.regTag, "", extra, "")
	return c.response(c.cseq, "REGISTER")
}

// respond answers a request of the server as sip_transport_response does:
// To, From, Call-ID, CSeq and Via kept, Contact, Content-Length and
// User-Agent added, signed over the response code.
func (c *sipeClient) respond(req *sip.Request, code int, text, toTag, extra, body string) {
	c.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, text)
	for _, name := range []string{"To", "From", "Call-ID", "CSeq", "Via", "Record-Route"} {
		for _, h := range req.GetHeaders(name) {
			v := h.Value()
			if name == "To" && toTag != "" {
				v += ";tag=" + toTag
			}
			fmt.Fprintf(&b, "%s: %s\r\n", name, v)
		}
	}
	fmt.Fprintf(&b, "Contact: <sip:127.0.0.1:%d;transport=%s>\r\n", c.port, strings.ToLower(c.transport()))
	b.WriteString(extra)
	fmt.Fprintf(&b, "Content-Length: %d\r\nUser-Agent: Purple/2.14.12 Sipe/1.25.0\r\n", len(body))
	c.mu.Lock()
	sa := c.sa
	c.mu.Unlock()
	if sa != nil {
		parsed, err := sip.ParseMessage([]byte(b.String() + "\r\n" + body))
		require.NoError(c.t, err)
		f, err := sipae.FieldsFrom(hdr(parsed), code)
		require.NoError(c.t, err)
		sig, err := sa.Sign(f)
		require.NoError(c.t, err)
		fmt.Fprintf(&b, "Authorization: NTLM qop=\"auth\", opaque=\"%s\", realm=\"%s\", targetname=\"%s\", crand=\"%s\", cnum=\"%d\", response=\"%s\"\r\n",
			c.auth.Opaque, c.auth.Realm, c.auth.TargetName, sig.CRand, sig.CNum, sig.Response)
	}
	b.WriteString("\r\n" + body)
	_, err := io.WriteString(c.nc, b.String())
	require.NoError(c.t, err)
}
