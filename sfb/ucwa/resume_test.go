package ucwa

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// gatedRecorder records events and holds the handler on messages whose
// text is in hold until release is called: a handler that has not yet
// got the message to Matrix.
type gatedRecorder struct {
	recorder
	mu      sync.Mutex
	hold    map[string]chan struct{}
	started map[string]sfb.MessageReceived
}

func newGatedRecorder(hold ...string) *gatedRecorder {
	g := &gatedRecorder{hold: map[string]chan struct{}{}, started: map[string]sfb.MessageReceived{}}
	for _, h := range hold {
		g.hold[h] = make(chan struct{})
	}
	return g
}

func (g *gatedRecorder) handle(ctx context.Context, e sfb.Event) {
	if m, ok := e.(sfb.MessageReceived); ok {
		g.mu.Lock()
		ch := g.hold[m.Message.Text]
		g.started[m.Message.Text] = m
		g.mu.Unlock()
		if ch != nil {
			select {
			case <-ch:
			case <-ctx.Done():
				// Given up: not recorded as handled.
				return
			}
		}
	}
	g.recorder.handle(ctx, e)
}

func (g *gatedRecorder) isStarted(text string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.started[text]
	return ok
}

func (g *gatedRecorder) startedEvent(text string) sfb.MessageReceived {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.started[text]
}

func (g *gatedRecorder) release(text string) { close(g.hold[text]) }

// newTransport is a second transport on the same simulator: a restarted
// bridge process.
func newTransport(t *testing.T, srv *sim.Server) *Transport {
	t.Helper()
	tr, err := New(sfb.Config{DiscoveryURL: srv.DiscoveryURL(), AllowInsecureLoopback: true, RequestTimeout: 5 * time.Second},
		zerolog.New(zerolog.NewTestWriter(t)), WithTimings(testTimings()))
	require.NoError(t, err)
	return tr
}

func signInWith(t *testing.T, tr *Transport, resume string, h sfb.EventHandler) sfb.Session {
	t.Helper()
	s, err := tr.SignIn(context.Background(), sfb.SignInRequest{
		Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "pw-alice"},
		Resume:      resume,
	}, h)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func texts(ms []sfb.MessageReceived) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Message.Text)
	}
	return out
}

// eventBatches records the body each event channel GET returned, by its
// URL, so a test can tell which GET carried which event.
type eventBatches struct {
	next  http.RoundTripper
	mu    sync.Mutex
	byURL map[string]string
}

func (b *eventBatches) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.next.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || !strings.Contains(req.URL.Path, "/events") {
		return resp, err
	}
	body, rerr := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr == nil && resp.StatusCode == http.StatusOK {
		b.mu.Lock()
		b.byURL[req.URL.String()] = string(body)
		b.mu.Unlock()
	}
	return resp, err
}

// carrying is the URL of the GET whose batch held the event with href.
func (b *eventBatches) carrying(t *testing.T, href string) string {
	t.Helper()
	u, err := url.Parse(href)
	require.NoError(t, err)
	b.mu.Lock()
	defer b.mu.Unlock()
	var found []string
	for get, body := range b.byURL {
		if strings.Contains(body, `"`+u.Path+`"`) {
			found = append(found, get)
		}
	}
	require.Len(t, found, 1, "one batch carries %s", href)
	return found[0]
}

func ackOf(t *testing.T, state string) int {
	t.Helper()
	var st resumeState
	require.NoError(t, json.Unmarshal([]byte(state), &st))
	u, err := url.Parse(st.Events)
	require.NoError(t, err)
	n, err := strconv.Atoi(u.Query().Get("ack"))
	require.NoError(t, err, "events URL %s", st.Events)
	return n
}

