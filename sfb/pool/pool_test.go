package pool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestGuard(t *testing.T, rate float64, bmin, bmax time.Duration) *Guard {
	t.Helper()
	gs := NewGuards(Config{SignInRate: rate, BackoffMin: bmin, BackoffMax: bmax}, zerolog.New(zerolog.NewTestWriter(t)))
	g := gs.For("pool.contoso.com")
	require.Same(t, g, gs.For("pool.contoso.com"), "one guard per pool")
	require.NotSame(t, g, gs.For("pool2.contoso.com"))
	return g
}

func TestRampSpacesSignIns(t *testing.T) {
	g := newTestGuard(t, 50, time.Second, time.Minute)
	ctx := context.Background()
	start := time.Now()
	for range 6 {
		require.NoError(t, g.WaitSignIn(ctx))
	}
	// The first goes at once, each further one 20 ms after the one before.
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
}

func TestRefusalPausesSignInsAndRenewals(t *testing.T) {
	g := newTestGuard(t, 1000, 10*time.Millisecond, time.Second)
	g.Refused(time.Now(), 300*time.Millisecond)
	until := g.PausedUntil()
	require.WithinDuration(t, time.Now().Add(300*time.Millisecond), until, 50*time.Millisecond, "Retry-After sets the pause")

	require.NoError(t, g.WaitSignIn(context.Background()))
	assert.False(t, time.Now().Before(until), "a sign-in waits for the pause")
	require.NoError(t, g.WaitPause(context.Background()))
	assert.False(t, time.Now().Before(until), "a renewal waits for the pause")
}

func TestSlotInsidePauseQueuesAgain(t *testing.T) {
	g := newTestGuard(t, 5, 10*time.Millisecond, time.Second)
	ctx := context.Background()
	require.NoError(t, g.WaitSignIn(ctx)) // takes the slot now; the next is 200 ms away
	done := make(chan time.Time, 1)
	go func() {
		assert.NoError(t, g.WaitSignIn(ctx))
		done <- time.Now()
	}()
	g.Refused(time.Now(), 500*time.Millisecond)
	until := g.PausedUntil()
	got := <-done
	assert.False(t, got.Before(until), "the slot before the pause's end is not used")
}

func TestBackoffDoublesOnlyForRequestsSentAfterThePause(t *testing.T) {
	g := newTestGuard(t, 1000, 20*time.Millisecond, 80*time.Millisecond)
	sentBefore := time.Now()
	g.Refused(sentBefore, 0)
	assert.Equal(t, 20*time.Millisecond, g.step)
	first := g.PausedUntil()
	assert.True(t, first.After(sentBefore))

	// Requests sent together with the first are refused together: they do
	// not escalate.
	for range 10 {
		g.Refused(sentBefore, 0)
	}
	assert.Equal(t, 20*time.Millisecond, g.step)
	assert.Equal(t, 1, g.Stats().Pauses)

	// A request sent after the pause and refused doubles it, up to the cap.
	for _, want := range []time.Duration{40, 80, 80} {
		require.NoError(t, g.WaitPause(context.Background()))
		g.Refused(time.Now(), 0)
		assert.Equal(t, want*time.Millisecond, g.step)
	}
	// A success of a request sent during the pause says nothing.
	g.Succeeded(time.Now())
	assert.Equal(t, 80*time.Millisecond, g.step)
	require.NoError(t, g.WaitPause(context.Background()))
	g.Succeeded(time.Now())
	assert.Zero(t, g.step, "a success after the pause starts the backoff over")
	st := g.Stats()
	assert.Equal(t, 4, st.Pauses)
	// 10-20, 20-40, 40-80 and 40-80 ms, jittered.
	assert.GreaterOrEqual(t, st.Paused, 110*time.Millisecond)
	assert.LessOrEqual(t, st.Paused, 220*time.Millisecond)
}

func TestRetryAfterIsCapped(t *testing.T) {
	g := newTestGuard(t, 1000, 10*time.Millisecond, 200*time.Millisecond)
	g.Refused(time.Now(), time.Hour)
	assert.WithinDuration(t, time.Now().Add(200*time.Millisecond), g.PausedUntil(), 50*time.Millisecond)
}

func TestGivingUpDuringAPauseSaysSo(t *testing.T) {
	g := newTestGuard(t, 1000, time.Minute, time.Minute)
	g.Refused(time.Now(), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := g.WaitSignIn(ctx)
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrPaused))
	assert.True(t, errors.Is(err, context.DeadlineExceeded))
	assert.Contains(t, err.Error(), "pool.contoso.com")
}

func TestPoolsArePausedApart(t *testing.T) {
	gs := NewGuards(Config{SignInRate: 1, BackoffMin: time.Minute, BackoffMax: time.Minute}, zerolog.Nop())
	a, b := gs.For("pool-a.contoso.com"), gs.For("pool-b.contoso.com")
	require.NoError(t, a.WaitSignIn(context.Background()))
	a.Refused(time.Now(), 0)
	require.True(t, time.Now().Before(a.PausedUntil()))

	// Pool b neither shares a's ramp (one per second) nor its pause.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, b.WaitSignIn(ctx))
	require.NoError(t, b.WaitPause(ctx))
	assert.True(t, time.Now().Before(a.PausedUntil()), "b went ahead while a is paused")
}
