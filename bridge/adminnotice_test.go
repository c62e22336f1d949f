package bridge

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
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
