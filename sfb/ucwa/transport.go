package ucwa

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/publicsuffix"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/pool"
)

// Timings are the intervals the transport works with; most come from the
// configuration (sfb.Config), tests shorten them all.
type Timings struct {
	// BackoffMin and BackoffMax bound the exponential backoff after
	// transient failures: of the event channel, token renewal and
	// accepting an invitation, and the pause of a pool that refused a
	// request.
	BackoffMin, BackoffMax time.Duration
	// TokenCheck is how often a session compares the clock with its token's
	// renewal time.
	TokenCheck time.Duration
	// RenewFrom and RenewTo are the fractions of a token's lifetime
	// between which it is renewed, at a point fixed per user (see
	// renewFraction).
	RenewFrom, RenewTo float64
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
	// PresenceDuration is the length asked for a presence subscription
	// (10 to 30 minutes); PresenceRenewBefore is how long before its
	// expiry it is extended; PresenceCheck is how often that is checked.
	// Zero means the defaults (30 min, 5 min, 30 s).
	PresenceDuration, PresenceRenewBefore, PresenceCheck time.Duration
}

// DefaultTimings are the production values.
func DefaultTimings() Timings { return timingsOf(sfb.DefaultConfig()) }

// timingsOf takes the configurable timings from cfg.
func timingsOf(cfg sfb.Config) Timings {
	return Timings{
		BackoffMin: cfg.BackoffMin, BackoffMax: cfg.BackoffMax,
		// Tokens live 8 hours: renewals spread over 4 to 7.2 hours after
		// issue, with 48 minutes left for a renewal that keeps failing.
		TokenCheck: 30 * time.Second, RenewFrom: 0.5, RenewTo: 0.9,
		EventTimeout: cfg.EventTimeout, OperationTimeout: cfg.OperationTimeout,
		MaxPGetReplaced: 2,
		TypingRefresh:   cfg.TypingRefresh, TypingMax: cfg.TypingMax,
		AcceptWait: cfg.AcceptWait,
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

// WithObserver tells o how the server answers (the bridge's metrics).
func WithObserver(o sfb.Observer) Option {
	return func(t *Transport) {
		if o != nil {
			t.observer = o
		}
	}
}

// Transport signs users in over UCWA. It implements sfb.Transport.
type Transport struct {
	cfg     sfb.Config
	log     zerolog.Logger
	hc      *http.Client
	now     func() time.Time
	timings Timings
	// observer is told every answer, reconnect and renewal.
	observer sfb.Observer
	// guards protect each pool from the bridge (pool.Guard); a pool is
	// the host of an applications URL.
	guards *pool.Guards

	slots userSlots
	// poolCapped: the HTTP client limits connections per host, so a
	// request may wait for one (see requestPhase).
	poolCapped bool

	mu sync.Mutex
	// appsURL caches the applications URL per sign-in domain (RootURL.md:
	// cached until 403, 502 or sign-out).
	appsURL map[string]string
	// discovering lets one sign-in per domain discover at a time, so that
	// sign-ins started together do not all discover what the first finds.
	discovering map[string]chan struct{}
}

var _ sfb.Transport = (*Transport)(nil)

// New validates cfg and builds a Transport. Options left zero in cfg take
// sfb.DefaultConfig's values.
func New(cfg sfb.Config, log zerolog.Logger, opts ...Option) (*Transport, error) {
	t := &Transport{cfg: cfg.WithDefaults(), log: log.With().Str("transport", "ucwa").Logger(), now: time.Now,
		appsURL: map[string]string{}, discovering: map[string]chan struct{}{}, observer: sfb.NopObserver{}}
	if t.cfg.ActivityInterval > 4*time.Minute {
		return nil, &ConfigError{Msg: fmt.Sprintf("activity_interval %s is longer than the 4 minutes SfB allows", t.cfg.ActivityInterval)}
	}
	if err := t.cfg.CheckSignInRate(); err != nil {
		return nil, &ConfigError{Msg: err.Error()}
	}
	t.timings = timingsOf(t.cfg)
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
	t.guards = pool.NewGuards(pool.Config{SignInRate: t.cfg.SignInRate,
		BackoffMin: t.timings.BackoffMin, BackoffMax: t.timings.BackoffMax}, t.log)
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
			roots, err := sfb.LoadCAFile(t.cfg.CAFile)
			if err != nil {
				return nil, &ConfigError{Msg: err.Error()}
			}
			tlsCfg.RootCAs = roots
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
	var turn *signInTurn
	if req.Turn != nil || req.OnTurn != nil {
		turn = &signInTurn{ctx: ctx, onTurn: req.OnTurn}
		if req.Turn != nil {
			tctx, cancel := context.WithCancelCause(req.Turn)
			stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
			defer func() { stop(); cancel(nil) }()
			turn.ctx = tctx
		}
	}
	s := newSession(t, c, self, handler)
	if err := s.start(ctx, turn, req.Resume); err != nil {
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
	turn := t.discovering[domain]
	if turn == nil {
		turn = make(chan struct{}, 1)
		t.discovering[domain] = turn
	}
	t.mu.Unlock()
	if cached != "" {
		return cached, nil
	}
	select {
	case turn <- struct{}{}:
		defer func() { <-turn }()
	case <-ctx.Done():
		return "", fmt.Errorf("autodiscover %s: wait for another sign-in's discovery: %w", domain, ctx.Err())
	}
	t.mu.Lock()
	cached = t.appsURL[domain]
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

// guard is the guard of the pool that u belongs to.
func (t *Transport) guard(u *url.URL) *pool.Guard {
	return t.guards.For(strings.ToLower(u.Host))
}

// waitSignIn waits for a sign-in slot of the pool of the applications URL
// apps (pool.Guard.WaitSignIn).
func (t *Transport) waitSignIn(ctx context.Context, apps string) error {
	u, err := url.Parse(apps)
	if err != nil {
		return fmt.Errorf("parse applications URL: %w", err)
	}
	return pool.WaitError(t.guard(u).WaitSignIn(ctx))
}

// observe tells the guard of u's pool how the pool answered a request sent
// at sent.
func (t *Transport) observe(u *url.URL, sent time.Time, status int, header http.Header) {
	t.observer.ServerAnswered(status, header.Get("X-Ms-Diagnostics"))
	g := t.guard(u)
	ra := retryAfter(header, t.now())
	switch {
	case status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests || (status >= 400 && ra > 0):
		g.Refused(sent, ra)
	case status < 500:
		g.Succeeded(sent)
	}
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
		_, err = c.doJSON(rctx, request{op: "autodiscover", method: http.MethodGet, url: u.String(), noAuth: !userStep, signIn: true}, &doc)
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
