package sip

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipae"
)

func newTransport(t testing.TB, cfg sfb.Config, opts ...Option) *Transport {
	t.Helper()
	tr, err := New(cfg, zerolog.Nop(), append([]Option{WithTimings(testTimings())}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	return tr
}

// A per-user sign-in is what an SfB client sends (pidgin-sipe's
// do_register) and runs MS-SIPAE's handshake: an unauthenticated REGISTER,
// gssapi-data="" for the NTLM offer, the AUTHENTICATE signed; then every
// request is signed and the server's answers verified; Close deregisters.
func TestPerUserSignIn(t *testing.T) {
	p := newFakePool(t)
	tr := newTransport(t, testConfig(p.server()))
	e := newEvents()
	s := signIn(t, tr, "alice@contoso.com", "correct horse", e)

	first := p.nextRegister(t)
	assert.Empty(t, headerValue(first, "Authorization"))
	assert.Equal(t, "sip:contoso.com", first.Recipient.String())
	assert.Equal(t, "gruu-10, adhoclist, msrtc-event-categories, com.microsoft.msrtc.presence", headerValue(first, "Supported"))
	assert.Equal(t, "registration", headerValue(first, "Event"))
	assert.Equal(t, "UAC;hop-hop=yes", headerValue(first, "ms-keep-alive"))
	assert.Equal(t, "sfb-matrix-bridge", headerValue(first, "User-Agent"))
	from := headerValue(first, "From")
	assert.Regexp(t, `^<sip:alice@contoso.com>;tag=[0-9a-f]+;epid=`+epidOf("sip:alice@contoso.com")+`$`, from)
	contact := headerValue(first, "Contact")
	assert.Contains(t, contact, `;transport=tcp;ms-opaque=`)
	cp := contactParams(contact)
	assert.Equal(t, allowedMethods, cp["methods"])
	assert.Equal(t, "replace", cp["proxy"])
	assert.Equal(t, "<urn:uuid:"+s.instance+">", cp["+sip.instance"])

	offer := p.nextRegister(t)
	op, err := sipae.ParseHeader(headerValue(offer, "Authorization"))
	require.NoError(t, err)
	assert.True(t, op.HasGSSAPIData)
	assert.Empty(t, op.GSSAPIData)
	assert.Equal(t, "fe01.contoso.com", op.TargetName)

	answer := p.nextRegister(t)
	ap, err := sipae.ParseHeader(headerValue(answer, "Authorization"))
	require.NoError(t, err)
	assert.NotEmpty(t, ap.GSSAPIData)
	assert.Equal(t, fakeOpaque, ap.Opaque)
	assert.NotEmpty(t, ap.Response, "version 4 signs the REGISTER that carries the AUTHENTICATE")
	// One Call-ID, CSeq counting up.
	for i, r := range []*sipmsg.Request{first, offer, answer} {
		assert.Equal(t, first.CallID().Value(), r.CallID().Value())
		assert.Equal(t, uint32(i+1), r.CSeq().SeqNo)
	}

	_, reg := s.connection()
	assert.Equal(t, gruuOf("sip:alice@contoso.com", s.instance), reg.gruu, "the GRUU of our +sip.instance, not the other endpoint's")
	assert.Equal(t, 7200*time.Second, reg.lifetime)
	assert.Equal(t, "<"+reg.gruu+">", s.contact())
	assert.Equal(t, sfb.Person{URI: "sip:alice@contoso.com", DisplayName: "Alice Liddell"}, s.Self(), "the name the registrar gave")

	// A request of ours is signed (the fake refuses it otherwise) and the
	// server's signed 200 is taken.
	req, err := s.newRequest(sipmsg.OPTIONS, "sip:bob@contoso.com")
	require.NoError(t, err)
	res, err := s.do(context.Background(), "probe", req)
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)

	assert.Equal(t, sipmsg.OPTIONS, p.nextRequest(t).Method)
	// An ACK goes out signed, with a Via of its own.
	ack, err := s.newRequest(sipmsg.ACK, "sip:bob@contoso.com")
	require.NoError(t, err)
	require.NoError(t, s.send(ack))
	got := p.nextRequest(t)
	assert.Equal(t, sipmsg.ACK, got.Method)
	require.NotNil(t, got.Via())
	assert.NotEmpty(t, got.Via().Params.GetOr("branch", ""))

	// A signed request of the server is answered, signed.
	fc := p.conn(0)
	res = fc.request(t, sipmsg.OPTIONS, "sip:alice@contoso.com", nil)
	assert.Equal(t, 200, res.StatusCode)
	require.NoError(t, fc.verify(res, 200))
	assert.Equal(t, allowedMethods, headerValue(res, "Allow"))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Close(ctx))
	bye := p.nextRegister(t)
	assert.Equal(t, "0", headerValue(bye, "Expires"))
	bp, err := sipae.ParseHeader(headerValue(bye, "Authorization"))
	require.NoError(t, err)
	assert.NotEmpty(t, bp.Response, "the deregistration is signed")
	assert.False(t, bp.HasGSSAPIData)
}

