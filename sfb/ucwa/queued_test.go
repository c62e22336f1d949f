package ucwa

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// A colleague who writes again while the bridge is still handling the
// invitation (Matrix is slow, so the invitation is not accepted yet): the
// server queues the second message until the accept and then sends the
// first one again (ReceiveAnIM.md). Each arrives once, in order.
func TestMessagesSentBeforeTheAcceptArriveOnce(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	ctx := context.Background()
	h := &heldFirstMessage{release: make(chan struct{})}
	s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "pw-alice"}}, h.handle)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "hello"}))
	require.Eventually(t, func() bool { return len(h.texts()) == 1 }, waitFor, tick)
	for _, text := range []string{"one", "two"} {
		require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: text}))
	}
	close(h.release)
	require.Eventually(t, func() bool { return len(h.texts()) >= 3 }, waitFor, tick)
	assert.Never(t, func() bool { return len(h.texts()) > 3 }, 300*time.Millisecond, tick)
	assert.Equal(t, []string{"hello", "one", "two"}, h.texts())
}

// The first message of an invitation waits for Matrix, which can take
// longer than AcceptWait (a new portal room under load). The invitation
// is accepted meanwhile, not after: otherwise the server holds what the
// colleague writes next, a reply from Matrix starts a second conversation
// after AcceptWait, and the simulator (one conversation per pair) ends the
// pending one with the held message in it. The crash test lost SfB
// messages so under load.
func TestMessagesHeldBehindASlowFirstMessageAreNotLost(t *testing.T) {
	srv, _ := startSim(t, sim.Options{})
	tm := testTimings()
	tm.AcceptWait = 100 * time.Millisecond
	tr, err := New(sfb.Config{DiscoveryURL: srv.DiscoveryURL(), AllowInsecureLoopback: true, RequestTimeout: 5 * time.Second},
		zerolog.New(zerolog.NewTestWriter(t)), WithTimings(tm))
	require.NoError(t, err)
	ctx := context.Background()
	h := &heldFirstMessage{release: make(chan struct{})}
	s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "pw-alice"}}, h.handle)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "hello"}))
	require.Eventually(t, func() bool { return len(h.texts()) == 1 }, waitFor, tick)
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "one"}))
	// The reply's completion comes through the event loop, which waits
	// for Matrix: it is sent meanwhile, but returns only afterwards.
	sent := make(chan error, 1)
	go func() {
		_, err := s.SendMessage(ctx, bob, sfb.Message{Text: "reply"})
		sent <- err
	}()
	require.Eventually(t, func() bool { return len(srv.Received(bob)) == 1 }, waitFor, tick)
	assert.Equal(t, []string{"reply"}, receivedTexts(srv, bob))
	close(h.release)
	select {
	case err := <-sent:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("the reply's send did not return")
	}
	require.Eventually(t, func() bool { return len(h.texts()) >= 2 }, waitFor, tick,
		"the colleague's message written before the accept was lost")
	assert.Never(t, func() bool { return len(h.texts()) > 2 }, 300*time.Millisecond, tick)
	assert.Equal(t, []string{"hello", "one"}, h.texts())
}

// heldFirstMessage records the texts of the messages received and holds
// the first one until release is closed, as a slow Matrix does.
type heldFirstMessage struct {
	release chan struct{}
	mu      sync.Mutex
	got     []string
}

func (h *heldFirstMessage) handle(_ context.Context, e sfb.Event) {
	m, ok := e.(sfb.MessageReceived)
	if !ok {
		return
	}
	h.mu.Lock()
	h.got = append(h.got, m.Message.Text)
	first := len(h.got) == 1
	h.mu.Unlock()
	if first {
		<-h.release
	}
}

func (h *heldFirstMessage) texts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}
