package database

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func actions(events []AuditEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.LoginID + ":" + e.Action
	}
	return out
}

func TestAuditOrderingFilterAndLimit(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		base := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
		// Inserted out of time order; two events share a millisecond.
		for _, e := range []AuditEvent{
			{LoginID: "alice", MatrixUser: "@alice:example.org", Action: AuditTokenRenewed, Time: base.Add(2 * time.Hour)},
			{LoginID: "alice", MatrixUser: "@alice:example.org", Action: AuditLogin, Detail: "first sign-in", Time: base},
			{LoginID: "bob", MatrixUser: "@bob:example.org", Action: AuditLoginFailed, Detail: "401", Time: base.Add(time.Hour)},
			{LoginID: "alice", MatrixUser: "@alice:example.org", Action: AuditReloginRequired, Time: base.Add(3 * time.Hour)},
			{LoginID: "alice", MatrixUser: "@alice:example.org", Action: AuditLogout, Time: base.Add(3 * time.Hour)},
		} {
			require.NoError(t, db.AddAudit(ctx, e))
		}

		all, err := db.ListAudit(ctx, "alice", 10)
		require.NoError(t, err)
		assert.Equal(t, []string{"alice:logout", "alice:relogin_required", "alice:token_renewed", "alice:login"}, actions(all))
		last := all[len(all)-1]
		assert.Equal(t, "first sign-in", last.Detail)
		assert.Equal(t, "@alice:example.org", last.MatrixUser)
		assert.True(t, base.Equal(last.Time))
		assert.NotZero(t, last.ID)
		assert.Greater(t, all[0].ID, all[1].ID, "same-millisecond events not newest-insert first")

		two, err := db.ListAudit(ctx, "alice", 2)
		require.NoError(t, err)
		assert.Equal(t, actions(all[:2]), actions(two))

		everyone, err := db.ListAudit(ctx, "", 3)
		require.NoError(t, err)
		assert.Equal(t, []string{"alice:logout", "alice:relogin_required", "alice:token_renewed"}, actions(everyone))
		everyone, err = db.ListAudit(ctx, "", 100)
		require.NoError(t, err)
		assert.Len(t, everyone, 5)
		assert.Equal(t, "bob:login_failed", actions(everyone)[3])

		none, err := db.ListAudit(ctx, "nobody", 10)
		require.NoError(t, err)
		assert.Empty(t, none)

		for _, limit := range []int{0, -1, MaxAuditList + 1} {
			_, err := db.ListAudit(ctx, "alice", limit)
			assert.Errorf(t, err, "limit %d accepted", limit)
		}

	})
}

func TestAddAuditValidatesAndCleans(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		for _, tc := range []struct {
			name string
			in   AuditEvent
		}{
			{"unknown action", AuditEvent{LoginID: "alice", Action: "login_succeeded"}},
			{"empty action", AuditEvent{LoginID: "alice"}},
			{"nobody", AuditEvent{Action: AuditLogin}},
		} {
			assert.Errorf(t, db.AddAudit(ctx, tc.in), tc.name)
		}

		// Outside text may be anything; the event must still be kept.
		long := strings.Repeat("é", MaxAuditDetail) // 2 bytes each
		require.NoError(t, db.AddAudit(ctx, AuditEvent{MatrixUser: "@carol:example.org", Action: AuditLoginFailed, Detail: "bad\x00byte \xff\xfe end"}))
		require.NoError(t, db.AddAudit(ctx, AuditEvent{LoginID: "dave", Action: AuditLoginFailed, Detail: long}))
		before := time.Now()

		events, err := db.ListAudit(ctx, "", 10)
		require.NoError(t, err)
		require.Len(t, events, 2)
		byUser := map[string]AuditEvent{}
		for _, e := range events {
			byUser[e.LoginID+e.MatrixUser] = e
		}
		carol := byUser["@carol:example.org"]
		assert.Equal(t, "bad\uFFFDbyte \uFFFD end", carol.Detail)
		assert.WithinDuration(t, before, carol.Time, time.Minute, "zero Time not set to now")
		dave := byUser["dave"]
		assert.LessOrEqual(t, len(dave.Detail), MaxAuditDetail)
		assert.Greater(t, len(dave.Detail), MaxAuditDetail-4)
		assert.True(t, utf8.ValidString(dave.Detail))
	})
}
