package bridge

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

func failed(err error) bridgev2.EventHandlingResult {
	return bridgev2.EventHandlingResultFailed.WithError(err)
}

func unreachable() error {
	return mautrix.HTTPError{Message: "request error", WrappedError: fmt.Errorf("dial tcp: %w", syscall.ECONNREFUSED)}
}

func httpStatus(code int) error {
	return mautrix.HTTPError{Response: &http.Response{StatusCode: code}, Message: http.StatusText(code)}
}

func msgFromBob(id, text string) sfb.MessageReceived {
	return sfb.MessageReceived{ID: id, Conversation: sfb.Conversation{Peer: bob}, From: sfb.Person{URI: bob}, Message: sfb.Message{Text: text}}
}

func queuedIDs(events []bridgev2.RemoteEvent) []networkid.MessageID {
	var out []networkid.MessageID
	for _, evt := range events {
		if m, ok := evt.(bridgev2.RemoteMessage); ok {
			out = append(out, m.GetID())
		}
	}
	return out
}

// sqlStateError is a database error as PostgreSQL drivers give them.
type sqlStateError string

func (e sqlStateError) Error() string    { return "pq: SQLSTATE " + string(e) }
func (e sqlStateError) SQLState() string { return string(e) }

func TestTransientFailure(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"no error", nil, false},
		{"connection refused", unreachable(), true},
		{"pointer HTTPError without response", &mautrix.HTTPError{Message: "request error"}, true},
		{"bad gateway", fmt.Errorf("send: %w", httpStatus(http.StatusBadGateway)), true},
		{"internal server error", httpStatus(http.StatusInternalServerError), true},
		{"rate limited", httpStatus(http.StatusTooManyRequests), true},
		{"forbidden", httpStatus(http.StatusForbidden), false},
		{"bad request", httpStatus(http.StatusBadRequest), false},
		{"raw connection reset", fmt.Errorf("x: %w", syscall.ECONNRESET), true},
		{"timeout", fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{"cancelled", context.Canceled, false},
		{"conversion failed", errors.New("failed to convert"), false},
		{"database shutting down", fmt.Errorf("database error: %w", sqlStateError("57P03")), true},
		{"database connection lost", sqlStateError("08006"), true},
		{"too many database connections", sqlStateError("53300"), true},
		{"database failed over to read-only", sqlStateError("25006"), true},
		{"database constraint violated", sqlStateError("23505"), false},
		{"database syntax error", sqlStateError("42601"), false},
		{"broken database connection", fmt.Errorf("save: %w", driver.ErrBadConn), true},
		{"sqlite busy", fmt.Errorf("save: %w", sqlite3.Error{Code: sqlite3.ErrBusy}), true},
		{"sqlite locked", sqlite3.Error{Code: sqlite3.ErrLocked}, true},
		{"sqlite constraint", sqlite3.Error{Code: sqlite3.ErrConstraint}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, transientFailure(tc.err))
		})
	}
}

// The handler returns (and the session may acknowledge) only after the
// homeserver took the message, however often it failed before.
func TestSfBMessageRetriedWhileHomeserverUnavailable(t *testing.T) {
	e := newTestEnv(t)
	_, _, session := e.mustLogin()
	e.qmu.Lock()
	e.results = []bridgev2.EventHandlingResult{failed(unreachable()), failed(httpStatus(http.StatusBadGateway)), failed(unreachable())}
	e.qmu.Unlock()
	before := session.ResumeState()
	session.emit(msgFromBob("m-1", "one"))
	assert.Equal(t, []networkid.MessageID{"m-1", "m-1", "m-1", "m-1"}, queuedIDs(e.queuedEvents()), "three failures, then success")
	assert.NotEqual(t, before, session.ResumeState())
}

func TestSfBMessagePermanentFailureDoesNotBlockTheRest(t *testing.T) {
	e := newTestEnv(t)
	_, _, session := e.mustLogin()
	e.qmu.Lock()
	e.results = []bridgev2.EventHandlingResult{failed(errors.New("failed to convert")), failed(httpStatus(http.StatusForbidden))}
	e.qmu.Unlock()
	session.emit(msgFromBob("m-1", "one"))
	session.emit(msgFromBob("m-2", "two"))
	session.emit(msgFromBob("m-3", "three"))
	assert.Equal(t, []networkid.MessageID{"m-1", "m-2", "m-3"}, queuedIDs(e.queuedEvents()), "each tried once")
}

