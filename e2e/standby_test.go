package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database/standby"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/e2e/stack"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/matrixapp"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

func takeoverText(i int) string { return fmt.Sprintf("takeover message %02d", i) }

// TestStandbyTakesOver runs a second bridge process with the same
// configuration: it waits as the standby, serving nothing, until the
// active process is killed (SIGKILL) in the middle of a stream both ways;
// then it takes over on the same appservice address within 30 s, and
// every message arrives, in order, in the same room.
func TestStandbyTakesOver(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "gina")
	ctx, cancel := context.WithTimeout(context.Background(), 8*hop)
	defer cancel()
	room := env.openPortal(t, p, "before the takeover")

	first := env.st.Bridge
	env.sharedBridgeAfterwards(t)
	second := env.otherBridge(t, "standby", "")
	require.NoError(t, second.Launch())

	// The standby says that it waits, and keeps waiting: it would exit if
	// it tried to bind the appservice address the active one holds.
	waitLog(t, second.LogPath, "waiting as the standby")
	const beforeKill, whileDown = 10, 5
	from := p.mx.mark()
	for i := 1; i <= beforeKill; i++ {
		require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: takeoverText(i)}))
	}
	_, err := p.mx.Client.SendText(ctx, room, "matrix before the kill")
	require.NoError(t, err)
	p.mx.waitFor(from, hop, "the stream to start", isMessage(room, p.ghost, equals(takeoverText(2))))
	require.True(t, second.Running(), "the standby is still waiting")
	log := readFrom(t, second.LogPath, 0)
	assert.NotContains(t, log, "Starting HTTP listener", "the standby bound the appservice address")
	assert.NotContains(t, log, "Starting user login", "the standby signed someone in")

	killed := time.Now()
	require.NoError(t, first.Kill())
	// Both sides go on writing while nobody serves.
	for i := beforeKill + 1; i <= beforeKill+whileDown; i++ {
		require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: takeoverText(i)}))
	}
	for _, text := range []string{"matrix during the takeover 1", "matrix during the takeover 2"} {
		_, err := p.mx.Client.SendText(ctx, room, text)
		require.NoError(t, err)
	}
	require.NoError(t, second.WaitReady(ctx, 30*time.Second), "the standby did not take over within 30 s")
	takeover := time.Since(killed)
	t.Logf("the standby served %s after the kill", takeover.Round(time.Millisecond))

	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: "after the takeover"}))
	p.mx.waitFor(from, 2*hop, "the message after the takeover", isMessage(room, p.ghost, equals("after the takeover")))
	want := append(series(takeoverText, beforeKill+whileDown), "after the takeover")
	assert.Equal(t, want, ghostMessages(t, p, room, from), "every SfB message once, in order (derived transaction IDs)")

	wantSfB := []string{"matrix before the kill", "matrix during the takeover 1", "matrix during the takeover 2"}
	env.waitReceived(t, p, "the last Matrix message", func(r sim.Received) bool { return r.Message.Text == wantSfB[2] })
	// Matrix -> SfB is at least once: the message the killed process had
	// given SfB but not yet settled is sent again by its successor.
	assertOnceTolerating(t, wantSfB, env.sentToColleague(p))
	assert.Equal(t, 1, env.sim.Applications(p.self.URI), "the standby continued the active one's UCWA application")
}

func partitionText(i int) string { return fmt.Sprintf("partition message %02d", i) }

