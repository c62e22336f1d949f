package bridge

import (
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

var jitsiLink = regexp.MustCompile(`https://meet\.element\.io/Jitsi[A-Z][a-z]{23}`)

func callField(t *testing.T, extra map[string]any) map[string]any {
	t.Helper()
	f, ok := extra[CallField].(map[string]any)
	require.True(t, ok, "no %s in %v", CallField, extra)
	return f
}

func waitDeclined(t *testing.T, s *fakeSession, n int) []declinedCall {
	t.Helper()
	require.Eventually(t, func() bool { return len(s.declinedCalls()) >= n }, 5*time.Second, time.Millisecond)
	return s.declinedCalls()
}

func TestCallRingingNoticeJitsiLinkAndDecline(t *testing.T) {
	e := newTestEnv(t)
	_, _, s := e.mustLogin()
	bot := e.recordBot()
	portal := e.portalOfBob()
	s.emit(sfb.CallRinging{ID: "call-1", Conversation: sfb.Conversation{Peer: bob}, From: bobPerson, Video: true})

	msgs := queuedOf[sfb.CallRinging](e)
	require.Len(t, msgs, 1)
	assert.Equal(t, portalKeyFor(bob, "alice@contoso.com"), msgs[0].PortalKey)
	part := converted(t, msgs[0])
	assert.Contains(t, part.Content.Body, "Bob Builder is calling you on Skype for Business (a video call).")
	link := jitsiLink.FindString(part.Content.Body)
	require.NotEmpty(t, link, part.Content.Body)
	assert.Contains(t, part.Content.FormattedBody, `<a href="`+link+`">Start the Jitsi meeting</a>`)
	f := callField(t, part.Extra)
	assert.Equal(t, link, f["jitsi_url"])
	assert.Equal(t, "ringing", f["state"])
	assert.Equal(t, "call-1", f["id"])
	// The meeting is in the room, for Element's Join button.
	bot.mu.Lock()
	require.Len(t, bot.states, 2)
	widget := bot.states[0]
	bot.mu.Unlock()
	assert.Equal(t, portal.MXID, widget.Room)
	assert.Equal(t, "jitsi", widget.Content["type"])
	assert.Equal(t, link, "https://meet.element.io/"+widget.Content["data"].(map[string]any)["conferenceId"].(string))

	// The user may still have their SfB client (presence not published
	// from Matrix): the bridge's endpoint rings along, not declining.
	assert.NotContains(t, f, "declined")
	sent := waitSent(t, s, 1)
	assert.Equal(t, bob, sent[0].To)
	assert.Equal(t, "Alice Example may answer in Element instead; join here for a video meeting: "+link, sent[0].Msg.Text)
	// It went through the outbox, keyed by the widget's state event.
	require.Eventually(t, func() bool {
		part, err := e.conn.br.DB.Message.GetPartByMXID(e.ctx, "$state1")
		return err == nil && part != nil
	}, 5*time.Second, time.Millisecond, "the link's outbox entry settled")
	assert.Never(t, func() bool { return len(s.declinedCalls()) > 0 }, 100*time.Millisecond, 5*time.Millisecond)
}

func TestCallDeclinedGloballyForUsersWhoLeftSfB(t *testing.T) {
	e := newTestEnv(t)
	ul, c, s := e.mustLogin()
	on := true
	require.NoError(t, c.conn.setPublishPresence(e.ctx, ul, &on))
	s.emit(sfb.CallRinging{ID: "call-2", Conversation: sfb.Conversation{Peer: bob}, From: bobPerson})

	part := converted(t, queuedOf[sfb.CallRinging](e)[0])
	assert.Contains(t, part.Content.Body, "(an audio call)")
	link := jitsiLink.FindString(part.Content.Body)
	require.NotEmpty(t, link)
	assert.Equal(t, []declinedCall{{"call-2", sfb.CallDeclineGlobal}}, waitDeclined(t, s, 1))
	assert.Equal(t, "Alice Example now uses Element and cannot take Skype for Business calls; join here for a video meeting: "+link,
		waitSent(t, s, 1)[0].Msg.Text)
}

func TestCallModes(t *testing.T) {
	t.Run("notice", func(t *testing.T) {
		e := newTestEnv(t, withMeetings(func(m *MeetingsConfig) { m.Calls = CallsNotice }))
		_, _, s := e.mustLogin()
		s.emit(sfb.CallRinging{ID: "call-3", Conversation: sfb.Conversation{Peer: bob}, From: bobPerson})
		part := converted(t, queuedOf[sfb.CallRinging](e)[0])
		assert.Contains(t, part.Content.Body, "Bob Builder is calling you on Skype for Business")
		assert.Contains(t, part.Content.Body, "answer it in your Skype for Business client")
		assert.NotRegexp(t, jitsiLink, part.Content.Body)
		assert.NotContains(t, callField(t, part.Extra), "jitsi_url")
		// Not declined: the call goes on ringing on the user's SfB
		// client, nothing to tell the caller.
		assert.Never(t, func() bool { return len(s.sentMessages()) > 0 || len(s.declinedCalls()) > 0 }, 100*time.Millisecond, 5*time.Millisecond)
	})
	t.Run("off", func(t *testing.T) {
		e := newTestEnv(t, withMeetings(func(m *MeetingsConfig) { m.Calls = CallsOff }))
		_, _, s := e.mustLogin()
		s.emit(sfb.CallRinging{ID: "call-4", Conversation: sfb.Conversation{Peer: bob}, From: bobPerson})
		s.emit(sfb.CallEnded{ID: "call-4", Conversation: sfb.Conversation{Peer: bob}, From: bobPerson, Missed: true})
		assert.Empty(t, queuedOf[sfb.CallRinging](e))
		assert.Empty(t, queuedOf[sfb.CallEnded](e))
		assert.Never(t, func() bool { return len(s.declinedCalls()) > 0 }, 100*time.Millisecond, 5*time.Millisecond)
	})
}

func TestCallDeliveredAgainIsNotShownTwice(t *testing.T) {
	e := newTestEnv(t)
	ul, c, s := e.mustLogin()
	on := true
	require.NoError(t, c.conn.setPublishPresence(e.ctx, ul, &on))
	ring := sfb.CallRinging{ID: "call-5", Conversation: sfb.Conversation{Peer: bob}, From: bobPerson}
	s.emit(ring)
	waitSent(t, s, 1)
	first := queuedOf[sfb.CallRinging](e)[0]
	e.storeCallNotice(first.PortalKey.Receiver, first.ID, first.Sender.Sender)

	s.emit(ring)
	assert.Len(t, queuedOf[sfb.CallRinging](e), 1, "notice shown again")
	// Declined again (it does nothing once the call stopped), link not
	// sent again.
	waitDeclined(t, s, 2)
	assert.Never(t, func() bool { return len(s.sentMessages()) > 1 }, 100*time.Millisecond, 5*time.Millisecond)
}

func TestMissedCallNotice(t *testing.T) {
	e := newTestEnv(t, withMeetings(func(m *MeetingsConfig) { m.TimeZone = "Europe/Berlin" }))
	_, _, s := e.mustLogin()
	at := time.Date(2026, 12, 3, 13, 5, 0, 0, time.UTC)
	s.emit(sfb.CallEnded{ID: "call-6", Conversation: sfb.Conversation{Peer: bob}, From: bobPerson, Missed: false, Time: at})
	assert.Empty(t, queuedOf[sfb.CallEnded](e), "answered elsewhere: no notice")
	s.emit(sfb.CallEnded{ID: "call-6", Conversation: sfb.Conversation{Peer: bob}, From: bobPerson, Missed: true, Time: at})
	msgs := queuedOf[sfb.CallEnded](e)
	require.Len(t, msgs, 1)
	assert.Equal(t, portalKeyFor(bob, "alice@contoso.com"), msgs[0].PortalKey)
	part := converted(t, msgs[0])
	assert.Equal(t, "Missed Skype for Business call from Bob Builder at 14:05.", part.Content.Body)
	assert.Equal(t, "<p>Missed Skype for Business call from <strong>Bob Builder</strong> at 14:05.</p>", part.Content.FormattedBody)
	assert.Equal(t, "missed", callField(t, part.Extra)["state"])
	assert.NotEqual(t, callMessageID("ringing", "call-6"), msgs[0].ID)
}