// While the handler holds a message, the resume state is the very GET that
// fetched the message's batch (asking it again gets the batch again), never
// the one after; once the handler returned it moves past that batch. The
// state is compared with the batch that carried the message, not with an
// earlier reading: other batches (the conversation's own events) may
// arrive in between at any time.
func TestResumeStateNeverAheadOfHandler(t *testing.T) {
	srv, _ := startSim(t, sim.Options{})
	batches := &eventBatches{next: http.DefaultTransport, byURL: map[string]string{}}
	tr, err := New(sfb.Config{DiscoveryURL: srv.DiscoveryURL(), AllowInsecureLoopback: true, RequestTimeout: 5 * time.Second},
		zerolog.New(zerolog.NewTestWriter(t)), WithTimings(testTimings()), WithHTTPClient(&http.Client{Transport: batches}))
	require.NoError(t, err)
	g := newGatedRecorder("two")
	s := signInWith(t, tr, "", g.handle)
	ctx := context.Background()
	initial := s.ResumeState()
	require.NotEmpty(t, initial)

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "one"}))
	require.Eventually(t, func() bool { return len(messages(g.all())) == 1 }, waitFor, tick)
	require.Eventually(t, func() bool { return s.ResumeState() != initial }, waitFor, tick)

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "two"}))
	require.Eventually(t, func() bool { return g.isStarted("two") }, waitFor, tick)
	two := g.startedEvent("two")
	held := s.ResumeState()
	var st resumeState
	require.NoError(t, json.Unmarshal([]byte(held), &st))
	// The handler holds "two": the state is the GET that fetched it.
	assert.Equal(t, batches.carrying(t, two.ID), st.Events)
	assert.Equal(t, held, s.ResumeState(), "nothing moves while the handler holds the batch")

	g.release("two")
	require.Eventually(t, func() bool { return len(messages(g.all())) == 2 }, waitFor, tick)
	require.Eventually(t, func() bool { return ackOf(t, s.ResumeState()) > ackOf(t, held) }, waitFor, tick)

	require.NoError(t, json.Unmarshal([]byte(s.ResumeState()), &st))
	assert.Equal(t, resumeVersion, st.V)
	assert.NotEmpty(t, st.Application)
}

// A crash while the handler holds a message: the next process resumes
// the same application, gets that batch again (same ID) and what was sent
// meanwhile, and not what was handled before.
func TestResumeRedeliversUnfinishedBatchAndWhatArrivedMeanwhile(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	g := newGatedRecorder("two")
	s1 := signInWith(t, tr, "", g.handle)
	ctx := context.Background()

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "one"}))
	require.Eventually(t, func() bool { return len(messages(g.all())) == 1 }, waitFor, tick)
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "two"}))
	require.Eventually(t, func() bool { return g.isStarted("two") }, waitFor, tick)
	// What the process would have stored last before it died.
	stored := s1.ResumeState()
	firstID := messages(g.all())[0].ID
	// The process dies: nothing more is handled or acknowledged.
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	require.NoError(t, s1.Detach(dctx))
	cancel()
	assert.Len(t, messages(g.all()), 1, "the held message must not count as handled")
	require.Eventually(t, func() bool { return srv.PendingGETs(alice) == 0 }, waitFor, tick)

	// Sent while no bridge runs, into the conversation that is still up.
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "three"}))

	rec2 := &recorder{}
	s2 := signInWith(t, newTransport(t, srv), stored, rec2.handle)
	require.Eventually(t, func() bool { return len(messages(rec2.all())) == 2 }, waitFor, tick)
	got := messages(rec2.all())
	assert.Equal(t, []string{"two", "three"}, texts(got))
	for _, m := range got {
		assert.NotEqual(t, firstID, m.ID)
		assert.Equal(t, bob, m.From.URI)
	}
	assert.Equal(t, 1, srv.Applications(alice), "the application was continued, not replaced")
	// The resumed session works both ways.
	_, err := s2.SendMessage(ctx, bob, sfb.Message{Text: "reply"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(srv.Received(bob)) == 1 }, waitFor, tick)
}

// The same message delivered by two sessions has the same ID, which is
// what the connector deduplicates by.
func TestResumeRedeliveryKeepsIDs(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	g := newGatedRecorder()
	s1 := signInWith(t, tr, "", g.handle)
	ctx := context.Background()
	stored := s1.ResumeState()
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "one"}))
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "two"}))
	require.Eventually(t, func() bool { return len(messages(g.all())) == 2 }, waitFor, tick)
	require.NoError(t, s1.Detach(ctx))

	// A stale state (the process died before storing the newer one).
	rec2 := &recorder{}
	signInWith(t, newTransport(t, srv), stored, rec2.handle)
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "three"}))
	require.Eventually(t, func() bool {
		ms := messages(rec2.all())
		return len(ms) > 0 && ms[len(ms)-1].Message.Text == "three"
	}, waitFor, tick)
	first := map[string]string{}
	for _, m := range messages(g.all()) {
		first[m.Message.Text] = m.ID
	}
	for _, m := range messages(rec2.all()) {
		if id, ok := first[m.Message.Text]; ok {
			assert.Equal(t, id, m.ID, "redelivered %q", m.Message.Text)
		}
	}
	assert.Equal(t, 1, srv.Applications(alice))
}