// A pool that challenges as a proxy (407) gets the credentials and every
// signature in Proxy-Authorization.
func TestProxyChallenge(t *testing.T) {
	p := newFakePool(t, func(p *fakePool) { p.proxy = true })
	tr := newTransport(t, testConfig(p.server()))
	s := signIn(t, tr, "alice@contoso.com", "correct horse", newEvents())
	p.nextRegister(t)
	assert.NotEmpty(t, headerValue(p.nextRegister(t), "Proxy-Authorization"))
	assert.NotEmpty(t, headerValue(p.nextRegister(t), "Proxy-Authorization"))
	req, err := s.newRequest(sipmsg.OPTIONS, "sip:bob@contoso.com")
	require.NoError(t, err)
	_, err = s.do(context.Background(), "probe", req)
	require.NoError(t, err, "the fake checks the signature in Proxy-Authorization")
	res := p.conn(0).request(t, sipmsg.OPTIONS, "sip:alice@contoso.com", nil)
	require.NoError(t, p.conn(0).verify(res, 200))
	assert.Empty(t, headerValue(res, "Authorization"))
}

// A wrong password fails the sign-in with ErrBadCredentials after the
// AUTHENTICATE, without trying again.
func TestBadPassword(t *testing.T) {
	p := newFakePool(t)
	tr := newTransport(t, testConfig(p.server()))
	_, err := tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "wrong"}},
		newEvents().handler)
	require.ErrorIs(t, err, sfb.ErrBadCredentials)
	assert.Len(t, p.registers, 3, "unauthenticated, offer, answer; then the refusal ends it")

	_, err = tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com"}},
		newEvents().handler)
	require.ErrorIs(t, err, sfb.ErrCredentialsRequired)
}

// A server's answer that is not signed, or signed wrongly, after the
// handshake is refused; so is a request of the server signed wrongly.
func TestSignaturesChecked(t *testing.T) {
	p := newFakePool(t)
	tr := newTransport(t, testConfig(p.server()))
	s := signIn(t, tr, "alice@contoso.com", "correct horse", newEvents())
	fc := p.conn(0)

	// The server's request with a forged signature: 403, not handled.
	res := fc.request(t, sipmsg.OPTIONS, "sip:alice@contoso.com", func(req *sipmsg.Request) {
		req.AppendHeader(sipmsg.NewHeader("Authentication-Info",
			`NTLM rspauth="01000000000000000000000064000000", srand="01020304", snum="99", opaque="`+fakeOpaque+`", qop="auth", targetname="fe01.contoso.com", realm="SIP Communications Service"`))
	})
	assert.Equal(t, 403, res.StatusCode)

	// An unsigned 200 to our request is refused; an unsigned 401 is
	// taken (the association is gone, pidgin-sipe).
	req, err := s.newRequest(sipmsg.OPTIONS, "sip:bob@contoso.com")
	require.NoError(t, err)
	_, reg := s.connection()
	unsigned := sipmsg.NewResponseFromRequest(req, 200, "OK", nil)
	assert.ErrorIs(t, s.verifyResponse(reg, unsigned), sipae.ErrNotSigned)
	unauth := sipmsg.NewResponseFromRequest(req, 401, "Unauthorized", nil)
	assert.NoError(t, s.verifyResponse(reg, unauth), "a 401 comes unsigned when the association is gone")
}

