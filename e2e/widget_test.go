package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

var widgetType = event.Type{Type: "im.vector.modular.widgets", Class: event.StateEventType}
var layoutType = event.Type{Type: "io.element.widgets.layout", Class: event.StateEventType}

// elementJitsiWidget is the content Element Web's WidgetUtils.addJitsiWidget
// writes (app.element.io, no Jitsi auth).
const elementJitsiWidget = `{"type":"jitsi","url":"https://app.element.io/jitsi.html?confId=JitsiWqwertyuiopasdfghjklzxc#conferenceDomain=$domain&conferenceId=$conferenceId&isAudioOnly=$isAudioOnly&isVideoChannel=$isVideoChannel&displayName=$matrix_display_name&avatarUrl=$matrix_avatar_url&userId=$matrix_user_id&roomId=$matrix_room_id&theme=$theme&roomName=$roomName&supportsScreensharing=true&language=$org.matrix.msc2873.client_language","name":"Jitsi","data":{"conferenceId":"JitsiWqwertyuiopasdfghjklzxc","roomName":"Colleague of wilma","isAudioOnly":false,"isVideoChannel":false,"domain":"meet.element.io"}}`

// A Jitsi meeting started in Element reaches SfB as a link that opens in a
// browser; removing the widget says the meeting ended.
func TestJitsiWidgetArrivesOnSfB(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "wilma")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	room := env.openPortal(t, p, "Shall we talk?")

	const widgetID = "Qm3xV8pLr2TzK9wYcB4nHd7s"
	_, err := p.mx.Client.SendStateEvent(ctx, room, widgetType, widgetID, json.RawMessage(elementJitsiWidget))
	require.NoError(t, err)
	_, err = p.mx.Client.SendStateEvent(ctx, room, layoutType, "", map[string]any{
		"widgets": map[string]any{widgetID: map[string]any{"container": "top", "index": 0, "width": 100, "height": 40}},
	})
	require.NoError(t, err)

	const link = "https://meet.element.io/JitsiWqwertyuiopasdfghjklzxc"
	got := env.waitReceived(t, p, "the Jitsi link", func(r sim.Received) bool { return strings.Contains(r.Message.Text, link) })
	assert.Equal(t, "Wilma started a video meeting. Join in your browser: "+link, got.Message.Text)
	u, err := url.Parse(link)
	require.NoError(t, err)
	assert.Equal(t, "https", u.Scheme)
	assert.Equal(t, "meet.element.io", u.Host)

	_, err = p.mx.Client.SendStateEvent(ctx, room, widgetType, widgetID, map[string]any{})
	require.NoError(t, err)
	env.waitReceived(t, p, "the end of the meeting", func(r sim.Received) bool {
		return r.Message.Text == "Wilma ended the video meeting "+link
	})
	assertNoDuplicates(t, env.sim.Received(p.colleague.URI))
}

// The meet command writes a widget Element renders and sends its link.
func TestMeetCommandStartsJitsiAndTellsSfB(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "walter")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	room := env.openPortal(t, p, "Meeting?")

	from := p.mx.mark()
	_, err := p.mx.Client.SendText(ctx, room, "!sfb meet Quarterly review")
	require.NoError(t, err)
	widgetEvt := p.mx.waitFor(from, hop, "the Jitsi widget", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == widgetType
	})
	var widget struct {
		Type string         `json:"type"`
		URL  string         `json:"url"`
		Name string         `json:"name"`
		Data map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(widgetEvt.Content.VeryRaw, &widget))
	assert.Equal(t, "jitsi", widget.Type)
	assert.Equal(t, "Quarterly review", widget.Name)
	assert.Equal(t, "meet.element.io", widget.Data["domain"])
	confID, _ := widget.Data["conferenceId"].(string)
	assert.Regexp(t, regexp.MustCompile(`^Jitsi[A-Z][a-z]{23}$`), confID)
	for _, v := range []string{"$matrix_user_id", "$matrix_room_id", "$matrix_display_name", "$conferenceId", "$domain"} {
		assert.Contains(t, widget.URL, v)
	}
	layout := p.mx.waitFor(from, hop, "the widget layout", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == layoutType
	})
	var layoutContent struct {
		Widgets map[string]map[string]any `json:"widgets"`
	}
	require.NoError(t, json.Unmarshal(layout.Content.VeryRaw, &layoutContent))
	assert.Equal(t, "top", layoutContent.Widgets[*widgetEvt.StateKey]["container"])

	link := "https://meet.element.io/" + confID
	got := env.waitReceived(t, p, "the meeting link", func(r sim.Received) bool { return strings.Contains(r.Message.Text, link) })
	assert.Equal(t, `Walter started a video meeting "Quarterly review". Join in your browser: `+link, got.Message.Text)
	// The bridge's own widget is not announced a second time: a message
	// sent after it reaches SfB after any second announcement would have.
	_, err = p.mx.Client.SendText(ctx, room, "after the meeting")
	require.NoError(t, err)
	env.waitReceived(t, p, "the message after the meeting", func(r sim.Received) bool { return r.Message.Text == "after the meeting" })
	n := 0
	for _, r := range env.sim.Received(p.colleague.URI) {
		if strings.Contains(r.Message.Text, link) {
			n++
		}
	}
	assert.Equal(t, 1, n, "the meeting announced once")
}

// A Jitsi meeting started in Element, or with the meet command, in a group
// room reaches every SfB participant of the conversation.
func TestJitsiWidgetInAGroupRoomReachesEveryone(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "wanda")
	carol := env.addSfBUser(t, "wanda.carol", "Carol Wanda")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	from := p.mx.mark()
	_, err := env.sim.StartGroup(ctx, p.colleague.URI, []sfb.URI{p.self.URI, carol.URI}, "", "")
	require.NoError(t, err)
	room := env.joinGroupRoom(t, p.mx, from, p.mgmt)

	const widgetID = "Gr0upW1dgetQm3xV8pLr2TzK"
	_, err = p.mx.Client.SendStateEvent(ctx, room, widgetType, widgetID, json.RawMessage(elementJitsiWidget))
	require.NoError(t, err, "members of a group room may start a meeting")
	const link = "https://meet.element.io/JitsiWqwertyuiopasdfghjklzxc"
	want := "Wanda started a video meeting. Join in your browser: " + link
	env.waitGroupReceived(t, p.colleague.URI, p.self.URI, equals(want), "the Jitsi link")
	env.waitGroupReceived(t, carol.URI, p.self.URI, equals(want), "the Jitsi link")

	// The meet command works there too.
	_, err = p.mx.Client.SendText(ctx, room, "!sfb meet Standup")
	require.NoError(t, err)
	standup := func(text string) bool {
		return strings.HasPrefix(text, `Wanda started a video meeting "Standup". Join in your browser: https://meet.element.io/Jitsi`)
	}
	env.waitGroupReceived(t, p.colleague.URI, p.self.URI, standup, "the meet command's link")
	env.waitGroupReceived(t, carol.URI, p.self.URI, standup, "the meet command's link")
}
