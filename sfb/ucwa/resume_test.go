package ucwa

import (
	"context"
	"encoding/json"
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
	started map[string]bool
}

func newGatedRecorder(hold ...string) *gatedRecorder {
	g := &gatedRecorder{hold: map[string]chan struct{}{}, started: map[string]bool{}}
	for _, h := range hold {
		g.hold[h] = make(chan struct{})
	}
	return g
}

func (g *gatedRecorder) handle(ctx context.Context, e sfb.Event) {
	if m, ok := e.(sfb.MessageReceived); ok {
		g.mu.Lock()
		ch := g.hold[m.Message.Text]
		g.started[m.Message.Text] = true
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

func TestResumeStateNeverAheadOfHandler(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	g := newGatedRecorder("two")
	s := signInWith(t, tr, "", g.handle)
	ctx := context.Background()
	initial := s.ResumeState()
	require.NotEmpty(t, initial)

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "one"}))
	require.Eventually(t, func() bool { return len(messages(g.all())) == 1 }, waitFor, tick)
	require.Eventually(t, func() bool { return s.ResumeState() != initial }, waitFor, tick)
	afterOne := s.ResumeState()

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "two"}))
	require.Eventually(t, func() bool { return g.isStarted("two") }, waitFor, tick)
	// The handler holds "two": the state still points at its batch.
	assert.Equal(t, afterOne, s.ResumeState())

	g.release("two")
	require.Eventually(t, func() bool { return len(messages(g.all())) == 2 }, waitFor, tick)
	require.Eventually(t, func() bool { return s.ResumeState() != afterOne }, waitFor, tick)

	var st resumeState
	require.NoError(t, json.Unmarshal([]byte(s.ResumeState()), &st))
	assert.Equal(t, resumeVersion, st.V)
	assert.Contains(t, st.Events, "ack=")
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
