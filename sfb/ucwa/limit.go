package ucwa

import (
	"context"
	"fmt"
	"runtime"
	"sync"
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

// acquire takes a slot, or gives up when ctx ends.
func (s *requestSlots) acquire(ctx context.Context) error {
	select {
	case s.c <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for one of the user's %d request slots: %w", cap(s.c), ctx.Err())
	}
}

func (s *requestSlots) release() { <-s.c }

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
