package sim_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// joinGroup accepts the next conference invitation of c and returns its
// conversation href and the invitation event.
func joinGroup(t *testing.T, c *client) (string, evt) {
	t.Helper()
	evs := c.await("conference conversation", is("conversation", "added"))
	convEv := evs[len(evs)-1]
	_, meeting := get(t, convEv.embedded(), "_links").(obj)["onlineMeeting"]
	require.True(t, meeting, "a conference's conversation links its onlineMeeting")
	evs = c.await("invitation", is("messagingInvitation", "started"))
	inv := evs[len(evs)-1]
	require.Equal(t, http.StatusNoContent, c.do("POST", get(t, inv.embedded(), "_links", "accept", "href").(string), "", "").status)
	return get(t, inv.embedded(), "_links", "conversation", "href").(string), inv
}

func TestGroupStartedOnSfBReachesEveryEndpoint(t *testing.T) {
	e := newEnv(t, sim.Options{})
	ctx := context.Background()
	a := e.signIn("alice@contoso.com", "alice-pw")
	a.makeMeAvailable("Plain", "Html")
	thread, err := e.sim.StartGroup(ctx, bob, []sfb.URI{alice, carol}, "Budget", "")
	require.NoError(t, err)
	conv, inv := joinGroup(t, a)
	assert.Equal(t, thread, inv.embedded()["threadId"])
	assert.Equal(t, "Budget", inv.embedded()["subject"])
	assert.Equal(t, "Incoming", inv.embedded()["direction"])
	assert.Equal(t, string(bob), get(t, inv.embedded(), "_embedded", "from", "uri"))
	assert.NotContains(t, get(t, inv.embedded(), "_links").(obj), "message", "an invitation to a conference carries no message")

	// Joined: every participant already there is added.
	evs := a.await("completed", is("messagingInvitation", "completed"))
	var added []string
	for _, ev := range evs {
		if ev.rel == "participant" && ev.typ == "added" && ev.raw["in"] == nil {
			added = append(added, ev.title)
		}
	}
	assert.ElementsMatch(t, []string{"Bob Meston", "Carol Giorgi"}, added)
	g, ok := e.sim.GroupInfo(thread)
	require.True(t, ok)
	assert.ElementsMatch(t, []sfb.URI{alice, bob, carol}, g.Participants)
	firstConference := g.ConferenceID

	// A message from bob reaches alice's application with bob as its
	// participant, and carol's native client.
	require.NoError(t, e.sim.SendGroupMessage(ctx, thread, bob, sfb.Message{Text: "numbers?"}))
	evs = a.await("message", is("message", "completed"))
	m := evs[len(evs)-1].embedded()
	assert.Equal(t, "Incoming", m["direction"])
	assert.Equal(t, conv+"/participants/bob@contoso.com", get(t, m, "_links", "participant", "href"))
	rc := e.sim.Received(carol)
	require.Len(t, rc, 1)
	assert.Equal(t, sim.Received{From: bob, Message: sfb.Message{Text: "numbers?"}, Time: rc[0].Time, ThreadID: thread, Group: true}, rc[0])
	assert.Empty(t, e.sim.Received(bob), "the sender gets no copy")

	// alice answers from UCWA: bob and carol get it.
	r := a.do("POST", conv+"/messaging/messages?operationId=x", "text/plain", "soon")
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	evs = a.await("sent", func(ev evt) bool { return ev.rel == "message" && ev.typ == "completed" })
	assert.Equal(t, "Success", evs[len(evs)-1].status)
	assert.Equal(t, "soon", e.sim.Received(bob)[0].Message.Text)
	assert.Equal(t, "soon", e.sim.Received(carol)[1].Message.Text)

	// Typing shows to alice; carol leaving is a deleted participant.
	require.NoError(t, e.sim.SetGroupTyping(ctx, thread, carol, true))
	evs = a.await("typing", func(ev evt) bool { return ev.rel == "participant" && ev.raw["in"] != nil })
	assert.Equal(t, "added", evs[len(evs)-1].typ)
	assert.Equal(t, "Carol Giorgi", evs[len(evs)-1].title)
	require.NoError(t, e.sim.LeaveGroup(ctx, thread, carol))
	evs = a.await("left", is("participant", "deleted"))
	assert.Equal(t, conv+"/participants/carol@contoso.com", evs[len(evs)-1].href)
	evs = a.await("count", is("conversation", "updated"))
	assert.EqualValues(t, 2, evs[len(evs)-1].embedded()["participantCount"])

	// alice leaves (DELETE on the conversation), then bob: the conference
	// ends, and the thread comes back as a new conference.
	require.Equal(t, http.StatusNoContent, a.do("DELETE", conv, "", "").status)
	a.await("gone", is("conversation", "deleted"))
	g, _ = e.sim.GroupInfo(thread)
	assert.Contains(t, g.Participants, alice, "alice's own SfB client is still in it")
	require.NoError(t, e.sim.LeaveGroup(ctx, thread, alice))
	require.NoError(t, e.sim.LeaveGroup(ctx, thread, bob))
	_, ok = e.sim.GroupInfo(thread)
	assert.False(t, ok, "the conference ended with its last participant")
	_, err = e.sim.StartGroup(ctx, bob, []sfb.URI{alice, carol}, "Budget", thread)
	require.NoError(t, err)
	conv2, inv2 := joinGroup(t, a)
	assert.Equal(t, thread, inv2.embedded()["threadId"])
	assert.NotEqual(t, conv, conv2)
	g2, _ := e.sim.GroupInfo(thread)
	assert.NotEqual(t, firstConference, g2.ConferenceID)
}

