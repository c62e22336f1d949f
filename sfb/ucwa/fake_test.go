package ucwa

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// fakeUCWA is a small scripted UCWA server for unit tests: discovery,
// WebTicket, one application per POST, an event channel fed by the test.
type fakeUCWA struct {
	t   *testing.T
	srv *httptest.Server

	mu         sync.Mutex
	password   string
	expiresIn  int
	tokens     []string // issued, newest last
	tokenPosts int
	appPosts   int
	appID      int
	ack        int
	acks       []int // ack of every events GET, in order
	requests   []recorded
	// override answers a request before the defaults; return true when
	// handled.
	override func(w http.ResponseWriter, r *http.Request, body string) bool

	queue chan fakeBatch
	msgN  int
	// base is the absolute origin the fake writes into its answers.
	base string
}

type recorded struct {
	Method, Path, Query, ContentType, Body string
}

// fakeBatch is one event-channel answer: status and body, or senders that
// the fake wraps with the proper next link.
type fakeBatch struct {
	status  int
	header  map[string]string
	body    string
	senders string
}

func newFake(t *testing.T) *fakeUCWA {
	f := &fakeUCWA{t: t, password: "secret", expiresIn: 28800, queue: make(chan fakeBatch, 64)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.base = f.srv.URL
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeUCWA) url(p string) string { return f.base + p }

// newTLSFake serves f over TLS and returns a client that sends every host
// name to it (the names are made up; certificate names are not checked in
// this test-only client).
func newTLSFake(t *testing.T, f *fakeUCWA) *http.Client {
	srv := httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.base = "https://lyncweb.contoso.com"
	addr := srv.Listener.Addr().String()
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // test-only, fake host names
	return &http.Client{Transport: tr}
}

type failingTransport struct{}

func (failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("offline")
}

// newOfflineSession is a session whose requests all fail, for feeding
// event batches directly.
func newOfflineSession(t *testing.T) *session {
	tr, err := New(sfb.Config{}, zerolog.Nop(), WithHTTPClient(&http.Client{Transport: failingTransport{}}), WithTimings(testTimings()))
	require.NoError(t, err)
	s := newSession(tr, tr.newConn("sip:me@contoso.com", tr.log, sfb.Credentials{SignInAddress: "me@contoso.com"}), "sip:me@contoso.com", func(context.Context, sfb.Event) {})
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	base, _ := url.Parse("https://lyncweb.contoso.com/ucwa/oauth/v1/applications")
	s.app.base = base
	t.Cleanup(func() { s.cancel(errStopped); s.wg.Wait() })
	return s
}

func (f *fakeUCWA) app() string { return fmt.Sprintf("/ucwa/oauth/v1/applications/%d", f.appID) }

func (f *fakeUCWA) push(b fakeBatch) { f.queue <- b }

func (f *fakeUCWA) pushSenders(senders string) { f.push(fakeBatch{senders: senders}) }

func (f *fakeUCWA) recorded(method, pathSuffix string) []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []recorded
	for _, r := range f.requests {
		if r.Method == method && strings.HasSuffix(r.Path, pathSuffix) {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeUCWA) authorized(r *http.Request) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	auth := r.Header.Get("Authorization")
	return len(f.tokens) > 0 && auth == "Bearer "+f.tokens[len(f.tokens)-1]
}

func (f *fakeUCWA) challenge(w http.ResponseWriter) {
	w.Header().Add("WWW-Authenticate", `Bearer trusted_issuers="", client_id="00000004"`)
	w.Header().Add("WWW-Authenticate", `MsRtcOAuth href="`+f.url("/WebTicket/oauthtoken")+`",grant_type="urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password"`)
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusUnauthorized)
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (f *fakeUCWA) serve(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(r.Body)
	body := string(data)
	f.mu.Lock()
	f.requests = append(f.requests, recorded{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, ContentType: r.Header.Get("Content-Type"), Body: body})
	override := f.override
	f.mu.Unlock()
	if override != nil && override(w, r, body) {
		return
	}
	p := r.URL.Path
	switch {
	case p == "/autodiscover/autodiscoverservice.svc/root":
		writeJSON(w, 200, `{"_links":{"self":{"href":"`+f.url(p)+`"},"user":{"href":"`+f.url("/autodiscover/autodiscoverservice.svc/root/oauth/user")+`"},"xframe":{"href":"x"}}}`)
	case p == "/autodiscover/autodiscoverservice.svc/root/oauth/user":
		if !f.authorized(r) {
			f.challenge(w)
			return
		}
		writeJSON(w, 200, `{"_links":{"self":{"href":"`+f.url(p)+`"},"applications":{"href":"`+f.url("/ucwa/oauth/v1/applications")+`"}}}`)
	case p == "/WebTicket/oauthtoken":
		form, _ := url.ParseQuery(body)
		f.mu.Lock()
		f.tokenPosts++
		ok := form.Get("grant_type") == "password" && form.Get("password") == f.password && form.Get("username") != ""
		var tok string
		if ok {
			tok = fmt.Sprintf("cwt=token%d", f.tokenPosts)
			f.tokens = append(f.tokens, tok)
		}
		exp := f.expiresIn
		f.mu.Unlock()
		if !ok {
			w.Header().Set("X-Ms-Diagnostics", `28020;source="fake";reason="bad password"`)
			writeJSON(w, 400, `{"error":"invalid_grant"}`)
			return
		}
		writeJSON(w, 200, fmt.Sprintf(`{"access_token":%q,"expires_in":%d,"ms_rtc_identityscope":"local","token_type":"Bearer"}`, tok, exp))
	case !f.authorized(r):
		f.challenge(w)
	case r.Method == http.MethodPost && p == "/ucwa/oauth/v1/applications":
		f.mu.Lock()
		f.appPosts++
		f.appID = 100 + f.appPosts
		f.ack = 1
		a := f.app()
		f.mu.Unlock()
		writeJSON(w, 201, `{"culture":"en-US","userAgent":"x","_links":{"self":{"href":"`+a+`"},"events":{"href":"`+a+`/events?ack=1"}},
"_embedded":{"me":{"name":"Tosh Meston","uri":"sip:toshm@contoso.com","_links":{"self":{"href":"`+a+`/me"},"makeMeAvailable":{"href":"`+a+`/me/makeMeAvailable"}},"rel":"me"},
"people":{"_links":{"self":{"href":"`+a+`/people"},"search":{"href":"`+a+`/people/search"}},"rel":"people"},
"communication":{"supportedModalities":[],"_links":{"self":{"href":"`+a+`/communication"},"conversations":{"href":"`+a+`/communication/conversations?filter=active"},"startMessaging":{"href":"`+a+`/communication/messagingInvitations"}},"rel":"communication"}},"rel":"application"}`)
	case strings.HasSuffix(p, "/me/makeMeAvailable"), strings.HasSuffix(p, "/me/reportMyActivity"),
		strings.HasSuffix(p, "/accept"), strings.HasSuffix(p, "/messaging/typing"):
		w.WriteHeader(204)
	case r.Method == http.MethodGet && strings.HasSuffix(p, "/me"):
		a := strings.TrimSuffix(p, "/me")
		writeJSON(w, 200, `{"name":"Tosh Meston","uri":"sip:toshm@contoso.com","_links":{"self":{"href":"`+p+`"},"reportMyActivity":{"href":"`+a+`/me/reportMyActivity"}},"rel":"me"}`)
	case r.Method == http.MethodDelete && strings.HasPrefix(p, "/ucwa/oauth/v1/applications/"):
		w.WriteHeader(204)
	case strings.HasSuffix(p, "/events"):
		f.serveEvents(w, r)
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/communication/messagingInvitations"):
		w.Header().Set("Location", f.app()+"/communication/messagingInvitations/inv1")
		w.WriteHeader(201)
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/messaging/messages"):
		f.mu.Lock()
		f.msgN++
		n := f.msgN
		f.mu.Unlock()
		w.Header().Set("Location", fmt.Sprintf("%s/communication/conversations/c1/messaging/messages/out%d", f.app(), n))
		w.WriteHeader(201)
	default:
		writeJSON(w, 404, `{"code":"NotFound","message":"no such resource"}`)
	}
}

func (f *fakeUCWA) serveEvents(w http.ResponseWriter, r *http.Request) {
	ack, _ := strconv.Atoi(r.URL.Query().Get("ack"))
	f.mu.Lock()
	f.acks = append(f.acks, ack)
	a := f.app()
	f.mu.Unlock()
	var b fakeBatch
	select {
	case b = <-f.queue:
	case <-time.After(20 * time.Millisecond):
		b = fakeBatch{senders: "[]"}
	case <-r.Context().Done():
		return
	}
	for k, v := range b.header {
		w.Header().Set(k, v)
	}
	if b.body != "" || b.status != 0 {
		st := b.status
		if st == 0 {
			st = 200
		}
		writeJSON(w, st, strings.ReplaceAll(b.body, "{APP}", a))
		return
	}
	writeJSON(w, 200, fmt.Sprintf(`{"_links":{"self":{"href":"%s/events?ack=%d"},"next":{"href":"%s/events?ack=%d"}},"sender":%s}`,
		a, ack, a, ack+1, strings.ReplaceAll(b.senders, "{APP}", a)))
}

// recorder collects a session's events.
type recorder struct {
	mu     sync.Mutex
	events []sfb.Event
}

func (r *recorder) handle(_ context.Context, e sfb.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) all() []sfb.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sfb.Event(nil), r.events...)
}

