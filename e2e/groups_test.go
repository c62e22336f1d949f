package e2e

import (
	"context"
	"slices"
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

// addSfBUser adds a simulated SfB user (signed in with their native
// client) and returns it.
func (env *testEnv) addSfBUser(t *testing.T, name, displayName string) sim.User {
	t.Helper()
	u := sim.User{URI: sfb.URI("sip:" + name + "@contoso.com"), DisplayName: displayName, Password: "unused"}
	require.NoError(t, env.sim.AddUser(u))
	return u
}

// joinGroupRoom waits for the invite to a group room (neither the
// management room, the space nor room, when set) and joins it.
func (env *testEnv) joinGroupRoom(t *testing.T, u *matrixUser, from int, mgmt id.RoomID) id.RoomID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hop)
	defer cancel()
	invite := u.waitFor(from, hop, "an invite to the group room", func(evt *event.Event) bool {
		return isInvite(u.ID)(evt) && evt.RoomID != mgmt && !u.isSpace(evt.RoomID)
	})
	_, err := u.Client.JoinRoomByID(ctx, invite.RoomID)
	require.NoError(t, err)
	return invite.RoomID
}

// waitGroupReceived waits until to received text from from in a group
// conversation and returns what it received.
func (env *testEnv) waitGroupReceived(t *testing.T, to, from sfb.URI, match func(string) bool, what string) sim.Received {
	t.Helper()
	return env.waitReceivedBy(t, to, what, func(r sim.Received) bool {
		return r.Group && r.From == from && match(r.Message.Text)
	})
}

// inGroup reports whether uri is a participant of the live conversation.
func (env *testEnv) inGroup(thread string, uri sfb.URI) bool {
	g, ok := env.sim.GroupInfo(thread)
	return ok && slices.Contains(g.Participants, uri)
}

func isMembership(room id.RoomID, user id.UserID, m event.Membership) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.StateKey != nil &&
			*evt.StateKey == user.String() && evt.Content.AsMember().Membership == m
	}
}

// A three-person SfB conversation (the migrated user and two SfB
// colleagues) is a group room named after them; messages cross both ways,
// SfB joins and leaves show in the room, a ghost invited in Matrix is
// added on SfB, the conference ending changes nothing for the room, and
// the user leaving the room leaves the conversation.
func TestGroupChatJoinsAndLeavesBothWays(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "greta")
	carol := env.addSfBUser(t, "greta.carol", "Carol Greta")
	dave := env.addSfBUser(t, "greta.dave", "Dave Greta")
	erin := env.addSfBUser(t, "greta.erin", "Erin Greta")
	carolGhost, daveGhost, erinGhost := env.st.GhostID(carol.URI.Address()), env.st.GhostID(dave.URI.Address()), env.st.GhostID(erin.URI.Address())
	ctx, cancel := context.WithTimeout(context.Background(), 10*hop)
	defer cancel()

	from := p.mx.mark()
	thread, err := env.sim.StartGroup(ctx, p.colleague.URI, []sfb.URI{p.self.URI, carol.URI}, "", "")
	require.NoError(t, err)
	room := env.joinGroupRoom(t, p.mx, from, p.mgmt)
	p.mx.waitFor(from, hop, "the room named after the participants", func(evt *event.Event) bool {
		if evt.RoomID != room || evt.Type != event.StateRoomName {
			return false
		}
		name := evt.Content.AsRoomName().Name
		return strings.Contains(name, "Carol Greta") && strings.Contains(name, "Colleague of greta")
	})

	require.NoError(t, env.sim.SendGroupMessage(ctx, thread, p.colleague.URI, sfb.Message{Text: "hello group"}))
	p.mx.waitFor(from, hop, "the colleague's message", isMessage(room, p.ghost, equals("hello group")))
	require.NoError(t, env.sim.SendGroupMessage(ctx, thread, carol.URI, sfb.Message{Text: "carol here"}))
	p.mx.waitFor(from, hop, "Carol's message", isMessage(room, carolGhost, equals("carol here")))

	_, err = p.mx.Client.SendText(ctx, room, "hi both")
	require.NoError(t, err)
	got := env.waitGroupReceived(t, p.colleague.URI, p.self.URI, equals("hi both"), "the Matrix message")
	assert.Equal(t, thread, got.ThreadID)
	env.waitGroupReceived(t, carol.URI, p.self.URI, equals("hi both"), "the Matrix message")

	// SfB: Dave is added, Carol leaves.
	require.NoError(t, env.sim.AddGroupParticipant(ctx, thread, p.colleague.URI, dave.URI))
	p.mx.waitFor(from, hop, "Dave's ghost joining", isMembership(room, daveGhost, event.MembershipJoin))
	require.NoError(t, env.sim.LeaveGroup(ctx, thread, carol.URI))
	p.mx.waitFor(from, hop, "Carol's ghost leaving", isMembership(room, carolGhost, event.MembershipLeave))

	// Matrix: inviting Erin's ghost adds her on SfB.
	_, err = p.mx.Client.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: erinGhost})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return env.inGroup(thread, erin.URI) }, hop, 50*time.Millisecond, "Erin never added on SfB")

	// The conference ends; the room stays and the next message starts it
	// again under the same thread.
	before, ok := env.sim.GroupInfo(thread)
	require.True(t, ok)
	require.NoError(t, env.sim.EndGroup(thread))
	_, err = p.mx.Client.SendText(ctx, room, "after the end")
	require.NoError(t, err)
	got = env.waitGroupReceived(t, p.colleague.URI, p.self.URI, equals("after the end"), "the message after the conference ended")
	assert.Equal(t, thread, got.ThreadID)
	after, ok := env.sim.GroupInfo(thread)
	require.True(t, ok)
	assert.NotEqual(t, before.ConferenceID, after.ConferenceID, "a new conference")

	// Matrix: the user leaves the room, and so the conversation.
	require.True(t, env.inGroup(thread, p.self.URI))
	_, err = p.mx.Client.LeaveRoom(ctx, room)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !env.inGroup(thread, p.self.URI) }, hop, 50*time.Millisecond, "the user is still in the SfB conversation")
}

