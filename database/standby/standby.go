// Package standby keeps one bridge process active per database: the active
// process holds a PostgreSQL session advisory lock on a connection of its
// own, every other process waits for it as a standby and serves nothing.
//
// A session advisory lock lives exactly as long as the session that took
// it. When the holder dies, the kernel closes its socket and PostgreSQL
// releases the lock at once; when the holder's host vanishes from the
// network, PostgreSQL notices through TCP keepalives and the user timeout,
// which the holder sets on its own session (ServerDropAfter); when
// PostgreSQL restarts or fails over, every lock is gone.
//
// The holder checks its session every Interval. A check that fails with a
// broken connection (PostgreSQL restarted) makes it reconnect and take the
// lock again at once: when it gets it, it carries on, so a single bridge
// survives a short database outage by itself; when another process got it
// first, the lock is lost. A check that gets no answer for Grace (the
// database unreachable, from this host or at all) also loses the lock,
// because after ServerDropAfter PostgreSQL may hand it to a standby. The
// caller must then stop serving; see [Lock.Lost].
//
// There is a window in which two processes may serve: from the moment the
// holder's session is gone on the server (a restart, or ServerDropAfter
// after a partition) until the holder finds out (its next check, at most
// Interval plus the time to reconnect, or Grace). A standby that saw the
// database go away waits ReclaimDelay before it competes, so that normally
// the holder takes the lock back and no failover happens at all.
//
// The lock does not work through a pooler in transaction or statement
// mode (PgBouncer): a session lock needs a session of its own.
package standby

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
)

// Key is the advisory lock key: "sfbact01" read as a big-endian int64.
// Advisory locks are per database, so it only has to differ from the other
// keys taken in the bridge's own database (golang-migrate's, see
// database.Upgrade).
const Key int64 = 0x7366626163743031

// Default timings.
const (
	// DefaultInterval is how often the holder checks its session and a
	// standby tries the lock.
	DefaultInterval = 2 * time.Second
	// DefaultGrace is how long the holder goes on serving without an
	// answer from its session before it gives the lock up.
	DefaultGrace = 10 * time.Second
)

// ServerDropAfter is how long after the holder's last contact PostgreSQL
// ends its session (and releases the lock) when the holder vanishes
// without closing its connection: keepalive probes start after
// keepaliveIdle of silence and the session ends when they go unanswered
// for the TCP user timeout. It must stay above Grace plus the time the
// holder takes to stop serving, or both processes may serve at once.
const ServerDropAfter = keepaliveIdle + userTimeout

const (
	keepaliveIdle     = 5 * time.Second
	keepaliveInterval = 2 * time.Second
	userTimeout       = 15 * time.Second
)

// ErrTaken is wrapped by the error of a lost lock when another process
// holds it now.
var ErrTaken = errors.New("another bridge process holds the active lock")

// ErrUnconfirmed is wrapped by the error of a lost lock when its session
// did not answer for the grace period.
var ErrUnconfirmed = errors.New("the database did not confirm the active lock in time")

// errTimeout: a query on the lock connection got no answer before its
// deadline; the connection is abandoned.
var errTimeout = errors.New("no answer from the database")

// Options configure Acquire.
type Options struct {
	// DriverName and DSN open the lock's own connections (database/sql,
	// e.g. "postgres" and the bridge's database.uri).
	DriverName, DSN string
	// Name describes this process to the others (PostgreSQL's
	// application_name of the lock session, shown in their log lines).
	// Empty means "sfb-matrix-bridge <hostname> pid <pid>".
	Name string
	// Interval and Grace: see DefaultInterval and DefaultGrace. Grace must
	// leave room for a few checks and stay well below ServerDropAfter.
	Interval, Grace time.Duration
	// ReclaimDelay is how long a standby that lost its own connection
	// waits after reconnecting before it tries the lock: the holder's head
	// start after a database restart. Zero means 2*Interval.
	ReclaimDelay time.Duration
	// OnDown is called when the holder's lock session breaks, OnUp when it
	// holds the lock again on a new one. Both run on the lock's goroutine
	// and must not block.
	OnDown, OnUp func()
	Log          zerolog.Logger
}

// Lock is the held active lock.
type Lock struct {
	opts Options
	db   *sql.DB
	log  zerolog.Logger

	conn *sql.Conn
	pid  int // the backend of conn

	stop     chan struct{}
	done     chan struct{}
	lost     chan struct{}
	lostOnce sync.Once
	err      error
}

// Holder describes the session that holds the lock, as far as PostgreSQL
// shows it to this role.
type Holder struct {
	PID     int
	Name    string
	Address string
	Since   time.Time
}

func (h Holder) String() string {
	if h.PID == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%q (backend pid %d, from %s, since %s)", h.Name, h.PID, h.Address, h.Since.Format(time.RFC3339))
}

