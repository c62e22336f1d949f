package ucwa

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

const (
	carol = sfb.URI("sip:carol@contoso.com")
	dave  = sfb.URI("sip:dave@contoso.com")
)

// startGroupSim is startSim with carol and dave on native clients too, and
// alice signed in.
func startGroupSim(t *testing.T) (*sim.Server, sfb.GroupSession, *recorder) {
	t.Helper()
	srv, tr := startSim(t, sim.Options{})
	require.NoError(t, srv.AddUser(sim.User{URI: carol, DisplayName: "Carol Giorgi", Password: "pw-carol"}))
	require.NoError(t, srv.AddUser(sim.User{URI: dave, DisplayName: "Dave Lister", Password: "pw-dave"}))
	s, rec := simSignIn(t, tr)
	gs, ok := s.(sfb.GroupSession)
	require.True(t, ok, "the UCWA session carries multi-party conversations")
	// Invitations go to applications that are polling.
	require.Eventually(t, func() bool { return srv.PendingGETs(alice) > 0 }, waitFor, tick)
	return srv, gs, rec
}

// joinedIn lists who was reported as joining thread, in order.
func joinedIn(evts []sfb.Event, thread string) []sfb.URI {
	var out []sfb.URI
	for _, j := range eventsOf[sfb.ParticipantJoined](evts) {
		if j.Conversation.ThreadID == thread {
			out = append(out, j.Person.URI)
		}
	}
	return out
}

func groupMessages(evts []sfb.Event, thread string) []sfb.MessageReceived {
	var out []sfb.MessageReceived
	for _, m := range messages(evts) {
		if m.Conversation.Group && m.Conversation.ThreadID == thread {
			out = append(out, m)
		}
	}
	return out
}

func TestSimGroupStartedOnSfB(t *testing.T) {
	srv, gs, rec := startGroupSim(t)
	ctx := context.Background()
	thread, err := srv.StartGroup(ctx, bob, []sfb.URI{alice, carol}, "Quarterly numbers", "")
	require.NoError(t, err)

	// Every participant there when alice joined, alice included.
	require.Eventually(t, func() bool { return len(joinedIn(rec.all(), thread)) == 3 }, waitFor, tick)
	joined := eventsOf[sfb.ParticipantJoined](rec.all())
	assert.Equal(t, alice, joined[0].Person.URI, "alice first: she joined")
	assert.ElementsMatch(t, []sfb.URI{alice, bob, carol}, joinedIn(rec.all(), thread))
	assert.Equal(t, sfb.Conversation{ThreadID: thread, Group: true, Subject: "Quarterly numbers"}, joined[0].Conversation)

	require.NoError(t, srv.SendGroupMessage(ctx, thread, bob, sfb.Message{Text: "ready?", HTML: "<b>ready?</b>"}))
	require.Eventually(t, func() bool { return len(groupMessages(rec.all(), thread)) == 1 }, waitFor, tick)
	m := groupMessages(rec.all(), thread)[0]
	assert.Equal(t, bob, m.From.URI)
	assert.Equal(t, "ready?", m.Message.Text)
	assert.Empty(t, m.Conversation.Peer)
	assert.Empty(t, eventsOf[sfb.ConversationEnded](rec.all()))

	sent, err := gs.SendGroupMessage(ctx, sfb.Group{ThreadID: thread, Participants: []sfb.URI{bob, carol}}, sfb.Message{Text: "yes"})
	require.NoError(t, err)
	assert.NotEmpty(t, sent.ID)
	assert.Equal(t, []string{"yes"}, receivedTexts(srv, bob))
	assert.Equal(t, []string{"ready?", "yes"}, receivedTexts(srv, carol))
	g, _ := srv.GroupInfo(thread)
	assert.Len(t, g.Participants, 3, "sent in the live conference, not a new one")

	// dave joins, carol leaves, the subject changes.
	require.NoError(t, srv.AddGroupParticipant(ctx, thread, bob, dave))
	require.Eventually(t, func() bool { return len(joinedIn(rec.all(), thread)) == 4 }, waitFor, tick)
	assert.Equal(t, dave, joinedIn(rec.all(), thread)[3])
	require.NoError(t, srv.LeaveGroup(ctx, thread, carol))
	require.Eventually(t, func() bool { return len(eventsOf[sfb.ParticipantLeft](rec.all())) == 1 }, waitFor, tick)
	left := eventsOf[sfb.ParticipantLeft](rec.all())[0]
	assert.Equal(t, carol, left.URI)
	assert.False(t, left.Declined)
	require.NoError(t, srv.SetGroupSubject(ctx, thread, "Numbers, final"))
	require.Eventually(t, func() bool { return len(eventsOf[sfb.SubjectChanged](rec.all())) == 1 }, waitFor, tick)
	assert.Equal(t, "Numbers, final", eventsOf[sfb.SubjectChanged](rec.all())[0].Subject)

	// Typing both ways.
	require.NoError(t, srv.SetGroupTyping(ctx, thread, dave, true))
	require.Eventually(t, func() bool {
		for _, tc := range eventsOf[sfb.TypingChanged](rec.all()) {
			if tc.From == dave && tc.Typing && tc.Conversation.Group && tc.Conversation.ThreadID == thread {
				return true
			}
		}
		return false
	}, waitFor, tick)
	require.NoError(t, gs.SetGroupTyping(ctx, thread, true))
	assert.True(t, srv.GroupTyping(thread, alice))

	// alice leaves: she is told she is out, the others see her go.
	require.NoError(t, gs.LeaveGroup(ctx, thread))
	require.Eventually(t, func() bool {
		for _, l := range eventsOf[sfb.ParticipantLeft](rec.all()) {
			if l.URI == alice {
				return true
			}
		}
		return false
	}, waitFor, tick)
}

