package sim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

type obj = map[string]any

// clock is a settable time source for expiry tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var testUsers = []sim.User{
	{URI: "sip:alice@contoso.com", DisplayName: "Alice Aaling", Password: "alice-pw"},
	{URI: "sip:bob@contoso.com", DisplayName: "Bob Meston", Password: "bob-pw"},
	{URI: "sip:carol@contoso.com", DisplayName: "Carol Giorgi", Password: "carol-pw"},
}

type env struct {
	// bodies records every JSON body the simulator answered, for the
	// conformance test.
	bodies [][]byte
	t      testing.TB
	sim    *sim.Server
	hs     *httptest.Server
	clock  *clock
}

// newEnv starts a simulator with short timings; opts fields left zero get
// test defaults.
func newEnv(t testing.TB, opts sim.Options) *env {
	t.Helper()
	c := newClock()
	if opts.Users == nil {
		opts.Users = testUsers
	}
	if opts.Now == nil {
		opts.Now = c.Now
	}
	if opts.EventWait == 0 {
		opts.EventWait = 150 * time.Millisecond
	}
	if opts.EventAggregation == 0 {
		opts.EventAggregation = 10 * time.Millisecond
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = time.Hour // tests call Sweep themselves
	}
	opts.Logger = zerolog.Nop()
	s, err := sim.New(opts)
	require.NoError(t, err)
	hs := httptest.NewServer(s.Handler())
	s.SetBaseURL(hs.URL)
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		require.NoError(t, s.Close())
	})
	return &env{t: t, sim: s, hs: hs, clock: c}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t testing.TB) obj {
	t.Helper()
	var o obj
	require.NoError(t, json.Unmarshal(r.body, &o), "body: %s", r.body)
	return o
}

func (e *env) do(method, href, token, contentType, body string) resp {
	e.t.Helper()
	u := href
	if strings.HasPrefix(href, "/") {
		u = e.hs.URL + href
	}
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	require.NoError(e.t, err)
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	require.NoError(e.t, err)
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") && len(data) > 0 {
		e.bodies = append(e.bodies, data)
	}
	return resp{status: res.StatusCode, header: res.Header, body: data}
}

var oauthHref = regexp.MustCompile(`MsRtcOAuth href="([^"]+)",grant_type="([^"]+)"`)

// token signs in following the reference: discovery, user (401 challenge),
// the OAuth endpoint from the challenge.
func (e *env) token(address, password string) (tok string, userHref string) {
	t := e.t
	t.Helper()
	root := e.do("GET", e.sim.DiscoveryURL(), "", "", "")
	require.Equal(t, http.StatusOK, root.status)
	userHref = get(t, root.json(t), "_links", "user", "href").(string)
	ch := e.do("GET", userHref, "", "", "")
	require.Equal(t, http.StatusUnauthorized, ch.status)
	var oauth string
	for _, h := range ch.header.Values("WWW-Authenticate") {
		if m := oauthHref.FindStringSubmatch(h); m != nil {
			oauth = m[1]
		}
	}
	require.NotEmpty(t, oauth, "challenge: %v", ch.header)
	form := url.Values{"grant_type": {"password"}, "username": {address}, "password": {password}}
	tr := e.do("POST", oauth, "", "application/x-www-form-urlencoded;charset=UTF-8", form.Encode())
	require.Equal(t, http.StatusOK, tr.status, "%s", tr.body)
	return tr.json(t)["access_token"].(string), userHref
}

// client is one signed-in UCWA application.
type client struct {
	e     *env
	token string
	app   obj
	self  string
	next  string
	// backlog holds events of the last batch after the one await matched.
	backlog []evt
}

func (e *env) signIn(address, password string) *client {
	t := e.t
	t.Helper()
	tok, userHref := e.token(address, password)
	u := e.do("GET", userHref, tok, "", "")
	require.Equal(t, http.StatusOK, u.status)
	apps := get(t, u.json(t), "_links", "applications", "href").(string)
	r := e.do("POST", apps, tok, "application/json", `{"UserAgent":"sim-test","EndpointId":"`+address+`-ep","Culture":"en-US"}`)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	app := r.json(t)
	return &client{
		e: e, token: tok, app: app,
		self: get(t, app, "_links", "self", "href").(string),
		next: get(t, app, "_links", "events", "href").(string),
	}
}

func (c *client) do(method, href, contentType, body string) resp {
	c.e.t.Helper()
	return c.e.do(method, href, c.token, contentType, body)
}

func (c *client) makeMeAvailable(formats ...string) {
	c.e.t.Helper()
	f, _ := json.Marshal(formats)
	href := get(c.e.t, c.app, "_embedded", "me", "_links", "makeMeAvailable", "href").(string)
	r := c.do("POST", href, "application/json", `{"SupportedModalities":["Messaging"],"supportedMessageFormats":`+string(f)+`}`)
	require.Equal(c.e.t, http.StatusNoContent, r.status, "%s", r.body)
}

// evt is one event of an events response, flattened with its sender.
type evt struct {
	sender string
	rel    string
	href   string
	title  string
	typ    string
	status string
	raw    obj
}

func (e evt) embedded() obj {
	if em, ok := e.raw["_embedded"].(obj); ok {
		if r, ok := em[e.rel].(obj); ok {
			return r
		}
	}
	return nil
}

func flatten(t testing.TB, body obj) []evt {
	t.Helper()
	var out []evt
	senders, _ := body["sender"].([]any)
	for _, s := range senders {
		so := s.(obj)
		for _, x := range so["events"].([]any) {
			eo := x.(obj)
			l := eo["link"].(obj)
			title, _ := l["title"].(string)
			status, _ := eo["status"].(string)
			out = append(out, evt{sender: so["rel"].(string), rel: l["rel"].(string), href: l["href"].(string), title: title, typ: eo["type"].(string), status: status, raw: eo})
		}
	}
	return out
}

// poll does one P-GET on the next link and follows next (or resume).
func (c *client) poll() (obj, []evt) {
	t := c.e.t
	t.Helper()
	r := c.do("GET", c.next, "", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	body := r.json(t)
	links := body["_links"].(obj)
	for _, rel := range []string{"next", "resume"} {
		if l, ok := links[rel].(obj); ok {
			c.next = l["href"].(string)
		}
	}
	return body, flatten(t, body)
}

// await polls until an event matching pred arrives and returns every event
// seen up to and including it.
func (c *client) await(what string, pred func(evt) bool) []evt {
	t := c.e.t
	t.Helper()
	var seen []evt
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		evs := c.backlog
		c.backlog = nil
		if len(evs) == 0 {
			_, evs = c.poll()
		}
		for i, e := range evs {
			seen = append(seen, e)
			if pred(e) {
				c.backlog = evs[i+1:]
				return seen
			}
		}
	}
	t.Fatalf("no %s event within 5s; saw %+v", what, seen)
	return nil
}

func is(rel, typ string) func(evt) bool {
	return func(e evt) bool { return e.rel == rel && e.typ == typ }
}

// get walks a JSON path.
func get(t testing.TB, v any, path ...string) any {
	t.Helper()
	for _, p := range path {
		o, ok := v.(obj)
		require.True(t, ok, "at %q: not an object: %v", p, v)
		v, ok = o[p]
		require.True(t, ok, "missing %q in %v", p, o)
	}
	return v
}

func uri(s string) sfb.URI { return sfb.URI(s) }
