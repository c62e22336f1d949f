package ucwa

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/pool"
)

// MaxBodyBytes caps every response body read from the server.
const MaxBodyBytes = 1 << 20

// conn is one user's HTTP connection to UCWA: URL policy, the bearer token
// and its renewal, error decoding. Discovery and the session share it.
type conn struct {
	t     *Transport
	log   zerolog.Logger
	creds sfb.Credentials
	// slots bound the user's outstanding requests.
	slots *requestSlots

	mu        sync.Mutex
	token     sfb.Token
	oauthHref string
	// renewing is closed when the current renewal ends, so concurrent
	// requests that hit 401 wait for one renewal instead of each posting
	// the password.
	renewing chan struct{}
	renewErr error
	// onToken is told about every new token (the session renews on time).
	onToken func(sfb.Token)
}

func (t *Transport) newConn(self sfb.URI, log zerolog.Logger, creds sfb.Credentials) *conn {
	return &conn{t: t, log: log, creds: creds, slots: t.slots.get(self)}
}

func (c *conn) currentToken() sfb.Token {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// checkURL enforces the transport policy: HTTPS, or plain HTTP only to
// loopback when the configuration allows it.
func (t *Transport) checkURL(u *url.URL) error {
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if !t.cfg.AllowInsecureLoopback {
			return &ConfigError{Msg: fmt.Sprintf("refusing plain HTTP to %s: set allow_insecure_loopback (loopback only) or use https", u.Host)}
		}
		if !sfb.IsLoopback(u.Hostname()) {
			return &ConfigError{Msg: fmt.Sprintf("refusing plain HTTP to %s: allowed only towards loopback addresses", u.Host)}
		}
		return nil
	default:
		return &ConfigError{Msg: fmt.Sprintf("unsupported URL scheme %q in %s", u.Scheme, u.Redacted())}
	}
}

// request is one HTTP exchange.
type request struct {
	op          string
	method      string
	url         string
	body        []byte
	contentType string
	// accept, when set, replaces the Accept header's application/json.
	accept string
	// noAuth sends no Authorization header (discovery root).
	noAuth bool
	// noRetry401 returns the 401 instead of authenticating (used while
	// authenticating).
	noRetry401 bool
	// signIn marks a request of signing in or renewing a token: it waits
	// while the pool is paused. A signed-in session's requests do not.
	signIn bool
}

// response is what callers need from a successful exchange.
type response struct {
	status   int
	header   http.Header
	body     []byte
	location string
}

// do sends req. On 401 with an MsRtcOAuth challenge it obtains a token
// (needs the password) and sends once more.
func (c *conn) do(ctx context.Context, req request) (*response, error) {
	resp, err := c.send(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.status == http.StatusUnauthorized && !req.noRetry401 {
		chal, ok := parseChallenge(resp.header.Values("Www-Authenticate"))
		if !ok {
			return nil, c.errorFor(req, resp)
		}
		if err := c.authenticate(ctx, chal); err != nil {
			return nil, fmt.Errorf("%s: %w", req.op, err)
		}
		req.noAuth = false
		if resp, err = c.send(ctx, req); err != nil {
			return nil, err
		}
	}
	if resp.status >= 300 {
		return nil, c.errorFor(req, resp)
	}
	return resp, nil
}

// doJSON sends req and decodes a JSON answer into out (when not nil).
func (c *conn) doJSON(ctx context.Context, req request, out any) (*response, error) {
	resp, err := c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	if out != nil {
		if len(bytes.TrimSpace(resp.body)) == 0 {
			return nil, fmt.Errorf("%s: %s %s: empty body, want JSON", req.op, req.method, redact(req.url))
		}
		if err := json.Unmarshal(resp.body, out); err != nil {
			return nil, fmt.Errorf("%s: %s %s: decode body: %w", req.op, req.method, redact(req.url), err)
		}
	}
	return resp, nil
}

func (c *conn) send(ctx context.Context, req request) (*response, error) {
	u, err := url.Parse(req.url)
	if err != nil {
		return nil, fmt.Errorf("%s: parse URL: %w", req.op, err)
	}
	if err := c.t.checkURL(u); err != nil {
		return nil, fmt.Errorf("%s: %w", req.op, err)
	}
	if req.signIn {
		if err := c.t.guard(u).WaitPause(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", req.op, pool.WaitError(err))
		}
	}
	if err := c.slots.acquire(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", req.op, err)
	}
	defer c.slots.release()
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	var phase requestPhase
	hr, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, phase.trace()), req.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s: build request: %w", req.op, err)
	}
	hr.Header.Set("Accept", "application/json")
	if req.accept != "" {
		hr.Header.Set("Accept", req.accept)
	}
	if c.t.cfg.UserAgent != "" {
		hr.Header.Set("User-Agent", c.t.cfg.UserAgent)
	}
	if req.contentType != "" {
		hr.Header.Set("Content-Type", req.contentType)
	}
	if !req.noAuth {
		if tok := c.currentToken(); tok.Value != "" {
			hr.Header.Set("Authorization", "Bearer "+tok.Value)
		}
	}
	sent := time.Now()
	hresp, err := c.t.hc.Do(hr)
	if err != nil {
		c.t.observer.ServerAnswered(0, "")
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", req.op, phase.contextError(ctx, c.t.poolCapped))
		}
		// The URL may carry nothing secret, but the error text of some
		// transports repeats it; keep it, it is what operators need.
		return nil, fmt.Errorf("%s: %w: %w", req.op, sfb.ErrServerUnavailable, err)
	}
	defer hresp.Body.Close()
	c.t.observe(u, sent, hresp.StatusCode, hresp.Header)
	data, err := io.ReadAll(io.LimitReader(hresp.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read body: %w: %w", req.op, sfb.ErrServerUnavailable, err)
	}
	if len(data) > MaxBodyBytes {
		return nil, fmt.Errorf("%s: %s %s: body larger than %d bytes", req.op, req.method, redact(req.url), MaxBodyBytes)
	}
	return &response{status: hresp.StatusCode, header: hresp.Header, body: data, location: hresp.Header.Get("Location")}, nil
}