// When the session stops (shutdown) the handler gives up retrying and
// returns, without the event counting as bridged.
func TestSfBMessageRetryEndsWithSession(t *testing.T) {
	e := newTestEnv(t)
	_, _, session := e.mustLogin()
	e.qmu.Lock()
	for range 100000 {
		e.results = append(e.results, failed(unreachable()))
	}
	e.qmu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		session.emitCtx(ctx, msgFromBob("m-1", "one"))
	}()
	require.Eventually(t, func() bool { return len(e.queuedEvents()) >= 3 }, 5*time.Second, time.Millisecond)
	select {
	case <-done:
		t.Fatal("handler returned while the homeserver still fails")
	default:
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not return after the session stopped")
	}
}

func TestResumeStateStoredAndOfferedAfterRestart(t *testing.T) {
	e := newTestEnv(t)
	ul, _, session := e.mustLogin()
	for i := range 3 {
		session.emit(msgFromBob(fmt.Sprintf("m-%d", i), "x"))
	}
	want := session.ResumeState()
	require.Equal(t, "alice@contoso.com@3", want)
	require.Eventually(t, func() bool {
		got, err := e.conn.db.GetResumeState(e.ctx, string(ul.ID))
		return err == nil && got == want
	}, 5*time.Second, time.Millisecond, "stored lazily while events flow")

	ul.Client.Disconnect()
	require.True(t, session.isDetached())

	e2 := newTestEnv(t, withDB(e.dbPath), withTransport(e.transport))
	ul2, err := e2.br.GetExistingUserLoginByID(e2.ctx, ul.ID)
	require.NoError(t, err)
	ul2.Client.Connect(e2.ctx)
	e2.waitState(status.StateConnected)
	reqs := e.transport.signInRequests()
	assert.Equal(t, want, reqs[len(reqs)-1].Resume, "the next start resumes where the last stopped")

	// Logout forgets it: a new login starts afresh.
	ul2.Client.(*Client).LogoutRemote(e2.ctx)
	got, err := e2.conn.db.GetResumeState(e2.ctx, string(ul.ID))
	require.NoError(t, err)
	assert.Empty(t, got)
	assert.True(t, e.transport.lastSession().isClosed(), "logout signs out")
}

// Disconnect stores the final state even when the saver had no time to.
func TestDisconnectStoresResumeState(t *testing.T) {
	e := newTestEnv(t)
	e.conn.resumeSaveDelay = time.Hour
	ul, _, session := e.mustLogin()
	session.emit(msgFromBob("m-1", "x"))
	ul.Client.Disconnect()
	got, err := e.conn.db.GetResumeState(e.ctx, string(ul.ID))
	require.NoError(t, err)
	assert.Equal(t, "alice@contoso.com@1", got)
}

func TestInitForcesSynchronousPortalEvents(t *testing.T) {
	for _, buf := range []int{0, 64} {
		c := NewConnector(nil)
		br := &bridgev2.Bridge{Config: &bridgeconfig.BridgeConfig{PortalEventBuffer: buf}, Log: zerolog.Nop()}
		c.Init(br)
		assert.Equal(t, 0, br.Config.PortalEventBuffer, "configured %d", buf)
	}
}

func TestInitForcesMatrixDeduplication(t *testing.T) {
	for _, configured := range []bool{false, true} {
		c := NewConnector(nil)
		br := &bridgev2.Bridge{Config: &bridgeconfig.BridgeConfig{DeduplicateMatrixMessages: configured}, Log: zerolog.Nop()}
		c.Init(br)
		assert.True(t, br.Config.DeduplicateMatrixMessages, "configured %v", configured)
	}
}

func TestInitForcesNoticeBridging(t *testing.T) {
	for _, configured := range []bool{false, true} {
		c := NewConnector(nil)
		br := &bridgev2.Bridge{Config: &bridgeconfig.BridgeConfig{BridgeNotices: configured}, Log: zerolog.Nop()}
		c.Init(br)
		assert.True(t, br.Config.BridgeNotices, "configured %v", configured)
	}
}

// A database step of an SfB event is retried while the database is only
// unavailable, and given up at once when it failed for good, so that one
// bad event does not hold up the session.
func TestRetryDBRetriesOnlyWhatIsTransient(t *testing.T) {
	e := newTestEnv(t)
	_, client, _ := e.mustLogin()
	calls := 0
	ok := client.retryDB(e.ctx, "test step", func() error {
		calls++
		if calls < 3 {
			return sqlite3.Error{Code: sqlite3.ErrBusy}
		}
		return nil
	})
	assert.True(t, ok)
	assert.Equal(t, 3, calls, "busy twice, then done")

	calls = 0
	ok = client.retryDB(e.ctx, "test step", func() error {
		calls++
		return sqlite3.Error{Code: sqlite3.ErrConstraint}
	})
	assert.False(t, ok)
	assert.Equal(t, 1, calls, "a constraint violation is not retried")

	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	assert.False(t, client.retryDB(ctx, "test step", func() error { return sqlite3.Error{Code: sqlite3.ErrBusy} }), "ends with the session")
}
