package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/jitsi"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// elementWidgetEvent is a Jitsi widget state event as Element Web writes
// it and Synapse pushes it to the appservice.
func elementWidgetEvent(t *testing.T, eventID, sender string, content string, prev string) *event.Event {
	t.Helper()
	unsigned := "{}"
	if prev != "" {
		unsigned = `{"prev_content":` + prev + `,"replaces_state":"$older"}`
	}
	raw := fmt.Sprintf(`{"type":"im.vector.modular.widgets","state_key":"Ab3dEf6hIj9kLm2nOp5qRs8t","event_id":%q,"room_id":"!bob:example.org","sender":%q,"origin_server_ts":1764640000000,"content":%s,"unsigned":%s}`,
		eventID, sender, content, unsigned)
	var evt event.Event
	require.NoError(t, json.Unmarshal([]byte(raw), &evt))
	evt.Type.Class = event.StateEventType
	return &evt
}

const elementJitsiContent = `{"type":"jitsi","url":"https://app.element.io/jitsi.html?confId=JitsiQabcdefghijklmnopqrstuvw#conferenceDomain=$domain&conferenceId=$conferenceId&isAudioOnly=$isAudioOnly&isVideoChannel=$isVideoChannel&displayName=$matrix_display_name&avatarUrl=$matrix_avatar_url&userId=$matrix_user_id&roomId=$matrix_room_id&theme=$theme&roomName=$roomName&supportsScreensharing=true&language=$org.matrix.msc2873.client_language","name":"Jitsi","data":{"conferenceId":"JitsiQabcdefghijklmnopqrstuvw","roomName":"Bob Builder (SfB)","isAudioOnly":false,"isVideoChannel":false,"domain":"meet.element.io"}}`

// portalOfBob is alice's portal with bob, saved with a room.
func (e *testEnv) portalOfBob() *bridgev2.Portal {
	e.t.Helper()
	portal := e.portalFor("alice@contoso.com", bob)
	portal.MXID = "!bob:example.org"
	require.NoError(e.t, portal.Save(e.ctx))
	return portal
}

func TestJitsiWidgetBecomesAnIMAndItsRemovalEndsIt(t *testing.T) {
	e := newTestEnv(t)
	_, _, s := e.mustLogin()
	portal := e.portalOfBob()

	added := elementWidgetEvent(t, "$widget1", "@alice:example.org", elementJitsiContent, "")
	require.NoError(t, e.conn.announceWidget(e.ctx, portal, added))
	sent := waitSent(t, s, 1)
	assert.Equal(t, bob, sent[0].To)
	assert.Equal(t, "Alice Example started a video meeting. Join in your browser: https://meet.element.io/JitsiQabcdefghijklmnopqrstuvw", sent[0].Msg.Text)
	// The status of the state event says it reached SfB.
	require.Eventually(t, func() bool {
		for _, st := range e.matrix.messageStatuses() {
			if st.Info.SourceEventID == "$widget1" {
				return st.Status.Status == event.MessageStatusSuccess && st.Info.EventType == widgetEventType
			}
		}
		return false
	}, 5*time.Second, time.Millisecond)

	// Pushed again by the homeserver: not sent twice.
	require.NoError(t, e.conn.announceWidget(e.ctx, portal, added))
	assert.Never(t, func() bool { return len(s.sentMessages()) > 1 }, 100*time.Millisecond, 5*time.Millisecond)

	// Element removes a widget with empty content.
	removed := elementWidgetEvent(t, "$widget2", "@alice:example.org", `{}`, elementJitsiContent)
	require.NoError(t, e.conn.announceWidget(e.ctx, portal, removed))
	sent = waitSent(t, s, 2)
	assert.Equal(t, "Alice Example ended the video meeting https://meet.element.io/JitsiQabcdefghijklmnopqrstuvw", sent[1].Msg.Text)
}

func TestWidgetEventsNotForSfB(t *testing.T) {
	e := newTestEnv(t)
	_, _, s := e.mustLogin()
	portal := e.portalOfBob()
	for name, evt := range map[string]*event.Event{
		"other widget":              elementWidgetEvent(t, "$w1", "@alice:example.org", `{"type":"m.etherpad","url":"https://pad.example.org/p/x","name":"Pad","data":{}}`, ""),
		"someone else's":            elementWidgetEvent(t, "$w2", "@mallory:example.org", elementJitsiContent, ""),
		"removal of unknown widget": elementWidgetEvent(t, "$w3", "@alice:example.org", `{}`, ""),
		"removal of other widget":   elementWidgetEvent(t, "$w4", "@alice:example.org", `{}`, `{"type":"m.etherpad","url":"https://pad.example.org/p/x","data":{}}`),
		"unchanged meeting":         elementWidgetEvent(t, "$w5", "@alice:example.org", elementJitsiContent, elementJitsiContent),
	} {
		err := e.conn.announceWidget(e.ctx, portal, evt)
		assert.ErrorIs(t, err, errNotBridgedWidget, name)
	}
	bad := elementWidgetEvent(t, "$w6", "@alice:example.org", `{"type":"jitsi","url":"https://x/","data":{"domain":"evil.example/phish","conferenceId":"a"}}`, "")
	assert.ErrorIs(t, e.conn.announceWidget(e.ctx, portal, bad), jitsi.ErrInvalid)
	assert.Never(t, func() bool { return len(s.sentMessages()) > 0 }, 100*time.Millisecond, 5*time.Millisecond)
}

