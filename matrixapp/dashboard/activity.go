package dashboard

import (
	"context"
	"sync"
	"time"
)

// Activity is where the page reads messages and presence updates per
// minute: a Sampler over the totals the bridge's metrics keep
// (bridge/metrics, Totals).
type Activity interface {
	// Minutes returns up to n whole minutes, oldest first.
	Minutes(n int) []Minute
}

// Minute is what the bridge carried in one minute.
type Minute struct {
	Start           time.Time
	Messages        uint64
	PresenceUpdates uint64
}

// Totals are counts since the process started.
type Totals struct {
	Messages        uint64
	PresenceUpdates uint64
}

// Sampler turns running totals into per-minute figures: it reads them at
// every minute's start and keeps the differences.
type Sampler struct {
	read func() Totals
	keep int
	now  func() time.Time

	mu      sync.Mutex
	last    Totals
	started bool
	minutes []Minute
}

// NewSampler samples read and keeps the last keep minutes.
func NewSampler(read func() Totals, keep int) *Sampler {
	return &Sampler{read: read, keep: keep, now: time.Now}
}

// Run samples at every minute's start until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	for {
		s.Sample()
		now := s.now()
		wait := now.Truncate(time.Minute).Add(time.Minute).Sub(now)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Sample reads the totals; the difference to the previous sample is the
// minute that just ended.
func (s *Sampler) Sample() {
	t := s.read()
	at := s.now().Truncate(time.Minute)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		s.minutes = append(s.minutes, Minute{
			Start:           at.Add(-time.Minute),
			Messages:        t.Messages - s.last.Messages,
			PresenceUpdates: t.PresenceUpdates - s.last.PresenceUpdates,
		})
		if len(s.minutes) > s.keep {
			s.minutes = s.minutes[len(s.minutes)-s.keep:]
		}
	}
	s.last, s.started = t, true
}

// Minutes implements Activity.
func (s *Sampler) Minutes(n int) []Minute {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n > len(s.minutes) {
		n = len(s.minutes)
	}
	return append([]Minute(nil), s.minutes[len(s.minutes)-n:]...)
}
