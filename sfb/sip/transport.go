// Package sip is the SIP transport of the bridge: the dialect Skype for
// Business clients and servers speak (MS-SIPRE, MS-SIPAE, MS-PRES), over
// one TLS connection per user (per-user mode, as an SfB client) or over a
// few mutual-TLS connections shared by every user's endpoint (trusted
// mode, as a UCMA trusted application). It implements sfb.Transport and
// sfb.Session; nothing of it reaches bridge/.
//
// # Layout
//
//   - transport.go: Transport, configuration, discovery, TLS, dialling.
//   - session.go: Session, its endpoint identity, events and the ordered
//     dispatch of the server's requests; the internal API im.go and
//     presence.go build on (see Session's methods).
//   - dialog.go: Dialog, the state of a SIP dialog (IM conversation,
//     subscription) and how its requests are built.
//   - register.go: REGISTER, the MS-SIPAE handshake and signing,
//     re-registration, deregistration, registration-notify.
//   - connection.go: per-user connections with reconnect, and the shared
//     connections (trunks) of trusted mode.
//   - refresh.go: the one scheduler of every endpoint's re-registration.
//   - im.go, presence.go: instant messaging and presence.
//   - unsupported.go: what SIP does not carry yet (group chat, meetings).
//
// Where the dialect comes from: pidgin-sipe (sip-transport.c for the
// transport, sipe-notify.c for registration-notify), MS-SIPAE, MS-SIPRE.
package sip

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/pool"
)

// Timings are the intervals the transport works with; most come from the
// configuration, tests shorten them.
type Timings struct {
	// BackoffMin and BackoffMax bound the exponential backoff of
	// reconnects and of a pool's pause after 503.
	BackoffMin, BackoffMax time.Duration
	// RequestTimeout bounds one transaction.
	RequestTimeout time.Duration
	// KeepAlive is how long a connection may be silent before a CRLF
	// ping (pidgin-sipe starts with 60 s).
	KeepAlive time.Duration
	// RefreshFrom and RefreshTo are the fractions of a registration's
	// lifetime between which it is refreshed, at a random point, so that
	// endpoints registered together do not refresh together.
	RefreshFrom, RefreshTo float64
	// RefreshLead is the least time before expiry a refresh starts
	// (pidgin-sipe: 30 s).
	RefreshLead time.Duration
	// SALifetime is how long a security association is used before a new
	// handshake: MS-SIPAE 3.2.2, at most eight hours less a buffer of at
	// least five minutes.
	SALifetime time.Duration
	// IMIdle is how long an IM dialog may stay unused before it is
	// closed with a BYE; zero means im.go's default.
	IMIdle time.Duration
	// MachineIdle and MachineAway are how long after the last
	// ReportActivity the endpoint's machine state turns Inactive and Away
	// (Communicator: 5 and 20 minutes).
	MachineIdle, MachineAway time.Duration
}

// DefaultTimings are the production values.
func DefaultTimings() Timings { return timingsOf(sfb.DefaultConfig()) }

func timingsOf(cfg sfb.Config) Timings {
	return Timings{BackoffMin: cfg.BackoffMin, BackoffMax: cfg.BackoffMax, RequestTimeout: cfg.RequestTimeout,
		KeepAlive: time.Minute, RefreshFrom: 0.6, RefreshTo: 0.85, RefreshLead: 30 * time.Second,
		SALifetime: 8*time.Hour - 10*time.Minute, MachineIdle: 5 * time.Minute, MachineAway: 20 * time.Minute}
}

// Dialer opens the stream to a SIP server at addr (host:port), as
// net.Dialer.DialContext with network "tcp".
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// Resolver finds SIP servers; *net.Resolver is one.
type Resolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// Option configures a Transport.
type Option func(*Transport)

// WithTimings replaces the timings.
func WithTimings(tm Timings) Option { return func(t *Transport) { t.timings = tm } }

// WithObserver tells o how the server answers (the bridge's metrics).
func WithObserver(o sfb.Observer) Option {
	return func(t *Transport) {
		if o != nil {
			t.observer = o
		}
	}
}

// WithDialer replaces the TCP dialler (tests give one end of a pipe). TLS
// still runs over what it returns unless the server is tcp://.
func WithDialer(d Dialer) Option { return func(t *Transport) { t.dial = d } }

// WithResolver replaces DNS for SRV discovery.
func WithResolver(r Resolver) Option { return func(t *Transport) { t.resolver = r } }

// WithTLSConfig replaces the TLS configuration built from the
// configuration (tests trust their own CA this way).
func WithTLSConfig(c *tls.Config) Option { return func(t *Transport) { t.tlsConfig = c } }

