package bridge

import (
	"bytes"
	"context"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// A session reports its end with its context already cancelled; a settled
// router must still pass that on rather than leave it to the server. (A
// select over both used to pick either, dropping SessionEnded about half
// of the time, so that the login never learned its session had ended.)
func TestSettledRouterDeliversWhenTheSessionContextEnded(t *testing.T) {
	for i := 0; i < 64; i++ {
		var logged bytes.Buffer
		ctx, cancel := context.WithCancel(zerolog.New(&logged).WithContext(context.Background()))
		cancel()
		r := newEventRouter()
		// Detached: settled, and the event reaches the router's decision
		// without needing a client.
		r.detach()
		r.handle(ctx, sfb.SessionEnded{})
		assert.NotContains(t, logged.String(), "before its login completed", "run %d", i)
		assert.Contains(t, logged.String(), "no longer used", "run %d", i)
	}
}
