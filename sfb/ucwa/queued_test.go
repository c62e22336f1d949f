package ucwa

import (
	"context"
	"sync"
	"testing"
	"time"

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
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string
	handler := func(_ context.Context, e sfb.Event) {
		m, ok := e.(sfb.MessageReceived)
		if !ok {
			return
		}
		mu.Lock()
		got = append(got, m.Message.Text)
		first := len(got) == 1
		mu.Unlock()
		if first {
			<-release
		}
	}
	s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "pw-alice"}}, handler)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "hello"}))
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 }, waitFor, tick)
	for _, text := range []string{"one", "two"} {
		require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: text}))
	}
	close(release)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 3 }, waitFor, tick)
	assert.Never(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) > 3 }, 300*time.Millisecond, tick)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"hello", "one", "two"}, got)
}
