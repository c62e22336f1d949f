package database

import (
	"context"
	"database/sql"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResumeState(t *testing.T) {
	upgraded(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		got, err := db.GetResumeState(ctx, "alice@contoso.com")
		require.NoError(t, err)
		assert.Empty(t, got, "none stored yet")

		steps := []struct {
			login, state, want string
		}{
			{"alice@contoso.com", `{"v":1,"events":"https://x/events?ack=1"}`, `{"v":1,"events":"https://x/events?ack=1"}`},
			{"alice@contoso.com", `{"v":1,"events":"https://x/events?ack=2"}`, `{"v":1,"events":"https://x/events?ack=2"}`},
			{"bob@contoso.com", "b-1", "b-1"},
			{"alice@contoso.com", "", ""}, // empty deletes
		}
		for _, s := range steps {
			require.NoError(t, db.PutResumeState(ctx, s.login, s.state))
			got, err := db.GetResumeState(ctx, s.login)
			require.NoError(t, err)
			assert.Equal(t, s.want, got, "%s after storing %q", s.login, s.state)
		}
		got, err = db.GetResumeState(ctx, "bob@contoso.com")
		require.NoError(t, err)
		assert.Equal(t, "b-1", got, "other logins untouched")

		require.NoError(t, db.DeleteResumeState(ctx, "bob@contoso.com"))
		require.NoError(t, db.DeleteResumeState(ctx, "bob@contoso.com"), "deleting twice")
		got, err = db.GetResumeState(ctx, "bob@contoso.com")
		require.NoError(t, err)
		assert.Empty(t, got)
		assert.Error(t, db.PutResumeState(ctx, "", "x"))
	})
}

// Upgrading a database at version 1 (with credentials) adds the table and
// keeps the rows; downgrading to 1 removes only it.
func TestResumeStateMigrationFromVersion1(t *testing.T) {
	forEachBackend(t, func(t *testing.T, raw *sql.DB, db *DB) {
		ctx := context.Background()
		require.NoError(t, db.Upgrade(ctx))
		require.NoError(t, db.Downgrade(ctx, 1))
		assert.False(t, tableExists(t, raw, db.Dialect(), "sfb_resume_state"))
		require.NoError(t, db.PutCredential(ctx, Credential{LoginID: "a@contoso.com", SignInAddress: "a@contoso.com"}))

		require.NoError(t, db.Upgrade(ctx))
		v, dirty, err := db.Version(ctx)
		require.NoError(t, err)
		assert.Equal(t, LatestVersion, v)
		assert.False(t, dirty)
		assert.True(t, tableExists(t, raw, db.Dialect(), "sfb_resume_state"))
		_, err = db.GetCredential(ctx, "a@contoso.com")
		require.NoError(t, err, "credentials survive the upgrade")
		require.NoError(t, db.PutResumeState(ctx, "a@contoso.com", "s"))

		require.NoError(t, db.Downgrade(ctx, 1))
		assert.False(t, tableExists(t, raw, db.Dialect(), "sfb_resume_state"))
		assert.True(t, tableExists(t, raw, db.Dialect(), "sfb_credential"))
	})
}
