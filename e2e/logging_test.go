package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// TestDefaultLogLevelLogsNoMessageText bridges a message each way and reads
// the bridge's log at the example configuration's level, which is what an
// operator's log holds: neither text may be in it. The debug log beside it
// has them (mautrix logs the body of every request it sends), which shows
// that the test would see them.
func TestDefaultLogLevelLogsNoMessageText(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "logan")
	ctx, cancel := context.WithTimeout(context.Background(), 2*hop)
	defer cancel()
	fromSfB := "confidential text from sfb"
	fromMatrix := "confidential text from matrix"

	room := env.openPortal(t, p, fromSfB)
	_, err := p.mx.Client.SendText(ctx, room, fromMatrix)
	require.NoError(t, err)
	env.waitReceived(t, p, "the Matrix message", func(r sim.Received) bool { return r.Message.Text == fromMatrix })

	bridge := env.st.Bridge
	require.Eventually(t, func() bool {
		return strings.Contains(readFrom(t, bridge.LogPath, 0), fromSfB)
	}, hop, 50*time.Millisecond, "the debug log never showed the SfB message's text: the test cannot see what it looks for")
	defaultLog, err := os.ReadFile(bridge.DefaultLevelLogPath)
	require.NoError(t, err)
	require.NotEmpty(t, defaultLog, "the log at level %s is written", bridge.DefaultLevel)
	assert.NotContains(t, string(defaultLog), "confidential text", "message text in the log at level %s, the example configuration's", bridge.DefaultLevel)
}
