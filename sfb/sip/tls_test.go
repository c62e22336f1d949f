package sip

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// fakeDNS answers SRV queries from a table and records them.
type fakeDNS struct {
	mu      sync.Mutex
	srv     map[string][]*net.SRV
	queries []string
}

func (d *fakeDNS) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	q := "_" + service + "._" + proto + "." + name
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queries = append(d.queries, q)
	if addrs, ok := d.srv[q]; ok {
		return q, addrs, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: q, IsNotFound: true}
}

// writePEM writes cert as a PEM file for ca_file.
func writePEM(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600))
	return path
}

// Without sip.server the pool is found by DNS SRV, internal TLS first,
// then the Edge's _sip._tls; the connection is TLS, verified against the
// SRV target's name with the roots of ca_file.
func TestDiscoveryAndTLS(t *testing.T) {
	cert, _ := selfSigned(t, "fe01.contoso.com")
	p := newFakePool(t, func(p *fakePool) {
		p.tls = &tls.Config{Certificates: []tls.Certificate{cert}}
		p.users["bob@contoso.com"] = "x"
	})
	dns := &fakeDNS{srv: map[string][]*net.SRV{
		"_sip._tls.contoso.com": {{Target: "fe01.contoso.com.", Port: 5061, Priority: 0, Weight: 10}},
	}}
	var dialled []string
	var mu sync.Mutex
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		mu.Lock()
		dialled = append(dialled, addr)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, "tcp", p.ln.Addr().String())
	}
	cfg := testConfig("")
	cfg.CAFile = writePEM(t, cert)
	tr := newTransport(t, cfg, WithResolver(dns), WithDialer(dialer))
	s := signIn(t, tr, "alice@contoso.com", "correct horse", newEvents())
	assert.Equal(t, []string{"_sipinternaltls._tcp.contoso.com", "_sip._tls.contoso.com"}, dns.queries)
	assert.Equal(t, []string{"fe01.contoso.com:5061"}, dialled)
	_, reg := s.connection()
	assert.Contains(t, s.contact(), reg.gruu)
	assert.Contains(t, headerValue(p.nextRegister(t), "Contact"), ";transport=tls;")

	// The discovery is cached per domain.
	signIn(t, tr, "bob@contoso.com", "x", newEvents())
	assert.Len(t, dns.queries, 2)
}

// A server whose certificate does not verify is refused, and not as a
// passing unavailability: retrying does not mend it.
func TestTLSVerified(t *testing.T) {
	cert, _ := selfSigned(t, "evil.example.com")
	p := newFakePool(t, func(p *fakePool) { p.tls = &tls.Config{Certificates: []tls.Certificate{cert}} })
	cfg := testConfig(p.ln.Addr().String())
	cfg.CAFile = writePEM(t, cert)
	tr := newTransport(t, cfg)
	_, err := tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "x"}},
		newEvents().handler)
	require.Error(t, err)
	var verr *tls.CertificateVerificationError
	assert.True(t, errors.As(err, &verr), "%v", err)
	assert.NotErrorIs(t, err, sfb.ErrServerUnavailable)

	// Without the CA file, the right name does not help.
	good, _ := selfSigned(t, "127.0.0.1")
	p2 := newFakePool(t, func(p *fakePool) { p.tls = &tls.Config{Certificates: []tls.Certificate{good}} })
	tr2 := newTransport(t, testConfig(p2.ln.Addr().String()))
	_, err = tr2.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "x"}},
		newEvents().handler)
	assert.True(t, errors.As(err, &verr), "%v", err)
}

// In trusted mode the shared connections present the application's
// certificate (mutual TLS).
func TestTrustedMutualTLS(t *testing.T) {
	serverCert, _ := selfSigned(t, "127.0.0.1")
	appCert, appRoots := selfSigned(t, "bridge.contoso.com")
	var mu sync.Mutex
	var peers []string
	p := newFakePool(t, func(p *fakePool) {
		p.trusted = true
		p.tls = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: appRoots,
			VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
				mu.Lock()
				peers = append(peers, chains[0][0].Subject.CommonName)
				mu.Unlock()
				return nil
			}}
	})
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "app.pem"), filepath.Join(dir, "app.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: appCert.Certificate[0]}), 0o600))
	der, err := x509.MarshalPKCS8PrivateKey(appCert.PrivateKey)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	cfg := testConfig(p.ln.Addr().String())
	cfg.SIP.Mode, cfg.SIP.CertFile, cfg.SIP.KeyFile, cfg.SIP.Connections = sfb.SIPModeTrusted, certFile, keyFile, 1
	cfg.CAFile = writePEM(t, serverCert)
	tr := newTransport(t, cfg)
	signIn(t, tr, "alice@contoso.com", "", newEvents())
	signIn(t, tr, "bob@contoso.com", "", newEvents())
	assert.Equal(t, 1, p.connections())
	assert.Equal(t, []string{"bridge.contoso.com"}, peers)
	assert.Contains(t, headerValue(p.nextRegister(t), "Contact"), "<sip:bridge.contoso.com:",
		"without application_fqdn, the certificate's name")
}
