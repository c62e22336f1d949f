package presence

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// SetFunc writes a ghost's presence to the homeserver.
type SetFunc func(ctx context.Context, person sfb.URI, state MatrixState) error

// Stats are the writer's counters since it started, for metrics and the
// bench.
type Stats struct {
	// Writes is every presence write the homeserver accepted, refreshes
	// included.
	Writes uint64 `json:"writes"`
	// Refreshes is the writes that repeated an unchanged state so that
	// the homeserver does not time it out.
	Refreshes uint64 `json:"refreshes"`
	// Coalesced is the changes replaced by a newer one before they were
	// written.
	Coalesced uint64 `json:"coalesced"`
	// Unchanged is the changes dropped because the ghost already shows
	// that state.
	Unchanged uint64 `json:"unchanged"`
	// Failed is the writes the homeserver refused or did not answer.
	Failed uint64 `json:"failed"`
}

// WriterOptions configure a Writer.
type WriterOptions struct {
	// Rate is the ceiling of writes per second to the homeserver.
	Rate float64
	// Workers is how many writes may be in flight at once.
	Workers int
	// RefreshInterval is how old a written non-offline state may get
	// before it is written again; below the homeserver's
	// sync_online_timeout.
	RefreshInterval time.Duration
	// Visible tells whether some present Matrix user can see a person;
	// only those are refreshed.
	Visible func(sfb.URI) bool
}

// Writer writes ghost presence to the homeserver. Changes are coalesced
// (only the latest state of a person is written), a change to the state the
// ghost already shows is dropped, writes never exceed the rate ceiling, and
// the states of visible people are written again before the homeserver
// decays them to offline. Changes go first; every refreshShare-th write
// goes to a refresh when both wait, so a storm of changes cannot starve
// the refreshes into a decay.
type Writer struct {
	set  SetFunc
	opts WriterOptions
	log  zerolog.Logger
	pace *pacer
	now  func() time.Time
	// failurePause is how long a worker waits after a failed write.
	failurePause time.Duration

	mu       sync.Mutex
	pending  map[sfb.URI]MatrixState
	changes  []sfb.URI
	refresh  []sfb.URI
	queued   map[sfb.URI]bool // in refresh, not yet taken
	written  map[sfb.URI]written
	inFlight map[sfb.URI]bool
	// forgotten are people Forget dropped while their write was in
	// flight: the write's outcome is not recorded.
	forgotten map[sfb.URI]bool
	turn      int
	wake      chan struct{}
	// warnedBehind is when sweep last warned that refreshes lag.
	warnedBehind time.Time

	writes, refreshes, coalesced, unchanged, failed atomic.Uint64
}

type written struct {
	state MatrixState
	at    time.Time
}

// refreshShare: one write in refreshShare goes to a waiting refresh while
// changes wait too.
const refreshShare = 4

// NewWriter returns a writer that writes through set; Run does the
// writing.
func NewWriter(set SetFunc, opts WriterOptions, log zerolog.Logger) *Writer {
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.Visible == nil {
		opts.Visible = func(sfb.URI) bool { return true }
	}
	return &Writer{
		set:          set,
		opts:         opts,
		log:          log,
		pace:         newPacer(opts.Rate),
		failurePause: time.Second,
		now:          time.Now,
		pending:      map[sfb.URI]MatrixState{},
		queued:       map[sfb.URI]bool{},
		written:      map[sfb.URI]written{},
		inFlight:     map[sfb.URI]bool{},
		forgotten:    map[sfb.URI]bool{},
		wake:         make(chan struct{}, 1),
	}
}

// Stats returns the counters.
func (w *Writer) Stats() Stats {
	return Stats{
		Writes: w.writes.Load(), Refreshes: w.refreshes.Load(), Coalesced: w.coalesced.Load(),
		Unchanged: w.unchanged.Load(), Failed: w.failed.Load(),
	}
}