func TestGroupEscalationByAddParticipant(t *testing.T) {
	e := newEnv(t, sim.Options{})
	ctx := context.Background()
	a := e.signIn("alice@contoso.com", "alice-pw")
	a.makeMeAvailable("Plain")
	require.NoError(t, e.sim.SendMessage(ctx, bob, alice, sfb.Message{Text: "hi"}))
	evs := a.await("invitation", is("messagingInvitation", "started"))
	inv := evs[len(evs)-1]
	thread := inv.embedded()["threadId"].(string)
	require.Equal(t, http.StatusNoContent, a.do("POST", get(t, inv.embedded(), "_links", "accept", "href").(string), "", "").status)
	a.await("connected", is("messagingInvitation", "completed"))
	conv := get(t, inv.embedded(), "_links", "conversation", "href").(string)
	addLink := get(t, a.do("GET", conv, "", "").json(t), "_links", "addParticipant", "href").(string)
	assert.Equal(t, conv+"/addParticipant", addLink, "addParticipant_ref.md")

	r := a.do("POST", addLink, "application/json", `{"to":"sip:carol@contoso.com","operationId":"add1"}`)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	evs = a.await("escalated", func(ev evt) bool { return ev.rel == "participantInvitation" && ev.typ == "completed" })
	var sawConference, sawCarol bool
	for _, ev := range evs {
		if ev.rel == "conversation" && ev.typ == "updated" && ev.href == conv {
			_, sawConference = get(t, ev.embedded(), "_links").(obj)["onlineMeeting"]
		}
		if ev.rel == "participant" && ev.typ == "added" && ev.href == conv+"/participants/carol@contoso.com" {
			sawCarol = true
		}
	}
	assert.True(t, sawConference, "the conversation became a conference in place")
	assert.True(t, sawCarol, "carol appears in the roster before the invitation completes")
	done := evs[len(evs)-1]
	assert.Equal(t, "Success", done.status)
	assert.Equal(t, "add1", done.embedded()["operationId"])
	assert.Equal(t, thread, done.embedded()["threadId"])
	g, ok := e.sim.GroupInfo(thread)
	require.True(t, ok)
	assert.ElementsMatch(t, []sfb.URI{alice, bob, carol}, g.Participants)

	// A declined invitation completes with Failure/Declined.
	require.NoError(t, e.sim.AddUser(sim.User{URI: "sip:dave@contoso.com", DisplayName: "Dave", Password: "pw"}))
	require.NoError(t, e.sim.RejectMessages("sip:dave@contoso.com", true))
	a.do("POST", addLink, "application/json", `{"to":"sip:dave@contoso.com"}`)
	evs = a.await("declined", func(ev evt) bool { return ev.rel == "participantInvitation" && ev.typ == "completed" })
	assert.Equal(t, "Failure", evs[len(evs)-1].status)
	assert.Equal(t, "Declined", get(t, evs[len(evs)-1].raw, "reason", "subcode"))
}

func TestGroupOwnNativeClientMessageShowsAsLocalParticipant(t *testing.T) {
	e := newEnv(t, sim.Options{})
	ctx := context.Background()
	a := e.signIn("alice@contoso.com", "alice-pw")
	a.makeMeAvailable("Plain")
	// alice starts the conversation on her own SfB client: her UCWA
	// endpoint is invited into it too.
	thread, err := e.sim.StartGroup(ctx, alice, []sfb.URI{bob, carol}, "", "")
	require.NoError(t, err)
	conv, inv := joinGroup(t, a)
	assert.Equal(t, string(alice), get(t, inv.embedded(), "_embedded", "from", "uri"))
	require.NoError(t, e.sim.SendGroupMessage(ctx, thread, alice, sfb.Message{Text: "from my desk"}))
	evs := a.await("message", is("message", "completed"))
	m := evs[len(evs)-1].embedded()
	assert.Equal(t, "Incoming", m["direction"])
	self := get(t, a.do("GET", conv, "", "").json(t), "_links", "localParticipant", "href")
	assert.Equal(t, self, get(t, m, "_links", "participant", "href"), "sent by the local participant from another endpoint")
	assert.Equal(t, "from my desk", e.sim.Received(bob)[0].Message.Text)
}

