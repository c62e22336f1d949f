package ucwa

import (
	"context"
	"net/http"
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

// gatedAccept holds the client's accept requests until release, and
// counts its startMessaging requests (POSTs of messaging invitations).
type gatedAccept struct {
	next    http.RoundTripper
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	starts  int
}

func (g *gatedAccept) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/accept") {
		select {
		case <-g.release:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/messagingInvitations") {
		g.mu.Lock()
		g.starts++
		g.mu.Unlock()
	}
	return g.next.RoundTrip(req)
}

func (g *gatedAccept) open() { g.once.Do(func() { close(g.release) }) }

func (g *gatedAccept) startCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.starts
}

func gatedTransport(t *testing.T, srv *sim.Server, g *gatedAccept, tm Timings) *Transport {
	t.Helper()
	tr, err := New(sfb.Config{DiscoveryURL: srv.DiscoveryURL(), AllowInsecureLoopback: true, RequestTimeout: 5 * time.Second},
		zerolog.New(zerolog.NewTestWriter(t)), WithTimings(tm), WithHTTPClient(&http.Client{Transport: g}))
	require.NoError(t, err)
	return tr
}

// A reply sent while the client is still accepting the peer's invitation
// waits for the accept and goes into that conversation, instead of
// starting a second one beside it.
func TestReplyDuringAcceptWaitsForIt(t *testing.T) {
	srv, _ := startSim(t, sim.Options{})
	g := &gatedAccept{next: http.DefaultTransport, release: make(chan struct{})}
	t.Cleanup(g.open)
	rec := &recorder{}
	s := signInWith(t, gatedTransport(t, srv, g, testTimings()), "", rec.handle)
	ctx := context.Background()

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "m1"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)
	thread := messages(rec.all())[0].Conversation.ThreadID
	require.NotEmpty(t, thread)

	sent := make(chan error, 1)
	go func() {
		_, err := s.SendMessage(ctx, bob, sfb.Message{Text: "r1"})
		sent <- err
	}()
	ss := s.(*session)
	require.Eventually(t, func() bool { return ss.acceptWaiters.Load() == 1 }, waitFor, tick, "the send waits for the accept")
	assert.Zero(t, g.startCount(), "no second conversation while accepting")
	g.open()
	select {
	case err := <-sent:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("send did not finish after the accept")
	}
	require.Eventually(t, func() bool { return len(srv.Received(bob)) == 1 }, waitFor, tick)
	assert.Equal(t, thread, srv.Received(bob)[0].ThreadID)
	assert.Zero(t, g.startCount())
}

// The wait is bounded: an accept that does not finish in AcceptWait no
// longer holds the reply, which then starts a conversation of its own;
// and a cancelled ctx ends the wait with its error.
func TestReplyDuringAcceptWaitIsBounded(t *testing.T) {
	srv, _ := startSim(t, sim.Options{})
	g := &gatedAccept{next: http.DefaultTransport, release: make(chan struct{})}
	t.Cleanup(g.open)
	tm := testTimings()
	tm.AcceptWait = 100 * time.Millisecond
	rec := &recorder{}
	s := signInWith(t, gatedTransport(t, srv, g, tm), "", rec.handle)
	ctx := context.Background()

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "m1"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := s.SendMessage(cctx, bob, sfb.Message{Text: "never"})
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, g.startCount())

	_, err = s.SendMessage(ctx, bob, sfb.Message{Text: "r1"})
	require.NoError(t, err)
	assert.Equal(t, 1, g.startCount(), "after the wait the reply starts its own conversation")
	require.Eventually(t, func() bool { return len(srv.Received(bob)) == 1 }, waitFor, tick)
	assert.Equal(t, []string{"r1"}, receivedTexts(srv, bob))
}
