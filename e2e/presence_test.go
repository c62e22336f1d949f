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

// The presence tests run in parallel with each other (after the rest of
// the package, as Go runs parallel tests): most of their time is spent
// waiting for presence to travel or for Synapse's timeout to pass.

// An SfB colleague's availability, activity and notes reach the Matrix
// user's sync as the ghost's presence, with the status messages of the
// table in docs/presence.md, also after the server ended the bridge's
// presence subscription.
func TestPresenceOfSfBColleague(t *testing.T) {
	t.Parallel()
	env := setup(t)
	p := env.newPair(t, "pia")
	env.openPortal(t, p, "Hello Pia")

	steps := []struct {
		name   string
		set    sim.Presence
		want   event.Presence
		status string
	}{
		{"busy", sim.Presence{Availability: "Busy"}, event.PresenceUnavailable, "Busy"},
		{"in a meeting", sim.Presence{Availability: "Busy", Activity: "in-a-meeting"}, event.PresenceUnavailable, "In a meeting"},
		{"out of office", sim.Presence{Availability: "Away", Note: "Deadline Friday", OutOfOffice: "Back on Monday, ask Bob"},
			event.PresenceUnavailable, "Away · Out of office: Back on Monday, ask Bob"},
	}
	for _, step := range steps {
		from := p.mx.presenceMark()
		require.NoError(t, env.sim.SetPresence(p.colleague.URI, step.set), step.name)
		p.mx.waitPresence(from, hop, "the colleague "+step.name, isPresence(p.ghost, step.want, step.status))
	}

	// The server ends the subscription: the bridge creates it again, and
	// a change made while it had none arrives with the state the new
	// subscription starts with.
	require.Positive(t, env.sim.Subscribers(p.colleague.URI), "the colleague is watched")
	env.sim.DropPresenceSubscriptions(p.self.URI)
	require.Zero(t, env.sim.Subscribers(p.colleague.URI), "the colleague is still watched after the drop")
	from := p.mx.presenceMark()
	require.NoError(t, env.sim.SetPresence(p.colleague.URI, sim.Presence{Availability: "DoNotDisturb", Note: "Deadline Friday"}))
	p.mx.waitPresence(from, hop, "the colleague's change after the drop", isPresence(p.ghost, event.PresenceUnavailable, "Do not disturb · Deadline Friday"))
	assert.Positive(t, env.sim.Subscribers(p.colleague.URI), "the colleague is watched again")
}

// A colleague who stays Available stays online in Element: the bridge
// writes the ghost's presence again before Synapse's sync_online_timeout
// turns it offline (ghosts never sync).
func TestPresenceAvailableColleagueStaysOnline(t *testing.T) {
	t.Parallel()
	env := setup(t)
	p := env.newPair(t, "rosa")
	env.openPortal(t, p, "Hello Rosa")

	// The colleague is Available from the start.
	p.mx.waitPresence(0, hop, "the colleague available", isPresence(p.ghost, event.PresenceOnline, ""))
	from := p.mx.presenceMark()

	// Without a refresh the ghost is offline one timeout (plus Synapse's
	// timer of a few seconds) after the write; watch over two and a half.
	ctx, cancel := context.WithTimeout(context.Background(), 2*hop)
	defer cancel()
	never(t, syncOnlineTimeout*5/2, "the available colleague's ghost changed", func() string {
		resp, err := p.mx.Client.GetPresence(ctx, p.ghost)
		switch {
		case err != nil:
			return "reading the ghost's presence: " + err.Error()
		case resp.Presence != event.PresenceOnline:
			return fmt.Sprintf("the ghost's presence is %s %q", resp.Presence, resp.StatusMsg)
		}
		return ""
	})
	for _, evt := range p.mx.presenceEvents(from) {
		if evt.Sender == p.ghost {
			assert.Equal(t, event.PresenceOnline, evt.Content.AsPresence().Presence, "a presence of the ghost in the sync")
		}
	}
}

