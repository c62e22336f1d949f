package matrixapp

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge"
)

// presenceStatsPath serves the presence counters (writes, refreshes,
// coalesced changes, ...) as JSON. The bench reads them twice and derives
// the rates; nothing in them names a person.
const presenceStatsPath = "/debug/sfb/presence"

// servePresenceStats adds the presence counters to the appservice
// listener, behind the provisioning shared secret like mautrix's own
// debug endpoints (closed when the secret is unset or short).
func servePresenceStats(m *mxmain.BridgeMain) {
	conn, ok := m.Connector.(*bridge.Connector)
	if !ok || m.Matrix == nil || m.Matrix.Provisioning == nil {
		return
	}
	m.Matrix.AS.Router.Handle("GET "+presenceStatsPath, m.Matrix.Provisioning.DebugAuthMiddleware(presenceStatsHandler(conn.PresenceStats)))
}

func presenceStatsHandler(stats func() bridge.PresenceStats) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(stats())
	})
}
