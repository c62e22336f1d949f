package sip

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// selfSigned is a certificate for name, for the TLS tests.
func selfSigned(t testing.TB, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.DNSNames, tmpl.IPAddresses = nil, []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

func trustedTransport(t *testing.T, p *fakePool, connections int) *Transport {
	t.Helper()
	cfg := testConfig(p.server())
	cfg.SIP.Mode = sfb.SIPModeTrusted
	cfg.SIP.Connections = connections
	cfg.SIP.ApplicationFQDN = "bridge.contoso.com"
	cert, _ := selfSigned(t, "bridge.contoso.com")
	return newTransport(t, cfg, WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}))
}

// In trusted mode every user's endpoint registers without a challenge on
// a few shared connections; the server's requests reach the endpoint they
// are for; a lost connection's endpoints register again; closing one
// session deregisters it and leaves the others.
func TestTrustedEndpoints(t *testing.T) {
	p := newFakePool(t, func(p *fakePool) { p.trusted = true })
	tr := trustedTransport(t, p, 3)
	evs := map[string]*events{}
	sessions := map[string]*Session{}
	for i := range 30 {
		user := fmt.Sprintf("user%02d@contoso.com", i)
		evs[user] = newEvents()
		sessions[user] = signIn(t, tr, user, "", evs[user])
	}
	assert.Equal(t, 3, p.connections(), "shared connections, not one per user")
	assert.Equal(t, 30, tr.refresh.len(), "one scheduler entry per endpoint, no timer each")
	instances := map[string]bool{}
	for range 30 {
		req := p.nextRegister(t)
		assert.Empty(t, headerValue(req, "Authorization"), "no challenge, no password")
		cp := contactParams(headerValue(req, "Contact"))
		instances[cp["+sip.instance"]] = true
		assert.Contains(t, headerValue(req, "Contact"), "<sip:bridge.contoso.com:", "the application's FQDN")
	}
	assert.Len(t, instances, 30, "an instance per user")

	// The server's request for user07 reaches user07's endpoint: its
	// answer carries user07's GRUU.
	s7 := sessions["user07@contoso.com"]
	fc := p.connOf("sip:user07@contoso.com")
	res := fc.request(t, sipmsg.OPTIONS, "sip:user07@contoso.com", nil)
	assert.Equal(t, 200, res.StatusCode)
	assert.Contains(t, headerValue(res, "Contact"), gruuOf("sip:user07@contoso.com", s7.instance))
	res = fc.request(t, sipmsg.OPTIONS, "sip:nobody@contoso.com", nil)
	assert.Equal(t, 480, res.StatusCode)

	// The connection of user07 drops: its endpoints register again, and
	// say so; the others are not disturbed.
	var moved []string
	for user := range sessions {
		if p.connOf("sip:"+user) == fc {
			moved = append(moved, user)
		}
	}
	require.NotEmpty(t, moved)
	fc.conn().Close()
	for _, user := range moved {
		st := next[sfb.SessionState](t, evs[user])
		assert.False(t, st.Connected)
		assert.ErrorIs(t, st.Err, sfb.ErrServerUnavailable)
		assert.True(t, next[sfb.SessionState](t, evs[user]).Connected)
	}
	assert.Equal(t, 4, p.connections())
	for user, e := range evs {
		if !contains(moved, user) {
			assert.Empty(t, e.ch, "%s's connection did not drop", user)
		}
	}
	res = p.connOf("sip:user07@contoso.com").request(t, sipmsg.OPTIONS, "sip:user07@contoso.com", nil)
	assert.Equal(t, 200, res.StatusCode)

	// Closing a session deregisters it; the shared connection stays.
	for range len(moved) {
		p.nextRegister(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s7.Close(ctx))
	bye := p.nextRegister(t)
	assert.Equal(t, "0", headerValue(bye, "Expires"))
	assert.Equal(t, 29, tr.refresh.len())
	res = p.connOf("sip:user07@contoso.com").request(t, sipmsg.OPTIONS, "sip:user07@contoso.com", nil)
	assert.Equal(t, 480, res.StatusCode, "no endpoint for the user any more")
	other := moved[0]
	if other == "user07@contoso.com" && len(moved) > 1 {
		other = moved[1]
	}
	if other != "user07@contoso.com" {
		res = p.connOf("sip:"+other).request(t, sipmsg.OPTIONS, "sip:"+other, nil)
		assert.Equal(t, 200, res.StatusCode)
	}
}

// A trusted application the server does not trust fails the sign-in for
// good, not as bad credentials (no password would help).
func TestTrustedRefused(t *testing.T) {
	p := newFakePool(t)
	tr := trustedTransport(t, p, 1)
	_, err := tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com"}}, newEvents().handler)
	require.ErrorIs(t, err, errUntrusted)
	assert.NotErrorIs(t, err, sfb.ErrBadCredentials)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
