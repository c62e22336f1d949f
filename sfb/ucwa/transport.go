package ucwa

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/publicsuffix"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Timings are the intervals the transport works with; tests shorten them.
type Timings struct {
	// BackoffMin and BackoffMax bound the exponential backoff after
	// transient failures: of the event channel, token renewal and
	// accepting an invitation.
	BackoffMin, BackoffMax time.Duration
	// TokenCheck is how often a session compares the clock with its token's
	// renewal time.
	TokenCheck time.Duration
	// RenewAt is the fraction of a token's lifetime after which it is
	// renewed.
	RenewAt float64
	// EventTimeout bounds one pending GET (the server releases it after
	// 180 s by default).
	EventTimeout time.Duration
	// OperationTimeout bounds the wait for an operation's completed event
	// (an invitation completes within about 30 s).
	OperationTimeout time.Duration
	// MaxPGetReplaced is how many 409 PGetReplaced in a row end the
	// session (another instance uses the application).
	MaxPGetReplaced int
	// TypingRefresh is how often setIsTyping is repeated while the user
	// types: it only starts a short timer on the server
	// (setIsTyping_ref.md). Zero means the default (4 s).
	TypingRefresh time.Duration
	// TypingMax ends the repetition when no "stopped typing" comes
	// (Matrix's own typing notifications time out after 30 s). Zero
	// means the default (30 s).
	TypingMax time.Duration
	// AcceptWait bounds how long a message to a peer waits for the
	// accept of that peer's invitation: sent before, it would start a
	// second conversation. Zero means the default (5 s).
	AcceptWait time.Duration
}

// DefaultTimings are the production values.
func DefaultTimings() Timings {
	return Timings{
		BackoffMin: time.Second, BackoffMax: 2 * time.Minute,
		TokenCheck: 30 * time.Second, RenewAt: 0.8,
		EventTimeout: 240 * time.Second, OperationTimeout: 60 * time.Second,
		MaxPGetReplaced: 2,
		TypingRefresh:   4 * time.Second, TypingMax: 30 * time.Second,
		AcceptWait: 5 * time.Second,
	}
}

// Option configures a Transport.
type Option func(*Transport)

// WithHTTPClient sets the HTTP client (tests pass an httptest client).
func WithHTTPClient(hc *http.Client) Option { return func(t *Transport) { t.hc = hc } }

// WithClock sets the clock used for token lifetimes.
func WithClock(now func() time.Time) Option { return func(t *Transport) { t.now = now } }

// WithTimings replaces the timings.
func WithTimings(tm Timings) Option { return func(t *Transport) { t.timings = tm } }

// Transport signs users in over UCWA. It implements sfb.Transport.
type Transport struct {
	cfg     sfb.Config
	log     zerolog.Logger
	hc      *http.Client
	now     func() time.Time
	timings Timings

	slots userSlots
	// poolCapped: the HTTP client limits connections per host, so a
	// request may wait for one (see requestPhase).
	poolCapped bool

	mu sync.Mutex
	// appsURL caches the applications URL per sign-in domain (RootURL.md:
	// cached until 403, 502 or sign-out).
	appsURL map[string]string
}

var _ sfb.Transport = (*Transport)(nil)

// New validates cfg and builds a Transport.
func New(cfg sfb.Config, log zerolog.Logger, opts ...Option) (*Transport, error) {
	t := &Transport{cfg: cfg, log: log.With().Str("transport", "ucwa").Logger(), now: time.Now,
		timings: DefaultTimings(), appsURL: map[string]string{}}
	if t.cfg.UserAgent == "" {
		t.cfg.UserAgent = "sfb-matrix-bridge"
	}
	if t.cfg.RequestTimeout <= 0 {
		t.cfg.RequestTimeout = 30 * time.Second
	}
	if t.cfg.ActivityInterval <= 0 {
		t.cfg.ActivityInterval = 3 * time.Minute
	}
	if t.cfg.ActivityInterval > 4*time.Minute {
		return nil, &ConfigError{Msg: fmt.Sprintf("activity_interval %s is longer than the 4 minutes SfB allows", t.cfg.ActivityInterval)}
	}
	for _, o := range opts {
		o(t)
	}
	def := DefaultTimings()
	if t.timings.TypingRefresh <= 0 {
		t.timings.TypingRefresh = def.TypingRefresh
	}
	if t.timings.TypingMax <= 0 {
		t.timings.TypingMax = def.TypingMax
	}
	if t.timings.AcceptWait <= 0 {
		t.timings.AcceptWait = def.AcceptWait
	}
	if t.cfg.DiscoveryURL != "" {
		u, err := url.Parse(t.cfg.DiscoveryURL)
		if err != nil || u.Host == "" {
			return nil, &ConfigError{Msg: fmt.Sprintf("discovery_url %q is not an absolute URL", t.cfg.DiscoveryURL)}
		}
		if err := t.checkURL(u); err != nil {
			return nil, err
		}
	}
	if t.hc != nil && t.hc.CheckRedirect == nil {
		// A client of the caller's gets the redirect rules too, on a
		// copy (the caller's stays as it was).
		hc := *t.hc
		hc.CheckRedirect = t.checkRedirect
		t.hc = &hc
	}
	if t.hc == nil {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if t.cfg.CAFile != "" {
			pool, err := loadCAFile(t.cfg.CAFile)
			if err != nil {
				return nil, err
			}
			tlsCfg.RootCAs = pool
		}
		t.hc = &http.Client{Transport: newHTTPTransport(tlsCfg), CheckRedirect: t.checkRedirect}
	}
	if tr, ok := t.hc.Transport.(*http.Transport); ok && tr.MaxConnsPerHost > 0 {
		t.poolCapped = true
	}
	return t, nil
}

