package bridge

import (
	"context"
	"sync"

	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// eventRouter is the EventHandler of one session. A session starts
// delivering events as soon as SignIn succeeds, which during a login is
// before the client that will handle them exists. The router does not
// hold them in memory: the session acknowledges an event to the server
// once the handler returned, so an event kept only here would be lost with
// the process. Instead handle blocks the session's event goroutine until
// attach (or until the session's context ends); the server keeps the
// event, and those after it, until then. After detach (the client
// disconnected, or the login failed) it drops what a closing session still
// delivers.
//
// Blocking cannot deadlock the login: SignIn returns before the first
// event is handled, the login flow never waits for the session's event
// goroutine until it either attaches or detaches the router, and a
// session's Close cancels the context the handler gets before waiting for
// that goroutine.
type eventRouter struct {
	// settled is closed by the first attach or detach.
	settled chan struct{}

	mu       sync.Mutex
	client   *Client
	detached bool
}

func newEventRouter() *eventRouter { return &eventRouter{settled: make(chan struct{})} }

func (r *eventRouter) handle(ctx context.Context, evt sfb.Event) {
	// A settled router delivers even when ctx has ended: a session
	// reports its end (SessionEnded) with its context already cancelled,
	// and a select over both would drop that report half of the time.
	select {
	case <-r.settled:
	default:
		select {
		case <-r.settled:
		case <-ctx.Done():
			// The session is ending; it acknowledges nothing more.
			zerolog.Ctx(ctx).Debug().Type("event_type", evt).Msg("Session ended before its login completed, event left to the server")
			return
		}
	}
	r.mu.Lock()
	c, detached := r.client, r.detached
	r.mu.Unlock()
	if detached || c == nil {
		zerolog.Ctx(ctx).Debug().Type("event_type", evt).Msg("Dropping event of a session that is no longer used")
		return
	}
	c.handleEvent(ctx, r, evt)
}

// attach starts delivering to c; an event that waited is handled first,
// on the session's event goroutine, so the order stays the server's.
func (r *eventRouter) attach(c *Client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.detached {
		return
	}
	r.client = c
	r.settle()
}

func (r *eventRouter) detach() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.detached = true
	r.client = nil
	r.settle()
}

// settle releases waiting handlers; r.mu is held.
func (r *eventRouter) settle() {
	select {
	case <-r.settled:
	default:
		close(r.settled)
	}
}
