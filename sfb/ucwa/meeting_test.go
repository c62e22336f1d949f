package ucwa

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// waitEvents waits until the recorder holds n events of type T.
func waitEvents[T sfb.Event](t *testing.T, rec *recorder, n int) []T {
	t.Helper()
	require.Eventually(t, func() bool { return len(eventsOf[T](rec.all())) >= n }, waitFor, tick, "want %d %T", n, *new(T))
	return eventsOf[T](rec.all())
}

func TestSimMeetingInvitationWithEveryField(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	_, rec := simSignIn(t, tr)
	ctx := context.Background()
	dial := []sim.DialInRegion{{Name: "Wiesbaden", Number: "tel:+49611555000", Languages: []string{"de-DE"}}, {Name: "Redmond", Number: "tel:+14255550001"}}
	info, err := srv.InviteToMeeting(ctx, bob, alice, sim.MeetingInvite{Kind: sim.MeetNow, Subject: "Quarterly numbers", ConferenceID: "12983487", DialIn: dial})
	require.NoError(t, err)
	assert.Regexp(t, `^https://meet\.contoso\.com/bob/[A-Z0-9]{8}$`, info.JoinURL)

	got := waitEvents[sfb.MeetingInvited](t, rec, 1)[0]
	assert.Equal(t, sfb.URI(info.URI), got.Meeting.URI, "the onlineMeetingUri, its conference ID's case kept")
	assert.Contains(t, string(got.Meeting.URI), info.ID)
	assert.Equal(t, info.JoinURL, got.Meeting.JoinURL)
	assert.Equal(t, "Quarterly numbers", got.Meeting.Subject)
	assert.Equal(t, sfb.Person{URI: bob, DisplayName: "Bob Builder"}, got.Meeting.Organizer)
	assert.Equal(t, "12983487", got.Meeting.ConferenceID)
	assert.Equal(t, []sfb.DialInNumber{{Region: "Wiesbaden", Number: "+49611555000"}, {Region: "Redmond", Number: "+14255550001"}}, got.Meeting.DialIn)
	assert.Equal(t, bob, got.From.URI)
	assert.Equal(t, bob, got.Conversation.Peer, "a meeting of two is the 1:1 conversation's")
	assert.False(t, got.Conversation.Group)
	assert.NotEmpty(t, got.Conversation.ThreadID)
	assert.NotEmpty(t, got.ID)
	assert.False(t, got.Cancelled)
}

func TestSimMeetingUpdateAndCancellationKeepTheURI(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	_, rec := simSignIn(t, tr)
	ctx := context.Background()
	info, err := srv.InviteToMeeting(ctx, bob, alice, sim.MeetingInvite{Kind: sim.MeetingScheduled, Subject: "Planning", Message: "Please join"})
	require.NoError(t, err)
	first := waitEvents[sfb.MeetingInvited](t, rec, 1)[0]
	assert.Empty(t, first.Meeting.ConferenceID, "a meeting without dial-in")
	assert.Empty(t, first.Meeting.DialIn)

	subject := "Planning (moved)"
	require.NoError(t, srv.UpdateMeeting(ctx, bob, info.ID, sim.MeetingUpdate{Subject: &subject}))
	updated := waitEvents[sfb.MeetingInvited](t, rec, 2)[1]
	assert.Equal(t, first.Meeting.URI, updated.Meeting.URI)
	assert.Equal(t, subject, updated.Meeting.Subject)
	assert.Equal(t, first.Meeting.JoinURL, updated.Meeting.JoinURL)
	assert.NotEqual(t, first.ID, updated.ID, "an update is a new event")
	assert.False(t, updated.Cancelled)

	require.NoError(t, srv.CancelMeeting(ctx, bob, info.ID))
	cancelled := waitEvents[sfb.MeetingInvited](t, rec, 3)[2]
	assert.True(t, cancelled.Cancelled)
	assert.Equal(t, first.Meeting.URI, cancelled.Meeting.URI)
	assert.Equal(t, subject, cancelled.Meeting.Subject)
	assert.Equal(t, bob, cancelled.Conversation.Peer)
	assert.NotEqual(t, updated.ID, cancelled.ID)
	assert.Len(t, eventsOf[sfb.MeetingInvited](rec.all()), 3)
	// The invitation's conversation links an onlineMeeting, as a group
	// conversation's does, but the application never joined it.
	assert.Empty(t, eventsOf[sfb.ParticipantJoined](rec.all()), "a meeting invitation is no group chat")
	assert.Empty(t, eventsOf[sfb.ParticipantLeft](rec.all()))
}