func (c *conn) errorFor(req request, resp *response) error {
	e := &Error{Op: req.op, Method: req.method, URL: redact(req.url), Status: resp.status,
		Diagnostics: resp.header.Get("X-Ms-Diagnostics"), RetryAfter: retryAfter(resp.header, c.t.now())}
	var body ErrorBody
	if strings.Contains(resp.header.Get("Content-Type"), "json") && json.Unmarshal(resp.body, &body) == nil {
		e.Code, e.Subcode, e.Message = body.Code, body.Subcode, truncate(body.Message, 200)
	}
	return e
}

// retryAfter reads a Retry-After header, in seconds or as a date; zero
// when absent or unreadable. Callers cap it; a day bounds it here so that
// a huge number of seconds cannot overflow into a short wait.
func retryAfter(h http.Header, now time.Time) time.Duration {
	ra := strings.TrimSpace(h.Get("Retry-After"))
	if ra == "" {
		return 0
	}
	if secs, err := strconv.Atoi(ra); err == nil && secs >= 0 {
		return time.Duration(min(secs, 24*60*60)) * time.Second
	}
	if when, err := http.ParseTime(ra); err == nil {
		return max(0, when.Sub(now))
	}
	return 0
}

// redact drops the user information of a URL for messages. The query
// stays: ack numbers and operation contexts are what operators need and
// carry nothing secret.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return truncate(s, 80)
	}
	u.User = nil
	return u.String()
}

// challenge is a parsed "WWW-Authenticate: MsRtcOAuth href=...,grant_type=...".
type challenge struct {
	Href       string
	GrantTypes []string
}

// parseChallenge finds the MsRtcOAuth challenge among WWW-Authenticate
// values. The reference shows the href both quoted and bare.
func parseChallenge(values []string) (challenge, bool) {
	for _, v := range values {
		v = strings.TrimSpace(v)
		scheme, params, ok := strings.Cut(v, " ")
		if !ok || !strings.EqualFold(scheme, "MsRtcOAuth") {
			continue
		}
		var ch challenge
		for _, kv := range splitParams(params) {
			k, val, _ := strings.Cut(kv, "=")
			val = strings.Trim(strings.TrimSpace(val), `"`)
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "href":
				ch.Href = val
			case "grant_type":
				for _, g := range strings.Split(val, ",") {
					if g = strings.TrimSpace(g); g != "" {
						ch.GrantTypes = append(ch.GrantTypes, g)
					}
				}
			}
		}
		if ch.Href != "" {
			return ch, true
		}
	}
	return challenge{}, false
}

