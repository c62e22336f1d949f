package migration

import (
	"sort"
	"time"

	"maunium.net/go/mautrix/id"
)

// Announced is what the bridge bot told a person about their wave's start
// (the bridge sends it; see docs/migration.md, "Announcements").
type Announced struct {
	// FirstSent is when the announcement went out, LastSent the latest
	// reminder; nil: not told (yet, or because they had signed in before).
	FirstSent *time.Time `json:"first_sent,omitempty"`
	LastSent  *time.Time `json:"last_sent,omitempty"`
	// Reminders counts the reminders after the announcement.
	Reminders int `json:"reminders"`
	// SignedIn is when the bridge first saw them signed in after their
	// wave started; nil: not yet.
	SignedIn *time.Time `json:"signed_in,omitempty"`
}

// AnnouncementsFunc tells what the person with the address was told about
// the wave; nil for nothing.
type AnnouncementsFunc func(address, wave string) *Announced

// Member is a person in a wave whose planned start has come.
type Member struct {
	Address    string
	MatrixUser id.UserID
	Wave       string
	// Mode is the person's effective mode, OwnMode their own (if set).
	Mode, OwnMode Mode
}

// StartedWaveMembers lists the people of every wave whose planned start is
// at or before now, sorted by address. It answers from memory.
func (s *Service) StartedWaveMembers(now time.Time) []Member {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Member
	for address, p := range s.snap.people {
		w, ok := s.snap.waves[p.Wave]
		if p.Wave == "" || !ok || w.PlannedStart.IsZero() || w.PlannedStart.After(now) {
			continue
		}
		out = append(out, Member{Address: address, MatrixUser: id.UserID(p.MatrixUser), Wave: p.Wave,
			Mode: s.snap.effective[address], OwnMode: Mode(p.Mode)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}