func TestSimEscalatedMeetingIsTheGroupConversation(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	carol := sfb.URI("sip:carol@contoso.com")
	require.NoError(t, srv.AddUser(sim.User{URI: carol, DisplayName: "Carol", Password: "pw"}))
	_, rec := simSignIn(t, tr)
	_, err := srv.InviteToMeeting(context.Background(), bob, alice, sim.MeetingInvite{Kind: sim.MeetingEscalation, Subject: "Escalated", ThreadID: "thread-1", Others: []sfb.URI{carol}})
	require.NoError(t, err)
	got := waitEvents[sfb.MeetingInvited](t, rec, 1)[0]
	assert.Equal(t, sfb.Conversation{ThreadID: "thread-1", Group: true, Subject: "Escalated"}, got.Conversation)
	assert.Equal(t, bob, got.From.URI)
}

func TestSimForwardedMeetingNamesItsOrganizer(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	carol := sfb.URI("sip:carol@contoso.com")
	require.NoError(t, srv.AddUser(sim.User{URI: carol, DisplayName: "Carol", Password: "pw"}))
	_, rec := simSignIn(t, tr)
	info, err := srv.InviteToMeeting(context.Background(), carol, alice, sim.MeetingInvite{Kind: sim.MeetingScheduled, Organizer: bob, Subject: "Board"})
	require.NoError(t, err)
	assert.Contains(t, info.JoinURL, "/bob/")
	got := waitEvents[sfb.MeetingInvited](t, rec, 1)[0]
	assert.Equal(t, carol, got.From.URI)
	assert.Equal(t, carol, got.Conversation.Peer, "the portal of who sent it")
	assert.Equal(t, bob, got.Meeting.Organizer.URI)
	assert.Equal(t, info.JoinURL, got.Meeting.JoinURL)
}

func TestSimCallDeclinedWithTheReason(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	s, rec := simSignIn(t, tr)
	ctx := context.Background()
	require.NoError(t, srv.SetNativeClient(alice, false))
	id, err := srv.Call(ctx, bob, alice, true)
	require.NoError(t, err)
	ring := waitEvents[sfb.CallRinging](t, rec, 1)[0]
	assert.Equal(t, bob, ring.From.URI)
	assert.Equal(t, "Bob Builder", ring.From.DisplayName)
	assert.Equal(t, bob, ring.Conversation.Peer)
	assert.True(t, ring.Video, "the offer has a video line")

	require.NoError(t, s.DeclineCall(ctx, ring.ID, sfb.CallDeclineGlobal))
	res, err := srv.CallResult(id)
	require.NoError(t, err)
	assert.Equal(t, []string{"Global"}, res.DeclineReasons)
	assert.Equal(t, "Declined", res.State)
	require.NoError(t, s.DeclineCall(ctx, ring.ID, sfb.CallDeclineGlobal), "a call no longer ringing: nothing to do")
	assert.Error(t, s.DeclineCall(ctx, ring.ID, "Busy"), "not a CallDeclineReason")

	// The session's own decline is not reported as an ended call: the
	// next event is the next call's.
	id2, err := srv.Call(ctx, bob, alice, false)
	require.NoError(t, err)
	ring2 := waitEvents[sfb.CallRinging](t, rec, 2)[1]
	assert.False(t, ring2.Video)
	require.NoError(t, srv.CancelCall(ctx, id2))
	ended := waitEvents[sfb.CallEnded](t, rec, 1)
	require.Len(t, ended, 1)
	assert.Equal(t, ring2.ID, ended[0].ID)
}

func TestSimCallLocalDeclineKeepsTheNativeClientRinging(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	s, rec := simSignIn(t, tr)
	ctx := context.Background()
	id, err := srv.Call(ctx, bob, alice, false)
	require.NoError(t, err)
	ring := waitEvents[sfb.CallRinging](t, rec, 1)[0]
	require.NoError(t, s.DeclineCall(ctx, ring.ID, sfb.CallDeclineLocal))
	res, err := srv.CallResult(id)
	require.NoError(t, err)
	assert.Equal(t, []string{"Local"}, res.DeclineReasons)
	assert.Equal(t, "Connecting", res.State, "alice's SfB client still rings")
}