// A migrated user's Matrix presence stays off SfB until they turn
// publishing on; then their Matrix presence and status message become
// their SfB availability and note. Neither what the
// bridge writes to ghosts nor the user's own SfB presence comes back: the
// bridge publishes nothing more, and their Matrix presence stays theirs.
func TestPresenceFromMatrixToSfB(t *testing.T) {
	t.Parallel()
	env := setup(t)
	p := env.newPair(t, "quirin")
	env.openPortal(t, p, "Hello Quirin")
	ctx, cancel := context.WithTimeout(context.Background(), 3*hop)
	defer cancel()

	// Publishing is off by default (coexistence: the user's SfB client
	// shows their presence).
	require.NoError(t, p.mx.Client.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceOnline, StatusMsg: "Not on SfB yet"}))
	never(t, 4*time.Second, "a publication without presence-publish", func() string {
		if n := env.sim.Publications(p.self.URI); n != 0 {
			return fmt.Sprintf("the bridge published %d times", n)
		}
		return ""
	})

	env.publishPresence(t, p)

	// Element going idle: it syncs as unavailable and sets the status.
	env.setMatrixPresence(t, ctx, p, event.PresenceUnavailable, "Out for lunch", "Away")

	env.setMatrixPresence(t, ctx, p, event.PresenceOnline, "Back at my desk", "Online")

	// No echo. The colleague's change is written to their ghost, whose
	// m.presence Synapse sends back to the bridge; the user's own SfB
	// client sets their SfB presence, which the bridge does not watch.
	published := env.sim.Publications(p.self.URI)
	mark := p.mx.presenceMark()
	require.NoError(t, env.sim.SetPresence(p.colleague.URI, sim.Presence{Availability: "Busy", Activity: "in-a-meeting"}))
	p.mx.waitPresence(mark, hop, "the colleague in a meeting", isPresence(p.ghost, event.PresenceUnavailable, "In a meeting"))
	require.NoError(t, env.sim.SetPresence(p.self.URI, sim.Presence{Availability: "Busy", Note: "Set in the SfB client"}))
	assert.Zero(t, env.sim.Subscribers(p.self.URI), "the bridge watches the user's own SfB presence")

	// Synapse sent the ghost's m.presence to the bridge as it sent it to
	// the client; an echo would follow within the debounce (1 s).
	never(t, 6*time.Second, "an echo", func() string {
		if n := env.sim.Publications(p.self.URI); n != published {
			return fmt.Sprintf("the bridge published %d times more", n-published)
		}
		resp, err := p.mx.Client.GetOwnPresence(ctx)
		switch {
		case err != nil:
			return "reading the user's own presence: " + err.Error()
		case resp.Presence != event.PresenceOnline || resp.StatusMsg != "Back at my desk":
			return fmt.Sprintf("the user's Matrix presence is %s %q", resp.Presence, resp.StatusMsg)
		}
		return ""
	})
	sfbNow, err := env.sim.GetPresence(p.self.URI)
	require.NoError(t, err)
	assert.Equal(t, "Set in the SfB client", sfbNow.Note, "the SfB client's note stays until the Matrix presence changes")

	// Offline in Matrix is Away on SfB (network.presence.offline_as).
	p.mx.setSyncPresence(event.PresenceOffline)
	require.NoError(t, p.mx.Client.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceOffline, StatusMsg: "Gone home"}))
	env.waitSfBPresence(t, p.self.URI, "Away", "Gone home")
}

// never fails the test when check finds something wrong (returns what)
// within window, polling.
func never(t *testing.T, window time.Duration, what string, check func() string) {
	t.Helper()
	// Written before the failing check's result reaches assert.Never, so
	// read after it failed, never while a check runs.
	var wrong string
	if !assert.Never(t, func() bool { wrong = check(); return wrong != "" }, window, 250*time.Millisecond, what) {
		t.Log(wrong)
	}
}

// waitSfBPresence waits until the simulator shows uri with availability
// and note.
func (env *testEnv) waitSfBPresence(t *testing.T, uri sfb.URI, availability, note string) {
	t.Helper()
	ok := assert.Eventually(t, func() bool {
		p, err := env.sim.GetPresence(uri)
		return err == nil && p.Availability == availability && p.Note == note
	}, hop, 50*time.Millisecond, "%s never showed as %s with the note %q on SfB", uri, availability, note)
	if !ok {
		p, err := env.sim.GetPresence(uri)
		t.Fatalf("SfB shows %+v (%v)", p, err)
	}
}

// isPresence matches an m.presence of user with state and status message.
func isPresence(user id.UserID, state event.Presence, status string) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		c := evt.Content.AsPresence()
		return evt.Sender == user && c.Presence == state && c.StatusMessage == status
	}
}

// setMatrixPresence sets p's Matrix presence as Element does (syncing with
// it too, so that the sync does not undo it) and waits until SfB shows
// availability with status as the note.
func (env *testEnv) setMatrixPresence(t *testing.T, ctx context.Context, p *pair, state event.Presence, status, availability string) {
	t.Helper()
	p.mx.setSyncPresence(state)
	require.NoError(t, p.mx.Client.SetPresence(ctx, mautrix.ReqPresence{Presence: state, StatusMsg: status}))
	env.waitSfBPresence(t, p.self.URI, availability, status)
}

// presenceMark is the position after the m.presence events seen so far.
func (u *matrixUser) presenceMark() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.presence)
}

// presenceEvents returns a copy of the m.presence events from position
// from on.
func (u *matrixUser) presenceEvents(from int) []*event.Event {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*event.Event(nil), u.presence[min(from, len(u.presence)):]...)
}

// waitPresence returns the first m.presence at or after position from
// that matches, failing the test when none arrives within timeout.
func (u *matrixUser) waitPresence(from int, timeout time.Duration, what string, match func(*event.Event) bool) *event.Event {
	u.t.Helper()
	evt, err := u.waitIn(&u.presence, from, timeout, match)
	if err != nil {
		var b strings.Builder
		for _, e := range u.presenceEvents(from) {
			c := e.Content.AsPresence()
			fmt.Fprintf(&b, "  %s %s %q\n", e.Sender, c.Presence, c.StatusMessage)
		}
		u.t.Fatalf("%s: waiting for %s: %v\npresence seen:\n%s", u.ID, what, err, b.String())
	}
	return evt
}