func TestResumeFallsBackToNewApplication(t *testing.T) {
	tests := []struct {
		name   string
		resume func(t *testing.T, srv *sim.Server, stored string) string
	}{
		{"application deleted on the server", func(t *testing.T, srv *sim.Server, stored string) string {
			srv.DeleteApplications(alice)
			return stored
		}},
		{"undecodable state", func(*testing.T, *sim.Server, string) string { return "{not json" }},
		{"other version", func(t *testing.T, _ *sim.Server, stored string) string {
			var st resumeState
			require.NoError(t, json.Unmarshal([]byte(stored), &st))
			st.V = 99
			b, _ := json.Marshal(st)
			return string(b)
		}},
		{"application outside the organisation", func(t *testing.T, _ *sim.Server, stored string) string {
			var st resumeState
			require.NoError(t, json.Unmarshal([]byte(stored), &st))
			st.Application = "https://evil.example/ucwa/v1/applications/1"
			b, _ := json.Marshal(st)
			return string(b)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, tr := startSim(t, sim.Options{})
			s1 := signInWith(t, tr, "", (&recorder{}).handle)
			ctx := context.Background()
			stored := s1.ResumeState()
			require.NoError(t, s1.Detach(ctx))
			resume := tc.resume(t, srv, stored)

			rec := &recorder{}
			s2 := signInWith(t, newTransport(t, srv), resume, rec.handle)
			var st resumeState
			require.NoError(t, json.Unmarshal([]byte(s2.ResumeState()), &st))
			var old resumeState
			require.NoError(t, json.Unmarshal([]byte(stored), &old))
			assert.NotEqual(t, old.Application, st.Application, "a new application")
			require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "hello"}))
			require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)
		})
	}
}

func TestResumeWhileServerUnavailableFailsWithoutNewApplication(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	s1 := signInWith(t, tr, "", (&recorder{}).handle)
	ctx := context.Background()
	stored := s1.ResumeState()
	require.NoError(t, s1.Detach(ctx))
	srv.FailRequests(1000, 503)
	_, err := newTransport(t, srv).SignIn(ctx, sfb.SignInRequest{
		Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "pw-alice"}, Resume: stored,
	}, (&recorder{}).handle)
	require.ErrorIs(t, err, sfb.ErrServerUnavailable)
	srv.FailRequests(0, 0)
	assert.Equal(t, 1, srv.Applications(alice))
}

// A restart resumes the application with its conversations still open on
// the server: the reply after the restart goes into the conversation the
// peer has open (same thread), and nothing is lost or doubled.
func TestResumeKeepsOpenConversation(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	rec1 := &recorder{}
	s1 := signInWith(t, tr, "", rec1.handle)
	ctx := context.Background()

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "m1"}))
	require.Eventually(t, func() bool { return len(messages(rec1.all())) == 1 }, waitFor, tick)
	// Bob's second message is delivered once the invitation is accepted.
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "m2"}))
	require.Eventually(t, func() bool { return len(messages(rec1.all())) == 2 }, waitFor, tick)
	_, err := s1.SendMessage(ctx, bob, sfb.Message{Text: "r1"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(srv.Received(bob)) == 1 }, waitFor, tick)
	thread := srv.Received(bob)[0].ThreadID
	require.NotEmpty(t, thread)

	require.Eventually(t, func() bool { return s1.ResumeState() != "" }, waitFor, tick)
	stored := s1.ResumeState()
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	require.NoError(t, s1.Detach(dctx))
	cancel()
	require.Eventually(t, func() bool { return srv.PendingGETs(alice) == 0 }, waitFor, tick)
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "m3"}))

	rec2 := &recorder{}
	s2 := signInWith(t, newTransport(t, srv), stored, rec2.handle)
	require.Eventually(t, func() bool { return len(messages(rec2.all())) == 1 }, waitFor, tick)
	_, err = s2.SendMessage(ctx, bob, sfb.Message{Text: "r2"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(srv.Received(bob)) == 2 }, waitFor, tick)
	got := srv.Received(bob)
	assert.Equal(t, thread, got[1].ThreadID, "the reply after resume goes into the open conversation")
	assert.Equal(t, []string{"r1", "r2"}, receivedTexts(srv, bob))
	assert.Equal(t, 1, srv.Applications(alice), "the application was continued, not replaced")

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "m4"}))
	require.Eventually(t, func() bool { return len(messages(rec2.all())) == 2 }, waitFor, tick)
	assert.Equal(t, []string{"m3", "m4"}, texts(messages(rec2.all())))
	for _, m := range messages(rec2.all()) {
		assert.Equal(t, thread, m.Conversation.ThreadID)
	}
	assert.Empty(t, eventsOf[sfb.ConversationEnded](rec2.all()), "resume ends no conversation")
}
