package e2e

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/e2e/crash"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/synapse"
)

// TestCrashLosesNothing is the short form of the crash scenario (the full
// one runs through the bench command): 5 SIGKILLs of the bridge at random
// moments while 300 messages flow both ways across 10 conversations, on
// its own homeserver, database and bridge. Nothing may be lost, reordered
// or doubled; a Matrix -> SfB message sent again after a kill inside the
// documented duplicate window counts as repeated, which at-least-once
// delivery allows. SFB_CRASH_SEED replays a run.
func TestCrashLosesNothing(t *testing.T) {
	if wanted, reason := synapse.Wanted(); !wanted {
		t.Skip(reason)
	}
	var seed uint64
	if s := os.Getenv("SFB_CRASH_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "SFB_CRASH_SEED")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := bridgeBinary(ctx)
	require.NoError(t, err)
	res, err := crash.Run(ctx, crash.Options{
		Kills:         5,
		Messages:      300,
		Conversations: 10,
		Seed:          seed,
		RepoRoot:      "..",
		BridgeBinary:  bin,
		Race:          raceEnabled,
		Keep:          os.Getenv("SFB_E2E_KEEP") != "",
		Logf:          t.Logf,
	})
	require.NoError(t, err, "seed %d", res.Seed)
	assert.Equal(t, 5, res.Kills)
	assert.Equal(t, 150, res.SfBToMatrix.Sent)
	assert.Equal(t, 150, res.MatrixToSfB.Sent)
	assert.True(t, res.OK(), "replay with SFB_CRASH_SEED=%d: %s\n%q", res.Seed, res, res.Problems)
}