// Acquire waits until this process holds the lock, then keeps checking it
// in the background until Release or until it is lost. It returns an error
// only when ctx ends first or the options are unusable.
func Acquire(ctx context.Context, opts Options) (*Lock, error) {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.ReclaimDelay <= 0 {
		opts.ReclaimDelay = 2 * opts.Interval
	}
	if opts.Grace < 2*opts.Interval || opts.Grace >= ServerDropAfter {
		return nil, fmt.Errorf("standby lock: grace %s must be at least twice the interval %s and below %s", opts.Grace, opts.Interval, ServerDropAfter)
	}
	if opts.Name == "" {
		host, _ := os.Hostname()
		opts.Name = "sfb-matrix-bridge " + host + " pid " + strconv.Itoa(os.Getpid())
	}
	db, err := sql.Open(opts.DriverName, opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("standby lock: open database: %w", err)
	}
	// Every connection is taken out of the pool for good; one given back
	// (broken or released) must be closed, never reused.
	db.SetMaxIdleConns(0)
	l := &Lock{
		opts: opts,
		db:   db,
		log:  opts.Log.With().Str("component", "standby").Logger(),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		lost: make(chan struct{}),
	}
	if err := l.wait(ctx); err != nil {
		l.dropConn()
		_ = db.Close()
		return nil, err
	}
	go l.hold()
	return l, nil
}

// wait tries the lock every Interval until it gets it.
func (l *Lock) wait(ctx context.Context) error {
	var (
		lastHolder  Holder
		unreachable bool
		start       = time.Now()
	)
	for {
		got, holder, err := false, Holder{}, error(nil)
		if l.conn == nil {
			err = l.connect(ctx, time.Now().Add(l.opts.Grace))
			if err == nil && unreachable {
				// Back after an outage, which may have been a restart
				// that dropped every lock: give the process that held
				// the lock before a head start to take it back.
				unreachable = false
				l.log.Info().Dur("delay", l.opts.ReclaimDelay).Msg("Database reachable again; giving the previous active process time to take its lock back")
				if !ctxtime.Sleep(ctx, l.opts.ReclaimDelay) {
					return fmt.Errorf("wait for the active lock: %w", ctx.Err())
				}
			}
		}
		if err == nil {
			got, holder, err = l.try(ctx, time.Now().Add(l.opts.Grace))
		}
		switch {
		case err != nil:
			if !unreachable {
				l.log.Warn().Err(err).Msg("Cannot reach the database to take the active lock; retrying")
			}
			unreachable = true
			l.dropConn()
		case got:
			l.log.Info().Int("backend_pid", l.pid).Dur("waited", time.Since(start)).Msg("Holding the active lock: this process serves")
			return nil
		case holder != lastHolder:
			lastHolder = holder
			l.log.Info().Stringer("holder", holder).Msg("Another bridge process is active; waiting as the standby (serving nothing)")
		}
		if !ctxtime.Sleep(ctx, l.opts.Interval) {
			return fmt.Errorf("wait for the active lock: %w", ctx.Err())
		}
	}
}

// hold checks the session every Interval until Release or loss.
func (l *Lock) hold() {
	defer close(l.done)
	tick := time.NewTicker(l.opts.Interval)
	defer tick.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		deadline := lastOK.Add(l.opts.Grace)
		err := l.query(deadline, func(ctx context.Context, conn *sql.Conn) error {
			_, err := conn.ExecContext(ctx, "SELECT 1")
			return err
		})
		if err == nil {
			lastOK = time.Now()
			continue
		}
		if errors.Is(err, errTimeout) {
			l.lose(fmt.Errorf("%w: no answer for %s (last confirmed %s ago)", ErrUnconfirmed, l.opts.Grace, time.Since(lastOK).Round(time.Millisecond)))
			return
		}
		l.log.Warn().Err(err).Msg("The connection holding the active lock broke; taking the lock again on a new one")
		if l.opts.OnDown != nil {
			l.opts.OnDown()
		}
		if err := l.regain(deadline); err != nil {
			l.lose(err)
			return
		}
		lastOK = time.Now()
		if l.opts.OnUp != nil {
			l.opts.OnUp()
		}
	}
}

// regain takes the lock again on a new session, before deadline.
func (l *Lock) regain(deadline time.Time) error {
	oldPID := l.pid
	l.dropConn()
	retry := time.NewTicker(l.opts.Interval / 4)
	defer retry.Stop()
	for attempt := 1; ; attempt++ {
		got, holder, err := l.try(context.Background(), deadline)
		switch {
		case got:
			l.log.Info().Int("attempts", attempt).Int("backend_pid", l.pid).Msg("Took the active lock again after the database connection broke; carrying on")
			return nil
		case err == nil && holder.PID != 0 && holder.PID == oldPID:
			// Our old session is still alive on the server (only the
			// connection to it broke): end it, its lock goes with it.
			l.log.Warn().Int("backend_pid", oldPID).Msg("The old lock session is still alive on the server; ending it")
			err = l.query(deadline, func(ctx context.Context, conn *sql.Conn) error {
				_, err := conn.ExecContext(ctx, "SELECT pg_terminate_backend($1)", oldPID)
				return err
			})
		case err == nil:
			return fmt.Errorf("%w: %s", ErrTaken, holder)
		}
		if err != nil {
			l.dropConn()
		}
		if time.Now().After(deadline) || errors.Is(err, errTimeout) {
			return fmt.Errorf("%w: not taken again within %s (last error: %v)", ErrUnconfirmed, l.opts.Grace, err)
		}
		select {
		case <-l.stop:
			return errors.New("released while taking the lock again")
		case <-retry.C:
		}
	}
}

