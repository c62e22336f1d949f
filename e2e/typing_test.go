package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// The colleague sees the Matrix user typing, and the Matrix user sees the
// colleague typing, until each stops.
func TestTypingBothWays(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "tilda")
	room := env.openPortal(t, p, "Hello Tilda")
	env.typingBothWays(t, p, room)
}

// typingBothWays has the colleague start and stop typing, then the Matrix
// user, each seen on the other side.
func (env *testEnv) typingBothWays(t *testing.T, p *pair, room id.RoomID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	// SfB -> Matrix.
	mark := p.mx.typingMark()
	require.NoError(t, env.sim.SetTyping(ctx, p.colleague.URI, p.self.URI, true))
	p.mx.waitTyping(mark, room, p.ghost, true, "the colleague typing")
	mark = p.mx.typingMark()
	require.NoError(t, env.sim.SetTyping(ctx, p.colleague.URI, p.self.URI, false))
	p.mx.waitTyping(mark, room, p.ghost, false, "the colleague no longer typing")

	// Matrix -> SfB.
	_, err := p.mx.Client.UserTyping(ctx, room, true, 20*time.Second)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return env.sim.Typing(p.colleague.URI, p.self.URI) }, hop, 50*time.Millisecond,
		"the colleague never saw the Matrix user typing")
	_, err = p.mx.Client.UserTyping(ctx, room, false, 0)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !env.sim.Typing(p.colleague.URI, p.self.URI) }, hop, 50*time.Millisecond,
		"the colleague still sees the Matrix user typing")
}

// typingMark is the position after the m.typing events seen so far.
func (u *matrixUser) typingMark() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.typing)
}

// waitTyping waits for an m.typing of room, at or after position from,
// that shows user typing or (typing false) no longer shows them.
func (u *matrixUser) waitTyping(from int, room id.RoomID, user id.UserID, typing bool, what string) {
	u.t.Helper()
	_, err := u.waitIn(&u.typing, from, hop, func(evt *event.Event) bool {
		return evt.RoomID == room && slices.Contains(evt.Content.AsTyping().UserIDs, user) == typing
	})
	if err != nil {
		u.mu.Lock()
		seen := make([]string, 0, len(u.typing))
		for _, evt := range u.typing[min(from, len(u.typing)):] {
			seen = append(seen, fmt.Sprintf("%s %v", evt.RoomID, evt.Content.AsTyping().UserIDs))
		}
		u.mu.Unlock()
		u.t.Fatalf("%s: waiting for %s: %v\ntyping seen: %v", u.ID, what, err, seen)
	}
}
