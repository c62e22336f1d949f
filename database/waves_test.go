package database

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func adminAudit(action string) AuditEvent {
	return AuditEvent{Actor: "@lead:example.org", Origin: "192.0.2.7", Action: action, Detail: "test"}
}

func TestModeTablesImportAndModes(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		empty, err := db.ReadModeTables(ctx)
		require.NoError(t, err)
		assert.Equal(t, "sfb_only", empty.DefaultMode)
		assert.Empty(t, empty.People)
		gen0 := empty.Generation

		start := time.Date(2027, 3, 1, 8, 0, 0, 0, time.UTC)
		require.NoError(t, db.PutWave(ctx, "Welle 1", start, adminAudit(AuditWaveSet)))
		require.NoError(t, db.ApplyImport(ctx, ImportChange{
			NewWaves: []string{"Welle 1", "Welle 2"}, // Welle 1 exists: kept as it is
			People: []Person{
				{Address: "alice@contoso.com", MatrixUser: "@alice:example.org", Wave: "Welle 1"},
				{Address: "bob@contoso.com", MatrixUser: "@bob:example.org", Wave: "Welle 2", Mode: "matrix_only"},
				{Address: "carol@contoso.com", MatrixUser: "@carol:example.org"},
			},
		}, adminAudit(AuditImport)))
		require.NoError(t, db.SetWaveMode(ctx, "Welle 1", "coexistence", adminAudit(AuditWaveModeSet)))
		require.NoError(t, db.SetPersonMode(ctx, "carol@contoso.com", "matrix_only", adminAudit(AuditPersonModeSet)))
		require.NoError(t, db.SetDefaultMode(ctx, "coexistence", adminAudit(AuditDefaultModeSet)))

		tables, err := db.ReadModeTables(ctx)
		require.NoError(t, err)
		assert.Equal(t, gen0+5, tables.Generation, "every change counts once")
		gen, err := db.ModeGeneration(ctx)
		require.NoError(t, err)
		assert.Equal(t, tables.Generation, gen)
		assert.Equal(t, "coexistence", tables.DefaultMode)
		require.Len(t, tables.Waves, 2)
		assert.True(t, start.Equal(tables.Waves[0].PlannedStart), "import changed an existing wave's start")
		assert.Equal(t, "coexistence", tables.Waves[0].Mode)
		assert.True(t, tables.Waves[1].PlannedStart.IsZero())
		require.Len(t, tables.People, 3)
		assert.Equal(t, Person{Address: "carol@contoso.com", MatrixUser: "@carol:example.org", Mode: "matrix_only"},
			withoutTime(tables.People[2]))

		bob, err := db.GetPerson(ctx, "bob@contoso.com")
		require.NoError(t, err)
		assert.Equal(t, "Welle 2", bob.Wave)
		_, err = db.GetPerson(ctx, "nobody@contoso.com")
		assert.ErrorIs(t, err, ErrNotFound)
		_, err = db.GetWave(ctx, "Welle 9")
		assert.ErrorIs(t, err, ErrNotFound)
		assert.ErrorIs(t, db.SetWaveMode(ctx, "Welle 9", "coexistence", adminAudit(AuditWaveModeSet)), ErrNotFound)
		assert.ErrorIs(t, db.SetPersonMode(ctx, "nobody@contoso.com", "coexistence", adminAudit(AuditPersonModeSet)), ErrNotFound)

		// A re-import replaces a person's row: an empty mode clears the override.
		require.NoError(t, db.ApplyImport(ctx, ImportChange{People: []Person{
			{Address: "bob@contoso.com", MatrixUser: "@bob:example.org", Wave: "Welle 1"},
		}}, adminAudit(AuditImport)))
		bob, err = db.GetPerson(ctx, "bob@contoso.com")
		require.NoError(t, err)
		assert.Equal(t, Person{Address: "bob@contoso.com", MatrixUser: "@bob:example.org", Wave: "Welle 1"}, withoutTime(bob))

		events, err := db.ListAudit(ctx, "", 100)
		require.NoError(t, err)
		require.Len(t, events, 6, "each change has its audit entry")
		assert.Equal(t, AuditImport, events[0].Action)
		assert.Equal(t, "@lead:example.org", events[0].Actor)
		assert.Equal(t, "192.0.2.7", events[0].Origin)
	})
}

// A failure anywhere in an import leaves no trace: no person, no wave, no
// audit entry, no generation change.
func TestApplyImportIsAllOrNothing(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		before, err := db.ReadModeTables(ctx)
		require.NoError(t, err)
		err = db.ApplyImport(ctx, ImportChange{
			NewWaves: []string{"Welle 1"},
			People: []Person{
				{Address: "alice@contoso.com", MatrixUser: "@alice:example.org", Wave: "Welle 1"},
				// The same Matrix user for a second address breaks the unique key.
				{Address: "alice2@contoso.com", MatrixUser: "@alice:example.org", Wave: "Welle 1"},
			},
		}, adminAudit(AuditImport))
		require.Error(t, err)
		after, err := db.ReadModeTables(ctx)
		require.NoError(t, err)
		assert.Equal(t, before, after)
		events, err := db.ListAudit(ctx, "", 10)
		require.NoError(t, err)
		assert.Empty(t, events)

		// So does a mode the schema does not know, and an unknown audit action.
		assert.Error(t, db.SetDefaultMode(ctx, "teams_only", adminAudit(AuditDefaultModeSet)))
		assert.Error(t, db.SetDefaultMode(ctx, "coexistence", adminAudit("mode_guess")))
		after, err = db.ReadModeTables(ctx)
		require.NoError(t, err)
		assert.Equal(t, before, after)
	})
}

func withoutTime(p Person) Person {
	p.UpdatedAt = time.Time{}
	return p
}