// recordingBot is the bridge bot as the meet command and calls use it:
// it records the state events and messages it sends.
type recordingBot struct {
	bridgev2.MatrixAPI
	mu     sync.Mutex
	states []sentState
	msgs   []*event.Content
}

type sentState struct {
	Room     id.RoomID
	Type     event.Type
	StateKey string
	Content  map[string]any
}

func (b *recordingBot) GetMXID() id.UserID { return "@sfbbot:example.org" }

func (b *recordingBot) SendState(_ context.Context, roomID id.RoomID, evtType event.Type, stateKey string, content *event.Content, _ time.Time) (*mautrix.RespSendEvent, error) {
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.states = append(b.states, sentState{roomID, evtType, stateKey, m})
	return &mautrix.RespSendEvent{EventID: id.EventID(fmt.Sprintf("$state%d", len(b.states)))}, nil
}

func (b *recordingBot) SendMessage(_ context.Context, roomID id.RoomID, evtType event.Type, content *event.Content, _ *bridgev2.MatrixSendExtra) (*mautrix.RespSendEvent, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, content)
	return &mautrix.RespSendEvent{EventID: id.EventID(fmt.Sprintf("$msg%d", len(b.msgs)))}, nil
}

func (e *testEnv) recordBot() *recordingBot {
	bot := &recordingBot{}
	e.br.Bot = bot
	return bot
}

func TestMeetCommandWritesElementsWidgetAndSendsTheLink(t *testing.T) {
	e := newTestEnv(t)
	_, _, s := e.mustLogin()
	bot := e.recordBot()
	portal := e.portalOfBob()
	portal.Name = "Bob Builder (SfB)"

	reply, err := e.conn.meet(e.ctx, meetCommand{portal: portal, user: "@alice:example.org", eventID: "$cmd", roomID: portal.MXID, subject: "Budget <b>2027</b>"})
	require.NoError(t, err)
	require.Len(t, bot.states, 2)

	// The widget: Element's state event, as addJitsiWidget writes it.
	w := bot.states[0]
	assert.Equal(t, "im.vector.modular.widgets", w.Type.Type)
	assert.Regexp(t, `^[A-Za-z0-9]{24}$`, w.StateKey)
	assert.Equal(t, portal.MXID, w.Room)
	keys := []string{}
	for k := range w.Content {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, []string{"type", "url", "name", "data"}, keys)
	assert.Equal(t, "jitsi", w.Content["type"])
	assert.Equal(t, "Budget <b>2027</b>", w.Content["name"])
	data := w.Content["data"].(map[string]any)
	confID, _ := data["conferenceId"].(string)
	assert.Regexp(t, `^Jitsi[A-Z][a-z]{23}$`, confID)
	assert.Equal(t, map[string]any{"conferenceId": confID, "domain": "meet.element.io", "roomName": "Bob Builder (SfB)", "isAudioOnly": false, "isVideoChannel": false}, data)
	u, err := url.Parse(w.Content["url"].(string))
	require.NoError(t, err)
	assert.Equal(t, "https://app.element.io/jitsi.html", u.Scheme+"://"+u.Host+u.Path)
	assert.Equal(t, confID, u.Query().Get("confId"))
	frag, err := url.ParseQuery(u.Fragment)
	require.NoError(t, err)
	for param, variable := range map[string]string{
		"conferenceDomain": "$domain", "conferenceId": "$conferenceId", "isAudioOnly": "$isAudioOnly",
		"displayName": "$matrix_display_name", "avatarUrl": "$matrix_avatar_url", "userId": "$matrix_user_id",
		"roomId": "$matrix_room_id", "theme": "$theme", "roomName": "$roomName",
	} {
		assert.Equal(t, variable, frag.Get(param), param)
	}

	// The layout puts it at the top of the room.
	l := bot.states[1]
	assert.Equal(t, "io.element.widgets.layout", l.Type.Type)
	assert.Equal(t, "", l.StateKey)
	assert.Equal(t, map[string]any{"widgets": map[string]any{w.StateKey: map[string]any{"container": "top", "index": float64(0), "width": float64(100), "height": float64(40)}}}, l.Content)

	link := "https://meet.element.io/" + confID
	assert.Contains(t, reply, link)
	sent := waitSent(t, s, 1)
	assert.Equal(t, bob, sent[0].To)
	assert.Equal(t, `Alice Example started a video meeting "Budget <b>2027</b>". Join in your browser: `+link, sent[0].Msg.Text)
}

