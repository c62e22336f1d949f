package bridge

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// fakeMeetings is the meeting side of a fake session: the calls it
// declined and the meetings it created.
type fakeMeetings struct {
	declined []declinedCall
	requests []sfb.MeetingRequest
	// next is what CreateMeeting returns.
	next sfb.Meeting
}

type declinedCall struct {
	ID     string
	Reason sfb.CallDeclineReason
}

func (m *fakeMeetings) create(mu *sync.Mutex, req sfb.MeetingRequest) (sfb.Meeting, error) {
	mu.Lock()
	defer mu.Unlock()
	m.requests = append(m.requests, req)
	if m.next.URI == "" {
		return sfb.Meeting{}, errors.New("fake session: no meeting to create")
	}
	out := m.next
	out.Subject = req.Subject
	return out, nil
}

func (m *fakeMeetings) decline(mu *sync.Mutex, callID string, reason sfb.CallDeclineReason) error {
	mu.Lock()
	defer mu.Unlock()
	m.declined = append(m.declined, declinedCall{callID, reason})
	return nil
}

func (s *fakeSession) declinedCalls() []declinedCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]declinedCall(nil), s.meetings.declined...)
}

func withMeetings(f func(*MeetingsConfig)) envOption {
	return func(_ *testEnv, c *Config) { f(&c.Meetings) }
}

var bobPerson = sfb.Person{URI: bob, DisplayName: "Bob Builder"}

// teamMeeting is a scheduled meeting as an invitation carries it.
func teamMeeting() sfb.Meeting {
	return sfb.Meeting{
		URI:          "sip:bob@contoso.com;gruu;opaque=app:conf:focus:id:K2W8Z1QH",
		JoinURL:      "https://meet.contoso.com/bob/K2W8Z1QH",
		Subject:      "Team sync",
		Organizer:    bobPerson,
		Start:        time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC),
		End:          time.Date(2026, 12, 3, 9, 30, 0, 0, time.UTC),
		ConferenceID: "4711",
		DialIn:       []sfb.DialInNumber{{Region: "Germany", Number: "+49 611 1234567"}},
	}
}

// queuedOf returns the queued events of type T.
func queuedOf[T any](e *testEnv) []*simplevent.Message[T] {
	var out []*simplevent.Message[T]
	for _, evt := range e.queuedEvents() {
		if m, ok := evt.(*simplevent.Message[T]); ok {
			out = append(out, m)
		}
	}
	return out
}

// converted runs a queued message's conversion as bridgev2 would.
func converted[T any](t *testing.T, m *simplevent.Message[T]) *bridgev2.ConvertedMessagePart {
	t.Helper()
	require.Equal(t, bridgev2.RemoteEventMessage, m.Type)
	out, err := m.ConvertMessageFunc(context.Background(), nil, nil, m.Data)
	require.NoError(t, err)
	require.Len(t, out.Parts, 1)
	return out.Parts[0]
}

// storeNotice records the message row bridgev2 writes for a sent notice.
func (e *testEnv) storeNotice(m *simplevent.Message[sfb.MeetingInvited], part *bridgev2.ConvertedMessagePart) {
	e.t.Helper()
	portal := e.portalFor(m.PortalKey.Receiver, sfb.URI("sip:"+string(m.PortalKey.ID)))
	require.NoError(e.t, portal.Save(e.ctx))
	_, err := e.br.GetGhostByID(e.ctx, m.Sender.Sender)
	require.NoError(e.t, err)
	require.NoError(e.t, e.br.DB.Message.Insert(e.ctx, &mxdb.Message{
		ID: m.ID, MXID: id.EventID("$notice-" + string(m.ID)), Room: m.PortalKey,
		SenderID: m.Sender.Sender, Timestamp: time.Now(), Metadata: part.DBMetadata,
	}))
}

