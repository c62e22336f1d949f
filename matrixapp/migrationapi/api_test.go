package migrationapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/dbtest"
)

const (
	testSecret = "0123456789abcdef-provisioning"
	adminToken = "syt_admin_token"
	userToken  = "syt_user_token"
	admin      = id.UserID("@lead:example.org")
)

type testAPI struct {
	srv     *httptest.Server
	mux     *http.ServeMux
	api     *API
	db      *database.DB
	whoamis atomic.Int32
}

func newTestAPI(t *testing.T, secret string) *testAPI {
	t.Helper()
	db := dbtest.SQLite(t)
	svc := migration.New(db, zerolog.Nop(), migration.Options{})

	ta := &testAPI{db: db}
	whoami := func(ctx context.Context, token string) (id.UserID, error) {
		ta.whoamis.Add(1)
		switch token {
		case adminToken:
			return admin, nil
		case userToken:
			return "@someone:example.org", nil
		}
		return "", errors.New("M_UNKNOWN_TOKEN")
	}
	auth := NewAuth(secret, func(u id.UserID) bool { return u == admin }, whoami)
	mux := http.NewServeMux()
	ta.api, ta.mux = New(func() *migration.Service { return svc }, auth, zerolog.Nop()), mux
	ta.api.Register(mux)
	ta.srv = httptest.NewServer(mux)
	t.Cleanup(ta.srv.Close)
	return ta
}

func (ta *testAPI) do(t *testing.T, method, path, token, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, ta.srv.URL+Prefix+path, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(data)
}

const csvWave = "sip_address;matrix_id;wave\r\nalice@contoso.com;@alice:example.org;Welle 1\r\n"

func TestAPIRefusesWithoutAdminOrSecret(t *testing.T) {
	ta := newTestAPI(t, testSecret)
	// Something to leak.
	status, _ := ta.do(t, "POST", "/import?dry_run=false", testSecret, "text/csv", csvWave)
	require.Equal(t, http.StatusOK, status)

	for name, token := range map[string]string{
		"no token":        "",
		"wrong secret":    testSecret + "x",
		"secret's prefix": testSecret[:16],
		"non-admin token": userToken,
		"unknown token":   "syt_made_up",
	} {
		for _, path := range []string{"/waves", "/waves/Welle%201", "/people/alice@contoso.com", "/audit", "/nothing-here"} {
			status, body := ta.do(t, "GET", path, token, "", "")
			assert.Equalf(t, http.StatusUnauthorized, status, "%s %s", name, path)
			assert.NotContainsf(t, body, "alice", "%s %s leaked data", name, path)
			assert.NotContainsf(t, body, "Welle", "%s %s leaked data", name, path)
		}
		status, _ := ta.do(t, "PUT", "/waves/Welle%201/mode", token, "application/json", `{"mode":"matrix_only"}`)
		assert.Equalf(t, http.StatusUnauthorized, status, "%s: write", name)
	}
	p, err := ta.db.GetPerson(context.Background(), "alice@contoso.com")
	require.NoError(t, err)
	assert.Empty(t, p.Mode)
	w, err := ta.db.GetWave(context.Background(), "Welle 1")
	require.NoError(t, err)
	assert.Empty(t, w.Mode, "a refused request changed the wave")
}

func TestAPIAcceptsSecretAndAdminToken(t *testing.T) {
	ta := newTestAPI(t, testSecret)
	for _, token := range []string{testSecret, adminToken, adminToken} {
		status, body := ta.do(t, "GET", "/waves", token, "", "")
		assert.Equal(t, http.StatusOK, status, body)
		assert.Contains(t, body, `"default_mode":"sfb_only"`)
	}
	assert.Equal(t, int32(1), ta.whoamis.Load(), "the admin's token was not cached")
	for range 3 {
		status, _ := ta.do(t, "GET", "/waves", "syt_made_up", "", "")
		assert.Equal(t, http.StatusUnauthorized, status)
	}
	assert.Equal(t, int32(2), ta.whoamis.Load(), "a refused token was asked about again at once")
}

// A secret that is unset, "disable" or short never opens the API.
func TestAPIWithoutUsableSecretTakesOnlyAdmins(t *testing.T) {
	for _, secret := range []string{"", "disable", "short-secret"} {
		ta := newTestAPI(t, secret)
		for _, token := range []string{"", secret} {
			status, _ := ta.do(t, "GET", "/waves", token, "", "")
			assert.Equalf(t, http.StatusUnauthorized, status, "secret %q", secret)
		}
		status, _ := ta.do(t, "GET", "/waves", adminToken, "", "")
		assert.Equal(t, http.StatusOK, status)
	}
}