func TestSimGroupEscalationAndDecline(t *testing.T) {
	srv, gs, rec := startGroupSim(t)
	ctx := context.Background()
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "1:1 first"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)
	thread := messages(rec.all())[0].Conversation.ThreadID
	require.NotEmpty(t, thread)

	// bob adds carol on his SfB client: the conversation escalates. His
	// client offers that once alice's application has accepted, which may
	// land after her handler saw the first message.
	require.Eventually(t, func() bool { return srv.AddGroupParticipant(ctx, thread, bob, carol) == nil }, waitFor, tick)
	require.Eventually(t, func() bool { return len(joinedIn(rec.all(), thread)) == 3 }, waitFor, tick)
	assert.Equal(t, []sfb.URI{alice, bob, carol}, joinedIn(rec.all(), thread))
	require.NoError(t, srv.SendGroupMessage(ctx, thread, carol, sfb.Message{Text: "hi all"}))
	require.Eventually(t, func() bool { return len(groupMessages(rec.all(), thread)) == 1 }, waitFor, tick)
	assert.Equal(t, carol, groupMessages(rec.all(), thread)[0].From.URI)

	// A 1:1 message to bob does not go into the conference.
	_, err := gs.(sfb.Session).SendMessage(ctx, bob, sfb.Message{Text: "just you"})
	require.NoError(t, err)
	assert.Equal(t, []string{"just you"}, receivedTexts(srv, bob)[len(receivedTexts(srv, bob))-1:])
	assert.NotContains(t, receivedTexts(srv, carol), "just you")

	// alice adds dave, who declines.
	require.NoError(t, srv.RejectMessages(dave, true))
	require.NoError(t, gs.AddParticipant(ctx, sfb.Group{ThreadID: thread}, dave))
	require.Eventually(t, func() bool { return len(eventsOf[sfb.ParticipantLeft](rec.all())) == 1 }, waitFor, tick)
	l := eventsOf[sfb.ParticipantLeft](rec.all())[0]
	assert.Equal(t, sfb.ParticipantLeft{Conversation: sfb.Conversation{ThreadID: thread, Group: true}, URI: dave, Declined: true}, l)
}