// A request the server challenges because it lost the security
// association (a Front End restart) is sent again after a new handshake.
func TestRequestReauthenticates(t *testing.T) {
	p := newFakePool(t)
	tr := newTransport(t, testConfig(p.server()))
	s := signIn(t, tr, "alice@contoso.com", "correct horse", newEvents())
	for range 3 {
		p.nextRegister(t)
	}
	_, before := s.connection()
	p.conn(0).forget()
	req, err := s.newRequest(sipmsg.OPTIONS, "sip:bob@contoso.com")
	require.NoError(t, err)
	res, err := s.do(context.Background(), "probe", req)
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	assert.Empty(t, headerValue(p.nextRegister(t), "Authorization"), "a new handshake")
	p.nextRegister(t)
	p.nextRegister(t)
	got := p.nextRequest(t)
	assert.Equal(t, sipmsg.OPTIONS, got.Method)
	_, after := s.connection()
	assert.NotSame(t, before.sa, after.sa)
	assert.Equal(t, before.callID, after.callID)
	assert.Equal(t, uint32(6), after.cseq)
}

// A 301 to the REGISTER sends the user to the home pool, where the
// sign-in continues.
func TestRedirectToHomePool(t *testing.T) {
	home := newFakePool(t)
	director := newFakePool(t)
	director.setOverride(func(fc *fakeConn, req *sipmsg.Request) bool {
		fc.answer(req, 301, func(res *sipmsg.Response) {
			res.AppendHeader(sipmsg.NewHeader("Contact", "<sip:"+home.ln.Addr().String()+";transport=tcp>"))
		})
		return true
	})
	tr := newTransport(t, testConfig(director.server()))
	s := signIn(t, tr, "alice@contoso.com", "correct horse", newEvents())
	assert.Equal(t, 1, director.connections())
	assert.Equal(t, 1, home.connections())
	_, reg := s.connection()
	assert.Equal(t, home.ln.Addr().String(), reg.server.Addr())
	assert.NotEmpty(t, reg.gruu)
}

// A 503 with Retry-After fails the sign-in as ErrServerUnavailable and
// pauses the pool for every sign-in.
func TestServiceUnavailablePausesPool(t *testing.T) {
	p := newFakePool(t)
	p.setOverride(func(fc *fakeConn, req *sipmsg.Request) bool {
		fc.answer(req, 503, func(res *sipmsg.Response) {
			res.AppendHeader(sipmsg.NewHeader("Retry-After", "30"))
			res.AppendHeader(sipmsg.NewHeader("ms-diagnostics", `1008;reason="Server is busy"`))
		})
		return true
	})
	cfg := testConfig(p.server())
	cfg.BackoffMax = time.Minute
	tr, err := New(cfg, zerolog.Nop())
	require.NoError(t, err)
	defer tr.Close()
	_, err = tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "x"}},
		newEvents().handler)
	require.ErrorIs(t, err, sfb.ErrServerUnavailable)
	var se *Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 30*time.Second, se.RetryAfter)
	assert.Contains(t, se.Diagnostics, "Server is busy")
	srv, _, _ := tr.cfg.SIP.ParseServer()
	assert.WithinDuration(t, time.Now().Add(30*time.Second), tr.guard(srv).PausedUntil(), 5*time.Second)

	// The next sign-in waits for the pause: its turn ends first.
	turn, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "bob@contoso.com", Password: "x"}, Turn: turn},
		newEvents().handler)
	require.ErrorIs(t, err, sfb.ErrServerUnavailable)
	assert.Len(t, p.registers, 1, "the second sign-in sent nothing")
}

