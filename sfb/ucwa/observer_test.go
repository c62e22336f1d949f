package ucwa

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// observed records what the transport tells its observer.
type observed struct {
	mu         sync.Mutex
	answers    map[[2]any]int // status, diagnostics
	reconnects int
	renewals   []error
}

func (o *observed) ServerAnswered(status int, diagnostics string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.answers == nil {
		o.answers = map[[2]any]int{}
	}
	o.answers[[2]any{status, diagnostics}]++
}

func (o *observed) EventChannelReconnect() {
	o.mu.Lock()
	o.reconnects++
	o.mu.Unlock()
}

func (o *observed) TokenRenewed(err error) {
	o.mu.Lock()
	o.renewals = append(o.renewals, err)
	o.mu.Unlock()
}

func (o *observed) count(status int, diagnostics string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.answers[[2]any{status, diagnostics}]
}

func (o *observed) snapshot() (reconnects int, renewals []error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reconnects, append([]error(nil), o.renewals...)
}

// The observer hears every answer with its X-Ms-Diagnostics header (a
// refused password, 503s), the event channel failing over to a new GET,
// and the token renewed before it expires.
func TestObserverSeesAnswersReconnectsAndRenewals(t *testing.T) {
	srv, tr := startSim(t, sim.Options{TokenLifetime: 2 * time.Second})
	obs := &observed{}
	tr.observer = obs
	ctx := context.Background()

	_, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "wrong"}}, (&recorder{}).handle)
	require.ErrorIs(t, err, sfb.ErrBadCredentials)
	assert.Equal(t, 1, obs.count(400, `28020;source="sfb-sim";reason="The credentials are not valid."`), "the refused password, with its diagnostics")
	assert.Positive(t, obs.count(401, ""), "the challenge")

	_, rec := simSignIn(t, tr)
	assert.Positive(t, obs.count(200, ""))

	// The next two requests, whichever they are, are refused.
	srv.FailRequestsRetryAfter(2, 503, 10*time.Millisecond)
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "after 503"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)
	require.Eventually(t, func() bool { return obs.count(503, "") == 2 }, waitFor, tick)

	// A cut event channel is asked again.
	srv.DropEventChannel(alice)
	require.Eventually(t, func() bool {
		reconnects, _ := obs.snapshot()
		return reconnects > 0
	}, waitFor, tick, "the event channel failed and was asked again")
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "after the drop"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 2 }, waitFor, tick)

	require.Eventually(t, func() bool {
		_, renewals := obs.snapshot()
		return len(renewals) > 0
	}, 5*time.Second, tick, "renewed at 80%% of the 2 s lifetime")
	_, renewals := obs.snapshot()
	assert.NoError(t, renewals[0])
}

func TestNilObserverIsIgnored(t *testing.T) {
	tr, err := New(sfb.Config{}, zerolog.Nop(), WithObserver(nil))
	require.NoError(t, err)
	assert.Equal(t, sfb.NopObserver{}, tr.observer)
}