func TestSimGroupRestartAfterExpiry(t *testing.T) {
	srv, gs, rec := startGroupSim(t)
	ctx := context.Background()
	thread, err := srv.StartGroup(ctx, bob, []sfb.URI{alice, carol}, "Lunch", "")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(joinedIn(rec.all(), thread)) == 3 }, waitFor, tick)
	before, _ := srv.GroupInfo(thread)
	require.NoError(t, srv.EndGroup(thread))
	require.Eventually(t, func() bool {
		ls := eventsOf[sfb.ParticipantLeft](rec.all())
		return len(ls) == 1 && ls[0].URI == alice
	}, waitFor, tick, "the end of the conference takes alice out")

	g := sfb.Group{ThreadID: thread, Subject: "Lunch", Participants: []sfb.URI{bob, carol}}
	_, err = gs.SendGroupMessage(ctx, g, sfb.Message{Text: "still on?"})
	require.NoError(t, err)
	after, ok := srv.GroupInfo(thread)
	require.True(t, ok, "started again under the same thread ID")
	assert.NotEqual(t, before.ConferenceID, after.ConferenceID)
	assert.Equal(t, "Lunch", after.Subject)
	assert.ElementsMatch(t, []sfb.URI{alice, bob, carol}, after.Participants)
	require.Eventually(t, func() bool { return len(joinedIn(rec.all(), thread)) == 6 }, waitFor, tick)
	assert.ElementsMatch(t, []sfb.URI{alice, bob, carol}, joinedIn(rec.all(), thread)[3:], "joined again: alice, bob, carol")
	assert.Equal(t, []string{"still on?"}, receivedTexts(srv, bob))
	assert.Equal(t, []string{"still on?"}, receivedTexts(srv, carol))
	for _, r := range srv.Received(carol) {
		assert.Equal(t, thread, r.ThreadID)
		assert.True(t, r.Group)
	}

	// Nobody to invite: a delivery failure.
	require.NoError(t, srv.EndGroup(thread))
	require.NoError(t, srv.RejectMessages(bob, true))
	require.NoError(t, srv.RejectMessages(carol, true))
	_, err = gs.SendGroupMessage(ctx, g, sfb.Message{Text: "anyone?"})
	require.ErrorIs(t, err, sfb.ErrDeliveryFailed)
}

func TestSimGroupOwnEndpointMessageIsFromSelf(t *testing.T) {
	srv, _, rec := startGroupSim(t)
	ctx := context.Background()
	// alice starts the conversation on her own SfB client; the bridge's
	// endpoint is in it too.
	thread, err := srv.StartGroup(ctx, alice, []sfb.URI{bob, carol}, "", "")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(joinedIn(rec.all(), thread)) == 3 }, waitFor, tick)
	require.NoError(t, srv.SendGroupMessage(ctx, thread, alice, sfb.Message{Text: "typed on my desk"}))
	require.NoError(t, srv.SendGroupMessage(ctx, thread, bob, sfb.Message{Text: "seen"}))
	require.Eventually(t, func() bool { return len(groupMessages(rec.all(), thread)) == 2 }, waitFor, tick)
	msgs := groupMessages(rec.all(), thread)
	assert.Equal(t, alice, msgs[0].From.URI, "sent by me elsewhere")
	assert.Equal(t, "typed on my desk", msgs[0].Message.Text)
	assert.Equal(t, bob, msgs[1].From.URI)
	assert.Equal(t, []string{"typed on my desk", "seen"}, receivedTexts(srv, carol))
}

