package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

func restartText(i int) string { return fmt.Sprintf("restart message %02d", i) }

// TestBridgeRestartLosesNothing kills the bridge (SIGKILL) in the middle of
// an SfB -> Matrix stream, right after the homeserver accepted a message
// and before the bridge recorded it, lets both sides write while it is
// down, and starts it again: the bridge resumes its UCWA application, SfB
// delivers what was not acknowledged (the message in the window included)
// and what arrived meanwhile, the bridge sends the message in the window
// again with the same transaction ID and Synapse answers with the event it
// already has; Synapse retries the appservice transactions of the other
// direction. Every message arrives exactly once, in order, in the same room.
func TestBridgeRestartLosesNothing(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "dave")
	ctx, cancel := context.WithTimeout(context.Background(), 8*hop)
	defer cancel()
	env.restartBridgeAtCleanup(t)
	room := env.openPortal(t, p, "before the crash")

	const beforeKill, whileDown = 10, 5
	from := p.mx.mark()
	for i := 1; i <= beforeKill; i++ {
		require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: restartText(i)}))
	}
	// Kill once the stream is under way (some messages are in Matrix, the
	// rest in flight or still on the server), inside the window: a lock on
	// bridgev2's message table holds the bridge between the homeserver
	// accepting a message and recording it.
	p.mx.waitFor(from, hop, "the stream to start", isMessage(room, p.ghost, equals(restartText(2))))
	window := env.holdMessageRecords(ctx, t)
	inWindow := p.mx.waitFor(from, hop, "a message the homeserver took and the bridge did not record", func(evt *event.Event) bool {
		return isMessage(room, p.ghost, anyBody)(evt) && !window.recorded(ctx, t, evt.ID)
	})
	require.NoError(t, env.st.Bridge.Kill())
	require.False(t, env.st.Bridge.Running())
	window.release(ctx, t)
	t.Logf("killed with %q accepted by the homeserver (%s) and not recorded", inWindow.Content.AsMessage().Body, inWindow.ID)

	// While the bridge is down: SfB into the still connected
	// conversation, Matrix into the portal.
	for i := beforeKill + 1; i <= beforeKill+whileDown; i++ {
		require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: restartText(i)}))
	}
	for _, text := range []string{"matrix while down 1", "matrix while down 2"} {
		_, err := p.mx.Client.SendText(ctx, room, text)
		require.NoError(t, err)
	}

	require.NoError(t, env.st.Bridge.Start(ctx))
	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: "after the restart"}))
	p.mx.waitFor(from, 2*hop, "the message after the restart", isMessage(room, p.ghost, equals("after the restart")))

	want := append(series(restartText, beforeKill+whileDown), "after the restart")
	assert.Equal(t, want, ghostMessages(t, p, room, from), "every SfB message exactly once, in order")
	// The message in the window was sent again and Synapse answered with
	// the event it had: the bridge recorded that one.
	assert.True(t, env.recorded(ctx, t, inWindow.ID), "the bridge recorded the homeserver's first event for the message in the window")

	// Matrix -> SfB: Synapse retries the transactions the dead bridge
	// did not take.
	env.waitReceived(t, p, "the first Matrix message sent while down", func(r sim.Received) bool { return r.Message.Text == "matrix while down 1" })
	env.waitReceived(t, p, "the second Matrix message sent while down", func(r sim.Received) bool { return r.Message.Text == "matrix while down 2" })
	assert.Equal(t, []string{"matrix while down 1", "matrix while down 2"}, env.sentToColleague(p), "exactly once, in order")
	assertNoDuplicates(t, env.sim.Received(p.colleague.URI))
	assert.Equal(t, 1, env.sim.Applications(p.self.URI), "the bridge continued its UCWA application")

	// A graceful restart (SIGTERM) keeps the application too.
	require.NoError(t, env.st.Bridge.Stop())
	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: "while stopped"}))
	from = p.mx.mark()
	require.NoError(t, env.st.Bridge.Start(ctx))
	p.mx.waitFor(from, 2*hop, "the message sent while stopped", isMessage(room, p.ghost, equals("while stopped")))
	require.Eventually(t, func() bool { return env.sim.PendingGETs(p.self.URI) > 0 }, hop, 50*time.Millisecond)
	assert.Equal(t, 1, env.sim.Applications(p.self.URI))
}

// restartBridgeAtCleanup starts the bridge again at the end of the test if
// the test left it stopped: later tests share it.
func (env *testEnv) restartBridgeAtCleanup(t *testing.T) {
	t.Cleanup(func() {
		if !env.st.Bridge.Running() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*hop)
			defer cancel()
			_ = env.st.Bridge.Start(ctx)
		}
	})
}

// messageWindow holds a lock on bridgev2's message table: the bridge sends
// SfB messages to Matrix but cannot record them until release.
type messageWindow struct {
	tx *sql.Tx
}

// holdMessageRecords takes the lock once the bridge finished the record it
// is writing. Reads (bridgev2's duplicate check) go on; inserts wait.
func (env *testEnv) holdMessageRecords(ctx context.Context, t *testing.T) *messageWindow {
	t.Helper()
	db := env.bridgeDB(t)
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "LOCK TABLE message IN EXCLUSIVE MODE")
	require.NoError(t, err)
	return &messageWindow{tx: tx}
}

func (w *messageWindow) recorded(ctx context.Context, t *testing.T, eventID id.EventID) bool {
	t.Helper()
	var n int
	require.NoError(t, w.tx.QueryRowContext(ctx, "SELECT count(*) FROM message WHERE mxid = $1", eventID.String()).Scan(&n))
	return n > 0
}

// release ends the lock after the bridge was killed. The dead bridge's
// record may still wait in its PostgreSQL backend, which would write it
// once the lock is gone: the backends are ended first, as if the crash
// had come before the record reached the database.
func (w *messageWindow) release(ctx context.Context, t *testing.T) {
	t.Helper()
	_, err := w.tx.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	require.NoError(t, err)
	require.NoError(t, w.tx.Rollback())
}

// recorded reports whether the bridge has a message row for eventID.
func (env *testEnv) recorded(ctx context.Context, t *testing.T, eventID id.EventID) bool {
	t.Helper()
	var n int
	require.NoError(t, env.bridgeDB(t).QueryRowContext(ctx, "SELECT count(*) FROM message WHERE mxid = $1", eventID.String()).Scan(&n))
	return n > 0
}

// bridgeDB opens the bridge's database for the test.
func (env *testEnv) bridgeDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", env.pg.DSN("sfb_bridge"))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}
