package matrixapp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFailedModeChangesAreNotified(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("answer") {
		case "500":
			w.WriteHeader(http.StatusInternalServerError)
		case "400":
			w.WriteHeader(http.StatusBadRequest)
		case "503":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("{}"))
		}
	})
	var notified []string
	h := noticeFailedModeChanges(next, func(ctx context.Context, what string, cause error) {
		require.NoError(t, ctx.Err())
		notified = append(notified, what+": "+cause.Error())
	})
	for _, tc := range []struct{ method, path string }{
		{"PUT", "/_sfb/migration/v1/waves/w1/mode?answer=500"},
		{"PUT", "/_sfb/migration/v1/people/alice@contoso.com/mode?answer=500"},
		{"PUT", "/_sfb/migration/v1/default-mode?answer=500"},
		{"POST", "/_sfb/migration/v1/import?dry_run=false&answer=500"},
		{"PUT", "/_sfb/migration/v1/waves/w1/mode?answer=400"}, // the caller's mistake
		{"PUT", "/_sfb/migration/v1/waves/w1/mode?answer=503"}, // still starting
		{"PUT", "/_sfb/migration/v1/waves/w1/mode"},
		{"GET", "/_sfb/migration/v1/waves?answer=500"}, // not a change
		{"PUT", "/_sfb/migration/v1/waves/w1?answer=500"},
		{"POST", "/_sfb/dashboard/mode?answer=500"},
		{"POST", "/_sfb/dashboard/login?answer=500"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
	}
	assert.Equal(t, []string{
		"PUT /_sfb/migration/v1/waves/w1/mode: the bridge answered 500; its log says why",
		"PUT /_sfb/migration/v1/people/alice@contoso.com/mode: the bridge answered 500; its log says why",
		"PUT /_sfb/migration/v1/default-mode: the bridge answered 500; its log says why",
		"POST /_sfb/migration/v1/import: the bridge answered 500; its log says why",
		"POST /_sfb/dashboard/mode: the bridge answered 500; its log says why",
	}, notified)
}
