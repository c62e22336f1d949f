package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// The keys of the machine-readable parts of meeting and call notices
// (bridge.MeetingField, bridge.CallField).
const (
	meetingField = "net.sfb_bridge.meeting"
	callField    = "net.sfb_bridge.call"
)

// notice is the part of a bridge notice the tests read.
type notice struct {
	MsgType       string           `json:"msgtype"`
	Body          string           `json:"body"`
	FormattedBody string           `json:"formatted_body"`
	Meeting       map[string]any   `json:"net.sfb_bridge.meeting"`
	Call          map[string]any   `json:"net.sfb_bridge.call"`
	RelatesTo     *event.RelatesTo `json:"m.relates_to"`
	NewContent    *notice          `json:"m.new_content"`
}

func readNotice(t *testing.T, evt *event.Event) notice {
	t.Helper()
	var n notice
	require.NoError(t, json.Unmarshal(evt.Content.VeryRaw, &n), "content %s", evt.Content.VeryRaw)
	return n
}

// isNoticeWith matches a notice (not an edit) in room from sender whose
// raw content has key.
func isNoticeWith(room id.RoomID, sender id.UserID, key string) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.RoomID != room || evt.Sender != sender || evt.Type != event.EventMessage {
			return false
		}
		var raw map[string]json.RawMessage
		if json.Unmarshal(evt.Content.VeryRaw, &raw) != nil {
			return false
		}
		_, has := raw[key]
		_, edit := raw["m.new_content"]
		return has && !edit
	}
}

// isEditOf matches an m.replace of target whose new body matches.
func isEditOf(room id.RoomID, target id.EventID, body func(string) bool) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.RoomID != room || evt.Type != event.EventMessage {
			return false
		}
		var n notice
		if json.Unmarshal(evt.Content.VeryRaw, &n) != nil || n.RelatesTo == nil || n.NewContent == nil {
			return false
		}
		return n.RelatesTo.Type == event.RelReplace && n.RelatesTo.EventID == target && body(n.NewContent.Body)
	}
}

func contains(s string) func(string) bool {
	return func(b string) bool { return strings.Contains(b, s) }
}

// An SfB meeting invitation arrives in the DM as one notice with a link to
// join and the machine-readable meeting; its update and its cancellation
// edit that notice.
func TestSfBMeetingInvitationInTheDM(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "mara")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	room := env.openPortal(t, p, "Let's meet")

	from := p.mx.mark()
	info, err := env.sim.InviteToMeeting(ctx, p.colleague.URI, p.self.URI, sim.MeetingInvite{
		Subject:      "Budget 2027",
		ConferenceID: "4711815",
		DialIn:       []sim.DialInRegion{{Name: "Wiesbaden", Number: "tel:+496111234567"}},
	})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(info.JoinURL, "https://meet.contoso.com/"), info.JoinURL)

	evt := p.mx.waitFor(from, hop, "the meeting notice", isNoticeWith(room, p.ghost, meetingField))
	n := readNotice(t, evt)
	assert.Equal(t, "m.notice", n.MsgType)
	assert.Contains(t, n.Body, "Budget 2027")
	assert.Contains(t, n.Body, "Join the Skype for Business meeting: "+info.JoinURL)
	assert.Contains(t, n.FormattedBody, `<a href="`+info.JoinURL+`">Join the Skype for Business meeting</a>`)
	assert.Contains(t, n.Body, "4711815", "the conference ID")
	assert.Contains(t, n.Body, "+496111234567", "the dial-in number")
	assert.Equal(t, info.JoinURL, n.Meeting["join_url"])
	assert.Equal(t, info.URI, n.Meeting["uri"])
	assert.Equal(t, "Budget 2027", n.Meeting["subject"])
	assert.Equal(t, "4711815", n.Meeting["conference_id"])
	assert.Equal(t, false, n.Meeting["cancelled"])
	organizer, _ := n.Meeting["organizer"].(map[string]any)
	assert.Equal(t, string(p.colleague.URI), organizer["uri"])

	moved := "Budget 2027 (moved)"
	require.NoError(t, env.sim.UpdateMeeting(ctx, p.colleague.URI, info.ID, sim.MeetingUpdate{Subject: &moved}))
	update := p.mx.waitFor(from, hop, "the update's edit", isEditOf(room, evt.ID, contains(moved)))
	un := readNotice(t, update)
	assert.Contains(t, un.NewContent.Body, "Updated")
	assert.Equal(t, moved, un.NewContent.Meeting["subject"])
	assert.Equal(t, info.JoinURL, un.NewContent.Meeting["join_url"])

	require.NoError(t, env.sim.CancelMeeting(ctx, p.colleague.URI, info.ID))
	cancelled := p.mx.waitFor(from, hop, "the cancellation's edit", isEditOf(room, evt.ID, contains("Cancelled")))
	cn := readNotice(t, cancelled)
	assert.Equal(t, true, cn.NewContent.Meeting["cancelled"])
	assert.NotContains(t, cn.NewContent.FormattedBody, "<a ", "a cancelled meeting has no join link")
	assert.Equal(t, true, cn.Meeting["cancelled"], "the top level says it too")

	// One notice, edited: nothing new besides the edits.
	never(t, 2*time.Second, "a second meeting notice", func() string {
		for _, e := range p.mx.Events(from) {
			if isNoticeWith(room, p.ghost, meetingField)(e) && e.ID != evt.ID {
				return string(e.Content.VeryRaw)
			}
		}
		return ""
	})
}

