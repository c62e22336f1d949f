package matrixapp

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database/standby"
)

// ExitLockLost is the exit status of an active process that lost the
// active lock (see the standby package): another process may be serving,
// so it stops at once. Its supervisor starts it again, and it waits as the
// standby.
const ExitLockLost = 40

// StateDatabaseUnreachable is the error of the global bridge state while
// the bridge's own database does not answer.
const StateDatabaseUnreachable status.BridgeStateErrorCode = "sfb-database-unreachable"

// waitForActiveLock blocks until this process is the active one for its
// database; until then it serves nothing (no appservice listener, no
// sign-in to SfB). On PostgreSQL that is the standby lock; SQLite has no
// standby (one process owns the file), so nil is returned at once. SIGINT
// or SIGTERM while waiting ends the process. The lock's session doubles as
// the database's health check: health hears when it breaks and recovers.
func waitForActiveLock(m *mxmain.BridgeMain, health *dbHealth) *standby.Lock {
	log := m.Log.With().Str("component", "standby").Logger()
	dialect, err := database.DialectFromDBUtil(m.Config.Database.Type)
	if err != nil || dialect != database.Postgres {
		log.Info().Str("database_type", m.Config.Database.Type).Msg("No standby on SQLite: this process is the only one for its database file")
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info().Msg("Taking the active lock; while another bridge process holds it, this one waits as the standby")
	lock, err := standby.Acquire(ctx, standby.Options{
		DriverName: m.Config.Database.Type,
		DSN:        m.Config.Database.URI,
		Log:        *m.Log,
		OnDown:     health.lost,
		OnUp:       health.regained,
	})
	if err != nil {
		if ctx.Err() != nil {
			log.Info().Msg("Stopped while waiting as the standby")
			os.Exit(0)
		}
		// Unusable database settings; mxmain exits with 14 for those.
		log.WithLevel(zerolog.FatalLevel).Err(err).Msg("Cannot take the active lock")
		os.Exit(14)
	}
	go func() {
		<-lock.Lost()
		log.WithLevel(zerolog.FatalLevel).Err(lock.Err()).Int("exit_status", ExitLockLost).
			Msg("Lost the active lock: stopping at once so that only one bridge process serves; started again, this process waits as the standby")
		os.Exit(ExitLockLost)
	}()
	return lock
}

// dbHealth follows whether the bridge's database answers: it reports an
// outage as the global bridge state and keeps Synapse's transactions out
// while it lasts.
type dbHealth struct {
	db     *sql.DB
	states *stateReporter
	log    zerolog.Logger
	down   atomic.Bool
}

func (h *dbHealth) lost() {
	h.down.Store(true)
	h.states.report(status.BridgeState{
		StateEvent: status.StateBridgeUnreachable,
		Error:      StateDatabaseUnreachable,
		Message:    "The bridge lost its database connection and is reconnecting",
	})
}

func (h *dbHealth) regained() {
	h.down.Store(false)
	h.states.report(status.BridgeState{StateEvent: status.StateRunning})
}

// transactionPingTimeout bounds the database check before a transaction
// from the homeserver is taken.
const transactionPingTimeout = 3 * time.Second

// gateTransactions is appservice middleware: while the database does not
// answer, a transaction pushed by the homeserver gets 503, so the
// homeserver keeps it and pushes it again later. The bridge answers a
// transaction once its events were handled (bridge/astxn.go), but an
// event bridgev2 cannot handle for want of the database (it cannot even
// find the user's login) counts as handled and is dropped, so a
// transaction taken during an outage would be lost. The check is the lock session's state plus a ping of the shared
// pool; an outage that begins after the ping, while the transaction's
// events are handled, can still lose them.
func (h *dbHealth) gateTransactions(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || !strings.HasPrefix(r.URL.Path, "/_matrix/app/v1/transactions/") {
			next.ServeHTTP(w, r)
			return
		}
		err := errDatabaseDown
		if !h.down.Load() {
			ctx, cancel := context.WithTimeout(r.Context(), transactionPingTimeout)
			err = h.db.PingContext(ctx)
			cancel()
		}
		if err != nil {
			h.log.Warn().Err(err).Msg("Refusing a transaction from the homeserver while the database does not answer; the homeserver sends it again")
			mautrix.RespError{
				ErrCode:    "M_UNKNOWN",
				Err:        "The bridge's database is unavailable; try again later",
				StatusCode: http.StatusServiceUnavailable,
			}.Write(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

var errDatabaseDown = errors.New("the active lock's database session is down")

// stateReporter pushes global bridge states one at a time, the newest
// first: bridgev2's SendGlobalBridgeState retries until the state is
// delivered, and a newer state makes an older one moot.
type stateReporter struct {
	br   *bridgev2.Bridge
	wake chan struct{}

	mu      sync.Mutex
	pending *status.BridgeState
	cancel  context.CancelFunc
}

func newStateReporter(br *bridgev2.Bridge) *stateReporter {
	return &stateReporter{br: br, wake: make(chan struct{}, 1)}
}

func (r *stateReporter) report(state status.BridgeState) {
	r.mu.Lock()
	r.pending = &state
	if r.cancel != nil {
		r.cancel()
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run sends the states reported from now on, after initial unless a state
// was reported before (while the bridge was starting, whose context
// SendGlobalBridgeState needs).
func (r *stateReporter) run(ctx context.Context, initial status.BridgeState) {
	r.mu.Lock()
	if r.pending == nil {
		r.pending = &initial
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		r.mu.Lock()
		state := r.pending
		r.pending = nil
		sendCtx, cancel := context.WithCancel(ctx)
		r.cancel = cancel
		r.mu.Unlock()
		if state != nil {
			r.br.SendGlobalBridgeState(sendCtx, *state)
		}
		cancel()
	}
}

// releaseTimeout bounds giving the lock up on a clean stop.
const releaseTimeout = 5 * time.Second
