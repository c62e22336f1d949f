// Package pool keeps the bridge a good citizen of a Skype for Business
// pool. One Guard per pool spaces new sign-ins out to the configured rate
// and, once any request to the pool was answered with Retry-After, 503 or
// 429, holds new sign-ins and token renewals for the whole pool, not just
// for the user whose request was refused. Sessions already signed in are
// not held: their event channels and messages go on (and back off on
// their own when refused).
//
// The package knows no protocol: a transport decides which pool a request
// goes to (UCWA: the host of the applications URL) and reports what the
// pool answered.
package pool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// ErrPaused: the caller gave up while the pool had asked to slow down.
var ErrPaused = errors.New("the Skype for Business pool asked to slow down")

// Config is how every Guard of a Guards behaves.
type Config struct {
	// SignInRate is how many sign-ins per second start towards one pool;
	// it must be above 0.
	SignInRate float64
	// BackoffMin is the first pause when the pool refuses a request; every
	// further refusal of a request sent after the pause ended doubles it,
	// up to BackoffMax, which also caps what Retry-After may ask for. A
	// success after a pause starts over at BackoffMin.
	BackoffMin, BackoffMax time.Duration
}

// Guards holds one Guard per pool, created on first use. It is safe for
// concurrent use.
type Guards struct {
	cfg Config
	log zerolog.Logger

	mu     sync.Mutex
	byPool map[string]*Guard
}

// NewGuards returns guards that behave as cfg says.
func NewGuards(cfg Config, log zerolog.Logger) *Guards {
	return &Guards{cfg: cfg, log: log, byPool: map[string]*Guard{}}
}

// For returns the guard of the pool named name (for UCWA the host and port
// of the applications URL, lower case).
func (gs *Guards) For(name string) *Guard {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	g := gs.byPool[name]
	if g == nil {
		g = &Guard{name: name, cfg: gs.cfg, log: gs.log.With().Str("pool", name).Logger(),
			interval: time.Duration(float64(time.Second) / gs.cfg.SignInRate)}
		gs.byPool[name] = g
	}
	return g
}

// Guard protects one pool. It is safe for concurrent use.
type Guard struct {
	name     string
	cfg      Config
	log      zerolog.Logger
	interval time.Duration

	mu sync.Mutex
	// next is the ramp's next free sign-in slot.
	next time.Time
	// until ends the current pause; length is how long it was set for,
	// the window over which those who waited for it come back.
	until  time.Time
	length time.Duration
	// step is the current backoff, zero when the pool is not refusing.
	step time.Duration
	// stats counts the pauses for operators and benchmarks.
	stats Stats
}

// Stats say how often and how long a pool was paused.
type Stats struct {
	// Pauses counts the pauses that began while none was in force.
	Pauses int
	// Paused is the time spent paused, the current pause included to its
	// planned end.
	Paused time.Duration
}

// Stats returns the guard's counts so far.
func (g *Guard) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stats
}

// Name is the pool's name as given to Guards.For.
func (g *Guard) Name() string { return g.name }

// PausedUntil is the end of the current pause; not after now when there
// is none.
func (g *Guard) PausedUntil() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.until
}

// WaitSignIn blocks until a new sign-in may start towards the pool: at the
// ramp's next free slot, outside any pause. A sign-in whose slot falls in a
// pause that began after it queued queues again behind the pause, so that
// the ramp's rate also holds when a pause ends.
func (g *Guard) WaitSignIn(ctx context.Context) error {
	for {
		if err := g.waitPause(ctx, false); err != nil {
			return err
		}
		g.mu.Lock()
		now := time.Now()
		if now.Before(g.until) {
			g.mu.Unlock()
			continue
		}
		slot := g.next
		if slot.Before(now) {
			slot = now
		}
		g.next = slot.Add(g.interval)
		g.mu.Unlock()
		if d := time.Until(slot); d > 0 && !ctxtime.Sleep(ctx, d) {
			return fmt.Errorf("pool %s: wait for a sign-in slot: %w", g.name, ctx.Err())
		}
		if !time.Now().Before(g.PausedUntil()) {
			return nil
		}
	}
}

// WaitPause blocks while the pool is paused, for token renewals and the
// requests of a sign-in under way. Those that waited come back spread
// over as long as the pause lasted, not all at its end.
func (g *Guard) WaitPause(ctx context.Context) error {
	return g.waitPause(ctx, true)
}

func (g *Guard) waitPause(ctx context.Context, spread bool) error {
	waited := false
	for {
		g.mu.Lock()
		until, length := g.until, g.length
		g.mu.Unlock()
		d := time.Until(until)
		if d <= 0 {
			if !waited || !spread || length <= 0 {
				return nil
			}
			// Once only: the loop comes back here only after a new pause.
			waited = false
			d = rand.N(length)
		} else {
			waited = true
		}
		if !ctxtime.Sleep(ctx, d) {
			return fmt.Errorf("pool %s: %w (paused until %s): %w", g.name, ErrPaused, until.UTC().Format(time.RFC3339), ctx.Err())
		}
	}
}

// Refused reports that the pool refused a request sent at sent (503, 429,
// or any refusal with Retry-After; retryAfter is zero when the answer had
// none). A request sent after the last pause ended doubles the backoff: the
// pool has not recovered. One sent before (in flight when the pause began,
// or a session's request during it) only makes the pause as long as its
// Retry-After asks, so that a burst of refusals of requests sent together
// counts once.
func (g *Guard) Refused(sent time.Time, retryAfter time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	length := min(max(0, retryAfter), g.cfg.BackoffMax)
	if !sent.Before(g.until) {
		g.step = NextBackoff(g.step, g.cfg.BackoffMin, g.cfg.BackoffMax)
		length = max(length, Jitter(g.step))
	}
	end := now.Add(length)
	if !end.After(g.until) {
		return
	}
	if !now.Before(g.until) {
		g.stats.Pauses++
		g.stats.Paused += length
		g.log.Warn().Dur("pause", length).Dur("retry_after", retryAfter).Dur("backoff", g.step).
			Msg("Skype for Business pool refused a request: new sign-ins and token renewals pause")
	} else {
		g.stats.Paused += end.Sub(g.until)
	}
	g.until, g.length = end, length
}

// Succeeded reports that the pool answered a request sent at sent. One
// sent after the last pause ended shows the pool recovered: the next
// refusal starts the backoff over.
func (g *Guard) Succeeded(sent time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.step > 0 && !sent.Before(g.until) {
		g.step = 0
		g.log.Info().Msg("Skype for Business pool answers again")
	}
}

// NextBackoff doubles cur from first up to limit: the steps of a capped
// exponential backoff. The jitter goes on the wait (Jitter), not into the
// steps: fed back, it would keep the backoff from growing.
func NextBackoff(cur, first, limit time.Duration) time.Duration {
	if cur <= 0 {
		return first
	}
	return min(cur*2, limit)
}

// Jitter is a duration between d/2 and d, so that the many who were told
// to wait at the same moment do not come back at the same moment.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// WaitError classifies giving up while waiting on a Guard, for a
// transport's callers: during a pause the server is unavailable (it asked
// to wait, sfb.ErrServerUnavailable); a deadline otherwise passed while the
// sign-in waited for its turn on the ramp, inside the client
// (sfb.ErrLocalTimeout).
func WaitError(err error) error {
	switch {
	case errors.Is(err, ErrPaused):
		return fmt.Errorf("%w: %w", sfb.ErrServerUnavailable, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", sfb.ErrLocalTimeout, err)
	}
	return err
}