// An invitation in a multi-party SfB conversation arrives in its group
// room, and its cancellation edits it there.
func TestSfBMeetingInvitationInAGroupRoom(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "marek")
	carol := env.addSfBUser(t, "marek.carol", "Carol Marek")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()

	from := p.mx.mark()
	info, err := env.sim.InviteToMeeting(ctx, p.colleague.URI, p.self.URI, sim.MeetingInvite{Subject: "Group sync", Others: []sfb.URI{carol.URI}})
	require.NoError(t, err)
	room := env.joinGroupRoom(t, p.mx, from, p.mgmt)
	evt := p.mx.waitFor(from, hop, "the meeting notice in the group room", isNoticeWith(room, p.ghost, meetingField))
	n := readNotice(t, evt)
	assert.Contains(t, n.Body, "Group sync")
	assert.Equal(t, info.JoinURL, n.Meeting["join_url"])
	assert.Contains(t, n.FormattedBody, `<a href="`+info.JoinURL+`">Join the Skype for Business meeting</a>`)

	require.NoError(t, env.sim.CancelMeeting(ctx, p.colleague.URI, info.ID))
	p.mx.waitFor(from, hop, "the cancellation's edit", isEditOf(room, evt.ID, contains("Cancelled")))
	// Not in a 1:1 room as well.
	for _, e := range p.mx.Events(from) {
		if e.RoomID != room && e.Type == event.EventMessage && e.Sender == p.ghost {
			t.Errorf("meeting notice outside the group room: %s", e.Content.VeryRaw)
		}
	}
}

