package sim_test

import (
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipae"
)

func TestSIPRegisterNTLM(t *testing.T) {
	e := newSIPEnv(t, sim.Options{}, false)
	c := e.dial(t, alice, "alice-pw")

	// The unauthenticated REGISTER is offered NTLM only (pidgin-sipe in
	// automatic mode would pick TLS-DSK or Kerberos first).
	res, raw := c.register("", "")
	require.Equal(t, 401, res.StatusCode, raw)
	offers := res.GetHeaders("WWW-Authenticate")
	require.Len(t, offers, 1, raw)
	assert.Equal(t, `NTLM realm="SIP Communications Service", targetname="fe01.contoso.com", version=4`, offers[0].Value())

	// Domain-qualified NetBIOS form, as pidgin-sipe sends DOMAIN\user.
	res, raw = c.signIn("alice", "CONTOSO")
	require.Equal(t, 200, res.StatusCode, raw)
	// Signed (the client's reader verified it) with the SA's parameters.
	info, err := sipae.ParseHeader(hdr(res)("Authentication-Info"))
	require.NoError(t, err, raw)
	assert.Equal(t, "fe01.contoso.com", info.TargetName)
	assert.Equal(t, c.auth.Opaque, info.Opaque)
	assert.Equal(t, "7200", hdr(res)("Expires"))
	assert.Contains(t, hdr(res)("ms-keep-alive"), "timeout=300")
	assert.Equal(t, "RTC/6.0", hdr(res)("Server"))
	assert.Contains(t, raw, "Supported: msrtc-event-categories\r\n")
	assert.Contains(t, hdr(res)("Allow-Events"), "vnd-microsoft-roaming-self")
	// The Contact of this endpoint, found by its instance as
	// process_register_response does, carries the GRUU.
	gruu := gruuOf(t, raw, c.uuid)
	assert.Regexp(t, `^sip:alice@contoso\.com;opaque=user:epid:[A-Za-z0-9+/]{22}AA;gruu$`, gruu)
	assert.Equal(t, 1, e.sim.SIPRegistrations(alice))

	// A refresh signed with the SA keeps the one registration.
	c.cseq++
	c.send("REGISTER", "sip:contoso.com", string(alice), c.regCall, c.cseq, c.regTag, "", c.registerHeaders(""), "")
	res, raw = c.response(c.cseq, "REGISTER")
	require.Equal(t, 200, res.StatusCode, raw)
	assert.Equal(t, gruu, gruuOf(t, raw, c.uuid))
	assert.Equal(t, 1, e.sim.SIPRegistrations(alice))

	// A second endpoint of alice (user principal name this time) is
	// listed beside the first.
	c2 := e.dial(t, alice, "alice-pw")
	res, raw = c2.signIn("alice@contoso.com", "")
	require.Equal(t, 200, res.StatusCode, raw)
	assert.Len(t, res.GetHeaders("Contact"), 2, raw)
	assert.NotEqual(t, gruu, gruuOf(t, raw, c2.uuid))
	assert.Equal(t, 2, e.sim.SIPRegistrations(alice))

	// Unregister: Expires: 0.
	c.cseq++
	c.send("REGISTER", "sip:contoso.com", string(alice), c.regCall, c.cseq, c.regTag, "", c.registerHeaders("0"), "")
	res, raw = c.response(c.cseq, "REGISTER")
	require.Equal(t, 200, res.StatusCode, raw)
	assert.Equal(t, 1, e.sim.SIPRegistrations(alice))
}

var contactRE = regexp.MustCompile(`(?m)^Contact: (.*)\r$`)

// gruuOf is the gruu of the Contact with instance uuid in a 200.
func gruuOf(t *testing.T, raw, uuid string) string {
	t.Helper()
	for _, m := range contactRE.FindAllStringSubmatch(raw, -1) {
		if strings.Contains(strings.ToUpper(m[1]), strings.ToUpper(uuid)) {
			g := regexp.MustCompile(`gruu="([^"]+)"`).FindStringSubmatch(m[1])
			require.NotNil(t, g, m[1])
			return g[1]
		}
	}
	t.Fatalf("no Contact for %s in %q", uuid, raw)
	return ""
}