// The registration is refreshed before it expires: a signed REGISTER on
// the same Call-ID, without a new handshake.
func TestRefreshBeforeExpiry(t *testing.T) {
	p := newFakePool(t, func(p *fakePool) { p.expires = 2 })
	tm := testTimings()
	tm.RefreshLead = 500 * time.Millisecond
	tr := newTransport(t, testConfig(p.server()), WithTimings(tm))
	s := signIn(t, tr, "alice@contoso.com", "correct horse", newEvents())
	for range 3 {
		p.nextRegister(t)
	}
	_, first := s.connection()
	tr.refresh.mu.Lock()
	due := s.refreshAt
	tr.refresh.mu.Unlock()
	assert.False(t, due.Before(first.registered.Add(time.Second)), "not before half the lifetime")
	assert.False(t, due.After(first.registered.Add(1500*time.Millisecond)), "at least RefreshLead before expiry")
	start := time.Now()
	refresh := p.nextRegister(t)
	rp, err := sipae.ParseHeader(headerValue(refresh, "Authorization"))
	require.NoError(t, err)
	assert.False(t, rp.HasGSSAPIData, "no new handshake")
	assert.NotEmpty(t, rp.Response)
	assert.Equal(t, uint32(4), refresh.CSeq().SeqNo)
	require.Eventually(t, func() bool {
		_, reg := s.connection()
		return reg.cseq == 4 && reg.registered.After(start)
	}, 5*time.Second, 10*time.Millisecond)
}

// An old security association is replaced by a new handshake at the
// refresh (MS-SIPAE 3.2.2); a refresh the server refuses with 401 does
// the same.
func TestRefreshReauthenticates(t *testing.T) {
	p := newFakePool(t, func(p *fakePool) { p.expires = 2 })
	tm := testTimings()
	tm.RefreshLead = 500 * time.Millisecond
	tm.SALifetime = time.Millisecond
	obs := &observer{}
	tr := newTransport(t, testConfig(p.server()), WithTimings(tm), WithObserver(obs))
	signIn(t, tr, "alice@contoso.com", "correct horse", newEvents())
	for range 3 {
		p.nextRegister(t)
	}
	refresh := p.nextRegister(t)
	assert.Empty(t, headerValue(refresh, "Authorization"), "a new handshake starts unauthenticated")
	offer := p.nextRegister(t)
	op, err := sipae.ParseHeader(headerValue(offer, "Authorization"))
	require.NoError(t, err)
	assert.True(t, op.HasGSSAPIData)
	require.Eventually(t, func() bool { return obs.renewed() > 0 }, 5*time.Second, 10*time.Millisecond, "a renewal counts as a token renewal")
	obs.mu.Lock()
	assert.Contains(t, obs.statuses, 401)
	assert.Contains(t, obs.statuses, 200)
	obs.mu.Unlock()
}

// observer records what the transport tells the bridge's metrics.
type observer struct {
	mu        sync.Mutex
	statuses  []int
	renewals  []error
	reconnect int
}

func (o *observer) ServerAnswered(status int, _ string) {
	o.mu.Lock()
	o.statuses = append(o.statuses, status)
	o.mu.Unlock()
}

func (o *observer) EventChannelReconnect() {
	o.mu.Lock()
	o.reconnect++
	o.mu.Unlock()
}

func (o *observer) TokenRenewed(err error) {
	o.mu.Lock()
	o.renewals = append(o.renewals, err)
	o.mu.Unlock()
}

func (o *observer) renewed() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, err := range o.renewals {
		if err == nil {
			n++
		}
	}
	return n
}

// The connection dropping is reported (SessionState) and mended: the
// session connects and registers again.
func TestReconnect(t *testing.T) {
	p := newFakePool(t)
	obs := &observer{}
	tr := newTransport(t, testConfig(p.server()), WithObserver(obs))
	e := newEvents()
	s := signIn(t, tr, "alice@contoso.com", "correct horse", e)
	p.conn(0).conn().Close()
	st := next[sfb.SessionState](t, e)
	assert.False(t, st.Connected)
	assert.ErrorIs(t, st.Err, sfb.ErrServerUnavailable)
	st = next[sfb.SessionState](t, e)
	assert.True(t, st.Connected)
	assert.Equal(t, 2, p.connections())
	obs.mu.Lock()
	assert.Equal(t, 1, obs.reconnect)
	obs.mu.Unlock()
	c, reg := s.connection()
	require.NotNil(t, c)
	assert.NotEmpty(t, reg.gruu)
}

