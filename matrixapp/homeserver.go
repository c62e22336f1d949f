package matrixapp

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"
	"maunium.net/go/mautrix/bridgev2/status"
)

// StateHomeserverUnreachable is the error of the global bridge state while
// the bridge waits at start for the homeserver to answer.
const StateHomeserverUnreachable status.BridgeStateErrorCode = "sfb-homeserver-unreachable"

// homeserverRetry is how often the bridge tries the homeserver at start.
const homeserverRetry = 5 * time.Second

// homeserverWait waits at start until the homeserver answers. mautrix
// would wait too, but says only every 10 seconds "Failed to connect to
// homeserver" at error level and reports no bridge state; the operator
// should see which address does not answer and why, and the migration
// team's dashboard that the bridge is not serving.
type homeserverWait struct {
	address  string
	interval time.Duration
	client   *http.Client
	log      zerolog.Logger
	// report sends the global bridge state (to the status endpoint,
	// which does not depend on the homeserver).
	report func(context.Context, status.BridgeState)
}

// wait returns once the homeserver answered anything below 500, or with
// ctx's error.
func (w *homeserverWait) wait(ctx context.Context) error {
	url := strings.TrimRight(w.address, "/") + "/_matrix/client/versions"
	for attempt := 1; ; attempt++ {
		err := w.try(ctx, url)
		if err == nil {
			if attempt > 1 {
				w.log.Info().Str("homeserver", w.address).Int("attempts", attempt).Msg("The homeserver answers, starting")
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.log.Warn().Str("homeserver", w.address).Err(err).Stringer("retry_in", w.interval).
			Msg("Cannot reach the homeserver; the bridge starts once it answers")
		w.report(ctx, status.BridgeState{
			StateEvent: status.StateStarting,
			Error:      StateHomeserverUnreachable,
			Message:    fmt.Sprintf("The bridge cannot reach the homeserver at %s (%v); it starts once the homeserver answers.", w.address, err),
		})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(w.interval):
		}
	}
}

func (w *homeserverWait) try(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, w.interval)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// waitForHomeserver runs homeserverWait before mxmain starts. SIGINT or
// SIGTERM while waiting ends the process.
func waitForHomeserver(m *mxmain.BridgeMain) {
	address := m.Config.Homeserver.Address
	if m.Config.Homeserver.Websocket || !(strings.HasPrefix(address, "http://") || strings.HasPrefix(address, "https://")) {
		return
	}
	log := m.Log.With().Str("component", "homeserver check").Logger()
	w := &homeserverWait{
		address:  address,
		interval: homeserverRetry,
		client:   &http.Client{},
		log:      log,
		report: func(ctx context.Context, state status.BridgeState) {
			state = state.Fill(nil)
			ctx, cancel := context.WithTimeout(ctx, homeserverRetry)
			defer cancel()
			if err := m.Matrix.SendBridgeStatus(ctx, &state); err != nil {
				log.Warn().Err(err).Msg("Failed to send the bridge state")
			}
		},
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := w.wait(ctx); err != nil {
		log.Info().Msg("Stopped while waiting for the homeserver")
		os.Exit(0)
	}
}