func TestSIPRegisterRefused(t *testing.T) {
	e := newSIPEnv(t, sim.Options{}, false)

	// A wrong password ends the handshake with a fresh 401.
	c := e.dial(t, alice, "wrong")
	res, raw := c.register("", "")
	require.Equal(t, 401, res.StatusCode, raw)
	offer, err := sipae.ParseHeader(hdr(res)("WWW-Authenticate"))
	require.NoError(t, err)
	client := sipae.NewClient("alice", "CONTOSO", "wrong")
	_, ir, _ := client.Start()
	res, _ = c.register(sipae.Credentials(offer, ir).String(), "")
	challenge, err := sipae.ParseHeader(hdr(res)("WWW-Authenticate"))
	require.NoError(t, err)
	token, err := client.Next(challenge.GSSAPIData)
	require.NoError(t, err)
	res, raw = c.register(sipae.Credentials(challenge, token).String(), "")
	require.Equal(t, 401, res.StatusCode, raw)
	assert.Empty(t, hdr(res)("Authentication-Info"))
	assert.Equal(t, 0, e.sim.SIPRegistrations(alice))

	// Bob's password does not sign alice in.
	c = e.dial(t, alice, "bob-pw")
	res, raw = c.signInExpectingFailure("bob", "CONTOSO")
	assert.Equal(t, 401, res.StatusCode, raw)

	// An unknown user is told it is not SIP-enabled.
	u := e.dial(t, "sip:nobody@contoso.com", "x")
	res, raw = u.register("", "")
	assert.Equal(t, 404, res.StatusCode, raw)
	assert.Contains(t, hdr(res)("ms-diagnostics"), "4005;")
}

// signInExpectingFailure runs the handshake and returns the answer to the
// AUTHENTICATE, unsigned.
func (c *sipeClient) signInExpectingFailure(user, domain string) (*sip.Response, string) {
	c.t.Helper()
	res, _ := c.register("", "")
	offer, err := sipae.ParseHeader(hdr(res)("WWW-Authenticate"))
	require.NoError(c.t, err)
	client := sipae.NewClient(user, domain, c.password)
	_, ir, _ := client.Start()
	res, _ = c.register(sipae.Credentials(offer, ir).String(), "")
	challenge, err := sipae.ParseHeader(hdr(res)("WWW-Authenticate"))
	require.NoError(c.t, err)
	token, err := client.Next(challenge.GSSAPIData)
	require.NoError(c.t, err)
	return c.register(sipae.Credentials(challenge, token).String(), "")
}

func TestSIPRequestsMustBeSigned(t *testing.T) {
	e := newSIPEnv(t, sim.Options{}, false)
	c := e.dial(t, alice, "alice-pw")

	// Before the sign-in: challenged.
	c.write(nil, true, "OPTIONS", "sip:contoso.com", "sip:contoso.com", "o1", 1, "t1", "", "", "")
	res, raw := c.response(1, "OPTIONS")
	assert.Equal(t, 401, res.StatusCode, raw)

	res, raw = c.signIn("alice", "CONTOSO")
	require.Equal(t, 200, res.StatusCode, raw)
	// Unsigned after the sign-in: challenged again (and the 401 is
	// signed, which the client's reader checked).
	c.write(nil, true, "OPTIONS", "sip:contoso.com", "sip:contoso.com", "o2", 1, "t2", "", "", "")
	res, raw = c.response(1, "OPTIONS")
	assert.Equal(t, 401, res.StatusCode, raw)
	// Signed: answered.
	c.send("OPTIONS", "sip:contoso.com", "sip:contoso.com", "o3", 2, "t3", "", "", "")
	res, raw = c.response(2, "OPTIONS")
	assert.Equal(t, 200, res.StatusCode, raw)
	// Presence requests reach the presence front end, signed.
	c.send("SUBSCRIBE", "sip:alice@contoso.com", string(alice), "s1", 3, "t4", "", "Event: vnd-microsoft-roaming-contacts\r\n", "")
	res, raw = c.response(3, "SUBSCRIBE")
	assert.Equal(t, 200, res.StatusCode, raw)
}