func TestGroupControlAPI(t *testing.T) {
	e := newEnv(t, sim.Options{})
	post := func(path, body string) resp {
		return e.do("POST", e.hs.URL+path, "", "application/json", body)
	}
	r := post("/sim/v1/groups", `{"from":"sip:bob@contoso.com","participants":["sip:alice@contoso.com","sip:carol@contoso.com"],"subject":"Plan","threadId":"t/1+="}`)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	assert.Equal(t, "t/1+=", r.json(t)["threadId"])
	base := "/sim/v1/groups/" + url.PathEscape("t/1+=")
	r = e.do("GET", e.hs.URL+base, "", "", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	assert.Equal(t, "Plan", r.json(t)["subject"])
	assert.Len(t, r.json(t)["participants"], 3)
	require.Equal(t, http.StatusNoContent, post(base+"/messages", `{"from":"sip:bob@contoso.com","text":"hello"}`).status)
	assert.Equal(t, "hello", e.sim.Received(carol)[0].Message.Text)
	require.Equal(t, http.StatusNoContent, post(base+"/typing", `{"from":"sip:bob@contoso.com","typing":true}`).status)
	assert.True(t, e.sim.GroupTyping("t/1+=", bob))
	require.Equal(t, http.StatusNoContent, e.do("PUT", e.hs.URL+base+"/subject", "", "application/json", `{"subject":"Plan B"}`).status)
	require.Equal(t, http.StatusNoContent, post(base+"/leave", `{"uri":"sip:carol@contoso.com"}`).status)
	r = e.do("GET", e.hs.URL+base, "", "", "")
	assert.Equal(t, "Plan B", r.json(t)["subject"])
	assert.Len(t, r.json(t)["participants"], 2)
	assert.Equal(t, http.StatusNotFound, post(base+"/messages", `{"from":"sip:carol@contoso.com","text":"x"}`).status)
	assert.Equal(t, http.StatusBadRequest, post(base+"/participants", `{"by":"sip:bob@contoso.com","uri":"not a uri"}`).status)
	require.Equal(t, http.StatusNoContent, post(base+"/participants", `{"by":"sip:bob@contoso.com","uri":"sip:carol@contoso.com"}`).status)
	g, _ := e.sim.GroupInfo("t/1+=")
	assert.Contains(t, g.Participants, carol, "added again")
	require.Equal(t, http.StatusNoContent, e.do("DELETE", e.hs.URL+base, "", "", "").status)
	assert.Equal(t, http.StatusNotFound, e.do("GET", e.hs.URL+base, "", "", "").status)
	assert.Contains(t, string(post("/sim/v1/groups", `{"from":"sip:bob@contoso.com","participants":[]}`).body), "no participant")
}

// TestGroupInvitationToApplicationDeclinedOrUnanswered: a participant whose
// only endpoint is a UCWA application joins only by accepting; declining,
// or not answering within the invitation timeout, fails the inviter's
// participantInvitation.
func TestGroupInvitationToApplicationDeclinedOrUnanswered(t *testing.T) {
	e := newEnv(t, sim.Options{})
	ctx := context.Background()
	a := e.signIn("alice@contoso.com", "alice-pw")
	a.makeMeAvailable("Plain")
	c := e.signIn("carol@contoso.com", "carol-pw")
	c.makeMeAvailable("Plain")
	require.NoError(t, e.sim.SetNativeClient(carol, false))
	thread, err := e.sim.StartGroup(ctx, bob, []sfb.URI{alice}, "", "")
	require.NoError(t, err)
	conv, _ := joinGroup(t, a)
	a.await("joined", is("messagingInvitation", "completed"))

	// carol declines on her application.
	a.do("POST", conv+"/addParticipant", "application/json", `{"to":"sip:carol@contoso.com"}`)
	evs := c.await("invitation", is("messagingInvitation", "started"))
	inv := evs[len(evs)-1]
	require.Equal(t, http.StatusNoContent, c.do("POST", get(t, inv.embedded(), "_links", "decline", "href").(string), "", "").status)
	evs = a.await("declined", is("participantInvitation", "completed"))
	assert.Equal(t, "Failure", evs[len(evs)-1].status)
	assert.Equal(t, "Declined", get(t, evs[len(evs)-1].raw, "reason", "subcode"))
	g, _ := e.sim.GroupInfo(thread)
	assert.NotContains(t, g.Participants, carol)

	// Invited again, she does not answer.
	a.do("POST", conv+"/addParticipant", "application/json", `{"to":"sip:carol@contoso.com"}`)
	c.await("invitation", is("messagingInvitation", "started"))
	e.sim.Sweep()
	g, _ = e.sim.GroupInfo(thread)
	assert.NotContains(t, g.Participants, carol, "not in before she answers")
	e.clock.Advance(31 * time.Second)
	e.sim.Sweep()
	evs = a.await("unanswered", is("participantInvitation", "completed"))
	assert.Equal(t, "Failure", evs[len(evs)-1].status)
	assert.Equal(t, "Timeout", get(t, evs[len(evs)-1].raw, "reason", "code"))
	c.await("withdrawn", is("conversation", "deleted"))
}
