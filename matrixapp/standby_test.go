package matrixapp

import (
	"database/sql"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTransactionsWaitForTheDatabase(t *testing.T) {
	open := func(t *testing.T, dsn string) *sql.DB {
		db, err := sql.Open("sqlite3", dsn)
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	reachable := open(t, "file:"+filepath.Join(t.TempDir(), "ok.db"))
	// A file in a directory that does not exist cannot be opened: the
	// database does not answer.
	unreachable := open(t, "file:"+filepath.Join(t.TempDir(), "missing", "x.db")+"?mode=rw")

	const txn = "/_matrix/app/v1/transactions/1"
	tests := []struct {
		name         string
		db           *sql.DB
		down         bool
		method, path string
		want         int
	}{
		{"database answers", reachable, false, http.MethodPut, txn, http.StatusOK},
		{"database does not answer", unreachable, false, http.MethodPut, txn, http.StatusServiceUnavailable},
		{"lock session down", reachable, true, http.MethodPut, txn, http.StatusServiceUnavailable},
		{"not a transaction", unreachable, true, http.MethodGet, "/_matrix/mau/live", http.StatusOK},
		{"appservice ping", unreachable, true, http.MethodPost, "/_matrix/app/v1/ping", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &dbHealth{db: tc.db, log: zerolog.Nop()}
			h.down.Store(tc.down)
			reached := false
			gate := h.gateTransactions(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true }))
			rec := httptest.NewRecorder()
			gate.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			assert.Equal(t, tc.want, rec.Code)
			assert.Equal(t, tc.want == http.StatusOK, reached, "handed on to the appservice")
		})
	}
}