// A Matrix room created with SfB ghosts in it becomes an SfB group chat;
// its first message starts the conversation, replies come back into the
// room, and a Matrix user without a login writes through the creator's
// login with their name in front.
func TestGroupStartedFromMatrix(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "jana")
	carol := env.addSfBUser(t, "jana.carol", "Carol Jana")
	carolGhost := env.st.GhostID(carol.URI.Address())
	ctx, cancel := context.WithTimeout(context.Background(), 10*hop)
	defer cancel()

	from := p.mx.mark()
	created, err := p.mx.Client.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat", Name: "Planning Jana",
		Invite: []id.UserID{p.ghost, carolGhost},
	})
	require.NoError(t, err)
	room := created.RoomID
	p.mx.waitFor(from, hop, "the bot joining", isJoin(room, env.st.Bot))
	p.mx.waitFor(from, hop, "the bot saying the room is bridged", isMessage(room, env.st.Bot, func(b string) bool {
		return strings.Contains(b, "now a Skype for Business group chat")
	}))
	p.mx.waitFor(from, hop, "the colleague's ghost joining", isJoin(room, p.ghost))
	p.mx.waitFor(from, hop, "Carol's ghost joining", isJoin(room, carolGhost))

	_, err = p.mx.Client.SendText(ctx, room, "first from matrix")
	require.NoError(t, err)
	got := env.waitGroupReceived(t, p.colleague.URI, p.self.URI, equals("first from matrix"), "the first message")
	env.waitGroupReceived(t, carol.URI, p.self.URI, equals("first from matrix"), "the first message")
	g, ok := env.sim.GroupInfo(got.ThreadID)
	require.True(t, ok)
	assert.Equal(t, "Planning Jana", g.Subject)

	require.NoError(t, env.sim.SendGroupMessage(ctx, got.ThreadID, carol.URI, sfb.Message{Text: "carol replies"}))
	p.mx.waitFor(from, hop, "Carol's reply", isMessage(room, carolGhost, equals("carol replies")))

	// A Matrix user without a login, relayed through the creator.
	acct, err := env.st.HS.RegisterUser(ctx, "jana-guest", "jana-guest-matrix-password", false)
	require.NoError(t, err)
	guest := newMatrixUser(t, env.st.HS, acct)
	require.NoError(t, guest.Client.SetDisplayName(ctx, "Guest Jana"))
	_, err = p.mx.Client.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: guest.ID})
	require.NoError(t, err)
	guest.waitFor(0, hop, "the invite", isInvite(guest.ID))
	_, err = guest.Client.JoinRoomByID(ctx, room)
	require.NoError(t, err)
	_, err = guest.Client.SendText(ctx, room, "guest says hi")
	require.NoError(t, err)
	env.waitGroupReceived(t, p.colleague.URI, p.self.URI, equals("Guest Jana: guest says hi"), "the relayed message with its sender's name")
}