func TestSimCallCancelledByTheCallerIsMissed(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	_, rec := simSignIn(t, tr)
	ctx := context.Background()
	id, err := srv.Call(ctx, bob, alice, false)
	require.NoError(t, err)
	ring := waitEvents[sfb.CallRinging](t, rec, 1)[0]
	require.NoError(t, srv.CancelCall(ctx, id))
	ended := waitEvents[sfb.CallEnded](t, rec, 1)[0]
	assert.Equal(t, ring.ID, ended.ID)
	assert.True(t, ended.Missed)
	assert.Equal(t, bob, ended.From.URI)
	assert.Equal(t, bob, ended.Conversation.Peer)
	res, err := srv.CallResult(id)
	require.NoError(t, err)
	assert.Equal(t, "Cancelled", res.State)
	assert.Empty(t, res.DeclineReasons)
}

func TestSimCallAnsweredElsewhereIsNotMissed(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	_, rec := simSignIn(t, tr)
	ctx := context.Background()
	id, err := srv.Call(ctx, bob, alice, false)
	require.NoError(t, err)
	waitEvents[sfb.CallRinging](t, rec, 1)
	require.NoError(t, srv.AnswerCall(ctx, id))
	ended := waitEvents[sfb.CallEnded](t, rec, 1)[0]
	assert.False(t, ended.Missed)
}

func TestSimCallNobodyAnswersIsMissed(t *testing.T) {
	srv, tr := startSim(t, sim.Options{InvitationTimeout: 300 * time.Millisecond})
	_, rec := simSignIn(t, tr)
	id, err := srv.Call(context.Background(), bob, alice, false)
	require.NoError(t, err)
	waitEvents[sfb.CallRinging](t, rec, 1)
	ended := waitEvents[sfb.CallEnded](t, rec, 1)[0]
	assert.True(t, ended.Missed)
	res, err := srv.CallResult(id)
	require.NoError(t, err)
	assert.Equal(t, "Failed", res.State)
}

func TestSimCreateMeeting(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	s, _ := simSignIn(t, tr)
	m, err := s.CreateMeeting(context.Background(), sfb.MeetingRequest{Subject: "Jour fixe", Attendees: []sfb.URI{bob}, Expires: time.Now().Add(2 * time.Hour)})
	require.NoError(t, err)
	mine := srv.OnlineMeetings(alice)
	require.Len(t, mine, 1)
	assert.Equal(t, mine[0].JoinURL, m.JoinURL)
	assert.Regexp(t, `^https://meet\.contoso\.com/alice/[A-Z0-9]{8}$`, m.JoinURL)
	assert.Equal(t, sfb.URI(mine[0].URI), m.URI)
	assert.Equal(t, "Jour fixe", m.Subject)
	assert.Equal(t, alice, m.Organizer.URI)
	assert.Equal(t, mine[0].ConferenceID, m.ConferenceID)
	assert.NotEmpty(t, m.ConferenceID)
	assert.Equal(t, []sfb.DialInNumber{{Region: "Redmond", Number: "+14255550001"}}, m.DialIn)

	_, err = s.CreateMeeting(context.Background(), sfb.MeetingRequest{Attendees: []sfb.URI{"not an address"}})
	assert.Error(t, err)
	assert.Len(t, srv.OnlineMeetings(alice), 1)
}

