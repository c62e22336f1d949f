package ucwa

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptrace"
	"runtime"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// MaxOutstandingPerUser is how many requests of one user are outstanding
// at once, the event channel's pending GET included. UCWA limits
// outstanding requests per user and answers 429 TooManyRequests above
// its limit (batch_ref.md); the limit is per user so that one user's long
// poll never holds up another's requests, as a cap shared by all users
// (one connection pool with MaxConnsPerHost) did once about 20 users
// waited on their event channels.
const MaxOutstandingPerUser = 20

// requestSlots are one user's slots for outstanding requests, shared by
// all of the user's sessions (a relogin overlaps the old one briefly).
type requestSlots struct{ c chan struct{} }

// acquire takes a slot, or gives up when ctx ends: a deadline then is
// ErrLocalTimeout, since nothing was sent.
func (s *requestSlots) acquire(ctx context.Context) error {
	select {
	case s.c <- struct{}{}:
		return nil
	case <-ctx.Done():
		return localWaitError(ctx, fmt.Sprintf("one of the user's %d request slots", cap(s.c)))
	}
}

func (s *requestSlots) release() { <-s.c }

// localWaitError says that waiting for what ended with ctx.
func localWaitError(ctx context.Context, what string) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("wait for %s: %w: %w", what, sfb.ErrLocalTimeout, err)
	}
	return fmt.Errorf("wait for %s: %w", what, err)
}

// userSlots finds each signed-in user's requestSlots. An entry lives as
// long as a session of the user holds it; the garbage collector ends it,
// so that no sign-out path can forget to.
type userSlots struct {
	mu     sync.Mutex
	byUser map[sfb.URI]weak.Pointer[requestSlots]
}

func (u *userSlots) get(user sfb.URI) *requestSlots {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s := u.byUser[user].Value(); s != nil {
		return s
	}
	if u.byUser == nil {
		u.byUser = map[sfb.URI]weak.Pointer[requestSlots]{}
	}
	s := &requestSlots{c: make(chan struct{}, MaxOutstandingPerUser)}
	u.byUser[user] = weak.Make(s)
	runtime.AddCleanup(s, u.forget, user)
	return s
}

// forget drops user's entry once its slots are gone, unless a new
// session made new ones meanwhile.
func (u *userSlots) forget(user sfb.URI) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.byUser[user].Value() == nil {
		delete(u.byUser, user)
	}
}

// requestPhase follows one request through the HTTP transport, so that a
// deadline is blamed on the right side: waiting for a pooled connection
// is this process; connecting, or waiting for the answer, is the server.
type requestPhase struct{ v atomic.Int32 }

const (
	// phaseUnknown: the transport reported nothing (not an
	// *http.Transport); the server is blamed, as before tracing.
	phaseUnknown int32 = iota
	phasePool
	phaseConnect
	phaseSent
)

func (p *requestPhase) trace() *httptrace.ClientTrace {
	// Only forward: a dial started for this request may still report
	// after the request took an idle connection.
	set := func(ph int32) {
		for {
			old := p.v.Load()
			if old >= ph || p.v.CompareAndSwap(old, ph) {
				return
			}
		}
	}
	return &httptrace.ClientTrace{
		GetConn:      func(string) { set(phasePool) },
		DNSStart:     func(httptrace.DNSStartInfo) { set(phaseConnect) },
		ConnectStart: func(string, string) { set(phaseConnect) },
		GotConn:      func(httptrace.GotConnInfo) { set(phaseSent) },
	}
}

// contextError is the error for a request that ctx ended. poolCapped
// says whether the HTTP transport limits connections per host: only then
// can a request wait for a pooled connection; without a limit, the time
// before connecting is the start of the request's own dial.
func (p *requestPhase) contextError(ctx context.Context, poolCapped bool) error {
	err := ctx.Err()
	if !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	switch p.v.Load() {
	case phasePool:
		if poolCapped {
			return localWaitError(ctx, "a connection")
		}
		return fmt.Errorf("connect: %w: %w", sfb.ErrServerUnavailable, err)
	case phaseConnect:
		return fmt.Errorf("connect: %w: %w", sfb.ErrServerUnavailable, err)
	default:
		return fmt.Errorf("no answer in time: %w: %w", sfb.ErrServerUnavailable, err)
	}
}