// Two migrated users in one SfB conversation share one room, and each
// message shows there once: from SfB (both sessions receive it) and from
// Matrix (the other user's session receives it back).
func TestGroupTwoMigratedUsersSeeEachMessageOnce(t *testing.T) {
	env := setup(t)
	helga := env.newPair(t, "helga")
	ivan := env.newPair(t, "ivan")
	ctx, cancel := context.WithTimeout(context.Background(), 10*hop)
	defer cancel()

	hFrom, iFrom := helga.mx.mark(), ivan.mx.mark()
	thread, err := env.sim.StartGroup(ctx, helga.colleague.URI, []sfb.URI{helga.self.URI, ivan.self.URI}, "Budget helga", "")
	require.NoError(t, err)
	room := env.joinGroupRoom(t, helga.mx, hFrom, helga.mgmt)
	require.Equal(t, room, env.joinGroupRoom(t, ivan.mx, iFrom, ivan.mgmt), "one room for both")

	require.NoError(t, env.sim.SendGroupMessage(ctx, thread, helga.colleague.URI, sfb.Message{Text: "once please"}))
	helga.mx.waitFor(hFrom, hop, "the colleague's message", isMessage(room, helga.ghost, equals("once please")))
	ivan.mx.waitFor(iFrom, hop, "the colleague's message", isMessage(room, helga.ghost, equals("once please")))

	_, err = helga.mx.Client.SendText(ctx, room, "from helga")
	require.NoError(t, err)
	env.waitGroupReceived(t, helga.colleague.URI, helga.self.URI, equals("from helga"), "Helga's message")
	// Ivan's session receives Helga's message too.
	env.waitGroupReceived(t, ivan.self.URI, helga.self.URI, equals("from helga"), "Helga's message on Ivan's side")

	count := func(body string) int {
		n := 0
		for _, evt := range ivan.mx.Events(iFrom) {
			if evt.RoomID == room && evt.Type == event.EventMessage && evt.Content.AsMessage().Body == body {
				n++
			}
		}
		return n
	}
	// A later message on Ivan's SfB session reaches his room after any
	// second copy of the earlier ones would have: no fixed window needed.
	require.NoError(t, env.sim.SendGroupMessage(ctx, thread, helga.colleague.URI, sfb.Message{Text: "last one"}))
	ivan.mx.waitFor(iFrom, hop, "the colleague's last message", isMessage(room, helga.ghost, equals("last one")))
	assert.Equal(t, 1, count("once please"), "the colleague's message shown once:\n%s", ivan.mx.describe(iFrom))
	assert.Equal(t, 1, count("from helga"), "Helga's message shown once:\n%s", ivan.mx.describe(iFrom))
}

// A 1:1 conversation escalated on SfB (the colleague adds a third person)
// continues in a new group room; the 1:1 room stays the 1:1 room.
func TestEscalatedChatBecomesGroupRoom(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "kora")
	carol := env.addSfBUser(t, "kora.carol", "Carol Kora")
	ctx, cancel := context.WithTimeout(context.Background(), 10*hop)
	defer cancel()

	dm := env.openPortal(t, p, "just us")
	_, err := p.mx.Client.SendText(ctx, dm, "yes, just us")
	require.NoError(t, err)
	got := env.waitReceived(t, p, "the reply", func(r sim.Received) bool { return r.Message.Text == "yes, just us" })
	require.NotEmpty(t, got.ThreadID)

	from := p.mx.mark()
	require.NoError(t, env.sim.AddGroupParticipant(ctx, got.ThreadID, p.colleague.URI, carol.URI))
	room := env.joinGroupRoom(t, p.mx, from, p.mgmt)
	assert.NotEqual(t, dm, room, "a room of its own")
	require.NoError(t, env.sim.SendGroupMessage(ctx, got.ThreadID, p.colleague.URI, sfb.Message{Text: "now with Carol"}))
	p.mx.waitFor(from, hop, "the message in the group room", isMessage(room, p.ghost, equals("now with Carol")))

	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: "back to just us"}))
	p.mx.waitFor(from, hop, "a 1:1 message in the 1:1 room", isMessage(dm, p.ghost, equals("back to just us")))
}