// TestStandbyTakesOverFromAnActiveCutOffFromTheDatabase cuts the active
// process's path to PostgreSQL without closing anything, as a network
// partition does: it stops serving after the grace period (exit status
// 40); once PostgreSQL ends its lock session, the standby takes over,
// within 30 s of the cut, and nothing is lost.
func TestStandbyTakesOverFromAnActiveCutOffFromTheDatabase(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "ida")
	ctx, cancel := context.WithTimeout(context.Background(), 8*hop)
	defer cancel()
	room := env.openPortal(t, p, "before the partition")

	// The first process hands over to one that reaches the database
	// through a path the test can cut, and waits as its standby.
	first := env.st.Bridge
	env.sharedBridgeAfterwards(t)
	proxy := env.pg.NewProxy(t)
	dsn, err := proxy.Through(env.pg.DSN("sfb_bridge"))
	require.NoError(t, err)
	cutOff := env.otherBridge(t, "cut-off", dsn)
	require.NoError(t, first.Stop())
	require.NoError(t, cutOff.Start(ctx))
	logStart := fileSize(t, first.LogPath)
	require.NoError(t, first.Launch())
	require.Eventually(t, func() bool {
		return strings.Contains(readFrom(t, first.LogPath, logStart), "waiting as the standby")
	}, hop, 50*time.Millisecond, "the first process never waited as the standby")

	const beforeCut, whileCut = 5, 5
	from := p.mx.mark()
	for i := 1; i <= beforeCut; i++ {
		require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: partitionText(i)}))
	}
	p.mx.waitFor(from, hop, "the stream to start", isMessage(room, p.ghost, equals(partitionText(2))))
	cut := time.Now()
	proxy.Partition()
	for i := beforeCut + 1; i <= beforeCut+whileCut; i++ {
		require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: partitionText(i)}))
	}
	_, err = p.mx.Client.SendText(ctx, room, "matrix during the partition")
	require.NoError(t, err)

	require.Eventually(t, func() bool { return !cutOff.Running() }, hop, 50*time.Millisecond, "the cut-off process kept serving")
	gaveUp := time.Since(cut)
	code, _ := cutOff.ExitCode()
	assert.Equal(t, matrixapp.ExitLockLost, code)
	assert.Less(t, gaveUp, standby.ServerDropAfter, "it must stop before PostgreSQL can hand the lock on")
	// PostgreSQL ends a silent session when its keepalive probes go
	// unanswered, which the bridge arranges to happen ServerDropAfter
	// after the last contact; loopback never goes silent, so the test
	// plays that part at that time.
	<-time.After(standby.ServerDropAfter - time.Since(cut))
	proxy.DropServerSide()
	require.NoError(t, first.WaitReady(ctx, 30*time.Second-time.Since(cut)), "the standby did not take over within 30 s of the cut")
	t.Logf("the cut-off process stopped %s after the cut; the standby served %s after it", gaveUp.Round(time.Millisecond), time.Since(cut).Round(time.Millisecond))

	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: "after the partition"}))
	p.mx.waitFor(from, 2*hop, "the message after the partition", isMessage(room, p.ghost, equals("after the partition")))
	assert.Equal(t, append(series(partitionText, beforeCut+whileCut), "after the partition"), ghostMessages(t, p, room, from), "every SfB message once, in order")
	env.waitReceived(t, p, "the Matrix message sent during the partition", func(r sim.Received) bool { return r.Message.Text == "matrix during the partition" })
	assert.Equal(t, []string{"matrix during the partition"}, env.sentToColleague(p))
}

// assertOnceTolerating checks that got is want, except that the Matrix
// message in flight at a SIGKILL may reach SfB twice (adjacent): Matrix ->
// SfB is at least once by design (docs/architecture.md). SfB -> Matrix
// tolerates no duplicate.
func assertOnceTolerating(t *testing.T, want, got []string) {
	t.Helper()
	var unique []string
	dups := 0
	for i, b := range got {
		if i > 0 && got[i-1] == b {
			dups++
			t.Logf("duplicate of the message in flight: %q", b)
			continue
		}
		unique = append(unique, b)
	}
	assert.Equal(t, want, unique, "every message, in order")
	assert.LessOrEqual(t, dups, 1, "only the message in flight may be doubled: %q", got)
}

