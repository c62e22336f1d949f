package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// stormStates is what a storm cycles each user through: every step changes
// availability, activity or the note, the three things a bridge shows.
var stormStates = []Presence{
	{Availability: "Busy", Activity: sfb.ActivityInAMeeting},
	{Availability: "Online"},
	{Availability: "DoNotDisturb", Activity: sfb.ActivityPresenting},
	{Availability: "Away", Note: "Back after lunch"},
	{Availability: "BeRightBack"},
	{Availability: "Online", Note: "Heads down today"},
}

// PresenceStorm changes the presence of users, rate changes per second
// spread evenly over them in turn, until ctx ends; it returns how many
// changes it made. onChange, when not nil, is called after each change
// with the state set (for the bench to time how long it takes to arrive).
func (s *Server) PresenceStorm(ctx context.Context, rate int, users []sfb.URI, onChange func(sfb.URI, Presence)) (int, error) {
	if rate <= 0 || len(users) == 0 {
		return 0, errors.New("presence storm: want a positive rate and at least one user")
	}
	const tick = 10 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	done := 0
	for {
		select {
		case <-ctx.Done():
			return done, nil
		case now := <-t.C:
			due := int(now.Sub(start).Seconds() * float64(rate))
			for ; done < due; done++ {
				uri := users[done%len(users)]
				p := stormStates[(done/len(users))%len(stormStates)]
				if err := s.SetPresence(uri, p); err != nil {
					return done, fmt.Errorf("presence storm: %w", err)
				}
				if onChange != nil {
					onChange(uri, p)
				}
			}
		}
	}
}

// firstUsers is up to n users of the directory in address order.
func (s *Server) firstUsers(n int) []sfb.URI {
	s.mu.Lock()
	all := make([]sfb.URI, 0, len(s.users))
	for u := range s.users {
		all = append(all, u)
	}
	s.mu.Unlock()
	slices.Sort(all)
	return all[:min(n, len(all))]
}
