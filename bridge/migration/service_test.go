package migration

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/lib/pq"
	_ "github.com/mattn/go-sqlite3"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var lead = Actor{Who: "@lead:example.org", From: "192.0.2.7"}

// newDB opens an upgraded SQLite database; database/ tests the same
// queries on PostgreSQL.
func newDB(t *testing.T) *database.DB {
	t.Helper()
	raw, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "bridge.db")+"?_txlock=immediate&_journal_mode=WAL&_busy_timeout=5000")
	require.NoError(t, err)
	t.Cleanup(func() { _ = raw.Close() })
	db, err := database.New(raw, database.SQLite, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, db.Upgrade(context.Background()))
	return db
}

const wave1 = "sip_address;matrix_id;wave;mode\r\n" +
	"alice@contoso.com;@alice:example.org;Welle 1;\r\n" +
	"bob@contoso.com;@bob:example.org;Welle 1;matrix_only\r\n" +
	"carol@contoso.com;@carol:example.org;;\r\n"

func TestImportDryRunChangesNothing(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	s := New(db, zerolog.Nop(), Options{})
	before, err := db.ReadModeTables(ctx)
	require.NoError(t, err)

	report, err := s.Import(ctx, []byte(wave1), true, lead)
	require.NoError(t, err)
	assert.True(t, report.DryRun)
	assert.False(t, report.Applied)
	assert.Equal(t, 3, report.Rows)
	assert.Equal(t, 3, report.New)
	assert.Equal(t, []string{"Welle 1"}, report.NewWaves)
	assert.Empty(t, report.Errors)

	after, err := db.ReadModeTables(ctx)
	require.NoError(t, err)
	assert.Equal(t, before, after, "a dry run changed the tables")
	assert.Equal(t, SfBOnly, s.ModeOf("bob@contoso.com"))

	events, err := db.ListAudit(ctx, "", 10)
	require.NoError(t, err)
	require.Len(t, events, 1)
	assert.Equal(t, database.AuditImportDryRun, events[0].Action)
	assert.Equal(t, lead.Who, events[0].Actor)
	assert.Equal(t, lead.From, events[0].Origin)
}

func TestImportWithOneBadRowChangesNothing(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	s := New(db, zerolog.Nop(), Options{})
	bad := wave1 + "dave@contoso.com;@dave:example.org;Welle 2;teams_only\r\n"
	report, err := s.Import(ctx, []byte(bad), false, lead)
	require.ErrorIs(t, err, ErrInvalidImport)
	assert.False(t, report.Applied)
	require.Len(t, report.Errors, 1)
	assert.Equal(t, 5, report.Errors[0].Line)

	tables, err := db.ReadModeTables(ctx)
	require.NoError(t, err)
	assert.Empty(t, tables.People)
	assert.Empty(t, tables.Waves)
	events, err := db.ListAudit(ctx, "", 10)
	require.NoError(t, err)
	require.Len(t, events, 1, "a refused import is audited")
	assert.Contains(t, events[0].Detail, "refused")
}

func TestImportChecksMatrixIDsAgainstTheDatabase(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	s := New(db, zerolog.Nop(), Options{})
	_, err := s.Import(ctx, []byte(wave1), false, lead)
	require.NoError(t, err)
	// Bob's Matrix ID for another address: the real run would break the
	// unique key, so the dry run already says so, with the line.
	report, err := s.Import(ctx, []byte("sip_address,matrix_id,wave\nalice@contoso.com,@alice:example.org,Welle 2\nrobert@contoso.com,@bob:example.org,Welle 2\n"), true, lead)
	require.NoError(t, err)
	require.Len(t, report.Errors, 1)
	assert.Equal(t, 3, report.Errors[0].Line)
	assert.Contains(t, report.Errors[0].Reason, "belongs to bob@contoso.com")
	assert.Equal(t, 1, report.Changed)
	assert.Equal(t, []string{"Welle 2"}, report.NewWaves)
}

