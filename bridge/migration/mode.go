// Package migration holds the migration team's model: each person's mode
// (sfb_only, coexistence, matrix_only), waves, the default mode, and the
// CSV import that assigns people to waves. It answers the bridge's question
// "what is this person's mode now" from memory and tells it about changes,
// which it finds by polling one counter in the database, so that a change
// made by any process (a standby too) is seen within the poll interval.
package migration

import (
	"fmt"
	"strings"
)

// Mode is how far a person has moved from SfB to Matrix.
type Mode string

// The modes, as stored and as the API and CSV spell them.
const (
	// SfBOnly: not migrated; the person is a ghost in Matrix.
	SfBOnly Mode = "sfb_only"
	// Coexistence: both clients; the bridge mirrors.
	Coexistence Mode = "coexistence"
	// MatrixOnly: migrated; the bridge is the person's only SfB endpoint.
	MatrixOnly Mode = "matrix_only"
)

// Modes lists the modes in the order of a migration; a new slice each
// time, so that no caller can change another's.
func Modes() []Mode { return []Mode{SfBOnly, Coexistence, MatrixOnly} }

// ParseMode accepts a mode's name in any case, with "-" or " " for "_".
func ParseMode(s string) (Mode, error) {
	norm := strings.NewReplacer("-", "_", " ", "_").Replace(strings.ToLower(strings.TrimSpace(s)))
	for _, m := range Modes() {
		if norm == string(m) {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown mode %q: use sfb_only, coexistence or matrix_only", s)
}

// Source says where an effective mode comes from.
type Source string

// The sources of a mode, strongest first.
const (
	FromPerson  Source = "person"
	FromWave    Source = "wave"
	FromDefault Source = "default"
)

// Effective resolves a person's mode: their own mode if set, else their
// wave's if set, else the default.
func Effective(person, wave, def Mode) (Mode, Source) {
	switch {
	case person != "":
		return person, FromPerson
	case wave != "":
		return wave, FromWave
	default:
		return def, FromDefault
	}
}
