package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// crossingStall is far below the old 10 s hand-off: a round that takes
// longer means one direction waited for the other.
const crossingStall = 5 * time.Second

// crossingLatency is added to each SfB request during the test.
const crossingLatency = 300 * time.Millisecond

// The Matrix user and the SfB colleague write at the same moment, several
// times. A Matrix message used to hold the portal while it waited for
// SfB's completion, which the event loop could not read while it waited
// for the same portal with the colleague's message: both stalled until a
// timeout let the SfB side go on in the background. Now everything
// arrives exactly once, in order, without a stall and without that
// hand-off.
func TestCrossingMessages(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "erin")
	ctx, cancel := context.WithTimeout(context.Background(), 6*hop)
	defer cancel()
	room := env.openPortal(t, p, "let us both write")
	logStart := fileSize(t, env.st.Bridge.LogPath)

	// Every SfB request takes a little longer, so that the bridge is still
	// sending the Matrix message when the colleague's arrives.
	env.sim.SetLatency(crossingLatency)
	t.Cleanup(func() { env.sim.SetLatency(0) })

	const rounds = 6
	from := p.mx.mark()
	for i := 1; i <= rounds; i++ {
		fromSfB, fromMatrix := crossingFromSfB(i), crossingFromMatrix(i)
		start := time.Now()
		// Odd rounds: both at once. Even rounds: the colleague writes
		// as soon as the homeserver took the Matrix message, while the
		// bridge is handling it.
		sfbDone, mxDone := make(chan error, 1), make(chan error, 1)
		sendSfB := func() {
			sfbDone <- env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: fromSfB})
		}
		if i%2 == 1 {
			go sendSfB()
		}
		go func() {
			_, err := p.mx.Client.SendText(ctx, room, fromMatrix)
			mxDone <- err
			if i%2 == 0 {
				sendSfB()
			}
		}()
		require.NoError(t, <-mxDone)
		require.NoError(t, <-sfbDone)
		p.mx.waitFor(from, hop, fromSfB, isMessage(room, p.ghost, equals(fromSfB)))
		env.waitReceived(t, p, fromMatrix, func(r sim.Received) bool { return r.Message.Text == fromMatrix })
		assert.Less(t, time.Since(start), crossingStall, "round %d stalled", i)
	}

	var inMatrix []string
	for _, evt := range p.mx.Events(from) {
		if evt.RoomID != room || evt.Type != event.EventMessage {
			continue
		}
		require.NotEqual(t, env.st.Bot, evt.Sender, "no notice from the bot: %q", evt.Content.AsMessage().Body)
		if evt.Sender == p.ghost {
			inMatrix = append(inMatrix, evt.Content.AsMessage().Body)
		}
	}
	assert.Equal(t, series(crossingFromSfB, rounds), inMatrix, "exactly once, in order, in Matrix")
	assert.Equal(t, series(crossingFromMatrix, rounds), env.sentToColleague(p), "exactly once, in order, in SfB")

	// A refused delivery still becomes a notice in the room (through the
	// outbox echo).
	require.NoError(t, env.sim.RejectMessages(p.colleague.URI, true))
	t.Cleanup(func() { _ = env.sim.RejectMessages(p.colleague.URI, false) })
	from = p.mx.mark()
	_, err := p.mx.Client.SendText(ctx, room, "this one is refused")
	require.NoError(t, err)
	p.mx.waitFor(from, hop, "the bot's failure notice", isMessage(room, env.st.Bot, func(b string) bool {
		// The simulator's refusal is the recipient's (NotAcceptable).
		return strings.Contains(b, "is not accepting messages right now")
	}))

	log := readFrom(t, env.st.Bridge.LogPath, logStart)
	for _, bad := range []string{"Portal busy", "in the background", "taking long"} {
		assert.False(t, strings.Contains(log, bad), "the bridge log shows a stall or hand-off: %q", bad)
	}
}

func crossingFromSfB(i int) string    { return fmt.Sprintf("crossing from sfb %d", i) }
func crossingFromMatrix(i int) string { return fmt.Sprintf("crossing from matrix %d", i) }

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Size()
}

func readFrom(t *testing.T, path string, offset int64) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		// A bridge process that is starting moves its old log aside
		// before it opens a new one; pollers see nothing yet.
		return ""
	}
	require.NoError(t, err)
	if offset > int64(len(b)) {
		offset = 0
	}
	return string(b[offset:])
}
