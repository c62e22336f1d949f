package metrics

import (
	"time"
)

// historyMinutes is how far back Minutes looks.
const historyMinutes = 60

// maxErrors is how many recent errors RecentErrors keeps.
const maxErrors = 50

// Minute is what happened in one minute, for the dashboard's rates.
type Minute struct {
	Start            time.Time `json:"start"`
	MessagesToMatrix int       `json:"messages_to_matrix"`
	MessagesToSfB    int       `json:"messages_to_sfb"`
	MessagesFailed   int       `json:"messages_failed"`
	PresenceToMatrix int       `json:"presence_to_matrix"`
	PresenceToSfB    int       `json:"presence_to_sfb"`
}

// ErrorRecord is an error the bridge met, for the dashboard. Unlike a
// label, its text may name people: the dashboard is behind
// authentication.
type ErrorRecord struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Message string    `json:"message"`
}

// count adds to the current minute's bucket.
func (m *Metrics) count(add func(*Minute)) {
	start := m.now().Truncate(time.Minute)
	m.mu.Lock()
	defer m.mu.Unlock()
	b := &m.minutes[start.Unix()/60%historyMinutes]
	if !b.Start.Equal(start) {
		*b = Minute{Start: start}
	}
	add(b)
}

// Minutes returns the last hour minute by minute, oldest first, the
// current (incomplete) minute last; minutes without events are there with
// zero counts.
func (m *Metrics) Minutes() []Minute {
	if m == nil {
		return nil
	}
	now := m.now().Truncate(time.Minute)
	out := make([]Minute, 0, historyMinutes)
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := historyMinutes - 1; i >= 0; i-- {
		start := now.Add(-time.Duration(i) * time.Minute)
		b := m.minutes[start.Unix()/60%historyMinutes]
		if !b.Start.Equal(start) {
			b = Minute{Start: start}
		}
		out = append(out, b)
	}
	return out
}

// Error keeps err as one of the recent errors, of kind (what the bridge
// was doing: "message to_sfb", "sign-in", ...).
func (m *Metrics) Error(kind string, err error) {
	if m == nil || err == nil {
		return
	}
	rec := ErrorRecord{Time: m.now(), Kind: kind, Message: err.Error()}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.errs) < maxErrors {
		m.errs = append(m.errs, rec)
		return
	}
	m.errs[m.errNext] = rec
	m.errNext = (m.errNext + 1) % maxErrors
}

// RecentErrors returns the last errors, newest first.
func (m *Metrics) RecentErrors() []ErrorRecord {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ErrorRecord, 0, len(m.errs))
	for i := range m.errs {
		out = append(out, m.errs[(m.errNext+len(m.errs)-1-i)%len(m.errs)])
	}
	return out
}
