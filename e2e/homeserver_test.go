package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

func outageText(i int) string { return fmt.Sprintf("outage message %02d", i) }

// restartHomeserverAfter starts Synapse again when t ends with it stopped:
// later tests share the homeserver.
func (env *testEnv) restartHomeserverAfter(t *testing.T) {
	t.Cleanup(func() {
		if !env.st.HS.Running() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*hop)
			defer cancel()
			require.NoError(t, env.st.HS.Restart(ctx))
		}
	})
}

// TestHomeserverRestart stops Synapse in the middle of an SfB -> Matrix
// stream, lets the colleague write while it is down and starts it again
// on the same port and data: the bridge keeps retrying the message the
// homeserver did not take (and, holding it, acknowledges nothing after it
// to SfB), so every message arrives exactly once, in order, in the same
// room, and Matrix -> SfB works again afterwards.
func TestHomeserverRestart(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "frank")
	ctx, cancel := context.WithTimeout(context.Background(), 8*hop)
	defer cancel()
	env.restartHomeserverAfter(t)
	room := env.openPortal(t, p, "before the outage")
	logStart := fileSize(t, env.st.Bridge.LogPath)

	const beforeStop, whileDown = 10, 5
	from := p.mx.mark()
	for i := 1; i <= beforeStop; i++ {
		require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: outageText(i)}))
	}
	// Stop as soon as the stream is under way: some messages are in
	// Matrix, the rest are in the bridge or still on the SfB server.
	p.mx.waitFor(from, hop, "the stream to start", isMessage(room, p.ghost, equals(outageText(2))))
	require.NoError(t, env.st.HS.Stop())
	require.False(t, env.st.HS.Running())

	for i := beforeStop + 1; i <= beforeStop+whileDown; i++ {
		require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: outageText(i)}))
	}
	// The bridge must have met the outage (not bridged everything before
	// the stop): a send to the homeserver failed and is being retried
	// (first by mautrix's HTTP client, after its last attempt by the
	// connector's queueReliably).
	require.Eventually(t, func() bool {
		return strings.Contains(readFrom(t, env.st.Bridge.LogPath, logStart), "connection refused")
	}, hop, 100*time.Millisecond, "the bridge never met the outage")
	require.True(t, env.st.Bridge.Running(), "the bridge survives the homeserver outage")

	require.NoError(t, env.st.HS.Restart(ctx))
	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: "after the outage"}))
	p.mx.waitFor(from, 2*hop, "the message after the outage", isMessage(room, p.ghost, equals("after the outage")))

	want := append(series(outageText, beforeStop+whileDown), "after the outage")
	assert.Equal(t, want, ghostMessages(t, p, room, from), "every SfB message exactly once, in order")

	// Matrix -> SfB works again.
	_, err := p.mx.Client.SendText(ctx, room, "back online")
	require.NoError(t, err)
	env.waitReceived(t, p, "the reply after the outage", func(r sim.Received) bool { return r.Message.Text == "back online" })
	assertNoDuplicates(t, env.sim.Received(p.colleague.URI))
}

// TestAppserviceTxnIDAcrossHomeserverRestart pins down the limit of the
// derived transaction IDs (bridge/txnid.go): Synapse answers a repeated
// appservice PUT /send/{type}/{txnId} with the event it created the first
// time only while the transaction is in its memory. After a homeserver
// restart the same transaction ID creates a second event, so a bridge
// crash between the homeserver accepting a message and the bridge
// recording it, followed by a homeserver restart before the bridge sends
// the message again, doubles that message (docs/architecture.md).
func TestAppserviceTxnIDAcrossHomeserverRestart(t *testing.T) {
	env := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	env.restartHomeserverAfter(t)

	// A ghost of the bridge's namespace, as the bridge sends: the
	// appservice token and user_id.
	ghost := env.st.GhostID("txn.probe@contoso.com")
	as, err := mautrix.NewClient(env.st.HS.URL, ghost, env.st.ASToken)
	require.NoError(t, err)
	as.SetAppServiceUserID = true
	_, _, err = as.Register(ctx, &mautrix.ReqRegister[any]{Username: ghost.Localpart(), Type: mautrix.AuthTypeAppservice, InhibitLogin: true})
	require.NoError(t, err)
	room, err := as.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	require.NoError(t, err)

	send := func() id.EventID {
		t.Helper()
		resp, err := as.SendMessageEvent(ctx, room.RoomID, event.EventMessage,
			&event.MessageEventContent{MsgType: event.MsgText, Body: "derived transaction"},
			mautrix.ReqSendEvent{TransactionID: "sfb-restart-probe"})
		require.NoError(t, err)
		return resp.EventID
	}
	first := send()
	assert.Equal(t, first, send(), "a repeated transaction is answered with the first event")

	require.NoError(t, env.st.HS.Restart(ctx))
	second := send()
	assert.NotEqual(t, first, second, "after a restart Synapse has forgotten the transaction and creates a second event")

	msgs, err := as.Messages(ctx, room.RoomID, "", "", mautrix.DirectionForward, nil, 100)
	require.NoError(t, err)
	var bodies []string
	for _, evt := range msgs.Chunk {
		if evt.Type == event.EventMessage {
			require.NoError(t, evt.Content.ParseRaw(evt.Type))
			bodies = append(bodies, evt.Content.AsMessage().Body)
		}
	}
	assert.Equal(t, []string{"derived transaction", "derived transaction"}, bodies, "the room shows the message twice")
}