// An SfB call to a migrated user (publishing their Matrix presence): the
// notice with a Jitsi meeting, the caller gets its link as an IM, and the
// call is declined on all of the user's endpoints (Global).
func TestSfBCallToMigratedUser(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "malte")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	room := env.openPortal(t, p, "I'll call you")
	env.publishPresence(t, p)

	from := p.mx.mark()
	callID, err := env.sim.Call(ctx, p.colleague.URI, p.self.URI, true)
	require.NoError(t, err)

	evt := p.mx.waitFor(from, hop, "the call notice", isNoticeWith(room, p.ghost, callField))
	n := readNotice(t, evt)
	assert.Equal(t, "m.notice", n.MsgType)
	assert.Contains(t, n.Body, "Colleague of malte is calling you on Skype for Business (a video call)")
	link, _ := n.Call["jitsi_url"].(string)
	require.True(t, strings.HasPrefix(link, "https://meet.element.io/Jitsi"), "jitsi_url %q", link)
	assert.Contains(t, n.FormattedBody, `<a href="`+link+`">`)
	assert.Equal(t, "Global", n.Call["declined"])
	assert.Equal(t, "ringing", n.Call["state"])

	// The Jitsi meeting is in the room, where Element's Join button is.
	widget := p.mx.waitFor(from, hop, "the call's Jitsi widget", func(e *event.Event) bool {
		return e.RoomID == room && e.Type == widgetType
	})
	var w struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(widget.Content.VeryRaw, &w))
	assert.Equal(t, "jitsi", w.Type)
	assert.Equal(t, link, "https://meet.element.io/"+w.Data["conferenceId"].(string))

	got := env.waitReceived(t, p, "the Jitsi link", func(r sim.Received) bool { return strings.Contains(r.Message.Text, link) })
	assert.Equal(t, "Malte now uses Element and cannot take Skype for Business calls; join here for a video meeting: "+link, got.Message.Text)

	require.Eventually(t, func() bool {
		res, err := env.sim.CallResult(callID)
		return err == nil && res.State == "Declined"
	}, hop, 50*time.Millisecond, "the call is declined")
	res, err := env.sim.CallResult(callID)
	require.NoError(t, err)
	assert.Equal(t, []string{"Global"}, res.DeclineReasons)
	assertNoDuplicates(t, env.sim.Received(p.colleague.URI))
}

// A call to a user who may still run their SfB client (not publishing
// from Matrix) rings there and on the bridge; when the caller hangs up
// before anyone answered, the room gets a missed-call notice.
func TestSfBCallCancelledIsMissed(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "mats")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	room := env.openPortal(t, p, "Calling you in a second")

	from := p.mx.mark()
	callID, err := env.sim.Call(ctx, p.colleague.URI, p.self.URI, false)
	require.NoError(t, err)
	evt := p.mx.waitFor(from, hop, "the call notice", isNoticeWith(room, p.ghost, callField))
	n := readNotice(t, evt)
	assert.Contains(t, n.Body, "(an audio call)")
	assert.Equal(t, "ringing", n.Call["state"])
	link, _ := n.Call["jitsi_url"].(string)
	require.NotEmpty(t, link)
	env.waitReceived(t, p, "the Jitsi link", func(r sim.Received) bool { return strings.Contains(r.Message.Text, link) })

	// Still ringing on the user's SfB client: the bridge did not stop it.
	res, err := env.sim.CallResult(callID)
	require.NoError(t, err)
	assert.Equal(t, "Connecting", res.State)
	assert.Empty(t, res.DeclineReasons)

	require.NoError(t, env.sim.CancelCall(ctx, callID))
	missed := p.mx.waitFor(from, hop, "the missed-call notice", func(e *event.Event) bool {
		return isNoticeWith(room, p.ghost, callField)(e) && strings.HasPrefix(e.Content.AsMessage().Body, "Missed Skype for Business call from Colleague of mats")
	})
	mn := readNotice(t, missed)
	assert.Equal(t, "missed", mn.Call["state"])
	assert.Equal(t, string(p.colleague.URI), mn.Call["caller"])
}