func TestMeetCommandOnlyForTheLoginsOwner(t *testing.T) {
	e := newTestEnv(t)
	_, _, s := e.mustLogin()
	bot := e.recordBot()
	portal := e.portalOfBob()
	reply, err := e.conn.meet(e.ctx, meetCommand{portal: portal, user: "@mallory:example.org", eventID: "$cmd", roomID: portal.MXID})
	assert.ErrorIs(t, err, errNotBridgedWidget)
	assert.Contains(t, reply, "only in your own")
	assert.Empty(t, bot.states)
	assert.Empty(t, s.sentMessages())
}

func TestMeetSfBCreatesAnSfBMeeting(t *testing.T) {
	created := sfb.Meeting{URI: "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:77QX", JoinURL: "https://meet.contoso.com/alice/77QX", ConferenceID: "9911"}
	t.Run("refused unless configured", func(t *testing.T) {
		e := newTestEnv(t)
		_, _, s := e.mustLogin()
		bot := e.recordBot()
		portal := e.portalOfBob()
		reply, err := e.conn.meet(e.ctx, meetCommand{portal: portal, user: "@alice:example.org", eventID: "$cmd", roomID: portal.MXID, sfb: true})
		require.NoError(t, err)
		assert.Contains(t, reply, "sfb_meetings is off")
		assert.Empty(t, bot.msgs)
		s.mu.Lock()
		assert.Empty(t, s.meetings.requests)
		s.mu.Unlock()
	})
	t.Run("created and posted on both sides", func(t *testing.T) {
		e := newTestEnv(t, withMeetings(func(m *MeetingsConfig) { m.SfBMeetings = true }))
		_, _, s := e.mustLogin()
		s.mu.Lock()
		s.meetings.next = created
		s.mu.Unlock()
		bot := e.recordBot()
		portal := e.portalOfBob()
		reply, err := e.conn.meet(e.ctx, meetCommand{portal: portal, user: "@alice:example.org", eventID: "$cmd", roomID: portal.MXID, subject: "Review", sfb: true})
		require.NoError(t, err)
		assert.Contains(t, reply, created.JoinURL)
		s.mu.Lock()
		assert.Equal(t, []sfb.MeetingRequest{{Subject: "Review", Attendees: []sfb.URI{bob}}}, s.meetings.requests)
		s.mu.Unlock()

		require.Len(t, bot.msgs, 1)
		notice := bot.msgs[0]
		content := notice.Parsed.(*event.MessageEventContent)
		assert.Equal(t, event.MsgNotice, content.MsgType)
		assert.Contains(t, content.Body, "Skype for Business meeting: Review")
		assert.Contains(t, content.Body, "Organiser: Alice Example")
		assert.Contains(t, content.FormattedBody, `<a href="https://meet.contoso.com/alice/77QX">Join the Skype for Business meeting</a>`)
		assert.Equal(t, created.JoinURL, notice.Raw[MeetingField].(map[string]any)["join_url"])

		sent := waitSent(t, s, 1)
		assert.Equal(t, bob, sent[0].To)
		assert.Equal(t, `Alice Example invites you to a Skype for Business meeting "Review". Join: https://meet.contoso.com/alice/77QX`, sent[0].Msg.Text)
		assert.Empty(t, bot.states, "no Jitsi widget for an SfB meeting")
	})
}

// The widget the meet command writes reads back as the same meeting.
func TestMeetWidgetReadsBack(t *testing.T) {
	e := newTestEnv(t)
	e.mustLogin()
	bot := e.recordBot()
	portal := e.portalOfBob()
	_, err := e.conn.meet(e.ctx, meetCommand{portal: portal, user: "@alice:example.org", eventID: "$cmd", roomID: portal.MXID})
	require.NoError(t, err)
	raw, err := json.Marshal(bot.states[0].Content)
	require.NoError(t, err)
	w, removed, err := jitsi.ParseWidget(raw)
	require.NoError(t, err)
	assert.False(t, removed)
	assert.Equal(t, "Jitsi", w.Name)
	assert.True(t, regexp.MustCompile(`^Jitsi[A-Z]`).MatchString(w.Data.ConferenceID))
	assert.False(t, strings.Contains(w.URL, "%24"), "widget variables escaped: %s", w.URL)
}

// The appservice handler finds the portal by room and announces only the
// user's widgets: the bridge's own (meet command, calls) were announced
// already.
func TestWidgetHandlerAnnouncesOnlyTheUsersOwn(t *testing.T) {
	e := newTestEnv(t)
	_, _, s := e.mustLogin()
	e.portalOfBob()
	e.conn.bridgeUser = func(user id.UserID) bool { return user == "@sfbbot:example.org" }

	e.conn.handleMatrixWidget(e.ctx, elementWidgetEvent(t, "$bots", "@sfbbot:example.org", elementJitsiContent, ""))
	e.conn.handleMatrixWidget(e.ctx, elementWidgetEvent(t, "$alices", "@alice:example.org", elementJitsiContent, ""))
	sent := waitSent(t, s, 1)
	assert.Contains(t, sent[0].Msg.Text, "Alice Example started a video meeting")
	assert.Never(t, func() bool { return len(s.sentMessages()) > 1 }, 100*time.Millisecond, 5*time.Millisecond)
}