// registration-notify: "rejected" (user disabled) ends the session with
// ErrBadCredentials; "unregistered" registers again.
func TestRegistrationNotify(t *testing.T) {
	notify := func(event string) func(*sipmsg.Request) {
		return func(req *sipmsg.Request) {
			req.AppendHeader(sipmsg.NewHeader("Event", "registration-notify"))
			req.AppendHeader(sipmsg.NewHeader("Content-Type", "text/registration-event"))
			req.AppendHeader(sipmsg.NewHeader("subscription-state", "terminated;expires=0"))
			req.AppendHeader(sipmsg.NewHeader("ms-diagnostics-public", `4141;reason="User disabled"`))
			req.SetBody([]byte("deregistered;event=" + event))
		}
	}
	t.Run("unregistered", func(t *testing.T) {
		p := newFakePool(t)
		tr := newTransport(t, testConfig(p.server()))
		e := newEvents()
		signIn(t, tr, "alice@contoso.com", "correct horse", e)
		res := p.conn(0).request(t, sipmsg.NOTIFY, "sip:alice@contoso.com", notify("unregistered"))
		assert.Equal(t, 200, res.StatusCode)
		assert.False(t, next[sfb.SessionState](t, e).Connected)
		assert.True(t, next[sfb.SessionState](t, e).Connected)
		for range 3 {
			p.nextRegister(t)
		}
		again := p.nextRegister(t)
		assert.Empty(t, headerValue(again, "Expires"), "registering, not deregistering")
		assert.Equal(t, 1, p.connections(), "on the same connection")
	})
	t.Run("rejected", func(t *testing.T) {
		p := newFakePool(t)
		tr := newTransport(t, testConfig(p.server()))
		e := newEvents()
		signIn(t, tr, "alice@contoso.com", "correct horse", e)
		res := p.conn(0).request(t, sipmsg.NOTIFY, "sip:alice@contoso.com", notify("rejected"))
		assert.Equal(t, 200, res.StatusCode)
		ended := next[sfb.SessionEnded](t, e)
		assert.ErrorIs(t, ended.Err, sfb.ErrBadCredentials)
		assert.Contains(t, ended.Err.Error(), "User disabled")
	})
}

func TestParseRegistrationEvent(t *testing.T) {
	for _, tc := range []struct {
		ct, body, want string
		bad            bool
	}{
		{"text/registration-event", "deregistered;event=rejected", "rejected", false},
		{"text/registration-event; charset=utf-8", "deregistered; event=Unregistered\r\n", "unregistered", false},
		{"text/registration-event", "deregistered;event=deactivated", "deactivated", false},
		{"text/registration-event", "deregistered", "", false},
		{"text/registration-event", "registered;event=rejected", "", true},
		{"text/registration-event", "deregistered;event=exploded", "", true},
		{"application/xml", "deregistered;event=rejected", "", true},
		{"text/registration-event", strings.Repeat("x", 2000), "", true},
	} {
		got, err := parseRegistrationEvent(tc.ct, []byte(tc.body))
		if tc.bad {
			assert.Error(t, err, tc.body)
			continue
		}
		require.NoError(t, err, tc.body)
		assert.Equal(t, tc.want, got, tc.body)
	}
}

func FuzzParseRegistrationEvent(f *testing.F) {
	f.Add("text/registration-event", []byte("deregistered;event=rejected"))
	f.Add("text/registration-event", []byte("deregistered;event=;event=x;;"))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		got, err := parseRegistrationEvent(ct, body)
		if err == nil && got != "" && got != "rejected" && got != "unregistered" && got != "deactivated" {
			t.Fatalf("event %q", got)
		}
	})
}

// MS-SIPRE's example: epid 01010101 gives this +sip.instance (the test
// pidgin-sipe runs, sipe-sipmsg-tests.c).
func TestInstanceFromEPID(t *testing.T) {
	assert.Equal(t, "4b1682a8-f968-5701-83fc-7c6741dc6697", instanceOf("01010101"))
	assert.Equal(t, epidOf("sip:alice@contoso.com"), epidOf("sip:alice@contoso.com"), "stable across restarts")
	assert.NotEqual(t, epidOf("sip:alice@contoso.com"), epidOf("sip:bob@contoso.com"))
	assert.Len(t, epidOf("sip:alice@contoso.com"), 12)
}