// Person override > wave mode > default, for every combination.
func TestEffectiveModeResolution(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	s := New(db, zerolog.Nop(), Options{})
	_, err := s.Import(ctx, []byte(wave1), false, lead)
	require.NoError(t, err)
	check := func(alice, bob, carol, stranger Mode) {
		t.Helper()
		assert.Equal(t, alice, s.ModeOf("sip:Alice@contoso.com"), "alice: wave, no override")
		assert.Equal(t, bob, s.ModeOf("bob@contoso.com"), "bob: wave and override")
		assert.Equal(t, carol, s.ModeOf("carol@contoso.com"), "carol: no wave")
		assert.Equal(t, stranger, s.ModeOf("stranger@contoso.com"), "someone nobody assigned")
	}
	check(SfBOnly, MatrixOnly, SfBOnly, SfBOnly)
	require.NoError(t, s.SetWaveMode(ctx, "Welle 1", Coexistence, lead))
	check(Coexistence, MatrixOnly, SfBOnly, SfBOnly)
	require.NoError(t, s.SetDefaultMode(ctx, MatrixOnly, lead))
	check(Coexistence, MatrixOnly, MatrixOnly, MatrixOnly)
	require.NoError(t, s.SetPersonMode(ctx, "bob@contoso.com", "", lead))
	check(Coexistence, Coexistence, MatrixOnly, MatrixOnly)
	require.NoError(t, s.SetPersonMode(ctx, "carol@contoso.com", SfBOnly, lead))
	check(Coexistence, Coexistence, SfBOnly, MatrixOnly)
	require.NoError(t, s.SetWaveMode(ctx, "Welle 1", "", lead))
	check(MatrixOnly, MatrixOnly, SfBOnly, MatrixOnly)

	mode, ok := s.ModeOfMatrixUser("@carol:example.org")
	assert.True(t, ok)
	assert.Equal(t, SfBOnly, mode)
	_, ok = s.ModeOfMatrixUser("@stranger:example.org")
	assert.False(t, ok)

	p, err := s.Person(ctx, "carol@contoso.com")
	require.NoError(t, err)
	assert.Equal(t, FromPerson, p.Source)
	p, err = s.Person(ctx, "alice@contoso.com")
	require.NoError(t, err)
	assert.Equal(t, FromDefault, p.Source)

	assert.ErrorIs(t, s.SetWaveMode(ctx, "Welle 9", Coexistence, lead), ErrNotFound)
	assert.ErrorIs(t, s.SetPersonMode(ctx, "stranger@contoso.com", Coexistence, lead), ErrNotFound)
}

// A change made by another process (an admin on the active bridge, seen
// by a standby) reaches this process's subscribers at its next poll: two
// connection pools on one database, SQLite and PostgreSQL.
func TestChangesFromAnotherProcessAreNotified(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) (*database.DB, *database.DB){
		"sqlite3": func(t *testing.T) (*database.DB, *database.DB) {
			path := "file:" + filepath.Join(t.TempDir(), "bridge.db") + "?_txlock=immediate&_journal_mode=WAL&_busy_timeout=5000"
			return openDB(t, "sqlite3", path, database.SQLite), openDB(t, "sqlite3", path, database.SQLite)
		},
		"postgres": func(t *testing.T) (*database.DB, *database.DB) {
			dsn := pgtest.Start(t).NewDatabase(t)
			return openDB(t, "postgres", dsn, database.Postgres), openDB(t, "postgres", dsn, database.Postgres)
		},
	} {
		t.Run(name, func(t *testing.T) {
			active, standby := open(t)
			testChangesFromAnotherProcess(t, active, standby)
		})
	}
}

func openDB(t *testing.T, driver, dsn string, dialect database.Dialect) *database.DB {
	t.Helper()
	raw, err := sql.Open(driver, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = raw.Close() })
	db, err := database.New(raw, dialect, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, db.Upgrade(context.Background()))
	return db
}