// TestActiveStopsWhenItLosesTheLock ends the active process's lock session
// and has another session take the lock before the process can take it
// back, as when a standby got it during a database failover: the process
// stops serving at once, with its own exit status.
func TestActiveStopsWhenItLosesTheLock(t *testing.T) {
	env := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	bridge := env.st.Bridge
	env.sharedBridgeAfterwards(t)
	db, err := sql.Open("postgres", env.pg.DSN("sfb_bridge"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	rival, err := db.Conn(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = rival.Close() }) // lets the lock go
	logStart := fileSize(t, bridge.LogPath)

	// The rival queues for the lock first, so that PostgreSQL hands it the
	// lock the moment the bridge's session ends: a rival that asked only
	// after the end raced the bridge taking its lock back.
	const lockRow = `FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::bigint::oid AND objid = $2::bigint::oid`
	classID, objID := uint64(standby.Key)>>32, uint64(standby.Key)&0xffffffff
	rivalGot := make(chan error, 1)
	go func() {
		_, err := rival.ExecContext(ctx, "SELECT pg_advisory_lock($1)", standby.Key)
		rivalGot <- err
	}()
	require.Eventually(t, func() bool {
		var waiting bool
		err := db.QueryRowContext(ctx, `SELECT count(*) > 0 `+lockRow+` AND NOT granted`, classID, objID).Scan(&waiting)
		return err == nil && waiting
	}, hop, 20*time.Millisecond, "the rival never queued for the lock")
	var ended bool
	require.NoError(t, db.QueryRowContext(ctx, `SELECT pg_terminate_backend(pid, 5000) `+lockRow+` AND granted`, classID, objID).Scan(&ended))
	require.True(t, ended, "the bridge's lock session ended")
	select {
	case err := <-rivalGot:
		require.NoError(t, err, "the rival took the lock")
	case <-ctx.Done():
		t.Fatal("the rival never got the lock")
	}

	require.Eventually(t, func() bool { return !bridge.Running() }, hop, 50*time.Millisecond, "the bridge kept serving without its lock")
	code, exited := bridge.ExitCode()
	require.True(t, exited)
	assert.Equal(t, matrixapp.ExitLockLost, code)
	assert.Contains(t, readFrom(t, bridge.LogPath, logStart), "Lost the active lock")
}

func dbOutageText(i int) string { return fmt.Sprintf("database outage message %02d", i) }

// TestDatabaseOutage stops the bridge's PostgreSQL in the middle of an
// SfB -> Matrix stream, with a Matrix message sent while it is down, and
// starts it again: the bridge reports the outage as its bridge state,
// takes its active lock again, reports that it runs, and every message
// arrives exactly once, in order, without a restart of the bridge.
func TestDatabaseOutage(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "hana")
	ctx, cancel := context.WithTimeout(context.Background(), 8*hop)
	defer cancel()
	env.sharedBridgeAfterwards(t)
	t.Cleanup(func() {
		// Later tests share the database.
		rctx, rcancel := context.WithTimeout(context.Background(), 2*hop)
		defer rcancel()
		_ = env.pg.Restart(rctx) // an error only says it runs
	})
	room := env.openPortal(t, p, "before the database outage")

	const beforeStop, whileDown = 10, 5
	from := p.mx.mark()
	statesFrom := env.states.mark()
	for i := 1; i <= beforeStop; i++ {
		require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: dbOutageText(i)}))
	}
	p.mx.waitFor(from, hop, "the stream to start", isMessage(room, p.ghost, equals(dbOutageText(2))))
	require.NoError(t, env.pg.Shutdown())
	stopped := time.Now()
	for i := beforeStop + 1; i <= beforeStop+whileDown; i++ {
		require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: dbOutageText(i)}))
	}
	_, err := p.mx.Client.SendText(ctx, room, "matrix while the database is down")
	require.NoError(t, err)

	down := env.states.waitFor(t, statesFrom, "the outage", func(s status.BridgeState) bool {
		return s.StateEvent == status.StateBridgeUnreachable && s.Error == "sfb-database-unreachable"
	})
	t.Logf("outage reported %s after the stop", time.Since(stopped).Round(time.Millisecond))
	require.NoError(t, env.pg.Restart(ctx))
	env.states.waitFor(t, down+1, "the recovery", func(s status.BridgeState) bool {
		return s.StateEvent == status.StateRunning
	})
	require.True(t, env.st.Bridge.Running(), "the bridge recovers by itself, without a restart")

	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: "after the database outage"}))
	p.mx.waitFor(from, 2*hop, "the message after the outage", isMessage(room, p.ghost, equals("after the database outage")))
	// The message whose record bridgev2 could not save when the database
	// went away is sent again, with the same transaction ID: the homeserver
	// keeps one copy.
	want := append(series(dbOutageText, beforeStop+whileDown), "after the database outage")
	assert.Equal(t, want, ghostMessages(t, p, room, from), "every SfB message once, in order")

	_, err = p.mx.Client.SendText(ctx, room, "matrix after the outage")
	require.NoError(t, err)
	env.waitReceived(t, p, "the Matrix message after the outage", func(r sim.Received) bool { return r.Message.Text == "matrix after the outage" })
	assert.Equal(t, []string{"matrix while the database is down", "matrix after the outage"}, env.sentToColleague(p), "Matrix -> SfB exactly once, in order")
	assert.True(t, env.st.Bridge.Running())
}

// sharedBridgeAfterwards starts the shared bridge process again when the
// test ends, if the test left it stopped: later tests use it. Call it
// before registering what must be cleaned up first (cleanups run last
// first).
func (env *testEnv) sharedBridgeAfterwards(t *testing.T) {
	t.Cleanup(func() {
		if env.st.Bridge.Running() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*hop)
		defer cancel()
		require.NoError(t, env.st.Bridge.Start(ctx))
	})
}

// otherBridge is a second bridge process (stack.SecondBridge), not yet
// started, killed when the test ends; its log is shown when the test
// failed.
func (env *testEnv) otherBridge(t *testing.T, name, databaseURI string) *stack.Bridge {
	b, err := env.st.SecondBridge(name, databaseURI)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = b.Kill()
		if t.Failed() {
			t.Logf("%s process:\n%s", name, b.LogTail(60))
		}
	})
	return b
}

// waitLog waits until the file at path contains text.
func waitLog(t *testing.T, path, text string) {
	t.Helper()
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(path) // not there until the first line
		return err == nil && strings.Contains(string(data), text)
	}, hop, 50*time.Millisecond, "%s never logged %q", path, text)
}

// stateLog is the bridge's homeserver.status_endpoint: it records every
// bridge state pushed to it.
type stateLog struct {
	srv    *httptest.Server
	mu     sync.Mutex
	states []status.BridgeState
}

func newStateLog() *stateLog {
	l := &stateLog{}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var state status.BridgeState
		if err := json.NewDecoder(r.Body).Decode(&state); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		l.mu.Lock()
		l.states = append(l.states, state)
		l.mu.Unlock()
	}))
	return l
}

func (l *stateLog) URL() string { return l.srv.URL }
func (l *stateLog) Close()      { l.srv.Close() }

// mark is the position of the next state.
func (l *stateLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.states)
}

// waitFor returns the position of the first state from position from on
// that matches.
func (l *stateLog) waitFor(t *testing.T, from int, what string, match func(status.BridgeState) bool) int {
	t.Helper()
	found := -1
	ok := assert.Eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i := from; i < len(l.states); i++ {
			if match(l.states[i]) {
				found = i
				return true
			}
		}
		return false
	}, hop, 50*time.Millisecond, "no bridge state for %s", what)
	if !ok {
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Fatalf("bridge states so far: %+v", l.states)
	}
	return found
}
