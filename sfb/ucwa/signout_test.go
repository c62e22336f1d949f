package ucwa

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// TestSimSignOutFailsMessagesToMigratedUser: alice has no SfB client but
// this one (a user migrated to Matrix). After the client signs out, bob's
// message fails on his side and the client's message to a user without
// any endpoint fails on alice's.
func TestSimSignOutFailsMessagesToMigratedUser(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	require.NoError(t, srv.SetNativeClient(alice, false))
	s, rec := simSignIn(t, tr)
	ctx := context.Background()
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "while signed in"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)

	require.NoError(t, srv.SetNativeClient(bob, false))
	_, err := s.SendMessage(ctx, bob, sfb.Message{Text: "to nobody"})
	require.ErrorIs(t, err, sfb.ErrDeliveryFailed)
	assert.Contains(t, err.Error(), "Unreachable")
	require.NoError(t, srv.SetNativeClient(bob, true))

	require.NoError(t, s.Close(ctx))
	err = srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "after sign-out"})
	require.ErrorIs(t, err, sfb.ErrDeliveryFailed, "bob's client shows that the message was not delivered")
	assert.NotContains(t, receivedTexts(srv, alice), "after sign-out")
}