// try connects when needed and tries the lock once. When another session
// holds it, holder describes that session.
func (l *Lock) try(ctx context.Context, deadline time.Time) (got bool, holder Holder, err error) {
	if l.conn == nil {
		if err := l.connect(ctx, deadline); err != nil {
			return false, Holder{}, err
		}
	}
	err = l.query(deadline, func(qctx context.Context, conn *sql.Conn) error {
		if err := conn.QueryRowContext(qctx, "SELECT pg_try_advisory_lock($1)", Key).Scan(&got); err != nil {
			return fmt.Errorf("try the advisory lock: %w", err)
		}
		if got {
			return nil
		}
		// Best effort: the holder may let go between the two queries, and
		// PostgreSQL shows other roles' sessions only partly.
		var since sql.NullTime
		var name, addr sql.NullString
		row := conn.QueryRowContext(qctx, `
			SELECT a.pid, a.application_name, coalesce(host(a.client_addr), 'local socket'), a.backend_start
			FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
			  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			  AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid`,
			uint64(Key)>>32, uint64(Key)&0xffffffff)
		if err := row.Scan(&holder.PID, &name, &addr, &since); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("look up the lock's holder: %w", err)
		}
		holder.Name, holder.Address, holder.Since = name.String, addr.String, since.Time
		return nil
	})
	return got, holder, err
}

// connect opens the lock session: named, with keepalives short enough that
// the server drops it ServerDropAfter after this process vanished.
func (l *Lock) connect(ctx context.Context, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, err := l.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	l.conn = conn
	return l.query(deadline, func(qctx context.Context, conn *sql.Conn) error {
		// Settings on a Unix socket connection are ignored by the server,
		// and there is nothing to probe.
		err := conn.QueryRowContext(qctx, `
			SELECT pg_backend_pid(),
				set_config('application_name', $1, false),
				set_config('tcp_keepalives_idle', $2, false),
				set_config('tcp_keepalives_interval', $3, false),
				set_config('tcp_user_timeout', $4, false)`,
			l.opts.Name,
			strconv.Itoa(int(keepaliveIdle/time.Second)),
			strconv.Itoa(int(keepaliveInterval/time.Second)),
			strconv.Itoa(int(userTimeout/time.Millisecond)),
		).Scan(&l.pid, new(string), new(string), new(string), new(string))
		if err != nil {
			return fmt.Errorf("set up the lock session: %w", err)
		}
		return nil
	})
}

// query runs fn on the lock connection and waits for it until deadline at
// most. lib/pq does not give up a query on a connection that stopped
// answering (it waits for TCP), so a late query is abandoned with its
// connection and errTimeout returned.
func (l *Lock) query(deadline time.Time, fn func(context.Context, *sql.Conn) error) error {
	conn := l.conn
	if conn == nil {
		return errors.New("no lock connection")
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	result := make(chan error, 1)
	go func() {
		defer cancel()
		result <- fn(ctx, conn)
	}()
	select {
	case err := <-result:
		return err
	case <-time.After(time.Until(deadline)):
		l.dropConn()
		return fmt.Errorf("%w within %s", errTimeout, l.opts.Grace)
	}
}

// dropConn gives up the lock connection, without waiting for a query
// that may still run on it (closing waits for that).
func (l *Lock) dropConn() {
	if l.conn == nil {
		return
	}
	conn := l.conn
	l.conn, l.pid = nil, 0
	go conn.Close()
}

func (l *Lock) lose(err error) {
	l.lostOnce.Do(func() {
		l.err = err
		l.dropConn()
		close(l.lost)
	})
}

// Lost is closed when the lock is lost; Err says why. The process must
// then stop serving: another one may be serving already or soon.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Err is why the lock was lost; nil while it is held.
func (l *Lock) Err() error {
	select {
	case <-l.lost:
		return l.err
	default:
		return nil
	}
}

// Release gives the lock up, so a standby takes over at once rather than
// after its next try.
func (l *Lock) Release(ctx context.Context) error {
	select {
	case <-l.stop:
		return nil
	default:
	}
	close(l.stop)
	<-l.done
	defer l.db.Close()
	if l.Err() != nil || l.conn == nil {
		return nil
	}
	deadline := time.Now().Add(l.opts.Interval)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	err := l.query(deadline, func(qctx context.Context, conn *sql.Conn) error {
		_, err := conn.ExecContext(qctx, "SELECT pg_advisory_unlock($1)", Key)
		return err
	})
	l.dropConn()
	if err != nil {
		return fmt.Errorf("release the active lock: %w", err)
	}
	return nil
}
