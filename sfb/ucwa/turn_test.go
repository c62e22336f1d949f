package ucwa

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// TestSignInTurnEndsWhileQueued: a sign-in whose Turn ends while it waits
// for a slot of the ramp returns at once with ErrLocalTimeout and creates
// nothing; one that gets its turn says so once.
func TestSignInTurnEndsWhileQueued(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	creds := sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "pw-alice"}
	var turns atomic.Int32
	s, err := tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: creds, Turn: context.Background(), OnTurn: func() { turns.Add(1) }},
		func(context.Context, sfb.Event) {})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	assert.Equal(t, int32(1), turns.Load())
	require.Equal(t, 1, srv.Applications(alice))

	// The default ramp (10/s) has its next slot 100 ms after the first.
	turn, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err = tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: creds, Turn: turn, OnTurn: func() { turns.Add(1) }},
		func(context.Context, sfb.Event) {})
	require.ErrorIs(t, err, sfb.ErrLocalTimeout)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, int32(1), turns.Load(), "no turn")
	assert.Equal(t, 1, srv.Applications(alice), "nothing created")
}
