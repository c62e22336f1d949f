package migration

import (
	"context"
	"sort"
	"strings"
)

// PeopleQuery selects people for the dashboard's list.
type PeopleQuery struct {
	// Text matches a part of the address, Matrix ID, wave or last error,
	// ignoring case; "" matches everyone.
	Text string
	// Status, when set, keeps only people whose login has it.
	Status LoginStatus
	// Limit caps the people returned (the count is of all matches).
	Limit int
}

// People returns the assigned people matching q, those in error first, then
// by address, and how many matched in all.
func (s *Service) People(ctx context.Context, q PeopleQuery) ([]PersonView, int, error) {
	snap, err := s.current(ctx)
	if err != nil {
		return nil, 0, err
	}
	text := strings.ToLower(strings.TrimSpace(q.Text))
	found := []PersonView{}
	for address := range snap.people {
		view := s.view(snap, address)
		if q.Status != "" && view.Login.Status != q.Status {
			continue
		}
		if text != "" && !strings.Contains(strings.ToLower(view.Address+"\n"+string(view.MatrixUser)+"\n"+view.Wave+"\n"+view.Login.Error), text) {
			continue
		}
		found = append(found, view)
	}
	sort.Slice(found, func(i, j int) bool {
		ei, ej := found[i].Login.Status == LoginError, found[j].Login.Status == LoginError
		if ei != ej {
			return ei
		}
		return found[i].Address < found[j].Address
	})
	total := len(found)
	if q.Limit > 0 && len(found) > q.Limit {
		found = found[:q.Limit]
	}
	return found, total, nil
}