func messages(evts []sfb.Event) []sfb.MessageReceived {
	var out []sfb.MessageReceived
	for _, e := range evts {
		if m, ok := e.(sfb.MessageReceived); ok {
			out = append(out, m)
		}
	}
	return out
}

func eventsOf[T sfb.Event](evts []sfb.Event) []T {
	var out []T
	for _, e := range evts {
		if m, ok := e.(T); ok {
			out = append(out, m)
		}
	}
	return out
}

func testTimings() Timings {
	return Timings{BackoffMin: 5 * time.Millisecond, BackoffMax: 40 * time.Millisecond, TokenCheck: 5 * time.Millisecond,
		RenewFrom: 0.8, RenewTo: 0.8, EventTimeout: 5 * time.Second, OperationTimeout: 5 * time.Second, MaxPGetReplaced: 2}
}

func newTestTransport(t *testing.T, f *fakeUCWA, opts ...Option) *Transport {
	t.Helper()
	cfg := sfb.Config{DiscoveryURL: f.url("/autodiscover/autodiscoverservice.svc/root"), AllowInsecureLoopback: true,
		ActivityInterval: 4 * time.Minute, RequestTimeout: 5 * time.Second}
	tr, err := New(cfg, zerolog.New(zerolog.NewTestWriter(t)), append([]Option{WithTimings(testTimings())}, opts...)...)
	require.NoError(t, err)
	return tr
}

func signIn(t *testing.T, tr *Transport, password string) (sfb.Session, *recorder) {
	t.Helper()
	rec := &recorder{}
	s, err := tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "toshm@contoso.com", Password: password}}, rec.handle)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s, rec
}

const waitFor = 5 * time.Second
const tick = 5 * time.Millisecond
