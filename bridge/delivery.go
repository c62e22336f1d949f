package bridge

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/pool"
)

// An SfB event is acknowledged to the server only after the session's
// handler returned, and the handler returns only once the event reached
// Matrix (or failed for good). bridgev2 handles a remote event before
// QueueRemoteEvent returns only with portal_event_buffer 0, which Init
// enforces (see requireSynchronousPortals). A crash before that leaves
// the event unacknowledged on the server, which delivers it again to the
// resumed session; bridgev2 drops the copy by its message ID.

// queueReliably hands evt to bridgev2 and waits for the result. While the
// homeserver or the database is unavailable it retries (retryTransient)
// until ctx (the SfB session) ends, so that the session never
// acknowledges what Matrix did not accept. Any other failure is logged and
// given up: one bad event must not hold up those behind it. It returns the
// last result; its Error is ctx's when the session stopped first.
func (c *Client) queueReliably(ctx context.Context, evt bridgev2.RemoteEvent) bridgev2.EventHandlingResult {
	var res bridgev2.EventHandlingResult
	stopped, err := c.retryTransient(ctx, "bridge an SfB event", func() error {
		res = c.conn.queueEvent(c.login, evt)
		if res.Success || res.Ignored || res.Queued {
			return nil
		}
		if res.Error == nil {
			return errors.New("bridgev2 neither handled nor refused the event")
		}
		return res.Error
	})
	switch {
	case stopped:
		// The session stops: it does not acknowledge this event, the
		// next session gets it again.
		zerolog.Ctx(ctx).Warn().Msg("Session stopped while retrying an SfB event; it will be delivered again after resuming")
		return bridgev2.EventHandlingResult{Error: ctx.Err()}
	case err != nil:
		zerolog.Ctx(ctx).Error().Err(err).Stringer("event_type", evt.GetType()).Msg("Failed to bridge SfB event, giving up on it")
	}
	return res
}

// retryTransient runs try until it succeeds, fails for good (not a
// transientFailure), or ctx ends (stopped), waiting a capped, jittered
// backoff between attempts. It returns try's last error.
func (c *Client) retryTransient(ctx context.Context, action string, try func() error) (stopped bool, err error) {
	log := zerolog.Ctx(ctx)
	backoff := time.Duration(0)
	for attempt := 1; ; attempt++ {
		err = try()
		if err == nil || !transientFailure(err) {
			if err == nil && attempt > 1 {
				log.Info().Str("action", action).Int("attempts", attempt).Msg("Succeeded after retrying")
			}
			return false, err
		}
		backoff = pool.NextBackoff(backoff, c.conn.deliverRetryMin, c.conn.deliverRetryMax)
		wait := pool.Jitter(backoff)
		log.Warn().Err(err).Str("action", action).Int("attempt", attempt).Stringer("retry_in", wait).
			Msg("Homeserver or database unavailable, retrying")
		if !ctxtime.Sleep(ctx, wait) {
			return true, err
		}
	}
}

// transientFailure reports whether err says the homeserver or the
// bridge's database (which bridgev2 reads the portal from and records the
// message in) is only unavailable for now. Errors of the event itself (conversion, permission, a 4xx) are
// not: retrying them would block the session for nothing.
func transientFailure(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var httpErr mautrix.HTTPError
	var httpErrP *mautrix.HTTPError
	switch {
	case errors.As(err, &httpErr):
		return transientHTTP(httpErr)
	case errors.As(err, &httpErrP) && httpErrP != nil:
		return transientHTTP(*httpErrP)
	}
	var sqlErr interface{ SQLState() string }
	if errors.As(err, &sqlErr) {
		return databaseUnavailable(sqlErr.SQLState())
	}
	var liteErr sqlite3.Error
	if errors.As(err, &liteErr) {
		// Another connection holds the database: it frees it soon.
		return liteErr.Code == sqlite3.ErrBusy || liteErr.Code == sqlite3.ErrLocked
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone)
}

// databaseUnavailable reports whether a PostgreSQL error (by SQLSTATE)
// says that the database is away for now rather than that the statement
// is wrong: a restart or failover in progress ("the database system is
// shutting down", "... is starting up"), a broken connection, no free
// connection, or a primary demoted to a read-only replica by a failover.
func databaseUnavailable(state string) bool {
	switch {
	case strings.HasPrefix(state, "08"), // connection exception
		strings.HasPrefix(state, "53"),  // insufficient resources (too many connections, ...)
		strings.HasPrefix(state, "57P"), // admin or crash shutdown, cannot connect now
		state == "25006":                // read-only transaction
		return true
	}
	return false
}

func transientHTTP(e mautrix.HTTPError) bool {
	if e.Response == nil {
		// No answer at all: connection refused, reset, timed out.
		return true
	}
	return e.Response.StatusCode >= 500 || e.Response.StatusCode == http.StatusTooManyRequests
}

// kickResumeSave asks the saver to store the session's resume state soon.
// Called after each handled event; the saver coalesces them.
func (c *Client) kickResumeSave() {
	select {
	case c.resumeKick <- struct{}{}:
	default:
	}
}

// resumeSaver stores the resume state at most every resumeSaveDelay while
// events flow. A stored state behind the session only makes SfB deliver
// again what was bridged (deduplicated); the session never reports one
// ahead of what its handler finished.
func (c *Client) resumeSaver(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.resumeKick:
		}
		if !ctxtime.Sleep(ctx, c.conn.resumeSaveDelay) {
			return
		}
		c.saveResume(ctx, c.currentSession())
	}
}

// saveResume stores s's resume state when it changed since the last save.
func (c *Client) saveResume(ctx context.Context, s sfb.Session) {
	if s == nil || c.conn.db == nil {
		return
	}
	state := s.ResumeState()
	c.mu.Lock()
	same := state == c.savedResume
	c.mu.Unlock()
	if same || state == "" {
		return
	}
	if err := c.conn.db.PutResumeState(ctx, string(c.loginID), state); err != nil {
		c.log.Warn().Err(err).Msg("Failed to store SfB resume state")
		return
	}
	c.mu.Lock()
	c.savedResume = state
	c.mu.Unlock()
}

// waitSession returns the current session, waiting up to d (0: until ctx
// ends) for one while the login is signed in but not yet (or no longer)
// connected: Matrix messages that Synapse retries after a restart arrive
// before the sign-in finished, and must not fail for that.
func (c *Client) waitSession(ctx context.Context, d time.Duration) sfb.Session {
	if s := c.currentSession(); s != nil || !c.loggedIn.Load() {
		return s
	}
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return c.currentSession()
		case <-t.C:
		}
		if s := c.currentSession(); s != nil || !c.loggedIn.Load() {
			return s
		}
	}
}