// Transport signs users in over SIP. It implements sfb.Transport and is
// safe for concurrent use.
type Transport struct {
	cfg      sfb.Config
	mode     string
	log      zerolog.Logger
	timings  Timings
	observer sfb.Observer

	tlsConfig *tls.Config
	dial      Dialer
	resolver  Resolver
	// server is the configured server, nil for SRV discovery.
	server *sfb.SIPServer

	// guards pace sign-ins per pool (per-user mode: sign_in_rate) or
	// registrations (trusted mode: register_rate), and pause a pool that
	// answered 503.
	guards *pool.Guards
	// refresh re-registers every endpoint before its registration expires.
	refresh *scheduler

	mu sync.Mutex
	// discovered caches the servers found per domain.
	discovered map[string][]sfb.SIPServer
	// endpoints holds the session of each signed-in user: one endpoint
	// per user, and (trusted mode) the routing of the shared connections'
	// requests by the user they are for.
	endpoints map[sfb.URI]*Session
	// trunks are trusted mode's shared connections, made on first use.
	trunks []*trunk
}

var _ sfb.Transport = (*Transport)(nil)

// New validates cfg and builds a Transport. Options left zero in cfg take
// sfb.DefaultConfig's values.
func New(cfg sfb.Config, log zerolog.Logger, opts ...Option) (*Transport, error) {
	cfg = cfg.WithDefaults()
	t := &Transport{cfg: cfg, mode: cfg.SIP.Mode, log: log.With().Str("transport", "sip").Logger(),
		timings: timingsOf(cfg), observer: sfb.NopObserver{}, resolver: net.DefaultResolver,
		discovered: map[string][]sfb.SIPServer{}, endpoints: map[sfb.URI]*Session{}}
	for _, o := range opts {
		o(t)
	}
	if t.dial == nil {
		d := &net.Dialer{Timeout: t.timings.RequestTimeout, KeepAlive: 30 * time.Second}
		t.dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	if err := t.check(); err != nil {
		return nil, err
	}
	rate := cfg.SignInRate
	if t.mode == sfb.SIPModeTrusted {
		rate = cfg.SIP.RegisterRate
	}
	t.guards = pool.NewGuards(pool.Config{SignInRate: rate, BackoffMin: t.timings.BackoffMin, BackoffMax: t.timings.BackoffMax}, t.log)
	t.refresh = newScheduler(t.log)
	return t, nil
}

// check validates the configuration and builds the TLS configuration.
func (t *Transport) check() error {
	sc := &t.cfg.SIP
	switch t.mode {
	case sfb.SIPModePerUser:
		if err := t.cfg.CheckSignInRate(); err != nil {
			return &ConfigError{Msg: err.Error()}
		}
		if sc.MaxOutstanding > sfb.MaxSIPOutstandingPerUser {
			return &ConfigError{Msg: fmt.Sprintf("sip.max_outstanding %d: at most %d per connection in per_user mode", sc.MaxOutstanding, sfb.MaxSIPOutstandingPerUser)}
		}
	case sfb.SIPModeTrusted:
		if sc.CertFile == "" || sc.KeyFile == "" {
			if t.tlsConfig == nil || len(t.tlsConfig.Certificates) == 0 {
				return &ConfigError{Msg: "trusted mode needs sip.cert_file and sip.key_file (the trusted application's certificate for mutual TLS)"}
			}
		}
		if sc.Server == "" {
			return &ConfigError{Msg: "trusted mode needs sip.server (the pool the trusted application is homed on)"}
		}
		if sc.Connections <= 0 || sc.Connections > 64 {
			return &ConfigError{Msg: fmt.Sprintf("sip.connections %d: must be between 1 and 64", sc.Connections)}
		}
		if sc.RegisterRate <= 0 {
			return &ConfigError{Msg: fmt.Sprintf("sip.register_rate %g: must be above 0", sc.RegisterRate)}
		}
	default:
		return &ConfigError{Msg: fmt.Sprintf("sip.mode %q: want %q or %q", sc.Mode, sfb.SIPModePerUser, sfb.SIPModeTrusted)}
	}
	if sc.MaxOutstanding <= 0 {
		return &ConfigError{Msg: fmt.Sprintf("sip.max_outstanding %d: must be above 0", sc.MaxOutstanding)}
	}
	srv, ok, err := sc.ParseServer()
	if err != nil {
		return &ConfigError{Msg: err.Error()}
	}
	if ok {
		if srv.TCP && (!t.cfg.AllowInsecureLoopback || !sfb.IsLoopback(srv.Host)) {
			return &ConfigError{Msg: fmt.Sprintf("sip.server %s: plain TCP only towards a loopback address with allow_insecure_loopback", sc.Server)}
		}
		t.server = &srv
	}
	if t.tlsConfig == nil {
		if err := t.buildTLS(); err != nil {
			return err
		}
	}
	if t.mode == sfb.SIPModeTrusted && sc.ApplicationFQDN == "" {
		name, err := certificateName(t.tlsConfig.Certificates[0])
		if err != nil {
			// Contact then has the connection's address, which
			// routes as long as the connection lives.
			t.log.Warn().Err(err).Msg("sip.application_fqdn is empty and the certificate names no host: Contact has the local address")
		}
		sc.ApplicationFQDN = name
	}
	return nil
}

// certificateName is the first DNS name of cert, else its common name:
// the trusted application's FQDN when the configuration gives none.
func certificateName(cert tls.Certificate) (string, error) {
	leaf := cert.Leaf
	if leaf == nil {
		if len(cert.Certificate) == 0 {
			return "", errors.New("the certificate is empty")
		}
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return "", fmt.Errorf("the certificate does not parse: %w", err)
		}
	}
	if len(leaf.DNSNames) > 0 {
		return leaf.DNSNames[0], nil
	}
	if leaf.Subject.CommonName != "" {
		return leaf.Subject.CommonName, nil
	}
	return "", errors.New("the certificate names no host")
}