// Connection pool sizes of the HTTP transport. Every signed-in user's
// event channel holds a connection for up to 180 s (one per user over
// HTTP/1.1, a stream over HTTP/2), so the number of connections follows
// the number of users and is not capped here: the limit on outstanding
// requests is per user (MaxOutstandingPerUser), as UCWA's own is. What is
// bounded is the idle connections kept for reuse: enough that a user's
// next pending GET and the bursts of short requests (reportMyActivity,
// messages, sign-ins) find one instead of opening a new TLS connection,
// few enough that a burst does not leave thousands open.
const (
	maxIdleConns = 256
	// idleConnTimeout is shorter than IIS's 120 s connection timeout, so
	// that the client closes an idle connection before the server does
	// and a request never goes out on a connection the server is closing.
	idleConnTimeout = 90 * time.Second
)

func newHTTPTransport(tlsCfg *tls.Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	// All users of a pool go to the same host (the pool's web services),
	// so per host is overall.
	tr.MaxIdleConns = maxIdleConns
	tr.MaxIdleConnsPerHost = maxIdleConns
	tr.IdleConnTimeout = idleConnTimeout
	return tr
}

// loadCAFile adds the certificates of a PEM file to the system's. Unlike
// x509.CertPool.AppendCertsFromPEM it does not skip what it cannot use:
// a corrupt certificate or a key in the file is a mistake the operator
// should hear about at start, not as a TLS failure later.
func loadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{Msg: fmt.Sprintf("read ca_file: %v", err)}
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if n == 0 {
				return nil, &ConfigError{Msg: fmt.Sprintf("ca_file %s holds no PEM certificates", path)}
			}
			return pool, nil
		}
		n++
		if block.Type != "CERTIFICATE" {
			return nil, &ConfigError{Msg: fmt.Sprintf("ca_file %s: PEM block %d is a %s, not a CERTIFICATE", path, n, block.Type)}
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, &ConfigError{Msg: fmt.Sprintf("ca_file %s: certificate %d: %v", path, n, err)}
		}
		pool.AddCert(cert)
	}
}

// checkRedirect keeps HTTP redirects on allowed URLs and inside the
// organisation of the first request: RootURL.md fails a discovery
// redirected to another domain, and a 307/308 would re-send a token
// request's password there.
func (t *Transport) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	if err := t.checkURL(req.URL); err != nil {
		return err
	}
	from, to := strings.ToLower(via[0].URL.Hostname()), strings.ToLower(req.URL.Hostname())
	if !inOrganisation(to, from) {
		return fmt.Errorf("redirect from %s to %s leaves the organisation", from, to)
	}
	return nil
}

// SignIn implements sfb.Transport.
func (t *Transport) SignIn(ctx context.Context, req sfb.SignInRequest, handler sfb.EventHandler) (sfb.Session, error) {
	self, err := sfb.ParseURI(req.Credentials.SignInAddress)
	if err != nil {
		return nil, fmt.Errorf("sign in: %w", err)
	}
	log := t.log.With().Str("user", self.Address()).Logger()
	c := t.newConn(self, log, req.Credentials)
	if req.Token != nil && req.Token.Valid(t.now(), time.Minute) {
		c.token = *req.Token
	} else if req.Credentials.Password == "" {
		return nil, fmt.Errorf("sign in %s: %w", self, sfb.ErrCredentialsRequired)
	}
	s := newSession(t, c, self, handler)
	if err := s.start(ctx, req.Resume); err != nil {
		return nil, fmt.Errorf("sign in %s: %w", self, err)
	}
	return s, nil
}

