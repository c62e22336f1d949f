package migration

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
)

// ErrInvalidImport is returned by a real import whose file has bad rows;
// nothing was written, and the report lists every bad row.
var ErrInvalidImport = errors.New("the file has bad rows; nothing was changed")

// ImportReport is what an import found and did.
type ImportReport struct {
	DryRun  bool `json:"dry_run"`
	Applied bool `json:"applied"`
	// Rows counts the data rows read (good and bad).
	Rows   int        `json:"rows"`
	Errors []RowError `json:"errors"`
	// NewWaves are created by the import.
	NewWaves []string `json:"new_waves"`
	// New people, people whose wave, Matrix ID or mode changes, and
	// people the file leaves as they are.
	New       int `json:"new_people"`
	Changed   int `json:"changed_people"`
	Unchanged int `json:"unchanged_people"`
}

// Import reads an import file and checks it against the database. A dry
// run changes nothing; a real run writes every row in one transaction, or
// nothing when any row is bad (ErrInvalidImport, with the report). An
// error without a report means the file as a whole cannot be read. Each
// run, dry or not, goes to the audit log.
func (s *Service) Import(ctx context.Context, data []byte, dryRun bool, by Actor) (*ImportReport, error) {
	parsed, err := ParseCSV(data)
	if err != nil {
		return nil, invalid(err)
	}
	tables, err := s.db.ReadModeTables(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the current assignments: %w", err)
	}
	report := &ImportReport{DryRun: dryRun, Rows: len(parsed.Rows) + len(parsed.Errors), Errors: parsed.Errors, NewWaves: []string{}}
	change := database.ImportChange{}

	people := map[string]database.Person{}
	owner := map[string]string{}
	for _, p := range tables.People {
		people[p.Address] = p
		owner[p.MatrixUser] = p.Address
	}
	waves := map[string]bool{}
	for _, w := range tables.Waves {
		waves[w.Name] = true
	}
	for _, row := range parsed.Rows {
		if other, ok := owner[string(row.MatrixUser)]; ok && other != row.Address {
			report.Errors = append(report.Errors, RowError{Line: row.Line, Reason: fmt.Sprintf(
				"Matrix ID %s belongs to %s already; give %s another Matrix ID first (in this file or with mode set)", row.MatrixUser, other, other)})
			continue
		}
		if row.Wave != "" && !waves[row.Wave] {
			waves[row.Wave] = true
			report.NewWaves = append(report.NewWaves, row.Wave)
		}
		next := database.Person{Address: row.Address, MatrixUser: string(row.MatrixUser), Wave: row.Wave, Mode: string(row.Mode)}
		switch prev, ok := people[row.Address]; {
		case !ok:
			report.New++
		case prev.MatrixUser != next.MatrixUser || prev.Wave != next.Wave || prev.Mode != next.Mode:
			report.Changed++
		default:
			report.Unchanged++
		}
		change.People = append(change.People, next)
	}
	change.NewWaves = report.NewWaves
	sort.SliceStable(report.Errors, func(i, j int) bool { return report.Errors[i].Line < report.Errors[j].Line })

	action := database.AuditImport
	if dryRun {
		action = database.AuditImportDryRun
	}
	detail := fmt.Sprintf("%d rows, %d bad, %d new people, %d changed, %d new waves",
		report.Rows, len(report.Errors), report.New, report.Changed, len(report.NewWaves))
	audit := auditEvent(action, by, "", "", detail)
	if dryRun || len(report.Errors) > 0 {
		if !dryRun {
			audit.Detail = "refused: " + detail
		}
		if err := s.db.AddAudit(ctx, audit); err != nil {
			return nil, err
		}
		if !dryRun {
			return report, ErrInvalidImport
		}
		return report, nil
	}
	if err := s.db.ApplyImport(ctx, change, audit); err != nil {
		return nil, fmt.Errorf("nothing was changed: %w", err)
	}
	report.Applied = true
	s.afterWrite(ctx)
	return report, nil
}
