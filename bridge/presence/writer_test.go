package presence

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// homeserver records the writes it gets; gate, when set, holds every write
// until the test lets it through.
type homeserver struct {
	mu     sync.Mutex
	writes []write
	gate   chan struct{}
	fail   map[sfb.URI]int
}

type write struct {
	person sfb.URI
	state  MatrixState
	at     time.Time
}

func (h *homeserver) set(ctx context.Context, person sfb.URI, state MatrixState) error {
	h.mu.Lock()
	gate := h.gate
	h.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail[person] > 0 {
		h.fail[person]--
		return errors.New("M_UNKNOWN")
	}
	h.writes = append(h.writes, write{person, state, time.Now()})
	return nil
}

func (h *homeserver) all() []write {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]write(nil), h.writes...)
}

func (h *homeserver) of(person sfb.URI) []MatrixState {
	var out []MatrixState
	for _, w := range h.all() {
		if w.person == person {
			out = append(out, w.state)
		}
	}
	return out
}

func runWriter(t *testing.T, h *homeserver, opts WriterOptions) *Writer {
	t.Helper()
	w := NewWriter(h.set, opts, zerolog.New(zerolog.NewTestWriter(t)))
	w.failurePause = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return w
}

var (
	busy    = MatrixState{Presence: event.PresenceUnavailable, StatusMsg: "Busy"}
	meeting = MatrixState{Presence: event.PresenceUnavailable, StatusMsg: "In a meeting"}
	online  = MatrixState{Presence: event.PresenceOnline}
	offline = MatrixState{Presence: event.PresenceOffline}
)