// applicationsURL finds the user's UCWA applications resource, from the
// cache or by autodiscovery.
func (t *Transport) applicationsURL(ctx context.Context, c *conn, self sfb.URI) (string, error) {
	domain := self.Domain()
	t.mu.Lock()
	cached := t.appsURL[domain]
	t.mu.Unlock()
	if cached != "" {
		return cached, nil
	}
	apps, err := t.discover(ctx, c, self)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	t.appsURL[domain] = apps
	t.mu.Unlock()
	return apps, nil
}

func (t *Transport) forgetApplicationsURL(domain string) {
	t.mu.Lock()
	delete(t.appsURL, domain)
	t.mu.Unlock()
}

// discover runs the autodiscovery flow of RootURL.md: internal then
// external root, redirects within the organisation, the user link (which
// challenges for a token), and its applications link.
func (t *Transport) discover(ctx context.Context, c *conn, self sfb.URI) (string, error) {
	roots := []string{
		"https://lyncdiscoverinternal." + self.Domain() + "/autodiscover/autodiscoverservice.svc/root",
		"https://lyncdiscover." + self.Domain() + "/autodiscover/autodiscoverservice.svc/root",
	}
	if t.cfg.DiscoveryURL != "" {
		roots = []string{t.cfg.DiscoveryURL}
	}
	var errs []error
	for _, root := range roots {
		apps, err := t.discoverFrom(ctx, c, self, root)
		if err == nil {
			return apps, nil
		}
		// Bad credentials end the search; an unreachable root does not.
		if errors.Is(err, sfb.ErrBadCredentials) || errors.Is(err, sfb.ErrCredentialsRequired) || ctx.Err() != nil {
			return "", err
		}
		c.log.Debug().Err(err).Str("root", root).Msg("Autodiscovery root failed")
		errs = append(errs, err)
	}
	return "", fmt.Errorf("autodiscover %s: %w", self.Domain(), errors.Join(errs...))
}

func (t *Transport) discoverFrom(ctx context.Context, c *conn, self sfb.URI, root string) (string, error) {
	next := root
	userStep := false
	for hop := 0; hop < 5; hop++ {
		u, err := url.Parse(next)
		if err != nil {
			return "", fmt.Errorf("autodiscover: parse %q: %w", next, err)
		}
		if err := t.sameOrganisation(c.creds, u); err != nil {
			return "", fmt.Errorf("autodiscover: %w", err)
		}
		rctx, cancel := context.WithTimeout(ctx, t.cfg.RequestTimeout)
		var doc Discovery
		_, err = c.doJSON(rctx, request{op: "autodiscover", method: http.MethodGet, url: u.String(), noAuth: !userStep}, &doc)
		cancel()
		if err != nil {
			return "", err
		}
		resolve := func(rel string) string {
			h := doc.Links.Href(rel)
			if h == "" {
				return ""
			}
			ref, err := u.Parse(h)
			if err != nil {
				return ""
			}
			return ref.String()
		}
		switch {
		case resolve("redirect") != "":
			next = resolve("redirect")
		case resolve("applications") != "":
			return resolve("applications"), nil
		case resolve("user") != "" && !userStep:
			next, userStep = resolve("user"), true
		default:
			return "", fmt.Errorf("autodiscover %s: no redirect, user or applications link", redact(u.String()))
		}
	}
	return "", fmt.Errorf("autodiscover from %s: too many redirects", redact(root))
}

// inOrganisation says whether host is of, or in the registrable domain
// of, of (both lower case). An IP address matches only itself.
func inOrganisation(host, of string) bool {
	if host == of {
		return true
	}
	if net.ParseIP(of) != nil || net.ParseIP(host) != nil {
		return false
	}
	org, err := publicsuffix.EffectiveTLDPlusOne(of)
	if err != nil {
		return false
	}
	return host == org || strings.HasSuffix(host, "."+org)
}

// sameOrganisation allows u only when its host belongs to the registrable
// domain of the sign-in address or of the configured discovery host
// (RootURL.md's security check: never follow a redirect, or send a
// password, to another organisation).
func (t *Transport) sameOrganisation(creds sfb.Credentials, u *url.URL) error {
	if err := t.checkURL(u); err != nil {
		return err
	}
	host := strings.ToLower(u.Hostname())
	var allowed []string
	if _, d, ok := strings.Cut(creds.SignInAddress, "@"); ok {
		allowed = append(allowed, strings.ToLower(d))
	}
	if t.cfg.DiscoveryURL != "" {
		if du, err := url.Parse(t.cfg.DiscoveryURL); err == nil {
			allowed = append(allowed, strings.ToLower(du.Hostname()))
		}
	}
	for _, a := range allowed {
		if inOrganisation(host, a) {
			return nil
		}
	}
	return fmt.Errorf("%s is outside the organisation (%s)", host, strings.Join(allowed, ", "))
}