// applyEdit runs a queued edit against the stored notice and saves the row
// as bridgev2 does; err is the conversion's.
func (e *testEnv) applyEdit(m *simplevent.Message[sfb.MeetingInvited]) (*bridgev2.ConvertedEditPart, error) {
	e.t.Helper()
	require.Equal(e.t, bridgev2.RemoteEventEdit, m.Type)
	parts, err := e.br.DB.Message.GetAllPartsByID(e.ctx, m.PortalKey.Receiver, m.TargetMessage)
	require.NoError(e.t, err)
	require.NotEmpty(e.t, parts, "edit target not stored")
	out, err := m.ConvertEditFunc(e.ctx, nil, nil, parts, m.Data)
	if err != nil {
		return nil, err
	}
	require.Len(e.t, out.ModifiedParts, 1)
	require.NoError(e.t, e.br.DB.Message.Update(e.ctx, out.ModifiedParts[0].Part))
	return out.ModifiedParts[0], nil
}

func meetingField(t *testing.T, extra map[string]any) map[string]any {
	t.Helper()
	f, ok := extra[MeetingField].(map[string]any)
	require.True(t, ok, "no %s in %v", MeetingField, extra)
	return f
}

func TestMeetingInvitationBecomesNotice(t *testing.T) {
	e := newTestEnv(t, withMeetings(func(m *MeetingsConfig) { m.TimeZone = "Europe/Berlin" }))
	_, _, s := e.mustLogin()
	s.emit(sfb.MeetingInvited{ID: "inv-1", Conversation: sfb.Conversation{Peer: bob}, From: bobPerson, Meeting: teamMeeting()})

	msgs := queuedOf[sfb.MeetingInvited](e)
	require.Len(t, msgs, 1)
	m := msgs[0]
	assert.Equal(t, portalKeyFor(bob, "alice@contoso.com"), m.PortalKey)
	assert.Equal(t, networkid.UserID("bob@contoso.com"), m.Sender.Sender)
	part := converted(t, m)
	c := part.Content
	assert.Equal(t, event.MsgNotice, c.MsgType)
	assert.Equal(t, event.FormatHTML, c.Format)
	assert.Contains(t, c.Body, "Skype for Business meeting: Team sync")
	assert.Contains(t, c.Body, "Organiser: Bob Builder")
	assert.Contains(t, c.Body, "When: Thu 3 Dec 2026, 10:00–10:30 (Europe/Berlin)")
	assert.Contains(t, c.Body, "Join the Skype for Business meeting: https://meet.contoso.com/bob/K2W8Z1QH")
	assert.Contains(t, c.Body, "Germany: +49 611 1234567; Conference ID: 4711")
	assert.Contains(t, c.FormattedBody, `<a href="https://meet.contoso.com/bob/K2W8Z1QH">Join the Skype for Business meeting</a>`)
	f := meetingField(t, part.Extra)
	assert.Equal(t, string(teamMeeting().URI), f["uri"])
	assert.Equal(t, "https://meet.contoso.com/bob/K2W8Z1QH", f["join_url"])
	assert.Equal(t, "Team sync", f["subject"])
	assert.Equal(t, "2026-12-03T09:00:00Z", f["start"])
	assert.Equal(t, "2026-12-03T09:30:00Z", f["end"])
	assert.Equal(t, "4711", f["conference_id"])
	assert.Equal(t, false, f["cancelled"])
	assert.Equal(t, []map[string]string{{"region": "Germany", "number": "+49 611 1234567"}}, f["dial_in"])
	assert.Equal(t, map[string]any{"uri": "sip:bob@contoso.com", "name": "Bob Builder"}, f["organizer"])
}