var registerOK = "SIP/2.0 200 OK\r\n" +
	"Via: SIP/2.0/TLS 192.168.172.6:12723;branch=z9hG4bK1;ms-received-port=12723;ms-received-cid=2600\r\n" +
	"From: \"User\"<sip:user@cosmo.local>;tag=3e49177a52;epid=c8ca638a15\r\n" +
	"To: <sip:user@cosmo.local>;tag=5E61CCD925D17E043D9A74835A88F664\r\n" +
	"Call-ID: 4037df9284354df39065195bd57a4b14\r\n" +
	"CSeq: 3 REGISTER\r\n" +
	"Contact: <sip:192.168.172.7:1111;transport=tls;ms-opaque=aa>;expires=3600;+sip.instance=\"<urn:uuid:11111111-6585-5F91-A3B4-DE853C15347D>\";gruu=\"sip:user@cosmo.local;opaque=user:epid:other;gruu\"\r\n" +
	"Contact: <sip:192.168.172.6:12723;transport=tls;ms-opaque=fad3dfab32>;expires=7100;+sip.instance=\"<urn:uuid:34D859DB-6585-5F91-A3B4-DE853C15347D>\";gruu=\"sip:user@cosmo.local;opaque=user:epid:2VjYNIVlkV-jtN6FPBU0fQAA;gruu\"\r\n" +
	"Expires: 7200\r\n" +
	"ms-keep-alive: UAS; tcp=no; hop-hop=yes; end-end=no; timeout=300\r\n" +
	"Server: RTC/3.5\r\n" +
	"Content-Length: 0\r\n\r\n"

func parseResponse(t testing.TB, raw string) *sipmsg.Response {
	m, err := sipmsg.ParseMessage([]byte(raw))
	if err != nil {
		return nil
	}
	res, _ := m.(*sipmsg.Response)
	return res
}

func TestParseRegistered(t *testing.T) {
	res := parseResponse(t, registerOK)
	require.NotNil(t, res)
	got, err := parseRegistered(res, "34d859db-6585-5f91-a3b4-de853c15347d")
	require.NoError(t, err)
	assert.Equal(t, "sip:user@cosmo.local;opaque=user:epid:2VjYNIVlkV-jtN6FPBU0fQAA;gruu", got.gruu)
	assert.Equal(t, 7100*time.Second, got.lifetime, "our Contact's expires, not the header's")
	assert.Equal(t, 300*time.Second, got.keepAlive)
	assert.Equal(t, "User", got.displayName, "the name OCS gives in From")

	// Another instance's Contact only: no GRUU, the Expires header.
	got, err = parseRegistered(res, "22222222-6585-5f91-a3b4-de853c15347d")
	require.NoError(t, err)
	assert.Empty(t, got.gruu)
	assert.Equal(t, 7200*time.Second, got.lifetime)

	bad := parseResponse(t, strings.Replace(registerOK, `gruu="sip:user@cosmo.local;opaque=user:epid:2VjYNIVlkV-jtN6FPBU0fQAA;gruu"`, `gruu="http://x"`, 1))
	_, err = parseRegistered(bad, "34d859db-6585-5f91-a3b4-de853c15347d")
	assert.Error(t, err)
	zero := parseResponse(t, strings.Replace(registerOK, "expires=7100", "expires=0", 1))
	_, err = parseRegistered(zero, "34d859db-6585-5f91-a3b4-de853c15347d")
	assert.Error(t, err)
}

func FuzzParseRegistered(f *testing.F) {
	f.Add(registerOK)
	f.Add(strings.Replace(registerOK, "expires=7100", "expires=-1", 1))
	f.Add(strings.Replace(registerOK, `gruu="sip`, `gruu="<sip`, 1))
	f.Add(strings.Replace(registerOK, "192.168.172.7:1111", "192.168.172.7:99999", 1))
	f.Fuzz(func(t *testing.T, raw string) {
		res := parseResponse(t, raw)
		if res == nil {
			return
		}
		// The same Contact read as a redirect's target.
		if to, err := redirectTarget(res); err == nil && (to.Host == "" || to.Port <= 0 || to.Port > 65535) {
			t.Fatalf("redirect target %+v", to)
		}
		got, err := parseRegistered(res, "34d859db-6585-5f91-a3b4-de853c15347d")
		if err != nil {
			return
		}
		if !utf8.ValidString(got.displayName) || utf8.RuneCountInString(got.displayName) > maxDisplayName || strings.ContainsAny(got.displayName, "\"\r\n") {
			t.Fatalf("display name %q", got.displayName)
		}
		if got.lifetime <= 0 || got.lifetime > maxLifetime {
			t.Fatalf("lifetime %s", got.lifetime)
		}
		if got.gruu != "" {
			var u sipmsg.Uri
			if sipmsg.ParseUri(got.gruu, &u) != nil {
				t.Fatalf("GRUU %q does not parse", got.gruu)
			}
		}
	})
}

