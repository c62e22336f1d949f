package migration

import (
	"context"
	"fmt"
	"sort"
	"time"

	"maunium.net/go/mautrix/id"
)

// Counts sums up a group of people.
type Counts struct {
	Assigned int `json:"assigned"`
	// ByMode counts effective modes; every mode is present.
	ByMode map[Mode]int `json:"by_mode"`
	// SignedIn have a bridge login; Connected of them are connected now,
	// InError need the person or an operator.
	SignedIn  int `json:"signed_in"`
	Connected int `json:"connected"`
	InError   int `json:"in_error"`
}

func newCounts() Counts {
	c := Counts{ByMode: map[Mode]int{}}
	for _, m := range Modes() {
		c.ByMode[m] = 0
	}
	return c
}

func (c *Counts) add(mode Mode, login Login) {
	c.Assigned++
	c.ByMode[mode]++
	switch login.Status {
	case LoginConnected:
		c.SignedIn++
		c.Connected++
	case LoginConnecting:
		c.SignedIn++
	case LoginError:
		c.SignedIn++
		c.InError++
	}
}

// WaveSummary is a wave with its counts.
type WaveSummary struct {
	Name         string     `json:"name"`
	PlannedStart *time.Time `json:"planned_start"`
	Mode         Mode       `json:"mode,omitempty"`
	Counts
}

// PersonView is a person as the migration team sees them.
type PersonView struct {
	Address    string    `json:"sip_address"`
	MatrixUser id.UserID `json:"matrix_id,omitempty"`
	Wave       string    `json:"wave,omitempty"`
	// Mode is the effective mode, Source where it comes from, OwnMode the
	// person's own mode if they have one.
	Mode      Mode       `json:"mode"`
	Source    Source     `json:"mode_source"`
	OwnMode   Mode       `json:"own_mode,omitempty"`
	Assigned  bool       `json:"assigned"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
	Login     Login      `json:"login"`
	// Announcement is what the bridge bot told them when their wave
	// started; nil before.
	Announcement *Announced `json:"announcement,omitempty"`
}

// WaveDetail is a wave with every person in it.
type WaveDetail struct {
	WaveSummary
	People []PersonView `json:"people"`
	// NotSignedIn lists the addresses of the people without a bridge
	// login, whom the team may have to help.
	NotSignedIn []string `json:"not_signed_in"`
}

// Overview is every wave plus the people in none.
type Overview struct {
	DefaultMode Mode          `json:"default_mode"`
	Waves       []WaveSummary `json:"waves"`
	// NoWave counts the people assigned to no wave.
	NoWave Counts `json:"no_wave"`
}

// Overview lists the waves with their counts.
func (s *Service) Overview(ctx context.Context) (*Overview, error) {
	snap, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	byWave := map[string]*WaveSummary{}
	o := &Overview{DefaultMode: snap.def, NoWave: newCounts(), Waves: []WaveSummary{}}
	for _, name := range snap.waveNames {
		byWave[name] = s.summary(snap, name)
	}
	for address, p := range snap.people {
		counts := &o.NoWave
		if p.Wave != "" {
			counts = &byWave[p.Wave].Counts
		}
		counts.add(snap.effective[address], s.logins(address))
	}
	for _, name := range snap.waveNames {
		o.Waves = append(o.Waves, *byWave[name])
	}
	return o, nil
}

func (s *Service) summary(snap *snapshot, name string) *WaveSummary {
	w := snap.waves[name]
	sum := &WaveSummary{Name: name, Mode: Mode(w.Mode), Counts: newCounts()}
	if !w.PlannedStart.IsZero() {
		start := w.PlannedStart.UTC()
		sum.PlannedStart = &start
	}
	return sum
}

// Wave returns one wave with its people, sorted by address.
func (s *Service) Wave(ctx context.Context, name string) (*WaveDetail, error) {
	snap, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := snap.waves[name]; !ok {
		return nil, fmt.Errorf("there is no wave %q: %w", name, ErrNotFound)
	}
	d := &WaveDetail{WaveSummary: *s.summary(snap, name), People: []PersonView{}, NotSignedIn: []string{}}
	for address, p := range snap.people {
		if p.Wave != name {
			continue
		}
		view := s.view(snap, address)
		d.Counts.add(view.Mode, view.Login)
		d.People = append(d.People, view)
	}
	sort.Slice(d.People, func(i, j int) bool { return d.People[i].Address < d.People[j].Address })
	for _, p := range d.People {
		if p.Login.Status == LoginNone {
			d.NotSignedIn = append(d.NotSignedIn, p.Address)
		}
	}
	return d, nil
}

// Person returns what the bridge knows of an address. Someone nobody
// assigned is returned too (Assigned false, the default mode), since the
// team asks about people before their import.
func (s *Service) Person(ctx context.Context, address string) (*PersonView, error) {
	canon, err := canonical(address)
	if err != nil {
		return nil, invalid(fmt.Errorf("%q is not a SIP address (write it as name@domain): %w", address, err))
	}
	snap, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	view := s.view(snap, canon)
	return &view, nil
}

func (s *Service) view(snap *snapshot, address string) PersonView {
	v := PersonView{Address: address, Login: s.logins(address)}
	p, ok := snap.people[address]
	if !ok {
		v.Mode, v.Source = snap.def, FromDefault
		return v
	}
	v.Assigned = true
	v.MatrixUser = id.UserID(p.MatrixUser)
	v.Wave = p.Wave
	v.OwnMode = Mode(p.Mode)
	v.Mode, v.Source = snap.resolve(p)
	if p.Wave != "" {
		v.Announcement = s.announced(address, p.Wave)
	}
	updated := p.UpdatedAt.UTC()
	v.UpdatedAt = &updated
	return v
}
