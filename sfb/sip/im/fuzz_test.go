package im

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

func FuzzTextFormat(f *testing.F) {
	f.Add(sipeTextFormat)
	f.Add("text/plain; charset=UTF-8;msgr=" + lyncMsgr + ";ms-body=SGk=")
	f.Add("text/html; charset=UTF-8;ms-body=PGI+aGk8L2I+")
	f.Add(`multipart/alternative; boundary="b";ms-body=LS1iDQpDb250ZW50LVR5cGU6IHRleHQvcGxhaW4NCg0KaGkNCi0tYi0tDQo=`)
	f.Fuzz(func(t *testing.T, v string) {
		tf, err := ParseTextFormat(v)
		if err != nil {
			return
		}
		// What was read is written back to the same.
		again, err := ParseTextFormat(tf.String())
		require.NoError(t, err, "%q", tf.String())
		assert.Equal(t, tf.ContentType, again.ContentType)
		assert.Equal(t, tf.Body, again.Body)
		if msg, err := tf.Message(); err == nil {
			checkMessage(t, msg)
		}
	})
}

func FuzzMessageBody(f *testing.F) {
	f.Add("text/plain; charset=UTF-8;msgr="+boldItalicNavyMsgr, []byte("hi"))
	f.Add("text/plain; charset=windows-1252", []byte("caf\xe9"))
	f.Add("text/html", []byte("<b>a</b><br>b"))
	f.Add("text/rtf", []byte(`{\rtf1 hi}`))
	f.Add(`multipart/alternative; boundary="x"`, []byte("--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aGk8L2I+\r\n--x--\r\n"))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		msg, err := DecodeMessage(ct, body)
		if err != nil {
			return
		}
		checkMessage(t, msg)
		if len(msg.Text)+len(msg.HTML)+len(msg.RTF) > MaxBodySize/2 {
			return // a charset's bytes grew past what one body holds
		}
		// A message read is one that can be sent on.
		out, body2, err := EncodeMessage(msg, AcceptTypes())
		require.NoError(t, err)
		_, err = DecodeMessage(out.String(), body2)
		require.NoError(t, err)
	})
}

func checkMessage(t *testing.T, msg sfb.Message) {
	t.Helper()
	for _, s := range []string{msg.Text, msg.HTML, msg.RTF} {
		assert.True(t, utf8.ValidString(s))
		assert.LessOrEqual(t, len(s), 2*MaxBodySize)
	}
}

func FuzzTyping(f *testing.F) {
	f.Add(TypeKeyboardActivity, KeyboardActivity(true))
	f.Add(TypeKeyboardActivity, KeyboardActivity(false))
	f.Add(TypeIsComposing, IsComposing(true, 90))
	f.Add(TypeIsComposing, IsComposing(false, 0))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		typing, err := ParseTyping(ct, body)
		if err != nil {
			return
		}
		// Either form of the same state reads back as it.
		for _, b := range []struct {
			ct   string
			body []byte
		}{{TypeKeyboardActivity, KeyboardActivity(typing)}, {TypeIsComposing, IsComposing(typing, 0)}} {
			again, err := ParseTyping(b.ct, b.body)
			require.NoError(t, err)
			assert.Equal(t, typing, again)
		}
	})
}

func FuzzSDP(f *testing.F) {
	f.Add(SDP{Format: "sip:a@b"}.Marshal())
	f.Add([]byte("v=0\r\nm=x-ms-message 5060 sip null\r\na=accept-types:text/plain\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := ParseSDP(body)
		if err != nil {
			return
		}
		again, err := ParseSDP(s.Marshal())
		require.NoError(t, err, "%q", s.Marshal())
		assert.Equal(t, s.Media, again.Media)
		assert.Equal(t, s.Format, again.Format)
		if s.AcceptTypes != nil { // nil is written as ours
			assert.Equal(t, s.AcceptTypes, again.AcceptTypes)
		}
		if s.Port != 0 {
			assert.Equal(t, s.Port, again.Port)
		}
	})
}
