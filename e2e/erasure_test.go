package e2e

import (
	"context"
	"database/sql"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/dbscan"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// TestErasePersonThroughAPI: the migration team erases one person who has
// a login, a portal and messages. The person is signed out of SfB, the
// bridge's database (every table, mautrix's and the connector's) names
// them no more, another person's data is untouched, and the audit log
// shows the erasure under a pseudonym.
func TestErasePersonThroughAPI(t *testing.T) {
	env := setup(t)
	gone := env.newPair(t, "erasee")
	kept := env.newPair(t, "erasekeeper")
	goneRoom := env.openPortal(t, gone, "hello erasee")
	keptRoom := env.openPortal(t, kept, "hello keeper")
	ctx, cancel := context.WithTimeout(context.Background(), 3*hop)
	defer cancel()
	for _, p := range []*pair{gone, kept} {
		room := goneRoom
		if p == kept {
			room = keptRoom
		}
		_, err := p.mx.Client.SendText(ctx, room, "reply of "+p.self.URI.Address())
		require.NoError(t, err)
		want := "reply of " + p.self.URI.Address()
		env.waitReceived(t, p, "the reply on SfB", func(r sim.Received) bool { return r.Message.Text == want })
	}
	secret := env.st.ProvisioningSecret
	csv := "sip_address;matrix_id;wave\nerasee@contoso.com;" + string(gone.mx.ID) + ";E2E Erasure\nerasekeeper@contoso.com;" + string(kept.mx.ID) + ";E2E Erasure\n"
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "POST", "/import?dry_run=false", secret, csv, nil))

	var plan struct {
		Address string `json:"sip_address"`
		Login   bool   `json:"login"`
		Portals int    `json:"portals"`
		Wave    string `json:"wave"`
		Pseudo  string `json:"pseudonym"`
	}
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "GET", "/people/erasee@contoso.com/erasure", secret, "", &plan))
	assert.True(t, plan.Login)
	assert.Equal(t, 1, plan.Portals)
	assert.Equal(t, "E2E Erasure", plan.Wave)
	assert.Equal(t, http.StatusBadRequest, migrationAPI(t, env, "DELETE", "/people/erasee@contoso.com", secret, "", nil), "erased without confirmation")

	var report struct {
		Pseudonym string `json:"pseudonym"`
		People    int    `json:"people"`
	}
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "DELETE", "/people/erasee@contoso.com?confirm=erasee@contoso.com", secret, "", &report))
	assert.Equal(t, plan.Pseudo, report.Pseudonym)
	assert.Equal(t, 1, report.People)
	require.Eventually(t, func() bool { return env.sim.Applications(gone.self.URI) == 0 }, hop, 50*time.Millisecond,
		"the erased person's SfB session was not signed out")

	db, err := sql.Open("postgres", env.pg.DSN("sfb_bridge"))
	require.NoError(t, err)
	defer db.Close()
	tables, err := dbscan.Tables(ctx, db, true)
	require.NoError(t, err)
	require.Contains(t, tables, "sfb_audit")
	require.Contains(t, tables, "user_login")
	// The ghost's Matrix ID escapes the address; the state store keys
	// ghosts by it.
	needles := []string{gone.self.URI.Address(), string(gone.mx.ID), string(env.st.GhostID(gone.self.URI.Address()))}
	for _, table := range tables {
		rows, err := dbscan.Mentions(ctx, db, table, needles...)
		require.NoError(t, err)
		assert.Emptyf(t, rows, "%s still names the erased person", table)
	}
	// The other person keeps login, portal, messages, credentials, wave.
	for _, check := range []struct{ what, query string }{
		{"login", `SELECT COUNT(*) FROM user_login WHERE id = $1`},
		{"portal", `SELECT COUNT(*) FROM portal WHERE receiver = $1`},
		{"messages", `SELECT COUNT(*) FROM message WHERE room_receiver = $1`},
		{"credentials", `SELECT COUNT(*) FROM sfb_credential WHERE login_id = $1`},
		{"wave", `SELECT COUNT(*) FROM sfb_person WHERE address = $1`},
	} {
		var n int
		require.NoError(t, db.QueryRowContext(ctx, check.query, kept.self.URI.Address()).Scan(&n))
		assert.NotZerof(t, n, "the other person's %s went too", check.what)
	}

	var audit struct {
		Entries []struct {
			Action  string `json:"action"`
			Actor   string `json:"actor"`
			Address string `json:"sip_address"`
			Detail  string `json:"detail"`
		} `json:"entries"`
	}
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "GET", "/audit?sip_address="+report.Pseudonym+"&limit=100", secret, "", &audit))
	require.NotEmpty(t, audit.Entries)
	assert.Equal(t, "erased", audit.Entries[0].Action)
	assert.Equal(t, "provisioning shared secret", audit.Entries[0].Actor)
	assert.Greater(t, len(audit.Entries), 1, "the person's earlier entries are not under the pseudonym")
	for _, e := range audit.Entries {
		assert.NotContains(t, strings.ToLower(e.Detail), "erasee@")
	}
	audit.Entries = nil
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "GET", "/audit?sip_address=erasee@contoso.com", secret, "", &audit))
	assert.Empty(t, audit.Entries)
}
