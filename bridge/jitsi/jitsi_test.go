package jitsi

import (
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// elementWidget is a widget event's content as Element Web writes it
// (WidgetUtils.addJitsiWidget on app.element.io, no Jitsi auth): the
// shape the bridge must read, and write.
const elementWidget = `{
	"type": "jitsi",
	"url": "https://app.element.io/jitsi.html?confId=JitsiQabcdefghijklmnopqrstuvw#conferenceDomain=$domain&conferenceId=$conferenceId&isAudioOnly=$isAudioOnly&isVideoChannel=$isVideoChannel&displayName=$matrix_display_name&avatarUrl=$matrix_avatar_url&userId=$matrix_user_id&roomId=$matrix_room_id&theme=$theme&roomName=$roomName&supportsScreensharing=true&language=$org.matrix.msc2873.client_language",
	"name": "Jitsi",
	"data": {
		"conferenceId": "JitsiQabcdefghijklmnopqrstuvw",
		"roomName": "Alice Example (SfB)",
		"isAudioOnly": false,
		"isVideoChannel": false,
		"domain": "meet.element.io"
	}
}`

func TestNewWidgetHasElementsShape(t *testing.T) {
	w, err := NewWidget(DefaultWidgetURL, "meet.element.io", "JitsiQabcdefghijklmnopqrstuvw", "", "Alice Example (SfB)")
	require.NoError(t, err)
	got, err := json.Marshal(w)
	require.NoError(t, err)
	// Same keys and values as Element's, nothing more.
	assert.JSONEq(t, elementWidget, string(got))

	u, err := url.Parse(w.URL)
	require.NoError(t, err)
	assert.Equal(t, "JitsiQabcdefghijklmnopqrstuvw", u.Query().Get("confId"))
	// The widget variables reach the client unescaped, for it to fill in.
	for _, v := range []string{"$domain", "$conferenceId", "$matrix_user_id", "$matrix_room_id", "$matrix_display_name", "$matrix_avatar_url"} {
		assert.Contains(t, w.URL, "="+v, "widget variable %s", v)
	}
	assert.NotContains(t, w.URL, "%24")
}

func TestNewWidgetRefusesWhatElementCannotRender(t *testing.T) {
	_, err := NewWidget("http://app.element.io/jitsi.html#conferenceId=$conferenceId", "meet.element.io", NewConferenceID(), "", "")
	assert.Error(t, err, "not https")
	_, err = NewWidget("https://app.element.io/jitsi.html", "meet.element.io", NewConferenceID(), "", "")
	assert.Error(t, err, "no widget variables")
	_, err = NewWidget(DefaultWidgetURL, "evil.example/x", NewConferenceID(), "", "")
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = NewWidget(DefaultWidgetURL, "meet.element.io", "a/b", "", "")
	assert.ErrorIs(t, err, ErrInvalid)
}

func TestNewIDsHaveElementsForm(t *testing.T) {
	conf := regexp.MustCompile(`^Jitsi[A-Z][a-z]{23}$`)
	widget := regexp.MustCompile(`^[A-Za-z0-9]{24}$`)
	seen := map[string]bool{}
	for range 50 {
		c, w := NewConferenceID(), NewWidgetID()
		assert.Regexp(t, conf, c)
		assert.Regexp(t, widget, w)
		assert.False(t, seen[c], "conference ID repeated")
		seen[c] = true
	}
}

func TestParseElementWidget(t *testing.T) {
	w, removed, err := ParseWidget([]byte(elementWidget))
	require.NoError(t, err)
	assert.False(t, removed)
	assert.Equal(t, "meet.element.io", w.Data.Domain)
	assert.Equal(t, "JitsiQabcdefghijklmnopqrstuvw", w.Data.ConferenceID)
	link, err := JoinURL(w.Data.Domain, w.Data.ConferenceID)
	require.NoError(t, err)
	assert.Equal(t, "https://meet.element.io/JitsiQabcdefghijklmnopqrstuvw", link)
}

func TestParseWidgetFallsBackToTheURL(t *testing.T) {
	// Older clients kept domain and conference in the URL only.
	w, _, err := ParseWidget([]byte(`{"type":"m.jitsi","url":"https://jitsi.example.org/jitsi.html?confId=Room42#conferenceDomain=jitsi.example.org&conferenceId=$conferenceId","data":{}}`))
	require.NoError(t, err)
	assert.Equal(t, "jitsi.example.org", w.Data.Domain)
	assert.Equal(t, "Room42", w.Data.ConferenceID)
}

func TestParseWidgetRemovedOtherAndBad(t *testing.T) {
	for _, raw := range []string{`{}`, `{"type":"jitsi"}`} {
		_, removed, err := ParseWidget([]byte(raw))
		require.NoError(t, err, raw)
		assert.True(t, removed, raw)
	}
	_, _, err := ParseWidget([]byte(`{"type":"m.custom","url":"https://example.org/"}`))
	assert.ErrorIs(t, err, ErrNotJitsi)
	for _, raw := range []string{
		`[]`,
		`{"type":"jitsi","url":"x","data":{"domain":"meet.example.org"}}`,
		`{"type":"jitsi","url":"x","data":{"domain":"evil.example/phish?","conferenceId":"a"}}`,
		`{"type":"jitsi","url":"x","data":{"domain":"user@evil.example","conferenceId":"a"}}`,
		`{"type":"jitsi","url":"x","data":{"domain":"meet.example.org","conferenceId":"../admin"}}`,
		`{"type":"jitsi","url":"x","data":{"domain":"meet.example.org","conferenceId":"a\"><script>"}}`,
		`{"type":"jitsi","url":"x","data":{"domain":"meet.example.org:99999","conferenceId":"a"}}`,
		`{"type":"jitsi","url":"x","data":"nope"}`,
	} {
		_, _, err := ParseWidget([]byte(raw))
		assert.Error(t, err, raw)
	}
}

func TestLayoutKeepsOtherWidgets(t *testing.T) {
	current := map[string]any{"widgets": map[string]any{"etherpad": map[string]any{"container": "right"}}}
	got, err := json.Marshal(Layout(current, "w1"))
	require.NoError(t, err)
	assert.JSONEq(t, `{"widgets":{"etherpad":{"container":"right"},"w1":{"container":"top","index":0,"width":100,"height":40}}}`, string(got))
	got, err = json.Marshal(Layout(nil, "w1"))
	require.NoError(t, err)
	assert.JSONEq(t, `{"widgets":{"w1":{"container":"top","index":0,"width":100,"height":40}}}`, string(got))
}

func FuzzParseWidget(f *testing.F) {
	f.Add([]byte(elementWidget))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"type":"jitsi","url":"https://x/?confId=a#conferenceDomain=b","data":{}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		w, removed, err := ParseWidget(raw)
		if err != nil || removed {
			return
		}
		link, err := JoinURL(w.Data.Domain, w.Data.ConferenceID)
		if err != nil {
			t.Fatalf("parsed widget without a join URL: %v", err)
		}
		u, err := url.Parse(link)
		if err != nil || u.Scheme != "https" || u.Host != strings.ToLower(w.Data.Domain) || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("join URL %q is not https://<domain>/<id> for %+v", link, w.Data)
		}
		if strings.Count(u.Path, "/") != 1 {
			t.Fatalf("join URL %q has more than one path segment", link)
		}
	})
}
