package bridge

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

func overview(inError map[string]int) *migration.Overview {
	o := &migration.Overview{}
	for name, n := range inError {
		w := migration.WaveSummary{Name: name}
		w.InError, w.SignedIn = n, 10
		o.Waves = append(o.Waves, w)
	}
	return o
}

func TestWaveErrorNoticeOncePerRise(t *testing.T) {
	var w waveErrors
	assert.Empty(t, w.notices(overview(map[string]int{"w1": 0, "w2": 0})))
	// Three logins of w1 failed within one interval: one notice.
	got := w.notices(overview(map[string]int{"w1": 3, "w2": 0}))
	require.Len(t, got, 1)
	assert.Contains(t, got[0], "**Wave w1**: 3 of 10")
	assert.Contains(t, got[0], "3 more")
	// Still three: no new notice; down to one: none either.
	assert.Empty(t, w.notices(overview(map[string]int{"w1": 3, "w2": 0})))
	assert.Empty(t, w.notices(overview(map[string]int{"w1": 1, "w2": 0})))
	// A rise from the fall is a new rise; w2 rises at the same time.
	got = w.notices(overview(map[string]int{"w1": 2, "w2": 1}))
	require.Len(t, got, 2)
	assert.Contains(t, strings.Join(got, "\n"), "**Wave w1**: 2 of 10 signed-in logins are in an error state now (one more")
	assert.Contains(t, strings.Join(got, "\n"), "**Wave w2**: 1 of 10")
}

func TestNotifyAdminsReachesAdminManagementRoomsOnly(t *testing.T) {
	e := newTestEnv(t)
	bot := withAdminBot(e)
	e.br.Config.Permissions["@lead:example.org"] = &bridgeconfig.PermissionLevelAdmin
	e.br.Config.Permissions["ops.example.org"] = &bridgeconfig.PermissionLevelAdmin
	for user, room := range map[id.UserID]id.RoomID{
		"@lead:example.org":     "!lead:example.org",
		"@anna:ops.example.org": "!anna:example.org",
		"@alice:example.org":    "!alice:example.org", // not an admin
		"@bert:ops.example.org": "",                   // admin without a management room
	} {
		u, err := e.br.GetUserByMXID(e.ctx, user)
		require.NoError(t, err)
		u.ManagementRoom = room
		require.NoError(t, u.Save(e.ctx))
	}
	n, err := e.conn.NotifyAdmins(e.ctx, "**Wave w1**: 3 in error")
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	for _, room := range []id.RoomID{"!lead:example.org", "!anna:example.org"} {
		assert.Equal(t, []string{"m.notice **Wave w1**: 3 in error"}, bot.messages(room))
	}
	assert.Empty(t, bot.messages("!alice:example.org"), "a non-admin got an admin notice")

	e.conn.ModeChangeFailed(e.ctx, `wave "w1" to matrix_only`, errors.New("database is locked"))
	got := bot.messages("!lead:example.org")
	require.Len(t, got, 2)
	assert.Contains(t, got[1], `Mode change failed**: wave "w1" to matrix_only: database is locked`)

	e.conn.Config.AdminNotices.Enabled = false
	n, err = e.conn.NotifyAdmins(e.ctx, "quiet")
	require.NoError(t, err)
	assert.Zero(t, n)
}

// The watcher end to end: logins of a wave that go into error (their SfB
// session interrupted) give the admins one notice per rise, read from the
// state each client keeps (not bridgev2's unlocked copy, which -race
// would flag while the sessions send states).
func TestWaveErrorWatcherNoticesEachRise(t *testing.T) {
	e := newTestEnv(t)
	require.NoError(t, e.conn.db.ApplyImport(e.ctx, database.ImportChange{
		NewWaves: []string{"w1"},
		People: []database.Person{
			{Address: "alice@contoso.com", MatrixUser: "@alice:example.org", Wave: "w1"},
			{Address: "bob@contoso.com", MatrixUser: "@bob:example.org", Wave: "w1"},
		},
	}, database.AuditEvent{Action: database.AuditImport, Actor: "test"}))
	_, _, as := e.mustLogin()
	_, _, bs := e.loginBob()
	bot := withAdminBot(e)
	e.br.Config.Permissions["@lead:example.org"] = &bridgeconfig.PermissionLevelAdmin
	lead, err := e.br.GetUserByMXID(e.ctx, "@lead:example.org")
	require.NoError(t, err)
	lead.ManagementRoom = "!lead:example.org"
	require.NoError(t, lead.Save(e.ctx))

	// The connector's own watcher ticks every minute; this one, on the
	// same connector, every few milliseconds.
	const interval = 5 * time.Millisecond
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.conn.watchWaveErrors(ctx, AdminNoticesConfig{Enabled: true, Interval: interval})
	}()
	t.Cleanup(func() { cancel(); <-done })

	notices := func() []string { return bot.messages("!lead:example.org") }
	waitNotices := func(n int) []string {
		t.Helper()
		require.Eventually(t, func() bool { return len(notices()) >= n }, 5*time.Second, time.Millisecond)
		// No second notice for the same rise, over many intervals.
		assert.Never(t, func() bool { return len(notices()) > n }, 40*interval, interval)
		got := notices()
		require.Len(t, got, n)
		return got
	}
	assert.Never(t, func() bool { return len(notices()) > 0 }, 40*interval, interval, "both logins connected")

	as.emit(sfb.SessionState{Connected: false, Err: errors.New("event channel reset")})
	got := waitNotices(1)
	assert.Contains(t, got[0], "**Wave w1**: 1 of 2 signed-in logins are in an error state now (one more since the last notice)")

	bs.emit(sfb.SessionState{Connected: false, Err: errors.New("event channel reset")})
	got = waitNotices(2)
	assert.Contains(t, got[1], "**Wave w1**: 2 of 2 signed-in logins are in an error state now (one more since the last notice)")

	// Alice connects again (a fall: no notice), then fails again: a new rise.
	as.emit(sfb.SessionState{Connected: true})
	require.Eventually(t, func() bool {
		o, err := e.conn.Migration().Overview(e.ctx)
		return err == nil && len(o.Waves) == 1 && o.Waves[0].InError == 1
	}, 5*time.Second, time.Millisecond)
	assert.Never(t, func() bool { return len(notices()) > 2 }, 100*interval, interval, "a fall is not notified")
	as.emit(sfb.SessionState{Connected: false, Err: errors.New("event channel reset")})
	got = waitNotices(3)
	assert.Contains(t, got[2], "**Wave w1**: 2 of 2 signed-in logins are in an error state now (one more since the last notice)")
}