func TestSIPTrustedApplication(t *testing.T) {
	e := newSIPEnv(t, sim.Options{SIP: sim.SIPOptions{TrustedApplications: []string{"bridge.contoso.com"}}}, true)
	app := e.dialTrusted(t, "bridge.contoso.com")
	for i, u := range []string{string(alice), string(bob)} {
		app.uri = sfb.URI(u)
		app.uuid = strings.ToUpper(randUUID())
		app.cseq = i + 1
		app.send("REGISTER", "sip:contoso.com", u, randHex(8), app.cseq, randHex(4), "", app.registerHeaders(""), "")
		res, raw := app.response(app.cseq, "REGISTER")
		require.Equal(t, 200, res.StatusCode, raw)
		assert.Empty(t, hdr(res)("Authentication-Info"), "trusted applications' messages are not signed")
		assert.Contains(t, gruuOf(t, raw, app.uuid), u+";opaque=user:epid:")
	}
	assert.Equal(t, 1, e.sim.SIPRegistrations(alice))
	assert.Equal(t, 2, e.sim.SIPRegistrations(""))

	// A user has at most MaxEndpointsPerUser endpoints (8).
	app.uri = alice
	for i := 0; i < 8; i++ {
		app.uuid = strings.ToUpper(randUUID())
		app.cseq++
		app.send("REGISTER", "sip:contoso.com", string(alice), randHex(8), app.cseq, randHex(4), "", app.registerHeaders(""), "")
		res, raw := app.response(app.cseq, "REGISTER")
		if i < 7 {
			require.Equal(t, 200, res.StatusCode, raw)
			continue
		}
		assert.Equal(t, 403, res.StatusCode, raw)
		assert.Contains(t, raw, "403 Maximum number of endpoints reached\r\n")
	}
	assert.Equal(t, 8, e.sim.SIPRegistrations(alice))

	// Another certificate of the same CA is no trusted application.
	other := e.dialTrusted(t, "other.contoso.com")
	other.uri = alice
	other.send("REGISTER", "sip:contoso.com", string(alice), "r", 1, "t", "", other.registerHeaders(""), "")
	res, raw := other.response(1, "REGISTER")
	assert.Equal(t, 401, res.StatusCode, raw)

	// The connection going away takes its endpoints with it.
	require.NoError(t, app.nc.Close())
	require.Eventually(t, func() bool { return e.sim.SIPRegistrations("") == 0 }, 5*time.Second, 10*time.Millisecond)
}

func TestSIPRegistrationExpiry(t *testing.T) {
	e := newSIPEnv(t, sim.Options{}, false)
	c := e.dial(t, alice, "alice-pw")
	res, raw := c.signIn("alice", "CONTOSO")
	require.Equal(t, 200, res.StatusCode, raw)
	c.cseq++
	c.send("REGISTER", "sip:contoso.com", string(alice), c.regCall, c.cseq, c.regTag, "", c.registerHeaders("60"), "")
	res, raw = c.response(c.cseq, "REGISTER")
	require.Equal(t, 200, res.StatusCode, raw)
	assert.Equal(t, "60", hdr(res)("Expires"))
	e.clock.Advance(59 * time.Second)
	e.sim.Sweep()
	assert.Equal(t, 1, e.sim.SIPRegistrations(alice))
	e.clock.Advance(2 * time.Second)
	e.sim.Sweep()
	assert.Equal(t, 0, e.sim.SIPRegistrations(alice))
}

func TestSIPDeregister(t *testing.T) {
	e := newSIPEnv(t, sim.Options{}, false)
	c := e.dial(t, alice, "alice-pw")
	res, raw := c.signIn("alice", "CONTOSO")
	require.Equal(t, 200, res.StatusCode, raw)
	toTag, _ := res.To().Params.Get("tag")

	assert.Equal(t, 1, e.sim.DeregisterSIP(alice))
	assert.Equal(t, 0, e.sim.SIPRegistrations(alice))
	// In the registration's dialog, signed (checked by the reader), in
	// the form pidgin-sipe's sipe_process_registration_notify reads.
	req, raw := c.request("NOTIFY")
	assert.Equal(t, "registration-notify", hdr(req)("Event"), raw)
	assert.Equal(t, "text/registration-event", hdr(req)("Content-Type"))
	assert.Equal(t, "deregistered;event=rejected", string(req.Body()))
	assert.Contains(t, hdr(req)("ms-diagnostics-public"), `reason="User disabled"`)
	assert.Equal(t, c.regCall, req.CallID().Value())
	fromTag, _ := req.From().Params.Get("tag")
	assert.Equal(t, toTag, fromTag)
	ourTag, _ := req.To().Params.Get("tag")
	assert.Equal(t, c.regTag, ourTag)
	c.respond(req, 200, "OK", "", "", "")
}