func testChangesFromAnotherProcess(t *testing.T, activeDB, standbyDB *database.DB) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writer := New(activeDB, zerolog.Nop(), Options{})
	_, err := writer.Import(ctx, []byte(wave1), false, lead)
	require.NoError(t, err)

	reader := New(standbyDB, zerolog.Nop(), Options{PollInterval: 20 * time.Millisecond})
	var mu sync.Mutex
	var got []Change
	stop := reader.Subscribe(func(batch []Change) {
		mu.Lock()
		got = append(got, batch...)
		mu.Unlock()
	})
	defer stop()
	go reader.Run(ctx)
	require.Eventually(t, func() bool { return reader.ModeOf("bob@contoso.com") == MatrixOnly }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1
	}, 5*time.Second, 10*time.Millisecond, "the first load reports bob's own mode")
	mu.Lock()
	got = nil
	mu.Unlock()

	require.NoError(t, writer.SetWaveMode(ctx, "Welle 1", Coexistence, lead))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	}, 5*time.Second, 10*time.Millisecond)
	mu.Lock()
	assert.Equal(t, []Change{{Address: "alice@contoso.com", MatrixUser: "@alice:example.org", From: SfBOnly, To: Coexistence}}, got,
		"only alice changes: bob keeps his own mode")
	mu.Unlock()
	assert.Equal(t, Coexistence, reader.ModeOf("alice@contoso.com"))
}

func TestOverviewCountsModesAndLogins(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	logins := map[string]Login{
		"alice@contoso.com": {Status: LoginConnected, State: "CONNECTED"},
		"bob@contoso.com":   {Status: LoginError, State: "BAD_CREDENTIALS", Error: "sfb-password-wrong"},
	}
	s := New(db, zerolog.Nop(), Options{Logins: func(a string) Login {
		if l, ok := logins[a]; ok {
			return l
		}
		return Login{Status: LoginNone}
	}})
	_, err := s.Import(ctx, []byte(wave1), false, lead)
	require.NoError(t, err)
	start := time.Date(2027, 3, 1, 8, 0, 0, 0, time.UTC)
	require.NoError(t, s.PutWave(ctx, "Welle 1", start, lead))
	require.NoError(t, s.PutWave(ctx, "Welle 2", time.Time{}, lead))

	o, err := s.Overview(ctx)
	require.NoError(t, err)
	require.Len(t, o.Waves, 2)
	w1 := o.Waves[0]
	assert.Equal(t, "Welle 1", w1.Name)
	assert.True(t, start.Equal(*w1.PlannedStart))
	assert.Equal(t, 2, w1.Assigned)
	assert.Equal(t, map[Mode]int{SfBOnly: 1, Coexistence: 0, MatrixOnly: 1}, w1.ByMode)
	assert.Equal(t, [3]int{2, 1, 1}, [3]int{w1.SignedIn, w1.Connected, w1.InError})
	assert.Equal(t, 0, o.Waves[1].Assigned)
	assert.Nil(t, o.Waves[1].PlannedStart)
	assert.Equal(t, 1, o.NoWave.Assigned)

	d, err := s.Wave(ctx, "Welle 1")
	require.NoError(t, err)
	require.Len(t, d.People, 2)
	assert.Equal(t, "bob@contoso.com", d.People[1].Address)
	assert.Equal(t, "sfb-password-wrong", d.People[1].Login.Error)
	_, err = s.Wave(ctx, "Welle 9")
	assert.ErrorIs(t, err, ErrNotFound)
}

// A subscriber that is slow to handle changes loses none and holds up no
// other subscriber; each sees the batches in order.
func TestSlowSubscriberLosesNoChange(t *testing.T) {
	ctx := context.Background()
	s := New(newDB(t), zerolog.Nop(), Options{})
	_, err := s.Import(ctx, []byte(wave1), false, lead)
	require.NoError(t, err)

	release := make(chan struct{})
	var mu sync.Mutex
	var slow, fast []Mode
	stopSlow := s.Subscribe(func(batch []Change) {
		<-release
		mu.Lock()
		slow = append(slow, batch[0].To)
		mu.Unlock()
	})
	defer stopSlow()
	stopFast := s.Subscribe(func(batch []Change) {
		mu.Lock()
		fast = append(fast, batch[0].To)
		mu.Unlock()
	})
	defer stopFast()

	// More batches than any fixed buffer a subscriber might have.
	var modes []Mode
	for i := range 100 {
		modes = append(modes, []Mode{Coexistence, MatrixOnly, SfBOnly}[i%3])
	}
	for _, m := range modes {
		require.NoError(t, s.SetPersonMode(ctx, "carol@contoso.com", m, lead))
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(fast) == len(modes)
	}, 10*time.Second, 5*time.Millisecond, "the fast subscriber waited for the slow one")
	close(release)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(slow) == len(modes)
	}, 5*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, modes, fast)
	assert.Equal(t, modes, slow)
}