// Update makes state the person's next write, replacing one not written
// yet.
func (w *Writer) Update(person sfb.URI, state MatrixState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.forgotten, person)
	if _, ok := w.pending[person]; ok {
		w.pending[person] = state
		w.coalesced.Add(1)
		return
	}
	if last, ok := w.written[person]; ok && last.state == state && !w.inFlight[person] {
		w.unchanged.Add(1)
		return
	}
	w.pending[person] = state
	w.changes = append(w.changes, person)
	w.kick()
}

// Written returns the state last written for person.
func (w *Writer) Written(person sfb.URI) (MatrixState, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, ok := w.written[person]
	return last.state, ok
}

// Forget stops refreshing person (nobody watches them any more: what the
// ghost shows decays to offline) and drops a write not done yet.
func (w *Writer) Forget(person sfb.URI) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.written, person)
	delete(w.pending, person)
	delete(w.queued, person)
	if w.inFlight[person] {
		w.forgotten[person] = true
	}
}

// RefreshNow writes the state of people again at once, for people who
// just became visible (a Matrix user came back online, a room was
// created) and may show offline after a decay.
func (w *Writer) RefreshNow(people []sfb.URI) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range people {
		w.queueRefresh(p)
	}
}

// queueRefresh queues a refresh of p unless one or a change waits; w.mu is
// held.
func (w *Writer) queueRefresh(p sfb.URI) {
	last, ok := w.written[p]
	if !ok || last.state.Presence == event.PresenceOffline || w.queued[p] {
		return
	}
	if _, ok := w.pending[p]; ok {
		return
	}
	w.queued[p] = true
	w.refresh = append(w.refresh, p)
	w.kick()
}

func (w *Writer) kick() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// sweep queues a refresh of every visible person whose state is older
// than the refresh interval.
func (w *Writer) sweep() {
	w.mu.Lock()
	if behind := len(w.refresh); behind > 0 && w.now().Sub(w.warnedBehind) > time.Minute {
		// The last sweep's refreshes are not all written: the ceiling
		// is too low for what Matrix users see, and ghosts may decay.
		w.warnedBehind = w.now()
		w.log.Warn().Int("waiting", behind).Float64("write_rate", w.opts.Rate).
			Msg("Presence refreshes fall behind the write rate; raise network.presence.write_rate or the homeserver's sync_online_timeout with refresh_interval")
	}
	var due []sfb.URI
	cutoff := w.now().Add(-w.opts.RefreshInterval)
	for p, last := range w.written {
		if last.state.Presence != event.PresenceOffline && !last.at.After(cutoff) && !w.queued[p] {
			due = append(due, p)
		}
	}
	w.mu.Unlock()
	// Visible takes the connector's locks: not under w.mu.
	var visible []sfb.URI
	for _, p := range due {
		if w.opts.Visible(p) {
			visible = append(visible, p)
		}
	}
	w.RefreshNow(visible)
}

// next takes the next write: a change, or a refresh (isRefresh); ok is
// false when nothing can be written now.
func (w *Writer) next() (person sfb.URI, state MatrixState, isRefresh, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.turn++
	if len(w.changes) == 0 || w.turn%refreshShare == 0 {
		if person, ok := w.takeRefresh(); ok {
			return person, w.written[person].state, true, true
		}
	}
	// A person whose write is in flight waits for it, so that writes of
	// one person keep their order.
	for i := 0; i < len(w.changes); i++ {
		p := w.changes[i]
		st, found := w.pending[p]
		if !found || w.inFlight[p] {
			if !found { // forgotten
				w.takeChange(i)
				i--
			}
			continue
		}
		w.takeChange(i)
		delete(w.pending, p)
		if last, ok := w.written[p]; ok && last.state == st {
			// Came while the same state was being written.
			w.unchanged.Add(1)
			i--
			continue
		}
		w.inFlight[p] = true
		return p, st, false, true
	}
	if person, ok := w.takeRefresh(); ok {
		return person, w.written[person].state, true, true
	}
	return "", MatrixState{}, false, false
}

