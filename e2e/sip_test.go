package e2e

import (
	"context"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// The bridge on the SIP transport, once per mode, each in an environment
// of its own (the transport is the whole bridge's): what a migrated user
// does with an SfB colleague, as the UCWA tests assert it. The two run in
// parallel with each other and with the presence tests: most of their
// time is spent waiting.

func TestSIPPerUser(t *testing.T) { testSIP(t, sfb.SIPModePerUser, "sipu") }

func TestSIPTrusted(t *testing.T) { testSIP(t, sfb.SIPModeTrusted, "sipt") }

// testSIP runs the SIP tests with the bridge in mode; prefix makes the
// users' names unique across the package.
func testSIP(t *testing.T, mode, prefix string) {
	t.Parallel()
	env := ownEnv(t, mode)
	t.Run("chat", func(t *testing.T) { testSIPChat(t, env, prefix+"chat") })
	t.Run("presence", func(t *testing.T) { testSIPPresence(t, env, prefix+"pres") })
	t.Run("delivery failure", func(t *testing.T) { testSIPDeliveryFailure(t, env, prefix+"fail") })
	// Last: the bridge restarts.
	t.Run("restart", func(t *testing.T) { testSIPRestart(t, env, prefix+"restart") })
}

// newSIPPair is newPair on SIP: the user's endpoint is registered, once.
func (env *testEnv) newSIPPair(t *testing.T, name string) *pair {
	t.Helper()
	p := env.newPair(t, name)
	require.Eventually(t, func() bool { return env.sim.SIPRegistrations(p.self.URI) == 1 }, hop, 50*time.Millisecond,
		"%s never had exactly one SIP registration", p.self.URI)
	return p
}

// A migrated user signs in; the colleague and the user chat both ways in
// plain text and HTML, and each sees the other typing.
func testSIPChat(t *testing.T, env *testEnv, name string) {
	p := env.newSIPPair(t, name)
	room := env.openPortal(t, p, "Hello over SIP")

	env.chatFormattedBothWays(t, p, room)
	env.typingBothWays(t, p, room)

	assert.Equal(t, []string{"Hello over SIP", "this is important"}, ghostMessages(t, p, room, 0), "every SfB message once")
	assert.Equal(t, []string{"Hi! Replying from Matrix", "a bold reply"}, env.sentToColleague(p), "every Matrix message once")
}

// The colleague's presence reaches the ghost; the Matrix user's presence,
// once they turn publishing on, becomes their SfB presence.
func testSIPPresence(t *testing.T, env *testEnv, name string) {
	p := env.newSIPPair(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 3*hop)
	defer cancel()
	env.openPortal(t, p, "Hello, presence over SIP")

	for _, step := range []struct {
		name   string
		set    sim.Presence
		want   event.Presence
		status string
	}{
		{"in a meeting", sim.Presence{Availability: "Busy", Activity: "in-a-meeting"}, event.PresenceUnavailable, "In a meeting"},
		{"away with a note", sim.Presence{Availability: "Away", Note: "Deadline Friday"}, event.PresenceUnavailable, "Away · Deadline Friday"},
		{"available", sim.Presence{Availability: "Online"}, event.PresenceOnline, ""},
	} {
		from := p.mx.presenceMark()
		require.NoError(t, env.sim.SetPresence(p.colleague.URI, step.set), step.name)
		p.mx.waitPresence(from, hop, "the colleague "+step.name, isPresence(p.ghost, step.want, step.status))
	}

	env.publishPresence(t, p)
	env.setMatrixPresence(t, ctx, p, event.PresenceUnavailable, "Out for lunch", "Away")
	env.setMatrixPresence(t, ctx, p, event.PresenceOnline, "Back at my desk", "Online")
}

// A message to a colleague who is offline, and one the colleague refuses,
// become the bot's notices in the room, in the same words as on UCWA, and
// reach nobody.
func testSIPDeliveryFailure(t *testing.T, env *testEnv, name string) {
	p := env.newSIPPair(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 3*hop)
	defer cancel()
	room := env.openPortal(t, p, "Hello, failures over SIP")

	require.NoError(t, env.sim.SetNativeClient(p.colleague.URI, false))
	from := p.mx.mark()
	_, err := p.mx.Client.SendText(ctx, room, "are you there?")
	require.NoError(t, err)
	notice := p.mx.waitFor(from, hop, "the bot's offline notice", isMessage(room, env.st.Bot, anyBody))
	assert.Contains(t, notice.Content.AsMessage().Body, p.colleague.URI.Address()+" is offline and Skype for Business could not deliver the message")
	require.NoError(t, env.sim.SetNativeClient(p.colleague.URI, true))

	// A colleague who refuses messages: the same notice as on UCWA.
	require.NoError(t, env.sim.RejectMessages(p.colleague.URI, true))
	from = p.mx.mark()
	_, err = p.mx.Client.SendText(ctx, room, "this one is refused")
	require.NoError(t, err)
	p.mx.waitFor(from, hop, "the bot's refusal notice", isMessage(room, env.st.Bot, func(b string) bool {
		return strings.Contains(b, p.colleague.URI.Address()+" is not accepting messages right now")
	}))
	require.NoError(t, env.sim.RejectMessages(p.colleague.URI, false))
	assert.Empty(t, env.sentToColleague(p), "a message that failed was delivered")
}

// The bridge is killed and started again. It is killed while it handles an
// SfB message that it cannot pass on yet (the homeserver is stalled): until
// the homeserver took the message the bridge does not answer the MESSAGE,
// so SfB never counts as delivered what the bridge lost. After the
// restart: what SfB delivered is in Matrix, nothing twice; messages the
// Matrix user sent meanwhile reach SfB once, in order (Synapse retries the
// transactions); the endpoint registers again, once; the conversation goes
// on in the same room.
func testSIPRestart(t *testing.T, env *testEnv, name string) {
	p := env.newSIPPair(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 6*hop)
	defer cancel()
	env.restartBridgeAtCleanup(t)
	room := env.openPortal(t, p, "before the restart")
	_, err := p.mx.Client.SendText(ctx, room, "matrix before the restart")
	require.NoError(t, err)
	env.waitReceived(t, p, "the reply before the restart", func(r sim.Received) bool { return r.Message.Text == "matrix before the restart" })

	const dying = "sfb while the bridge dies"
	delivered := func() bool {
		return slices.ContainsFunc(env.sim.Received(p.self.URI), func(r sim.Received) bool { return r.Message.Text == dying })
	}
	logStart := fileSize(t, env.st.Bridge.LogPath)
	resume := env.stallHomeserver(t)
	go func() { _ = env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: dying}) }()
	require.Eventually(t, func() bool {
		return strings.Contains(readFrom(t, env.st.Bridge.LogPath, logStart), `"bridge_evt_type":"RemoteEventMessage"`)
	}, hop, 20*time.Millisecond, "the bridge never handled the colleague's message")
	never(t, time.Second, "the bridge's answer while the homeserver has not taken the message", func() string {
		if delivered() {
			return "SfB counts the message as delivered to the bridge"
		}
		return ""
	})
	require.NoError(t, env.st.Bridge.Kill())
	resume()
	require.Eventually(t, func() bool { return env.sim.SIPRegistrations(p.self.URI) == 0 }, hop, 50*time.Millisecond,
		"the killed bridge's registration outlived its connection")
	for _, text := range []string{"matrix while down 1", "matrix while down 2"} {
		_, err := p.mx.Client.SendText(ctx, room, text)
		require.NoError(t, err)
	}

	require.NoError(t, env.st.Bridge.Start(ctx))
	require.Eventually(t, func() bool { return env.sim.SIPRegistrations(p.self.URI) == 1 }, hop, 50*time.Millisecond,
		"the endpoint did not register again after the restart")
	env.waitReceived(t, p, "the last Matrix message sent while down", func(r sim.Received) bool { return r.Message.Text == "matrix while down 2" })
	from := p.mx.mark()
	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: "after the restart"}))
	p.mx.waitFor(from, hop, "the message after the restart", isMessage(room, p.ghost, equals("after the restart")))

	// The homeserver may have read the dead bridge's request for the
	// message once it went on: then the message is in Matrix, once.
	inMatrix := ghostMessages(t, p, room, 0)
	if delivered() || slices.Contains(inMatrix, dying) {
		assert.Equal(t, []string{"before the restart", dying, "after the restart"}, inMatrix, "every SfB message once, in the same room")
	} else {
		assert.Equal(t, []string{"before the restart", "after the restart"}, inMatrix, "every SfB message once, in the same room")
	}
	assert.Equal(t, []string{"matrix before the restart", "matrix while down 1", "matrix while down 2"}, env.sentToColleague(p),
		"every Matrix message once, in order")
	assert.Equal(t, 1, env.sim.SIPRegistrations(p.self.URI), "one endpoint per user")
}

// stallHomeserver stops the Synapse process (SIGSTOP) until the returned
// function, or the end of the test, continues it.
func (env *testEnv) stallHomeserver(t *testing.T) (resume func()) {
	t.Helper()
	pid := env.st.HS.PID()
	require.NotZero(t, pid)
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	var once sync.Once
	resume = func() { once.Do(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) }
	t.Cleanup(resume)
	return resume
}