func TestWriterCoalescesToTheLatestState(t *testing.T) {
	h := &homeserver{gate: make(chan struct{})}
	w := runWriter(t, h, WriterOptions{Rate: 1000, Workers: 1})
	bob := sfb.URI("sip:bob@contoso.com")
	carol := sfb.URI("sip:carol@contoso.com")

	w.Update(carol, online) // taken by the worker, held at the gate
	require.Eventually(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.inFlight[carol] }, 5*time.Second, time.Millisecond)
	w.Update(bob, online)
	w.Update(bob, busy)
	w.Update(bob, meeting)
	close(h.gate)

	require.Eventually(t, func() bool { return len(h.of(bob)) == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, []MatrixState{meeting}, h.of(bob), "only the latest state is written")
	assert.EqualValues(t, 2, w.Stats().Coalesced)

	// The same state again is not written.
	w.Update(bob, meeting)
	assert.EqualValues(t, 1, w.Stats().Unchanged)
	w.Update(bob, busy)
	require.Eventually(t, func() bool { return len(h.of(bob)) == 2 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, []MatrixState{meeting, busy}, h.of(bob))
	// The count follows the homeserver's answer.
	require.Eventually(t, func() bool { return w.Stats().Writes == 3 }, 5*time.Second, time.Millisecond)
}

func TestWriterKeepsTheRateCeiling(t *testing.T) {
	h := &homeserver{}
	const rate, n = 200.0, 40
	w := runWriter(t, h, WriterOptions{Rate: rate, Workers: 8})
	start := time.Now()
	for i := range n {
		w.Update(sfb.URI(fmt.Sprintf("sip:user%d@contoso.com", i)), busy)
	}
	require.Eventually(t, func() bool { return len(h.all()) == n }, 10*time.Second, time.Millisecond)
	writes := h.all()
	// However many workers, n writes at the ceiling take at least
	// (n-1)/rate: the first is free, each further one waits its slot.
	minSpan := time.Duration(float64(n-1) / rate * float64(time.Second))
	assert.GreaterOrEqual(t, writes[n-1].at.Sub(start), minSpan-time.Millisecond)
	require.Eventually(t, func() bool { return w.Stats().Writes == n }, 5*time.Second, time.Millisecond)
}

func TestPacerSpacesSlots(t *testing.T) {
	p := newPacer(100)
	now := time.Unix(0, 0)
	p.now = func() time.Time { return now }
	assert.Equal(t, time.Duration(0), p.reserve())
	assert.Equal(t, 10*time.Millisecond, p.reserve())
	assert.Equal(t, 20*time.Millisecond, p.reserve())
	now = now.Add(time.Second) // idle: no burst saved up
	assert.Equal(t, time.Duration(0), p.reserve())
	assert.Equal(t, 10*time.Millisecond, p.reserve())
}

func TestWriterRefreshesOnlyVisiblePeople(t *testing.T) {
	h := &homeserver{}
	bob, carol, dave := sfb.URI("sip:bob@contoso.com"), sfb.URI("sip:carol@contoso.com"), sfb.URI("sip:dave@contoso.com")
	var mu sync.Mutex
	visible := map[sfb.URI]bool{bob: true, dave: true}
	w := runWriter(t, h, WriterOptions{Rate: 1000, Workers: 2, RefreshInterval: 50 * time.Millisecond, Visible: func(p sfb.URI) bool {
		mu.Lock()
		defer mu.Unlock()
		return visible[p]
	}})
	w.Update(bob, busy)
	w.Update(carol, busy)
	w.Update(dave, offline)

	require.Eventually(t, func() bool { return len(h.of(bob)) >= 3 }, 5*time.Second, time.Millisecond, "bob is refreshed")
	assert.Equal(t, []MatrixState{busy}, h.of(carol), "carol, whom nobody sees, is not refreshed")
	assert.Equal(t, []MatrixState{offline}, h.of(dave), "offline does not decay: never refreshed")
	assert.GreaterOrEqual(t, w.Stats().Refreshes, uint64(2))

	// Carol becomes visible: refreshed from then on.
	mu.Lock()
	visible[carol] = true
	mu.Unlock()
	require.Eventually(t, func() bool { return len(h.of(carol)) >= 2 }, 5*time.Second, time.Millisecond)

	// Forgotten (nobody watches her): no longer refreshed.
	w.Forget(carol)
	n := len(h.of(carol))
	seen := len(h.of(bob))
	require.Eventually(t, func() bool { return len(h.of(bob)) >= seen+2 }, 5*time.Second, time.Millisecond)
	assert.Len(t, h.of(carol), n)
}

func TestWriterRefreshNowCatchesUp(t *testing.T) {
	h := &homeserver{}
	bob := sfb.URI("sip:bob@contoso.com")
	w := runWriter(t, h, WriterOptions{Rate: 1000, Workers: 1, RefreshInterval: time.Hour})
	w.Update(bob, busy)
	require.Eventually(t, func() bool { return len(h.of(bob)) == 1 }, 5*time.Second, time.Millisecond)
	w.RefreshNow([]sfb.URI{bob, "sip:nobody@contoso.com"})
	require.Eventually(t, func() bool { return len(h.of(bob)) == 2 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, []MatrixState{busy, busy}, h.of(bob))
	assert.Len(t, h.all(), 2, "nothing written for someone never written")
}

func TestWriterRefreshesAreNotStarvedByChanges(t *testing.T) {
	h := &homeserver{gate: make(chan struct{})}
	w := NewWriter(h.set, WriterOptions{Rate: 0, Workers: 1}, zerolog.Nop())
	bob := sfb.URI("sip:bob@contoso.com")
	w.written[bob] = written{state: busy}
	w.RefreshNow([]sfb.URI{bob})
	for i := range 20 {
		w.Update(sfb.URI(fmt.Sprintf("sip:user%d@contoso.com", i)), online)
	}
	var order []sfb.URI
	for range refreshShare {
		p, _, _, ok := w.next()
		require.True(t, ok)
		order = append(order, p)
	}
	assert.Contains(t, order, bob, "one write in %d goes to a waiting refresh", refreshShare)
}

func TestWriterRetriesAFailedChange(t *testing.T) {
	h := &homeserver{fail: map[sfb.URI]int{"sip:bob@contoso.com": 2}}
	w := runWriter(t, h, WriterOptions{Rate: 1000, Workers: 1})
	w.Update("sip:bob@contoso.com", busy)
	require.Eventually(t, func() bool { return len(h.of("sip:bob@contoso.com")) == 1 }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, 2, w.Stats().Failed)
	require.Eventually(t, func() bool {
		got, ok := w.Written("sip:bob@contoso.com")
		return ok && got == busy
	}, 5*time.Second, time.Millisecond)
}

func TestWriterSkipsAChangeToTheStateBeingWritten(t *testing.T) {
	h := &homeserver{gate: make(chan struct{})}
	w := runWriter(t, h, WriterOptions{Rate: 1000, Workers: 2})
	bob := sfb.URI("sip:bob@contoso.com")
	w.Update(bob, busy)
	require.Eventually(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.inFlight[bob] }, 5*time.Second, time.Millisecond)
	w.Update(bob, busy) // the same again while it is written
	close(h.gate)
	require.Eventually(t, func() bool { return w.Stats().Unchanged == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, []MatrixState{busy}, h.of(bob))
}

func TestWriterWarnsWhenRefreshesFallBehind(t *testing.T) {
	var logs strings.Builder
	w := NewWriter((&homeserver{}).set, WriterOptions{Rate: 1, RefreshInterval: time.Second}, zerolog.New(&logs))
	for i := range 5 {
		w.written[sfb.URI(fmt.Sprintf("sip:user%d@contoso.com", i))] = written{state: busy, at: time.Now().Add(-time.Hour)}
	}
	w.sweep() // queues five refreshes; no worker runs
	assert.NotContains(t, logs.String(), "fall behind")
	w.sweep()
	assert.Contains(t, logs.String(), "Presence refreshes fall behind the write rate")
	assert.Contains(t, logs.String(), `"waiting":5`)
	assert.Len(t, w.refresh, 5, "queued once each")
}

func TestWriterForgetDuringAWrite(t *testing.T) {
	h := &homeserver{gate: make(chan struct{})}
	w := runWriter(t, h, WriterOptions{Rate: 1000, Workers: 1, RefreshInterval: 20 * time.Millisecond})
	bob := sfb.URI("sip:bob@contoso.com")
	w.Update(bob, busy)
	require.Eventually(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.inFlight[bob] }, 5*time.Second, time.Millisecond)
	w.Forget(bob) // nobody watches bob any more
	close(h.gate)
	require.Eventually(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return !w.inFlight[bob] }, 5*time.Second, time.Millisecond)
	_, known := w.Written(bob)
	assert.False(t, known, "a write in flight does not bring a forgotten person back")
	assert.Never(t, func() bool { return len(h.of(bob)) > 1 }, 100*time.Millisecond, 5*time.Millisecond, "and bob is not refreshed")
}

// BenchmarkWriterStorm measures the writer's own cost per change in a storm
// over many people (a homeserver that answers at once, no ceiling).
func BenchmarkWriterStorm(b *testing.B) {
	const people = 70000
	uris := make([]sfb.URI, people)
	for i := range uris {
		uris[i] = sfb.URI(fmt.Sprintf("sip:user%d@contoso.com", i))
	}
	w := NewWriter(func(context.Context, sfb.URI, MatrixState) error { return nil }, WriterOptions{Workers: 16}, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	states := []MatrixState{busy, online, meeting}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.Update(uris[i%people], states[(i/people)%len(states)])
	}
	// Every change is written, coalesced or skipped.
	for {
		st := w.Stats()
		if st.Writes+st.Coalesced+st.Unchanged >= uint64(b.N) {
			b.ReportMetric(float64(st.Coalesced)/float64(b.N), "coalesced/op")
			return
		}
		time.Sleep(time.Millisecond)
	}
}