// TestMeetingUpdatedWithoutItsInvitation: a server that says only
// onlineMeeting "updated" (onlineMeeting_ref.md) still gets the change
// reported, under the same meeting URI.
func TestMeetingUpdatedWithoutItsInvitation(t *testing.T) {
	f := newFake(t)
	var mu sync.Mutex
	subject, gone := "Before", false
	f.mu.Lock()
	f.override = func(w http.ResponseWriter, r *http.Request, _ string) bool {
		a := "/ucwa/oauth/v1/applications/101"
		mu.Lock()
		conversationGone := gone
		mu.Unlock()
		if conversationGone && strings.Contains(r.URL.Path, "/conversations/m1") {
			writeJSON(w, 404, `{"code":"NotFound","subcode":"ConversationNotFound"}`)
			return true
		}
		switch r.URL.Path {
		case a + "/communication/conversations/m1":
			writeJSON(w, 200, `{"rel":"conversation","state":"Incoming","threadId":"t1","participantCount":2,
"_links":{"self":{"href":"`+r.URL.Path+`"},"onlineMeeting":{"href":"`+r.URL.Path+`/onlineMeeting"}}}`)
		case a + "/communication/conversations/m1/onlineMeeting":
			mu.Lock()
			s := subject
			mu.Unlock()
			writeJSON(w, 200, `{"rel":"onlineMeeting","onlineMeetingUri":"`+testMeetingURI+`","joinUrl":"https://meet.contoso.com/bob/IB88RLLY","subject":"`+s+`"}`)
		default:
			return false
		}
		return true
	}
	f.mu.Unlock()
	_, rec := signIn(t, newTestTransport(t, f), "secret")
	invitation := func(typ, subject string) string {
		return `[{"rel":"communication","href":"{APP}/communication","events":[{"link":{"rel":"onlineMeetingInvitation","href":"{APP}/communication/onlineMeetingInvitations/i1"},"type":"` + typ + `",
"_embedded":{"onlineMeetingInvitation":{"rel":"onlineMeetingInvitation","direction":"Incoming","state":"Connecting","onlineMeetingUri":"` + testMeetingURI + `","subject":"` + subject + `","threadId":"t1",
"_links":{"self":{"href":"{APP}/communication/onlineMeetingInvitations/i1"},"conversation":{"href":"{APP}/communication/conversations/m1"},"from":{"href":"{APP}/communication/conversations/m1/participants/bob@contoso.com","title":"Bob"}}}}}]}]`
	}
	f.pushSenders(invitation("started", "Before"))
	first := waitEvents[sfb.MeetingInvited](t, rec, 1)[0]
	assert.Equal(t, "Before", first.Meeting.Subject)
	assert.Equal(t, "https://meet.contoso.com/bob/IB88RLLY", first.Meeting.JoinURL)

	mu.Lock()
	subject = "After"
	mu.Unlock()
	f.pushSenders(`[{"rel":"conversation","href":"{APP}/communication/conversations/m1","events":[{"link":{"rel":"onlineMeeting","href":"{APP}/communication/conversations/m1/onlineMeeting"},
"in":{"rel":"conversation","href":"{APP}/communication/conversations/m1"},"type":"updated"}]}]`)
	second := waitEvents[sfb.MeetingInvited](t, rec, 2)[1]
	assert.Equal(t, "After", second.Meeting.Subject)
	assert.Equal(t, first.Meeting.URI, second.Meeting.URI)
	assert.NotEqual(t, first.ID, second.ID)

	// Once the meeting cannot be read any more, an update of the
	// invitation changes what it says and keeps the rest.
	mu.Lock()
	gone = true
	mu.Unlock()
	f.pushSenders(invitation("updated", "Before"))
	f.pushSenders(invitation("updated", "Renamed"))
	third := waitEvents[sfb.MeetingInvited](t, rec, 3)[2]
	assert.Equal(t, "Renamed", third.Meeting.Subject)
	assert.Equal(t, second.Meeting.JoinURL, third.Meeting.JoinURL)
	assert.Len(t, eventsOf[sfb.MeetingInvited](rec.all()), 3, "the unchanged invitation was not reported again")
}

// TestSimCreateMeetingAfterApplicationGone: the application expired; the
// meeting is created through a new one, as a message would be sent.
func TestSimCreateMeetingAfterApplicationGone(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	s, _ := simSignIn(t, tr)
	srv.DeleteApplications(alice)
	m, err := s.CreateMeeting(context.Background(), sfb.MeetingRequest{Subject: "After the gap", Attendees: []sfb.URI{bob}})
	require.NoError(t, err)
	mine := srv.OnlineMeetings(alice)
	require.Len(t, mine, 1)
	assert.Equal(t, mine[0].JoinURL, m.JoinURL)
	assert.Equal(t, 1, srv.Applications(alice))
}

// TestSimCallGoneAfterResumeEnds: the event channel resumed after
// inactivity and the server dropped the ringing call without a
// completion; the session asks and reports it ended (not missed: how it
// ended is unknown).
func TestSimCallGoneAfterResumeEnds(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	_, rec := simSignIn(t, tr)
	ctx := context.Background()
	_, err := srv.Call(ctx, bob, alice, true)
	require.NoError(t, err)
	ring := waitEvents[sfb.CallRinging](t, rec, 1)[0]
	srv.ForceResume(alice)
	ended := waitEvents[sfb.CallEnded](t, rec, 1)[0]
	assert.Equal(t, ring.ID, ended.ID)
	assert.False(t, ended.Missed)
	assert.Equal(t, bob, ended.From.URI)
}