func TestRefreshTimeSpread(t *testing.T) {
	tm := DefaultTimings()
	now := time.Now()
	seen := map[time.Duration]bool{}
	for range 100 {
		at := refreshTime(tm, now, time.Hour).Sub(now)
		assert.GreaterOrEqual(t, at, 36*time.Minute)
		assert.LessOrEqual(t, at, 51*time.Minute)
		seen[at.Truncate(time.Minute)] = true
	}
	assert.Greater(t, len(seen), 5, "spread, not one moment")
	short := refreshTime(tm, now, 40*time.Second).Sub(now)
	assert.LessOrEqual(t, short, 20*time.Second+time.Millisecond, "at least half the lifetime, at most lifetime - lead")
}

func TestConfigChecked(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(*sfb.Config)
		want string
	}{
		"mode":            {func(c *sfb.Config) { c.SIP.Mode = "both" }, "sip.mode"},
		"tcp remote":      {func(c *sfb.Config) { c.SIP.Server = "tcp://sip.contoso.com:5060" }, "plain TCP"},
		"tcp no allow":    {func(c *sfb.Config) { c.AllowInsecureLoopback = false }, "plain TCP"},
		"server":          {func(c *sfb.Config) { c.SIP.Server = "sip.contoso.com:x" }, "sip.server"},
		"outstanding":     {func(c *sfb.Config) { c.SIP.MaxOutstanding = 21 }, "at most 20"},
		"trusted no cert": {func(c *sfb.Config) { c.SIP.Mode = sfb.SIPModeTrusted }, "cert_file"},
		"trusted unreadable": {func(c *sfb.Config) {
			c.SIP.Mode, c.SIP.CertFile, c.SIP.KeyFile = sfb.SIPModeTrusted, "/nonexistent.pem", "/nonexistent.key"
		}, "load sip.cert_file"},
		"rate": {func(c *sfb.Config) { c.SignInRate = 50 }, "sign_in_rate"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig("tcp://127.0.0.1:5060")
			tc.edit(&cfg)
			_, err := New(cfg, zerolog.Nop())
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	cfg := testConfig("tcp://127.0.0.1:5060")
	cfg.SignInRate, cfg.SimulatorSignInRate = 500, true
	_, err := New(cfg, zerolog.Nop())
	assert.NoError(t, err, "the simulator's rate towards loopback TCP")
}

// A sign-in takes its turn on the pool's ramp once (OnTurn), and waits for
// it within Turn: a sign-in whose turn does not come in time leaves
// nothing on the server.
func TestSignInTurn(t *testing.T) {
	p := newFakePool(t, func(p *fakePool) { p.users["bob@contoso.com"] = "pw-bob" })
	cfg := testConfig(p.server())
	cfg.SignInRate = 1
	tr := newTransport(t, cfg)
	turns := 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "correct horse"},
		Turn: ctx, OnTurn: func() { turns++ }}, newEvents().handler)
	require.NoError(t, err)
	defer s.Close(ctx)
	assert.Equal(t, 1, turns)

	// The ramp's next slot is a second away.
	turn, stop := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer stop()
	_, err = tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "bob@contoso.com", Password: "pw-bob"},
		Turn: turn, OnTurn: func() { turns++ }}, newEvents().handler)
	require.ErrorIs(t, err, sfb.ErrLocalTimeout)
	assert.Equal(t, 1, turns)
	assert.Equal(t, 1, p.connections(), "bob never connected")
}
