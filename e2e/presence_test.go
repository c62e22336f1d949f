package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// ghostPresence is what the Matrix user reads of the colleague's ghost.
func ghostPresence(ctx context.Context, t *testing.T, p *pair) (event.Presence, string) {
	t.Helper()
	resp, err := p.mx.Client.GetPresence(ctx, p.ghost)
	if err != nil {
		return "", err.Error()
	}
	return resp.Presence, resp.StatusMsg
}

// An SfB colleague's availability, activity and out-of-office note reach
// the ghost a Matrix user sees, and stay there past Synapse's decay of
// presence the bridge set (sync_online_timeout, 30 s): the bridge
// refreshes it while the user is present.
func TestColleaguePresenceReachesMatrix(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "pia")
	env.openPortal(t, p, "hello from SfB")
	ctx, cancel := context.WithTimeout(context.Background(), 6*hop)
	defer cancel()

	require.NoError(t, env.sim.SetPresence(p.colleague.URI, sim.Presence{Availability: "Busy", Activity: "in-a-meeting"}))
	require.Eventually(t, func() bool {
		presence, status := ghostPresence(ctx, t, p)
		return presence == event.PresenceUnavailable && status == "In a meeting"
	}, hop, 200*time.Millisecond, "the ghost never showed the meeting")

	require.NoError(t, env.sim.SetPresence(p.colleague.URI, sim.Presence{Availability: "Away", OutOfOffice: "Back on Monday"}))
	require.Eventually(t, func() bool {
		presence, status := ghostPresence(ctx, t, p)
		return presence == event.PresenceUnavailable && status == "Away · Out of office: Back on Monday"
	}, hop, 200*time.Millisecond, "the out-of-office note never arrived")

	// Past the homeserver's decay: still there, written again by the
	// bridge.
	require.NoError(t, env.sim.SetPresence(p.colleague.URI, sim.Presence{Availability: "Online"}))
	require.Eventually(t, func() bool {
		presence, _ := ghostPresence(ctx, t, p)
		return presence == event.PresenceOnline
	}, hop, 200*time.Millisecond, "the ghost never came online")
	assert.Never(t, func() bool {
		presence, _ := ghostPresence(ctx, t, p)
		return presence != event.PresenceOnline
	}, 40*time.Second, time.Second, "an available colleague showed other than online in Matrix")
}

// A migrated user who publishes sees their Matrix status message as their
// personal note on SfB; one who does not (the default) leaves SfB alone.
func TestMatrixPresenceReachesSfB(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "mona")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	setStatus := func(msg string) {
		require.NoError(t, p.mx.Client.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceOnline, StatusMsg: msg}))
	}

	setStatus("Only on Matrix now")
	assert.Never(t, func() bool {
		got, err := env.sim.GetPresence(p.self.URI)
		return err == nil && got.Note != ""
	}, 12*time.Second, time.Second, "published without being asked (the debounce is 10 s)")

	from := p.mx.mark()
	_, err := p.mx.Client.SendText(ctx, p.mgmt, "presence-publish on")
	require.NoError(t, err)
	p.mx.waitFor(from, hop, "the bot's confirmation", isMessage(p.mgmt, env.st.Bot, func(b string) bool {
		return strings.Contains(b, "is shown on Skype for Business")
	}))
	setStatus("In Lyon today")
	require.Eventually(t, func() bool {
		got, err := env.sim.GetPresence(p.self.URI)
		return err == nil && got.Note == "In Lyon today" && got.Availability == "Online"
	}, hop, 500*time.Millisecond, "the status message never became the SfB note")
}
