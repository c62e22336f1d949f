package sip

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// scheduler re-registers every endpoint of a Transport before its
// registration expires: one heap ordered by due time and one goroutine
// that runs only while something is scheduled, so that an idle endpoint
// costs a heap slot, not a goroutine or a timer.
type scheduler struct {
	log zerolog.Logger
	// workers bounds the refreshes running at once.
	workers chan struct{}

	mu      sync.Mutex
	due     sessionHeap
	running bool
	// wake tells the goroutine that the earliest due time changed.
	wake    chan struct{}
	stopped bool
}

// maxConcurrentRefreshes bounds refreshes in flight across the transport;
// they spread over time anyway (jitter), this caps a burst after a stall.
const maxConcurrentRefreshes = 64

func newScheduler(log zerolog.Logger) *scheduler {
	return &scheduler{log: log, workers: make(chan struct{}, maxConcurrentRefreshes), wake: make(chan struct{}, 1)}
}

// schedule sets s's refresh to at, replacing what was scheduled.
func (sc *scheduler) schedule(s *Session, at time.Time) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.stopped || s.closed.Load() {
		return
	}
	s.refreshAt = at
	if s.heapIndex >= 0 {
		heap.Fix(&sc.due, s.heapIndex)
	} else {
		heap.Push(&sc.due, s)
	}
	if !sc.running {
		sc.running = true
		go sc.run()
		return
	}
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

// remove unschedules s.
func (sc *scheduler) remove(s *Session) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if s.heapIndex >= 0 {
		heap.Remove(&sc.due, s.heapIndex)
	}
}

// stop unschedules everything; nothing is scheduled after.
func (sc *scheduler) stop() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.stopped = true
	for len(sc.due) > 0 {
		heap.Pop(&sc.due)
	}
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

// len is how many endpoints are scheduled.
func (sc *scheduler) len() int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return len(sc.due)
}

func (sc *scheduler) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		sc.mu.Lock()
		if len(sc.due) == 0 {
			sc.running = false
			sc.mu.Unlock()
			return
		}
		next := sc.due[0]
		wait := time.Until(next.refreshAt)
		if wait <= 0 {
			heap.Pop(&sc.due)
			sc.mu.Unlock()
			sc.workers <- struct{}{}
			go func() {
				defer func() { <-sc.workers }()
				next.refreshRegistration()
			}()
			continue
		}
		sc.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-sc.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
	}
}

// refreshTime is when a registration of lifetime made at registered is
// refreshed: at a random point between RefreshFrom and RefreshTo of its
// lifetime, and at least RefreshLead before it expires.
func refreshTime(tm Timings, registered time.Time, lifetime time.Duration) time.Time {
	from, to := tm.RefreshFrom, tm.RefreshTo
	if to <= from {
		to = from
	}
	f := from + rand.Float64()*(to-from)
	at := time.Duration(float64(lifetime) * f)
	if latest := lifetime - tm.RefreshLead; at > latest {
		at = max(latest, lifetime/2)
	}
	return registered.Add(at)
}

// sessionHeap orders sessions by refreshAt; container/heap's interface.
type sessionHeap []*Session

func (h sessionHeap) Len() int           { return len(h) }
func (h sessionHeap) Less(i, j int) bool { return h[i].refreshAt.Before(h[j].refreshAt) }
func (h sessionHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex, h[j].heapIndex = i, j
}
func (h *sessionHeap) Push(x any) {
	s := x.(*Session)
	s.heapIndex = len(*h)
	*h = append(*h, s)
}
func (h *sessionHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	s.heapIndex = -1
	*h = old[:len(old)-1]
	return s
}

// refreshRegistration re-registers the endpoint on its connection (a new
// handshake once the security association is old), and schedules the next
// refresh. A refresh the server does not answer is retried after a
// backoff while the registration lasts; then the endpoint registers anew.
func (s *Session) refreshRegistration() {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if s.closed.Load() {
		return
	}
	c, reg := s.connection()
	if c == nil {
		// Reconnecting: the new registration schedules its own refresh.
		return
	}
	renew := reg.sa != nil && time.Since(reg.saSince) > s.t.timings.SALifetime
	if renew {
		reg.sa, reg.saSince = nil, time.Time{}
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.t.timings.RequestTimeout)
	defer cancel()
	err := s.register(ctx, c, &reg, false)
	if renew {
		// The association is SIP's token: its renewal is what the
		// bridge's metrics count as one.
		s.t.observer.TokenRenewed(err)
	}
	if err == nil {
		if s.installOn(c, reg) {
			s.t.refresh.schedule(s, refreshTime(s.t.timings, reg.registered, reg.lifetime))
		}
		return
	}
	if s.closed.Load() {
		return
	}
	s.log.Warn().Err(err).Msg("Re-registration failed")
	if isFatal(err) {
		go s.end(err)
		return
	}
	s.mu.Lock()
	if s.conn != c {
		// The connection was replaced meanwhile.
		s.mu.Unlock()
		return
	}
	s.reg.cseq = reg.cseq
	expires := s.reg.registered.Add(s.reg.lifetime)
	s.mu.Unlock()
	retry := time.Now().Add(s.t.timings.BackoffMin + rand.N(s.t.timings.BackoffMin+1))
	if retry.Before(expires.Add(-s.t.timings.RefreshLead / 2)) {
		s.t.refresh.schedule(s, retry)
		return
	}
	s.reregister(err)
}