func TestAPIImportSetModeAndAudit(t *testing.T) {
	ta := newTestAPI(t, testSecret)
	csv := "\uFEFFSIP-Adresse;Matrix-ID;Welle;Modus\r\n" +
		"alice@contoso.com;@alice:example.org;Welle 1;\r\n" +
		"bob@contoso.com;@bob:example.org;Welle 1;matrix_only\r\n"

	status, body := ta.do(t, "POST", "/import?dry_run=true", adminToken, "text/csv", csv)
	require.Equal(t, http.StatusOK, status, body)
	var report migration.ImportReport
	require.NoError(t, json.Unmarshal([]byte(body), &report))
	assert.True(t, report.DryRun)
	assert.Equal(t, 2, report.New)
	status, _ = ta.do(t, "GET", "/waves/Welle%201", adminToken, "", "")
	assert.Equal(t, http.StatusNotFound, status, "the dry run created the wave")

	status, body = ta.do(t, "POST", "/import", adminToken, "text/csv", csv)
	assert.Equal(t, http.StatusBadRequest, status, "an import without dry_run must not run for real")
	assert.Contains(t, body, "dry_run")

	bad := csv + "carol@contoso.com;carol;Welle 1;\r\n"
	status, body = ta.do(t, "POST", "/import?dry_run=false", adminToken, "text/csv", bad)
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
	require.NoError(t, json.Unmarshal([]byte(body), &report))
	require.Len(t, report.Errors, 1)
	assert.Equal(t, 4, report.Errors[0].Line)
	status, _ = ta.do(t, "GET", "/waves/Welle%201", adminToken, "", "")
	assert.Equal(t, http.StatusNotFound, status, "a refused import created the wave")

	status, body = ta.do(t, "POST", "/import?dry_run=true", adminToken, "text/csv", "name;phone\r\n")
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, body, `unknown column`)

	status, body = ta.do(t, "POST", "/import?dry_run=false", testSecret, "text/csv", csv)
	require.Equal(t, http.StatusOK, status, body)

	status, body = ta.do(t, "PUT", "/waves/Welle%201/mode", adminToken, "application/json", `{"mode":"coexistence"}`)
	require.Equal(t, http.StatusOK, status, body)
	var wave migration.WaveDetail
	require.NoError(t, json.Unmarshal([]byte(body), &wave))
	assert.Equal(t, map[migration.Mode]int{migration.SfBOnly: 0, migration.Coexistence: 1, migration.MatrixOnly: 1}, wave.ByMode)

	status, body = ta.do(t, "PUT", "/people/sip:Bob@contoso.com/mode", adminToken, "application/json", `{"mode":null}`)
	require.Equal(t, http.StatusOK, status, body)
	status, body = ta.do(t, "GET", "/people/bob@contoso.com", adminToken, "", "")
	require.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, `"mode":"coexistence","mode_source":"wave"`)
	assert.Contains(t, body, `"action":"person_mode_set"`, "the person's audit entries are shown")

	for path, want := range map[string]int{
		"/waves/Welle%209/mode":       http.StatusNotFound,
		"/people/nobody@x.org/mode":   http.StatusNotFound,
		"/people/not-an-address/mode": http.StatusBadRequest,
	} {
		status, body := ta.do(t, "PUT", path, adminToken, "application/json", `{"mode":"coexistence"}`)
		assert.Equal(t, want, status, "%s: %s", path, body)
	}
	status, _ = ta.do(t, "PUT", "/waves/Welle%201/mode", adminToken, "application/json", `{"mode":"teams_only"}`)
	assert.Equal(t, http.StatusBadRequest, status)

	status, body = ta.do(t, "GET", "/audit?limit=10", testSecret, "", "")
	require.Equal(t, http.StatusOK, status, body)
	var audit struct {
		Entries []auditEntry `json:"entries"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &audit))
	var actions []string
	for _, e := range audit.Entries {
		actions = append(actions, e.Action+" by "+e.Actor)
		assert.Equal(t, "127.0.0.1", e.Origin)
	}
	assert.Equal(t, []string{
		"person_mode_set by " + string(admin),
		"wave_mode_set by " + string(admin),
		"import by " + SecretActor,
		"import by " + string(admin), // the refused one
		"import_dry_run by " + string(admin),
	}, actions)
	assert.NotContains(t, body, testSecret)
	assert.NotContains(t, body, adminToken)
}
