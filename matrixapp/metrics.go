package matrixapp

import (
	"context"
	"os"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/matrixapp/metrics"
)

// serveMetrics starts the Prometheus listener when network.metrics.listen
// is set, and returns what stops it. A listener that cannot bind stops the
// bridge: an operator who asked for metrics must not find out from an
// empty graph.
func serveMetrics(m *mxmain.BridgeMain) (stop func()) {
	conn, ok := m.Connector.(*bridge.Connector)
	if !ok || conn.Config.Metrics.Listen == "" {
		return func() {}
	}
	cfg := conn.Config.Metrics
	log := m.Log.With().Str("component", "metrics").Logger()
	srv, err := metrics.Listen(cfg.Listen, metrics.Handler(conn.Metrics().Registry(), cfg.Token(), log), log)
	if err != nil {
		log.WithLevel(zerolog.FatalLevel).Err(err).Msg("Cannot serve metrics")
		// mxmain's code for a bridge that failed to start.
		os.Exit(32)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	}
}