func TestMeetingUpdateAndCancellationEditTheNotice(t *testing.T) {
	e := newTestEnv(t)
	_, _, s := e.mustLogin()
	conv := sfb.Conversation{Peer: bob}
	s.emit(sfb.MeetingInvited{ID: "inv-1", Conversation: conv, From: bobPerson, Meeting: teamMeeting()})
	first := queuedOf[sfb.MeetingInvited](e)[0]
	e.storeNotice(first, converted(t, first))

	moved := teamMeeting()
	moved.Subject = "Team sync (moved)"
	moved.Start, moved.End = moved.Start.Add(time.Hour), moved.End.Add(time.Hour)
	// The update comes from someone else; the notice stays Bob's.
	s.emit(sfb.MeetingInvited{ID: "inv-2", Conversation: conv, From: sfb.Person{URI: "sip:carol@contoso.com"}, Meeting: moved})
	msgs := queuedOf[sfb.MeetingInvited](e)
	require.Len(t, msgs, 2)
	upd := msgs[1]
	assert.Equal(t, first.ID, upd.TargetMessage)
	assert.True(t, upd.Sender.ForceEditOrigSender)
	edit, err := e.applyEdit(upd)
	require.NoError(t, err)
	assert.Contains(t, edit.Content.Body, "Updated: Skype for Business meeting: Team sync (moved)")
	assert.Contains(t, edit.Content.Body, "10:00–10:30 (UTC)")
	assert.Equal(t, "Team sync (moved)", meetingField(t, edit.Extra)["subject"])
	assert.Equal(t, edit.Extra[MeetingField], edit.TopLevelExtra[MeetingField])

	// A cancellation carries only the meeting's URI: the notice keeps
	// what it knew, loses the join link.
	s.emit(sfb.MeetingInvited{ID: "inv-3", Conversation: conv, From: bobPerson, Meeting: sfb.Meeting{URI: moved.URI}, Cancelled: true})
	msgs = queuedOf[sfb.MeetingInvited](e)
	require.Len(t, msgs, 3)
	edit, err = e.applyEdit(msgs[2])
	require.NoError(t, err)
	assert.Contains(t, edit.Content.Body, "Cancelled: Skype for Business meeting: Team sync (moved)")
	assert.Contains(t, edit.Content.Body, "The meeting was cancelled.")
	assert.NotContains(t, edit.Content.FormattedBody, "href")
	assert.Contains(t, edit.Content.FormattedBody, "<del>Team sync (moved)</del>")
	f := meetingField(t, edit.Extra)
	assert.Equal(t, true, f["cancelled"])
	assert.NotContains(t, f, "join_url")

	// Delivered again after a resume: the first invitation and the
	// update change nothing. The same invitation forwarded again with a
	// new ID changes nothing either.
	for _, again := range []sfb.MeetingInvited{
		{ID: "inv-1", Conversation: conv, From: bobPerson, Meeting: teamMeeting()},
		{ID: "inv-2", Conversation: conv, From: sfb.Person{URI: "sip:carol@contoso.com"}, Meeting: moved},
		{ID: "inv-4", Conversation: conv, From: bobPerson, Meeting: sfb.Meeting{URI: moved.URI}, Cancelled: true},
	} {
		s.emit(again)
		msgs = queuedOf[sfb.MeetingInvited](e)
		_, err = e.applyEdit(msgs[len(msgs)-1])
		assert.ErrorIs(t, err, bridgev2.ErrIgnoringRemoteEvent, again.ID)
	}
}

func TestMeetingBadInputNeverALink(t *testing.T) {
	cases := []struct {
		name, joinURL, subject string
		link                   bool
		problem                string
	}{
		{"own SIP domain", "https://meet.contoso.com/bob/K2W8Z1QH", "Plan", true, ""},
		{"configured domain", "https://lync.example.net/meet/bob/1", "Plan", true, ""},
		{"not https", "http://meet.contoso.com/bob/K2W8Z1QH", "Plan", false, "not an https address"},
		{"javascript", "javascript:alert(1)", "Plan", false, "not a valid web address"},
		{"other host", "https://evil.example/bob/K2W8Z1QH", "Plan", false, "evil.example"},
		{"look-alike", "https://meet.contoso.com.evil.example/x", "Plan", false, "meet.contoso.com.evil.example"},
		{"user info", "https://meet.contoso.com@evil.example/x", "Plan", false, "user name"},
		{"hostile subject", "https://meet.contoso.com/bob/1", `<img src=x onerror=alert(1)><a href="https://evil.example">x</a>`, true, ""},
		{"no subject", "https://meet.contoso.com/bob/1", "", true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, withMeetings(func(m *MeetingsConfig) { m.MeetingDomains = []string{"example.net"} }))
			_, _, s := e.mustLogin()
			meeting := teamMeeting()
			meeting.JoinURL, meeting.Subject = tc.joinURL, tc.subject
			s.emit(sfb.MeetingInvited{ID: "inv", Conversation: sfb.Conversation{Peer: bob}, From: bobPerson, Meeting: meeting})
			part := converted(t, queuedOf[sfb.MeetingInvited](e)[0])
			c, f := part.Content, meetingField(t, part.Extra)
			hrefs := strings.Count(c.FormattedBody, "<a href=")
			assert.NotContains(t, c.FormattedBody, "<img")
			assert.NotContains(t, c.FormattedBody, "evil.example\"")
			if tc.link {
				assert.Equal(t, 1, hrefs, c.FormattedBody)
				assert.Contains(t, c.FormattedBody, `href="`+tc.joinURL+`"`)
				assert.Equal(t, tc.joinURL, f["join_url"])
			} else {
				assert.Zero(t, hrefs, c.FormattedBody)
				assert.NotContains(t, f, "join_url")
				assert.Contains(t, f["join_url_refused"], tc.problem)
				assert.Contains(t, c.Body, "not shown as a link")
				// Shown, but not in a form clients turn into a link.
				assert.NotContains(t, c.Body, tc.joinURL)
				assert.NotContains(t, c.FormattedBody, tc.joinURL)
			}
			switch tc.subject {
			case "":
				assert.Contains(t, c.Body, "Skype for Business meeting: (no subject)")
				assert.NotContains(t, f, "subject")
			case "Plan":
			default:
				assert.Contains(t, c.FormattedBody, "&lt;img src=x onerror=alert(1)&gt;")
				assert.Equal(t, tc.subject, f["subject"])
			}
		})
	}
}