// splitParams splits on commas outside quotes.
func splitParams(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote := false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			cur.WriteRune(r)
		case r == ',' && !inQuote:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	// A bare grant_type list (grant_type="a,b" unquoted in some samples)
	// splits into pieces without "="; glue them back to the previous one.
	var merged []string
	for _, p := range out {
		if !strings.Contains(p, "=") && len(merged) > 0 {
			merged[len(merged)-1] += "," + p
			continue
		}
		merged = append(merged, p)
	}
	return merged
}

// authenticate obtains a token from the challenge's WebTicket endpoint;
// concurrent callers share one renewal.
func (c *conn) authenticate(ctx context.Context, ch challenge) error {
	c.mu.Lock()
	if c.renewing != nil {
		wait := c.renewing
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
		c.mu.Lock()
		err := c.renewErr
		c.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	c.renewing = done
	c.mu.Unlock()

	tok, href, err := c.fetchToken(ctx, ch.Href, ch.GrantTypes)

	c.mu.Lock()
	if err == nil {
		c.token, c.oauthHref = tok, href
	}
	c.renewErr = err
	c.renewing = nil
	cb := c.onToken
	c.mu.Unlock()
	close(done)
	if err == nil && cb != nil {
		cb(tok)
	}
	return err
}

// renew gets a new token from the known WebTicket endpoint before the old
// one expires.
func (c *conn) renew(ctx context.Context) error {
	c.mu.Lock()
	href := c.oauthHref
	c.mu.Unlock()
	if href == "" {
		return fmt.Errorf("renew token: %w: no token endpoint known yet", sfb.ErrCredentialsRequired)
	}
	return c.authenticate(ctx, challenge{Href: href, GrantTypes: []string{"password"}})
}

func (c *conn) fetchToken(ctx context.Context, href string, grants []string) (sfb.Token, string, error) {
	if c.creds.Password == "" {
		return sfb.Token{}, "", fmt.Errorf("obtain token: %w", sfb.ErrCredentialsRequired)
	}
	if len(grants) > 0 && !containsFold(grants, "password") {
		return sfb.Token{}, "", fmt.Errorf("obtain token: server offers grant types %v, not password: %w", grants, sfb.ErrUnsupported)
	}
	u, err := url.Parse(href)
	if err != nil {
		return sfb.Token{}, "", fmt.Errorf("obtain token: parse token endpoint: %w", err)
	}
	// The password goes only to a host of the same organisation.
	if err := c.t.sameOrganisation(c.creds, u); err != nil {
		return sfb.Token{}, "", fmt.Errorf("obtain token: %w", err)
	}
	user := c.creds.Username
	if user == "" {
		user = c.creds.SignInAddress
	}
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {c.creds.Password}}
	resp, err := c.send(ctx, request{op: "obtain token", method: http.MethodPost, url: u.String(),
		body: []byte(form.Encode()), contentType: "application/x-www-form-urlencoded;charset=UTF-8", noAuth: true, signIn: true})
	if err != nil {
		return sfb.Token{}, "", err
	}
	if resp.status != http.StatusOK {
		oe := &OAuthError{Status: resp.status, Diagnostics: resp.header.Get("X-Ms-Diagnostics")}
		var body struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(resp.body, &body) == nil {
			oe.Code, oe.Description = body.Error, truncate(body.Description, 200)
		}
		if oe.Code == "" && resp.status >= 500 {
			oe.Code = "server_error"
		}
		return sfb.Token{}, "", oe
	}
	var tr TokenResponse
	if err := json.Unmarshal(resp.body, &tr); err != nil {
		return sfb.Token{}, "", fmt.Errorf("obtain token: decode response: %w", err)
	}
	if tr.AccessToken == "" {
		return sfb.Token{}, "", fmt.Errorf("obtain token: response has no access_token")
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "Bearer") {
		return sfb.Token{}, "", fmt.Errorf("obtain token: token_type %q is not Bearer", tr.TokenType)
	}
	secs, err := tr.ExpiresIn.Int64()
	if err != nil || secs <= 0 {
		return sfb.Token{}, "", fmt.Errorf("obtain token: bad expires_in %q", tr.ExpiresIn)
	}
	c.log.Debug().Int64("expires_in", secs).Msg("Obtained UCWA token")
	return sfb.Token{Value: tr.AccessToken, ExpiresAt: c.t.now().Add(time.Duration(secs) * time.Second)}, u.String(), nil
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

var errStopped = errors.New("session closed")
