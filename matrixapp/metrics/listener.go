// Package metrics is the Prometheus listener: GET /metrics on an address
// of its own, apart from the appservice listener, so that it can stay on
// an internal interface (or loopback) while the homeserver reaches the
// appservice. The collectors are in bridge/metrics.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/matrixapp/bearer"
)

// Path is where the series are served.
const Path = "/metrics"

// Handler serves reg's series at Path; with a token, only to requests that
// send it as a bearer token, others get 401
// and no data.
func Handler(reg prometheus.Gatherer, token string, log zerolog.Logger) http.Handler {
	prom := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: promLogger{log}, ErrorHandling: promhttp.ContinueOnError})
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path, func(w http.ResponseWriter, r *http.Request) {
		if token != "" && !bearer.Matches(r, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sfb-matrix-bridge metrics"`)
			http.Error(w, "missing or wrong bearer token\n", http.StatusUnauthorized)
			return
		}
		prom.ServeHTTP(w, r)
	})
	return mux
}

// Server is a running metrics listener.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log zerolog.Logger
}

// Listen binds addr now, so that a bad or taken address stops the bridge
// at start, and serves h there in the background.
func Listen(addr string, h http.Handler, log zerolog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener on %s: %w", addr, err)
	}
	s := &Server{ln: ln, log: log, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
	}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Err(err).Msg("Metrics listener stopped")
		}
	}()
	log.Info().Stringer("address", ln.Addr()).Msg("Serving Prometheus metrics at " + Path)
	return s, nil
}

// Addr is the bound address (with the port, when addr asked for :0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the listener, letting a scrape in progress finish until ctx
// ends.
func (s *Server) Close(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// promLogger passes promhttp's errors (a collector that failed) to zerolog.
type promLogger struct{ log zerolog.Logger }

func (l promLogger) Println(v ...any) { l.log.Warn().Msg(fmt.Sprint(v...)) }
