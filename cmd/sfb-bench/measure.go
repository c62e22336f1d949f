package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// Latency summarises a set of latencies in milliseconds.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// summarize computes percentiles by the nearest-rank method, so that a
// percentile is always a latency that was measured.
func summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(float64(len(s))*p+0.999999) - 1
		return ms(s[min(max(i, 0), len(s)-1)])
	}
	return Latency{P50: rank(0.50), P95: rank(0.95), P99: rank(0.99), Max: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// tracker follows one run: which message was sent when, in which
// conversation, and when it arrived. Messages are identified by their
// unique body text.
type tracker struct {
	name   string
	window int // most messages of one conversation sent and not yet arrived

	mu        sync.Mutex
	pending   map[string]sentMessage
	arrived   map[string]bool
	latencies []time.Duration
	inFlight  []int // per conversation
	doubled   int
	first     time.Time // first send
	last      time.Time // last arrival
	changed   chan struct{}
}

type sentMessage struct {
	conv int
	at   time.Time
}

func newTracker(name string, convs, window int) *tracker {
	return &tracker{
		name:     name,
		window:   max(window, 1),
		pending:  make(map[string]sentMessage),
		arrived:  make(map[string]bool),
		inFlight: make([]int, convs),
		changed:  make(chan struct{}),
	}
}

// offer waits until conversation conv has room in its window, then
// records body as offered now: its latency counts from here, whether the
// sender is busy with an earlier message or not.
func (t *tracker) offer(ctx context.Context, conv int, body string) error {
	for {
		t.mu.Lock()
		if t.inFlight[conv] < t.window {
			now := time.Now()
			if t.first.IsZero() {
				t.first = now
			}
			t.pending[body] = sentMessage{conv: conv, at: now}
			t.inFlight[conv]++
			t.mu.Unlock()
			return nil
		}
		changed := t.changed
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// abandon forgets an offered message whose send failed.
func (t *tracker) abandon(body string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sent, ok := t.pending[body]; ok {
		delete(t.pending, body)
		t.inFlight[sent.conv]--
	}
}

// arrive records that body was seen at the far end at time at. Bodies the
// run did not send are ignored; a second arrival counts as doubled.
func (t *tracker) arrive(body string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.arrived[body] {
		t.doubled++
		return
	}
	sent, ok := t.pending[body]
	if !ok {
		return
	}
	delete(t.pending, body)
	t.arrived[body] = true
	t.latencies = append(t.latencies, max(at.Sub(sent.at), 0))
	t.inFlight[sent.conv]--
	if at.After(t.last) {
		t.last = at
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

// snapshot is the state for a progress line.
func (t *tracker) snapshot() (done int, p95 float64) {
	t.mu.Lock()
	lat := slices.Clone(t.latencies)
	t.mu.Unlock()
	return len(lat), summarize(lat).P95
}

// waitAll waits until n messages arrived, or until none arrived for
// stall.
func (t *tracker) waitAll(ctx context.Context, n int, stall time.Duration) error {
	timer := time.NewTimer(stall)
	defer timer.Stop()
	for {
		t.mu.Lock()
		done, changed := len(t.latencies), t.changed
		t.mu.Unlock()
		if done >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return fmt.Errorf("%s: %d of %d messages arrived, none for %s", t.name, done, n, stall)
		case <-changed:
			timer.Reset(stall)
		}
	}
}

// progress prints a line per second while a run goes on.
func progress(ctx context.Context, w io.Writer, label, unit string, total int, t *tracker, sample func()) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	start, lastDone, lastAt := time.Now(), 0, time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			done, p95 := t.snapshot()
			rate := float64(done-lastDone) / now.Sub(lastAt).Seconds()
			lastDone, lastAt = done, now
			fmt.Fprintf(w, "%7.1fs  %-32s %6d/%d %s  %7.1f/s  p95 %7.1f ms\n",
				now.Sub(start).Seconds(), label, done, total, unit, rate, p95)
			if sample != nil {
				sample()
			}
		}
	}
}