// TestSimGroupResume: a group message whose handling the process did not
// finish comes again after resume with the same ID, and the resumed
// session sends into the conference it was in, without starting another.
func TestSimGroupResume(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	require.NoError(t, srv.AddUser(sim.User{URI: carol, DisplayName: "Carol Giorgi", Password: "pw-carol"}))
	g := newGatedRecorder("held")
	s1 := signInWith(t, tr, "", g.handle)
	ctx := context.Background()
	require.Eventually(t, func() bool { return srv.PendingGETs(alice) > 0 }, waitFor, tick)
	thread, err := srv.StartGroup(ctx, bob, []sfb.URI{alice, carol}, "Resumed", "")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(joinedIn(g.all(), thread)) == 3 }, waitFor, tick)
	require.NoError(t, srv.SendGroupMessage(ctx, thread, bob, sfb.Message{Text: "held"}))
	require.Eventually(t, func() bool { return g.isStarted("held") }, waitFor, tick)
	heldID := g.startedEvent("held").ID
	stored := s1.ResumeState()
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	require.NoError(t, s1.Detach(dctx))
	cancel()
	require.Eventually(t, func() bool { return srv.PendingGETs(alice) == 0 }, waitFor, tick)
	before, _ := srv.GroupInfo(thread)

	rec2 := &recorder{}
	s2 := signInWith(t, newTransport(t, srv), stored, rec2.handle)
	require.Eventually(t, func() bool { return len(groupMessages(rec2.all(), thread)) == 1 }, waitFor, tick)
	m := groupMessages(rec2.all(), thread)[0]
	assert.Equal(t, heldID, m.ID, "the redelivered message keeps its ID")
	assert.Equal(t, "held", m.Message.Text)
	assert.Equal(t, sfb.Conversation{ThreadID: thread, Group: true, Subject: "Resumed"}, m.Conversation)

	_, err = s2.(sfb.GroupSession).SendGroupMessage(ctx, sfb.Group{ThreadID: thread, Participants: []sfb.URI{bob, carol}}, sfb.Message{Text: "back"})
	require.NoError(t, err)
	after, _ := srv.GroupInfo(thread)
	assert.Equal(t, before.ConferenceID, after.ConferenceID, "sent into the conference it was in")
	assert.Equal(t, []string{"held", "back"}, receivedTexts(srv, carol))
	assert.Empty(t, eventsOf[sfb.ParticipantLeft](rec2.all()))
	assert.Equal(t, 1, srv.Applications(alice))
}

// TestSimGroupSendAfterLeavingRejoins: after leaving a conference that
// goes on, a message to its thread joins it again (startMessaging with its
// thread ID continues it) instead of starting another.
func TestSimGroupSendAfterLeavingRejoins(t *testing.T) {
	srv, gs, rec := startGroupSim(t)
	ctx := context.Background()
	// alice uses only the bridge: her own SfB client is signed out.
	require.NoError(t, srv.SetNativeClient(alice, false))
	thread, err := srv.StartGroup(ctx, bob, []sfb.URI{alice, carol}, "Ongoing", "")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(joinedIn(rec.all(), thread)) == 3 }, waitFor, tick)
	before, _ := srv.GroupInfo(thread)
	require.NoError(t, gs.LeaveGroup(ctx, thread))
	require.Eventually(t, func() bool {
		g, _ := srv.GroupInfo(thread)
		return len(g.Participants) == 2
	}, waitFor, tick)
	require.Eventually(t, func() bool { return len(eventsOf[sfb.ParticipantLeft](rec.all())) == 1 }, waitFor, tick)
	assert.Equal(t, alice, eventsOf[sfb.ParticipantLeft](rec.all())[0].URI)

	_, err = gs.SendGroupMessage(ctx, sfb.Group{ThreadID: thread, Subject: "Ongoing", Participants: []sfb.URI{bob, carol}}, sfb.Message{Text: "I'm back"})
	require.NoError(t, err)
	after, _ := srv.GroupInfo(thread)
	assert.Equal(t, before.ConferenceID, after.ConferenceID, "the same conference, joined again")
	assert.ElementsMatch(t, []sfb.URI{alice, bob, carol}, after.Participants)
	assert.Equal(t, []string{"I'm back"}, receivedTexts(srv, carol))
	require.Eventually(t, func() bool { return len(joinedIn(rec.all(), thread)) == 6 }, waitFor, tick, "alice, bob and carol again")
}

// TestSimGroupSendAfterApplicationGone: the application expired; the
// message goes through a new one, into the same conference.
func TestSimGroupSendAfterApplicationGone(t *testing.T) {
	srv, gs, rec := startGroupSim(t)
	ctx := context.Background()
	thread, err := srv.StartGroup(ctx, bob, []sfb.URI{alice, carol}, "", "")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(joinedIn(rec.all(), thread)) == 3 }, waitFor, tick)
	before, _ := srv.GroupInfo(thread)
	srv.DeleteApplications(alice)
	_, err = gs.SendGroupMessage(ctx, sfb.Group{ThreadID: thread, Participants: []sfb.URI{bob, carol}}, sfb.Message{Text: "new app"})
	require.NoError(t, err)
	after, _ := srv.GroupInfo(thread)
	assert.Equal(t, before.ConferenceID, after.ConferenceID)
	assert.Equal(t, []string{"new app"}, receivedTexts(srv, carol))
	assert.Equal(t, 1, srv.Applications(alice))
}
