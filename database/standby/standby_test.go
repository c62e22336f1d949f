package standby

import (
	"context"
	"database/sql"
	"os"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Short timings keep the tests quick; the relations between them are the
// production ones.
const (
	testInterval = 200 * time.Millisecond
	testGrace    = 2 * time.Second
	within       = 10 * time.Second
)

func options(t *testing.T, dsn, name string) Options {
	return Options{
		DriverName: "postgres",
		DSN:        dsn,
		Name:       name,
		Interval:   testInterval,
		Grace:      testGrace,
		Log:        zerolog.New(zerolog.NewTestWriter(t)),
	}
}

func acquire(t *testing.T, opts Options) *Lock {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	l, err := Acquire(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Release(context.Background()) })
	return l
}

// acquireAsync starts Acquire in the background; the channel yields the
// lock once it is held.
func acquireAsync(t *testing.T, ctx context.Context, opts Options) <-chan *Lock {
	got := make(chan *Lock, 1)
	go func() {
		l, err := Acquire(ctx, opts)
		if err != nil {
			close(got)
			return
		}
		t.Cleanup(func() { _ = l.Release(context.Background()) })
		got <- l
	}()
	return got
}

func admin(t *testing.T, dsn string) *sql.DB {
	db, err := sql.Open("postgres", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestStandbyWaitsAndTakesOverOnRelease(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	active := acquire(t, options(t, dsn, "first"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	standby := acquireAsync(t, ctx, options(t, dsn, "second"))

	assert.Never(t, func() bool { return len(standby) > 0 }, 5*testInterval, testInterval/4, "the standby got the lock while the active held it")
	require.NoError(t, active.Release(context.Background()))
	select {
	case l := <-standby:
		require.NotNil(t, l)
		assert.NoError(t, l.Err())
	case <-time.After(within):
		t.Fatal("the standby did not take the lock after the release")
	}
}

func TestStandbyTakesOverWhenTheActiveDies(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	// A bare session stands for an active process killed with SIGKILL: its
	// socket closes, the server ends the session.
	db, err := sql.Open("postgres", dsn)
	require.NoError(t, err)
	db.SetMaxOpenConns(1)
	var got bool
	require.NoError(t, db.QueryRow("SELECT pg_try_advisory_lock($1)", Key).Scan(&got))
	require.True(t, got)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	standby := acquireAsync(t, ctx, options(t, dsn, "standby"))
	assert.Never(t, func() bool { return len(standby) > 0 }, 5*testInterval, testInterval/4)
	require.NoError(t, db.Close())
	select {
	case l := <-standby:
		require.NotNil(t, l)
	case <-time.After(within):
		t.Fatal("the standby did not take the lock after the holder's connection closed")
	}
}

func TestAcquireEndsWithItsContext(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	acquire(t, options(t, dsn, "active"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*testInterval)
	defer cancel()
	_, err := Acquire(ctx, options(t, dsn, "standby"))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// A broken lock session (as after a PostgreSQL restart) is replaced and
// the lock taken again when nobody else took it.
func TestHolderTakesTheLockAgainAfterItsSessionEnds(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	var downs, ups atomic.Int32
	opts := options(t, dsn, "active")
	opts.OnDown = func() { downs.Add(1) }
	opts.OnUp = func() { ups.Add(1) }
	l := acquire(t, opts)
	oldPID := backendPID(t, l)

	_, err := admin(t, dsn).Exec("SELECT pg_terminate_backend($1)", oldPID)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return ups.Load() == 1 }, within, testInterval/4, "the holder never took its lock again")
	assert.Equal(t, int32(1), downs.Load())
	assert.NoError(t, l.Err())
	assert.NotEqual(t, oldPID, backendPID(t, l))
	assertHeldBy(t, dsn, backendPID(t, l))
}

// A PostgreSQL restart drops every lock; the holder takes its own back and
// carries on, and the standby, which lost its connection too, does not
// get in first.
func TestHolderKeepsTheLockAcrossADatabaseRestart(t *testing.T) {
	pgtest.NeedBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := pgtest.Launch(ctx, pgtest.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	dsn := srv.DSN("postgres")

	var ups atomic.Int32
	opts := options(t, dsn, "active")
	// The holder notices the restart only at its next check, up to a
	// second late; the standby tries five times a second. Its head start
	// is what lets the holder win. Grace leaves room for a restart on a
	// busy machine, still below ServerDropAfter.
	opts.Interval, opts.Grace = time.Second, 10*time.Second
	opts.OnUp = func() { ups.Add(1) }
	active := acquire(t, opts)
	waiting := options(t, dsn, "standby")
	waiting.Grace, waiting.ReclaimDelay = opts.Grace, 3*time.Second
	standby := acquireAsync(t, ctx, waiting)
	assertHeldBy(t, dsn, backendPID(t, active))

	require.NoError(t, srv.Shutdown())
	require.NoError(t, srv.Restart(ctx))
	require.Eventually(t, func() bool { return ups.Load() == 1 }, within, testInterval/4, "the holder never took its lock back")
	assert.Never(t, func() bool { return len(standby) > 0 }, 5*testInterval, testInterval/4, "the standby got in first")
	assert.NoError(t, active.Err())
	assertHeldBy(t, dsn, backendPID(t, active))
}

// When another process took the lock while the holder's session was gone,
// the holder loses it.
func TestHolderLosesTheLockToAnotherProcess(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	// A long interval: the rival must win the race to the free lock.
	opts := options(t, dsn, "active")
	opts.Interval, opts.Grace = 2*time.Second, 5*time.Second
	l := acquire(t, opts)
	rival, err := admin(t, dsn).Conn(context.Background())
	require.NoError(t, err)
	defer rival.Close()

	// End the holder's session (waiting until it is gone) and take the
	// lock before the holder's next check.
	var ended, got bool
	require.NoError(t, rival.QueryRowContext(context.Background(), "SELECT pg_terminate_backend($1, 5000)", backendPID(t, l)).Scan(&ended))
	require.True(t, ended)
	require.NoError(t, rival.QueryRowContext(context.Background(), "SELECT pg_try_advisory_lock($1)", Key).Scan(&got))
	require.True(t, got, "the rival took the lock")
	select {
	case <-l.Lost():
		assert.ErrorIs(t, l.Err(), ErrTaken)
	case <-time.After(within):
		t.Fatal("the holder did not notice that another process took its lock")
	}
}

// A database that stops answering (a network partition) makes the holder
// give the lock up after the grace period, before the server can hand it
// to someone else.
func TestHolderGivesUpWhenTheDatabaseStopsAnswering(t *testing.T) {
	srv := pgtest.Start(t)
	proxy := srv.NewProxy(t)
	dsn, err := proxy.Through(srv.NewDatabase(t))
	require.NoError(t, err)
	l := acquire(t, options(t, dsn, "active"))

	frozen := time.Now()
	proxy.Partition()
	select {
	case <-l.Lost():
		assert.ErrorIs(t, l.Err(), ErrUnconfirmed)
		took := time.Since(frozen)
		assert.Less(t, took, testGrace+2*testInterval, "gave up late")
	case <-time.After(within):
		t.Fatal("the holder kept the lock while the database did not answer")
	}
}

func TestReleaseLetsGo(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	l := acquire(t, options(t, dsn, "active"))
	require.NoError(t, l.Release(context.Background()))
	require.NoError(t, l.Release(context.Background()), "second release")
	assertHeldBy(t, dsn, 0)
	assert.NoError(t, l.Err(), "a released lock is not lost")
}

func TestOptionsAreChecked(t *testing.T) {
	_, err := Acquire(context.Background(), Options{DriverName: "postgres", Interval: time.Second, Grace: ServerDropAfter})
	assert.Error(t, err)
	_, err = Acquire(context.Background(), Options{DriverName: "postgres", Interval: time.Second, Grace: time.Second})
	assert.Error(t, err)
}

func backendPID(t *testing.T, l *Lock) int {
	t.Helper()
	var pid int
	require.NoError(t, l.query(time.Now().Add(within), func(ctx context.Context, conn *sql.Conn) error {
		return conn.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid)
	}))
	return pid
}

// assertHeldBy checks which backend holds the lock (0: nobody).
func assertHeldBy(t *testing.T, dsn string, pid int) {
	t.Helper()
	var holder sql.NullInt64
	err := admin(t, dsn).QueryRow(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND classid = $1::bigint::oid AND objid = $2::bigint::oid`, uint64(Key)>>32, uint64(Key)&0xffffffff).Scan(&holder)
	if pid == 0 {
		assert.ErrorIs(t, err, sql.ErrNoRows)
		return
	}
	require.NoError(t, err)
	assert.Equal(t, int64(pid), holder.Int64)
}