// `meet --sfb` creates an SfB online meeting through the user's login and
// posts its join URL in the room and to the SfB colleague.
func TestMeetSfBCreatesOnlineMeeting(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "meike")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	room := env.openPortal(t, p, "Meeting in SfB?")

	from := p.mx.mark()
	_, err := p.mx.Client.SendText(ctx, room, "!sfb meet --sfb Planning")
	require.NoError(t, err)
	evt := p.mx.waitFor(from, hop, "the meeting notice", isNoticeWith(room, env.st.Bot, meetingField))
	n := readNotice(t, evt)

	meetings := env.sim.OnlineMeetings(p.self.URI)
	require.Len(t, meetings, 1, "one meeting created through myOnlineMeetings")
	joinURL := meetings[0].JoinURL
	assert.Equal(t, joinURL, n.Meeting["join_url"])
	assert.Equal(t, "Planning", n.Meeting["subject"])
	assert.Contains(t, n.FormattedBody, `<a href="`+joinURL+`">Join the Skype for Business meeting</a>`)

	got := env.waitReceived(t, p, "the join URL", func(r sim.Received) bool { return strings.Contains(r.Message.Text, joinURL) })
	assert.Equal(t, `Meike invites you to a Skype for Business meeting "Planning". Join: `+joinURL, got.Message.Text)
	p.mx.waitFor(from, hop, "the bot's answer", isMessage(room, env.st.Bot, contains("Created a Skype for Business meeting")))
}

// Bad invitations: hostile HTML in the subject and a join URL outside the
// organisation's meeting domains arrive as text, never as a link; an
// invitation without a subject says so.
func TestSfBMeetingInvitationBadInput(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "mirko")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	room := env.openPortal(t, p, "Have a look")
	foreign := sim.User{URI: sfb.URI("sip:mirko.mallory@evil.example"), DisplayName: "Mallory", Password: "unused"}
	require.NoError(t, env.sim.AddUser(foreign))

	from := p.mx.mark()
	const hostile = `<a href="https://evil.example/steal">Join now</a><img src=x onerror=alert(1)><script>alert(2)</script>`
	info, err := env.sim.InviteToMeeting(ctx, p.colleague.URI, p.self.URI, sim.MeetingInvite{
		Kind: sim.MeetingScheduled, Organizer: foreign.URI, Subject: hostile,
	})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(info.JoinURL, "https://meet.evil.example/"), info.JoinURL)
	evt := p.mx.waitFor(from, hop, "the meeting notice", isNoticeWith(room, p.ghost, meetingField))
	n := readNotice(t, evt)
	assert.NotContains(t, n.FormattedBody, "<a ", "no link at all")
	assert.NotContains(t, n.FormattedBody, "<img")
	assert.NotContains(t, n.FormattedBody, "<script")
	assert.Contains(t, n.FormattedBody, "&lt;script&gt;", "the subject shown as text")
	assert.NotContains(t, n.Body, info.JoinURL, "the address is not linkified by clients either")
	assert.Contains(t, n.Body, "not one of the organisation's meeting servers")
	assert.NotContains(t, n.Meeting, "join_url")
	assert.Contains(t, n.Meeting, "join_url_refused")

	from = p.mx.mark()
	untitled, err := env.sim.InviteToMeeting(ctx, p.colleague.URI, p.self.URI, sim.MeetingInvite{})
	require.NoError(t, err)
	evt = p.mx.waitFor(from, hop, "the notice without subject", isNoticeWith(room, p.ghost, meetingField))
	n = readNotice(t, evt)
	assert.Contains(t, n.Body, "(no subject)")
	assert.NotContains(t, n.Meeting, "subject")
	assert.Equal(t, untitled.JoinURL, n.Meeting["join_url"])
}

// publishPresence turns on publishing the user's Matrix presence to SfB
// (the bridge's sign that they left their SfB client).
func (env *testEnv) publishPresence(t *testing.T, p *pair) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hop)
	defer cancel()
	from := p.mx.mark()
	_, err := p.mx.Client.SendText(ctx, p.mgmt, "presence-publish on")
	require.NoError(t, err)
	p.mx.waitFor(from, hop, "the bot's answer to presence-publish on", isMessage(p.mgmt, env.st.Bot, func(b string) bool {
		return strings.Contains(b, "Your Matrix presence is shown on Skype for Business")
	}))
}
