package migrationapi

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
)

// fakeEraser knows alice and records erasures.
type fakeEraser struct {
	mu     sync.Mutex
	erased []migration.Actor
}

func (f *fakeEraser) PlanErasure(_ context.Context, address string) (*bridge.ErasurePlan, error) {
	plan := &bridge.ErasurePlan{Address: "alice@contoso.com", Pseudonym: "erased:0123"}
	switch address {
	case "alice@contoso.com", "sip:Alice@Contoso.com":
		plan.Login, plan.Portals, plan.MatrixUser = true, 2, "@alice:example.org"
	case "nobody@contoso.com":
		plan.Address = "nobody@contoso.com"
	default:
		return nil, migration.ErrInvalid
	}
	return plan, nil
}

func (f *fakeEraser) ErasePerson(ctx context.Context, address string, by migration.Actor) (*bridge.ErasureReport, error) {
	f.mu.Lock()
	f.erased = append(f.erased, by)
	f.mu.Unlock()
	plan, _ := f.PlanErasure(ctx, address)
	return &bridge.ErasureReport{ErasurePlan: *plan, Erased: database.Erased{Credentials: 1, People: 1, AuditRows: 4}}, nil
}

func (f *fakeEraser) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.erased)
}

func TestErasureNeedsAdminAndConfirmation(t *testing.T) {
	ta := newTestAPI(t, testSecret)
	eraser := &fakeEraser{}
	ta.api.RegisterErasure(ta.mux, eraser)

	for _, token := range []string{"", userToken, testSecret + "x"} {
		status, body := ta.do(t, "DELETE", "/people/alice@contoso.com?confirm=alice@contoso.com", token, "", "")
		assert.Equal(t, http.StatusUnauthorized, status)
		assert.NotContains(t, body, "alice")
		status, _ = ta.do(t, "GET", "/people/alice@contoso.com/erasure", token, "", "")
		assert.Equal(t, http.StatusUnauthorized, status)
	}
	for _, confirm := range []string{"", "?confirm=", "?confirm=bob@contoso.com", "?confirm=yes"} {
		status, body := ta.do(t, "DELETE", "/people/alice@contoso.com"+confirm, adminToken, "", "")
		assert.Equalf(t, http.StatusBadRequest, status, "confirm %q", confirm)
		assert.Contains(t, body, "confirm=alice@contoso.com")
	}
	status, _ := ta.do(t, "DELETE", "/people/nobody@contoso.com?confirm=nobody@contoso.com", adminToken, "", "")
	assert.Equal(t, http.StatusNotFound, status, "an unknown address is a typo, not an erasure")
	status, _ = ta.do(t, "DELETE", "/people/not%20an%20address?confirm=x", adminToken, "", "")
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Zero(t, eraser.count(), "erased without confirmation")

	status, body := ta.do(t, "GET", "/people/alice@contoso.com/erasure", adminToken, "", "")
	require.Equal(t, http.StatusOK, status, body)
	var plan bridge.ErasurePlan
	require.NoError(t, json.Unmarshal([]byte(body), &plan))
	assert.Equal(t, 2, plan.Portals)
	assert.Zero(t, eraser.count(), "the plan erased")

	status, body = ta.do(t, "DELETE", "/people/sip:Alice@Contoso.com?confirm=sip:alice@contoso.com", adminToken, "", "")
	require.Equal(t, http.StatusOK, status, body)
	var report map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &report))
	assert.Equal(t, "erased:0123", report["pseudonym"])
	assert.EqualValues(t, 4, report["audit_rows_anonymised"])
	require.Equal(t, 1, eraser.count())
	assert.Equal(t, string(admin), eraser.erased[0].Who)
	assert.NotEmpty(t, eraser.erased[0].From)
}

func TestConfirmsErasure(t *testing.T) {
	plan := &bridge.ErasurePlan{Address: "alice@contoso.com"}
	for confirm, want := range map[string]bool{
		"alice@contoso.com":       true,
		" SIP:Alice@Contoso.com ": true,
		"sip:alice@contoso.com":   true,
		"":                        false,
		"alice":                   false,
		"bob@contoso.com":         false,
		"tel:alice@contoso.com":   false,
	} {
		assert.Equal(t, want, ConfirmsErasure(confirm, plan), "%q", confirm)
	}
}