// buildTLS makes the TLS configuration from the configuration: the
// system's roots and ca_file's, the trusted application's certificate.
func (t *Transport) buildTLS() error {
	sc := &t.cfg.SIP
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.cfg.CAFile != "" {
		roots, err := sfb.LoadCAFile(t.cfg.CAFile)
		if err != nil {
			return &ConfigError{Msg: err.Error()}
		}
		tc.RootCAs = roots
	}
	if t.mode == sfb.SIPModeTrusted {
		cert, err := tls.LoadX509KeyPair(sc.CertFile, sc.KeyFile)
		if err != nil {
			return &ConfigError{Msg: fmt.Sprintf("load sip.cert_file and sip.key_file: %v", err)}
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	t.tlsConfig = tc
	return nil
}

// srvServices are the DNS SRV names of an SfB pool in the order SfB
// clients try them (pidgin-sipe's service_tls): the internal TLS service,
// then the external (Edge) one.
var srvServices = [][2]string{{"sipinternaltls", "tcp"}, {"sip", "tls"}}

// servers returns where to connect for users of domain: the configured
// server, or the SRV targets (cached per domain).
func (t *Transport) servers(ctx context.Context, domain string) ([]sfb.SIPServer, error) {
	if t.server != nil {
		return []sfb.SIPServer{*t.server}, nil
	}
	t.mu.Lock()
	cached := t.discovered[domain]
	t.mu.Unlock()
	if len(cached) > 0 {
		return cached, nil
	}
	var errs []error
	for _, svc := range srvServices {
		_, addrs, err := t.resolver.LookupSRV(ctx, svc[0], svc[1], domain)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var found []sfb.SIPServer
		sort.SliceStable(addrs, func(i, j int) bool { return addrs[i].Priority < addrs[j].Priority })
		for _, a := range addrs {
			host := strings.TrimSuffix(a.Target, ".")
			if host == "" || a.Port == 0 {
				continue
			}
			found = append(found, sfb.SIPServer{Host: host, Port: int(a.Port)})
		}
		if len(found) > 0 {
			t.mu.Lock()
			t.discovered[domain] = found
			t.mu.Unlock()
			return found, nil
		}
	}
	return nil, fmt.Errorf("discover the SIP server of %s (SRV _sipinternaltls._tcp, _sip._tls): %w: %w", domain, sfb.ErrNotFound, errors.Join(errs...))
}

// forgetServers drops domain's cached discovery after every server of it
// failed.
func (t *Transport) forgetServers(domain string) {
	t.mu.Lock()
	delete(t.discovered, domain)
	t.mu.Unlock()
}

// connect opens a stream to srv: TLS verified against srv's host name,
// or plain TCP when srv says so (only ever loopback, see check).
func (t *Transport) connect(ctx context.Context, srv sfb.SIPServer) (net.Conn, error) {
	nc, err := t.dial(ctx, srv.Addr())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w: %w", srv.Addr(), sfb.ErrServerUnavailable, err)
	}
	if srv.TCP {
		return nc, nil
	}
	tc := t.tlsConfig.Clone()
	if tc.ServerName == "" {
		tc.ServerName = srv.Host
	}
	conn := tls.Client(nc, tc)
	if err := conn.HandshakeContext(ctx); err != nil {
		nc.Close()
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			// Not transient: a wrong name or an untrusted CA stays so.
			return nil, fmt.Errorf("TLS with %s: %w", srv.Addr(), err)
		}
		return nil, fmt.Errorf("TLS with %s: %w: %w", srv.Addr(), sfb.ErrServerUnavailable, err)
	}
	return conn, nil
}

// guard is the guard of the pool srv belongs to.
func (t *Transport) guard(srv sfb.SIPServer) *pool.Guard {
	return t.guards.For(strings.ToLower(srv.Addr()))
}

// Close ends trusted mode's shared connections (and with them every
// endpoint on them). Sessions should be closed first; Close is for a
// process that stops and for tests.
func (t *Transport) Close() error {
	t.mu.Lock()
	trunks := t.trunks
	t.trunks = nil
	t.mu.Unlock()
	for _, tr := range trunks {
		tr.close()
	}
	t.refresh.stop()
	return nil
}
