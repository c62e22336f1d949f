package sip

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/testlog"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// testLogger logs to t until the test's cleanup ends; what comes later (a
// connection's goroutine that notices the close) is dropped, as testing
// panics on a log after the test.
func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(testlog.Writer(t))
}

// startSimSIP runs the simulator's SIP front end with alice and bob on
// loopback: plain TCP, or TLS when tlsConf is given.
func startSimSIP(t *testing.T, opts sim.Options, tlsConf *tls.Config) (*sim.Server, string) {
	t.Helper()
	opts.Users = []sim.User{{URI: "sip:alice@contoso.com", DisplayName: "Alice", Password: "pw-alice"},
		{URI: "sip:bob@contoso.com", DisplayName: "Bob", Password: "pw-bob"}}
	opts.Logger = testLogger(t).With().Str("side", "sim").Logger()
	srv, err := sim.New(opts)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.ServeSIP(ln, tlsConf) }()
	t.Cleanup(func() { _ = srv.Close() })
	if tlsConf != nil {
		return srv, ln.Addr().String()
	}
	return srv, "tcp://" + ln.Addr().String()
}

func simTransport(t *testing.T, cfg sfb.Config, opts ...Option) *Transport {
	t.Helper()
	tr, err := New(cfg, testLogger(t), append([]Option{WithTimings(testTimings())}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	return tr
}

// Against the simulator: a per-user sign-in registers one endpoint with
// the user's GRUU; a deregistration by the server (user disabled) ends
// the session as bad credentials; Close removes the endpoint.
func TestSimPerUser(t *testing.T) {
	srv, addr := startSimSIP(t, sim.Options{}, nil)
	tr := simTransport(t, testConfig(addr))
	e := newEvents()
	s := signIn(t, tr, "alice@contoso.com", "pw-alice", e)
	assert.Equal(t, 1, srv.SIPRegistrations("sip:alice@contoso.com"))
	_, reg := s.connection()
	assert.NotEmpty(t, reg.gruu)
	assert.NotNil(t, reg.sa)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "bob@contoso.com", Password: "wrong"}}, newEvents().handler)
	require.ErrorIs(t, err, sfb.ErrBadCredentials)

	bob := signIn(t, tr, "bob@contoso.com", "pw-bob", newEvents())
	require.NoError(t, bob.Close(ctx))
	require.Eventually(t, func() bool { return srv.SIPRegistrations("sip:bob@contoso.com") == 0 }, 5*time.Second, 10*time.Millisecond)

	assert.Equal(t, 1, srv.DeregisterSIP("sip:alice@contoso.com"))
	ended := next[sfb.SessionEnded](t, e)
	assert.ErrorIs(t, ended.Err, sfb.ErrBadCredentials)
}

// The simulator drops the connection: the session says so and registers
// again; a 503 with Retry-After fails a sign-in as unavailable.
func TestSimReconnectAndUnavailable(t *testing.T) {
	srv, addr := startSimSIP(t, sim.Options{}, nil)
	tr := simTransport(t, testConfig(addr))
	e := newEvents()
	signIn(t, tr, "alice@contoso.com", "pw-alice", e)
	require.Positive(t, srv.DropSIPConnections("sip:alice@contoso.com"))
	assert.False(t, next[sfb.SessionState](t, e).Connected)
	assert.True(t, next[sfb.SessionState](t, e).Connected)
	assert.Equal(t, 1, srv.SIPRegistrations("sip:alice@contoso.com"))

	srv.FailSIPRequests(1, 503, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "bob@contoso.com", Password: "pw-bob"}}, newEvents().handler)
	require.ErrorIs(t, err, sfb.ErrServerUnavailable)
}

// simTrusted runs the simulator over mutual TLS with the bridge as its
// trusted application, and a transport in trusted mode on one shared
// connection to it.
func simTrusted(t *testing.T) (*sim.Server, *Transport) {
	t.Helper()
	serverCert, serverRoots := selfSigned(t, "127.0.0.1")
	appCert, appRoots := selfSigned(t, "bridge.contoso.com")
	srv, addr := startSimSIP(t, sim.Options{SIP: sim.SIPOptions{TrustedApplications: []string{"bridge.contoso.com"}}},
		&tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: appRoots})
	cfg := testConfig(addr)
	cfg.SIP.Mode, cfg.SIP.Connections = sfb.SIPModeTrusted, 1
	return srv, simTransport(t, cfg, WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{appCert}, RootCAs: serverRoots}))
}

// Trusted mode against the simulator over mutual TLS: endpoints of both
// users on one shared connection, without passwords.
func TestSimTrusted(t *testing.T) {
	srv, tr := simTrusted(t)
	a := signIn(t, tr, "alice@contoso.com", "", newEvents())
	signIn(t, tr, "bob@contoso.com", "", newEvents())
	assert.Equal(t, 1, srv.SIPRegistrations("sip:alice@contoso.com"))
	assert.Equal(t, 1, srv.SIPRegistrations("sip:bob@contoso.com"))
	_, reg := a.connection()
	assert.NotEmpty(t, reg.gruu)
	assert.Nil(t, reg.sa, "a trusted application signs nothing")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, a.Close(ctx))
	assert.Equal(t, 0, srv.SIPRegistrations("sip:alice@contoso.com"))
	assert.Equal(t, 1, srv.SIPRegistrations("sip:bob@contoso.com"))
}
