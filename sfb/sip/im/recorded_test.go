package im

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pidginsipe/recorded"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// recordedMessage is one SIP message of the pidgin-sipe recording
// (internal/pidginsipe/recorded): its headers (the first of each name,
// case-insensitively) and body.
type recordedMessage struct {
	headers map[string]string
	body    []byte
}

func loadRecorded(t *testing.T, name string) recordedMessage {
	t.Helper()
	raw := recorded.Read(t, name)
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	require.True(t, ok, "%s: no blank line after the headers", name)
	r := recordedMessage{headers: map[string]string{}, body: body}
	for _, line := range strings.Split(string(head), "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ":")
		require.True(t, ok, "%s: header line %q", name, line)
		k = strings.ToLower(strings.TrimSpace(k))
		if _, seen := r.headers[k]; !seen {
			r.headers[k] = strings.TrimSpace(v)
		}
	}
	return r
}

// What pidgin-sipe 1.25 sent in a recorded session: its INVITE's first
// message, its typing INFO, a bold message, its SDPs; and what the
// codec makes of them and would answer.
func TestPidginSipeRecording(t *testing.T) {
	invite := loadRecorded(t, "027-client-invite.sip")
	tf, err := ParseTextFormat(invite.headers["ms-text-format"])
	require.NoError(t, err)
	msg, err := tf.Message()
	require.NoError(t, err)
	assert.Equal(t, sfb.Message{Text: "Hello Bob, first message"}, msg)
	msgr, _ := tf.ContentType.Get("msgr")
	assert.Equal(t, sipeMsgr, msgr, "sipe_parse_html's format for unformatted text")
	// Written back as pidgin-sipe wrote it but for the blanks after ';'.
	assert.Equal(t, strings.ReplaceAll(invite.headers["ms-text-format"], "; ", ";"), strings.ReplaceAll(tf.String(), "; ", ";"))

	offer, err := ParseSDP(invite.body)
	require.NoError(t, err)
	assert.Equal(t, "null", offer.Format)
	// Debian's pidgin-sipe is built without GMime: no multipart/alternative.
	assert.False(t, offer.Accepts(TypeAlternative))
	assert.True(t, offer.Accepts(TypeIsComposing))
	ct, body, err := EncodeMessage(sfb.Message{Text: "hi", HTML: "<b>hi</b>"}, offer.AcceptTypes)
	require.NoError(t, err)
	assert.Equal(t, "text/html; charset=UTF-8", ct.String(), "HTML goes as text/html to it")
	assert.Equal(t, "<b>hi</b>", string(body))

	info := loadRecorded(t, "030-client-info.sip")
	typing, err := ParseTyping(info.headers["content-type"], info.body)
	require.NoError(t, err)
	assert.True(t, typing)
	assert.Equal(t, string(KeyboardActivity(true)), strings.Replace(string(info.body), "> <", "><", 1),
		"ours is pidgin-sipe's without the blank")

	// "<b>Second</b> message &amp; more" typed: the bold in the msgr's
	// EF=B for the whole text, the text unescaped.
	message := loadRecorded(t, "032-client-message.sip")
	msg, err = DecodeMessage(message.headers["content-type"], message.body)
	require.NoError(t, err)
	assert.Equal(t, sfb.Message{Text: "Second message & more", HTML: "<b>Second message &amp; more</b>"}, msg)

	answer, err := ParseSDP(loadRecorded(t, "039-client-200-invite.sip").body)
	require.NoError(t, err)
	assert.Equal(t, "sip:alice@contoso.com", answer.Format)
	assert.Equal(t, 33563, answer.Port)

	// carol's INVITE as the canned Front End sent it (Lync's spacing).
	carol := loadRecorded(t, "038-server-invite.sip")
	tf, err = ParseTextFormat(carol.headers["ms-text-format"])
	require.NoError(t, err)
	msg, err = tf.Message()
	require.NoError(t, err)
	assert.Equal(t, sfb.Message{Text: "Hello Alice, Carol here"}, msg)
}
