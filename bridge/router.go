package bridge

import (
	"context"
	"sync"

	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// maxEarlyEvents bounds the events a session may deliver before its client
// exists (between sign-in and the end of the login); a burst beyond that
// during a login is implausible, and memory must stay bounded.
const maxEarlyEvents = 1000

// eventRouter is the EventHandler of one session. A session starts
// delivering events as soon as SignIn succeeds, which during a login is
// before the client that will handle them exists: the router holds them
// until attach, then passes them on in order. After detach (the client
// disconnected) it drops what a closing session still delivers.
type eventRouter struct {
	mu       sync.Mutex
	client   *Client
	early    []earlyEvent
	detached bool
}

type earlyEvent struct {
	ctx context.Context
	evt sfb.Event
}

func newEventRouter() *eventRouter { return &eventRouter{} }

func (r *eventRouter) handle(ctx context.Context, evt sfb.Event) {
	r.mu.Lock()
	if r.detached {
		r.mu.Unlock()
		zerolog.Ctx(ctx).Debug().Type("event_type", evt).Msg("Dropping event of a session that is no longer used")
		return
	}
	c := r.client
	if c == nil {
		if len(r.early) < maxEarlyEvents {
			r.early = append(r.early, earlyEvent{ctx, evt})
		} else {
			zerolog.Ctx(ctx).Warn().Type("event_type", evt).Msg("Too many events before the login completed, dropping one")
		}
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	c.handleEvent(ctx, r, evt)
}

// attach starts delivering to c, first the events held so far. The lock is
// held while flushing so that a concurrent event cannot overtake them.
func (r *eventRouter) attach(c *Client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.client = c
	early := r.early
	r.early = nil
	for _, e := range early {
		c.handleEvent(e.ctx, r, e.evt)
	}
}

func (r *eventRouter) detach() {
	r.mu.Lock()
	r.detached = true
	r.client = nil
	r.early = nil
	r.mu.Unlock()
}