func TestSIPFaults(t *testing.T) {
	e := newSIPEnv(t, sim.Options{}, false)
	e.sim.FailSIPRequests(1, 503, 7*time.Second)
	c := e.dial(t, alice, "alice-pw")
	res, raw := c.register("", "")
	require.Equal(t, 503, res.StatusCode, raw)
	assert.Equal(t, "7", hdr(res)("Retry-After"))
	assert.NotEmpty(t, hdr(res)("ms-diagnostics"))
	res, raw = c.signIn("alice", "CONTOSO")
	require.Equal(t, 200, res.StatusCode, raw)

	// Dropping the connection ends the registration.
	assert.Equal(t, 1, e.sim.DropSIPConnections(alice))
	require.Eventually(t, func() bool { return e.sim.SIPRegistrations(alice) == 0 }, 5*time.Second, 10*time.Millisecond)
}

func TestSIPRedirectToHomePool(t *testing.T) {
	e := newSIPEnv(t, sim.Options{}, false)
	require.NoError(t, e.sim.SetSIPHomePool(alice, "pool2.contoso.com:5061"))
	assert.Error(t, e.sim.SetSIPHomePool(alice, "no port"))
	c := e.dial(t, alice, "alice-pw")
	// After the authentication (signed, checked by the reader), as
	// pidgin-sipe's process_register_response expects it.
	res, raw := c.signIn("alice", "CONTOSO")
	require.Equal(t, 301, res.StatusCode, raw)
	assert.Equal(t, "<sip:pool2.contoso.com:5061;transport=tcp>", hdr(res)("Contact"))
	assert.Equal(t, 0, e.sim.SIPRegistrations(alice))

	require.NoError(t, e.sim.SetSIPHomePool(alice, ""))
	c.cseq++
	c.send("REGISTER", "sip:contoso.com", string(alice), c.regCall, c.cseq, c.regTag, "", c.registerHeaders(""), "")
	res, raw = c.response(c.cseq, "REGISTER")
	assert.Equal(t, 200, res.StatusCode, raw)
}

func TestSIPMalformedRequest(t *testing.T) {
	e := newSIPEnv(t, sim.Options{}, false)
	c := e.dial(t, alice, "alice-pw")
	// No To header: 400, and the connection goes on.
	_, err := io.WriteString(c.nc, "OPTIONS sip:contoso.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKx\r\n"+
		"From: <sip:alice@contoso.com>;tag=1\r\nCall-ID: m1\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	require.NoError(t, err)
	res, raw := c.response(7, "OPTIONS")
	assert.Equal(t, 400, res.StatusCode, raw)
	res, raw = c.signIn("alice", "CONTOSO")
	assert.Equal(t, 200, res.StatusCode, raw)
}

func TestSIPControlAPI(t *testing.T) {
	e := newSIPEnv(t, sim.Options{}, false)
	c := e.signedIn(t, alice, "alice-pw")
	r := e.do("GET", "/sim/v1/users/alice@contoso.com/sip-registrations", "", "", "")
	require.Equal(t, 200, r.status)
	assert.Equal(t, float64(1), r.json(t)["count"])
	r = e.do("GET", "/sim/v1/sip-registrations", "", "", "")
	assert.Equal(t, float64(1), r.json(t)["count"])

	r = e.do("POST", "/sim/v1/faults/sip-fail-requests", "", "application/json", `{"count":1,"status":503,"retry_after_seconds":9}`)
	require.Equal(t, 204, r.status, string(r.body))
	c.send("OPTIONS", "sip:contoso.com", "sip:contoso.com", "o1", 1, "t1", "", "", "")
	res, raw := c.response(1, "OPTIONS")
	assert.Equal(t, 503, res.StatusCode, raw)
	assert.Equal(t, "9", hdr(res)("Retry-After"))
	assert.Equal(t, 400, e.do("POST", "/sim/v1/faults/sip-fail-requests", "", "application/json", `{"count":1,"status":200}`).status)

	r = e.do("PUT", "/sim/v1/users/bob@contoso.com/sip-home-pool", "", "application/json", `{"pool":"pool2.contoso.com:5061"}`)
	assert.Equal(t, 204, r.status, string(r.body))

	r = e.do("POST", "/sim/v1/faults/sip-deregister", "", "application/json", `{"user":"sip:alice@contoso.com"}`)
	require.Equal(t, 200, r.status)
	assert.Equal(t, float64(1), r.json(t)["registrations"])
	req, _ := c.request("NOTIFY")
	c.respond(req, 200, "OK", "", "", "")

	r = e.do("POST", "/sim/v1/faults/sip-drop-connections", "", "application/json", `{"user":"sip:alice@contoso.com"}`)
	require.Equal(t, 200, r.status)
	assert.Equal(t, float64(0), r.json(t)["connections"], "alice has no registration left")
}