// takeChange removes the i-th change from the queue; w.mu is held. The
// head, by far the most common, costs nothing.
func (w *Writer) takeChange(i int) {
	if i == 0 {
		w.changes = w.changes[1:]
		return
	}
	w.changes = append(w.changes[:i:i], w.changes[i+1:]...)
}

// takeRefresh takes the first refresh that is still due; w.mu is held.
func (w *Writer) takeRefresh() (sfb.URI, bool) {
	for len(w.refresh) > 0 {
		p := w.refresh[0]
		w.refresh = w.refresh[1:]
		queued := w.queued[p]
		delete(w.queued, p)
		_, hasWritten := w.written[p]
		_, hasChange := w.pending[p]
		// Forgotten, or a change will write it anyway.
		if !queued || !hasWritten || hasChange || w.inFlight[p] {
			continue
		}
		w.inFlight[p] = true
		return p, true
	}
	return "", false
}

// done records the outcome of a write.
func (w *Writer) done(person sfb.URI, state MatrixState, isRefresh bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.inFlight, person)
	if w.forgotten[person] {
		delete(w.forgotten, person)
		return
	}
	if err != nil {
		w.failed.Add(1)
		// Only a change is tried again, unless a newer one came; a failed
		// refresh waits for the next sweep.
		if _, newer := w.pending[person]; !newer && !isRefresh {
			w.pending[person] = state
			w.changes = append(w.changes, person)
		}
		w.kick()
		return
	}
	w.writes.Add(1)
	if isRefresh {
		w.refreshes.Add(1)
	}
	w.written[person] = written{state: state, at: w.now()}
	if len(w.changes) > 0 {
		w.kick()
	}
}

// Run writes until ctx ends.
func (w *Writer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range w.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.work(ctx)
		}()
	}
	if w.opts.RefreshInterval > 0 {
		// Sweeping five times per interval writes a state again at most
		// 1.2 intervals after the last write, plus the queue's wait.
		t := time.NewTicker(w.opts.RefreshInterval / 5)
		defer t.Stop()
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case <-t.C:
				w.sweep()
			}
		}
	}
	wg.Wait()
}

func (w *Writer) work(ctx context.Context) {
	for {
		person, state, isRefresh, ok := w.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
				continue
			}
		}
		// More may wait: wake another worker.
		w.kick()
		if !w.pace.wait(ctx) {
			w.done(person, state, isRefresh, ctx.Err())
			return
		}
		err := w.set(ctx, person, state)
		if err != nil && ctx.Err() == nil {
			w.log.Warn().Err(err).Str("person", person.Address()).Str("presence", string(state.Presence)).
				Bool("refresh", isRefresh).Msg("Failed to write ghost presence")
		}
		w.done(person, state, isRefresh, err)
		if err != nil {
			// The homeserver may be down: this worker pauses, so that
			// the retries of all workers stay a trickle.
			if !ctxtime.Sleep(ctx, w.failurePause) {
				return
			}
		}
	}
}

// pacer spaces events at most rate per second (a token bucket of one).
type pacer struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
	now      func() time.Time
}

func newPacer(rate float64) *pacer {
	p := &pacer{now: time.Now}
	if rate > 0 {
		p.interval = time.Duration(float64(time.Second) / rate)
	}
	return p
}

// reserve returns how long the caller waits for its slot.
func (p *pacer) reserve() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.next.Before(now) {
		p.next = now
	}
	wait := p.next.Sub(now)
	p.next = p.next.Add(p.interval)
	return wait
}

func (p *pacer) wait(ctx context.Context) bool {
	d := p.reserve()
	if d <= 0 {
		return ctx.Err() == nil
	}
	return ctxtime.Sleep(ctx, d)
}
