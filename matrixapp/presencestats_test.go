package matrixapp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/presence"
)

func TestPresenceStatsAreJSON(t *testing.T) {
	h := presenceStatsHandler(func() bridge.PresenceStats {
		return bridge.PresenceStats{Stats: presence.Stats{Writes: 12, Refreshes: 5, Coalesced: 3, Unchanged: 2, Failed: 1}, Watched: 40, Unplaced: 4}
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, presenceStatsPath, nil))
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var got map[string]int
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	assert.Equal(t, map[string]int{"writes": 12, "refreshes": 5, "coalesced": 3, "unchanged": 2, "failed": 1, "watched": 40, "unplaced": 4}, got)
}
