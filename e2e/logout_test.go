package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// TestSfBSenderSeesFailureAfterLogout: for a migrated user the bridge is
// the only SfB endpoint. Once they log out of the bridge, SfB cannot
// deliver to them, and the SfB colleague's client says so instead of
// showing the message as sent to nobody.
func TestSfBSenderSeesFailureAfterLogout(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "leaver")
	require.NoError(t, env.sim.SetNativeClient(p.self.URI, false))
	env.openPortal(t, p, "before logout")

	ctx, cancel := context.WithTimeout(context.Background(), 2*hop)
	defer cancel()
	require.NoError(t, env.st.ProvisionLogout(ctx, p.mx.ID))
	require.Eventually(t, func() bool { return env.sim.Applications(p.self.URI) == 0 }, hop, 50*time.Millisecond,
		"the bridge deletes the user's UCWA application when they log out")

	err := env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: "after logout"})
	require.ErrorIs(t, err, sfb.ErrDeliveryFailed)
	assert.Contains(t, err.Error(), "not reachable")
	for _, r := range env.sim.Received(p.self.URI) {
		assert.NotEqual(t, "after logout", r.Message.Text)
	}
}