func TestMeetingFromTheUsersOwnClientIsTheirs(t *testing.T) {
	e := newTestEnv(t)
	_, _, s := e.mustLogin()
	alice := sfb.Person{URI: "sip:alice@contoso.com", DisplayName: "Alice Example"}
	s.emit(sfb.MeetingInvited{ID: "own", Conversation: sfb.Conversation{Peer: bob}, From: alice, Meeting: teamMeeting()})
	m := queuedOf[sfb.MeetingInvited](e)[0]
	assert.Equal(t, portalKeyFor(bob, "alice@contoso.com"), m.PortalKey)
	assert.True(t, m.Sender.IsFromMe)
	assert.Equal(t, networkid.UserLoginID("alice@contoso.com"), m.Sender.SenderLogin)
}

func TestMeetingSubjectFromTheConversation(t *testing.T) {
	e := newTestEnv(t)
	_, _, s := e.mustLogin()
	adhoc := sfb.Meeting{URI: "sip:bob@contoso.com;gruu;opaque=app:conf:focus:id:ADHOC1", JoinURL: "https://meet.contoso.com/bob/ADHOC1"}
	s.emit(sfb.MeetingInvited{ID: "inv", Conversation: sfb.Conversation{Peer: bob, Subject: "Quick question"}, From: bobPerson, Meeting: adhoc})
	part := converted(t, queuedOf[sfb.MeetingInvited](e)[0])
	assert.Contains(t, part.Content.Body, "Skype for Business meeting: Quick question")
	assert.NotContains(t, part.Content.Body, "When:", "an ad hoc meeting has no time")
}

func TestMeetingInvitationWithoutURIOrSenderIsDropped(t *testing.T) {
	e := newTestEnv(t)
	_, _, s := e.mustLogin()
	s.emit(sfb.MeetingInvited{ID: "a", Conversation: sfb.Conversation{Peer: bob}, From: bobPerson, Meeting: sfb.Meeting{JoinURL: "https://meet.contoso.com/x"}})
	nobodys := teamMeeting()
	nobodys.Organizer = sfb.Person{}
	s.emit(sfb.MeetingInvited{ID: "b", Conversation: sfb.Conversation{Peer: bob}, Meeting: nobodys})
	assert.Empty(t, queuedOf[sfb.MeetingInvited](e))
}

// storeCallNotice records the message row of a sent call notice.
func (e *testEnv) storeCallNotice(receiver networkid.UserLoginID, msgID networkid.MessageID, sender networkid.UserID) {
	e.t.Helper()
	portal := e.portalFor(receiver, sfb.URI("sip:"+string(sender)))
	require.NoError(e.t, portal.Save(e.ctx))
	_, err := e.br.GetGhostByID(e.ctx, sender)
	require.NoError(e.t, err)
	require.NoError(e.t, e.br.DB.Message.Insert(e.ctx, &mxdb.Message{
		ID: msgID, MXID: id.EventID("$call-" + string(msgID)), Room: portal.PortalKey, SenderID: sender, Timestamp: time.Now(),
	}))
}
