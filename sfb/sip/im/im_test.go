package im

import (
	"errors"
	"mime/multipart"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// What pidgin-sipe's sipe_im_invite writes for a message typed without
// formatting: sipe_parse_html gives "FN=MS%20Sans%20Serif; EF=; CO=0; PF=0;
// RL=0", sipmsg_get_msgr_string encodes it as base64 of UTF-16LE without
// padding, the text goes in ms-body.
const (
	sipeMsgr = "WAAtAE0ATQBTAC0ASQBNAC0ARgBvAHIAbQBhAHQAOgAgAEYATgA9AE0AUwAlADIAMABTAGEAbgBzACUAMgAwAFMAZQByAGkAZgA7ACAARQBGAD0AOwAgAEMATwA9ADAAOwAgAFAARgA9ADAAOwAgAFIATAA9ADAADQAKAA0ACgA"
	// "Hello <world> & ünïcode"
	sipeBody       = "SGVsbG8gPHdvcmxkPiAmIMO8bsOvY29kZQ=="
	sipeTextFormat = "text/plain; charset=UTF-8;msgr=" + sipeMsgr + ";ms-body=" + sipeBody
	// Lync 2013 and SfB clients: "FN=Segoe%20UI; EF=; CO=0; CS=0; PF=0".
	lyncMsgr = "WAAtAE0ATQBTAC0ASQBNAC0ARgBvAHIAbQBhAHQAOgAgAEYATgA9AFMAZQBnAG8AZQAlADIAMABVAEkAOwAgAEUARgA9ADsAIABDAE8APQAwADsAIABDAFMAPQAwADsAIABQAEYAPQAwAA0ACgANAAoA"
	// The example of sipmsg.c's sipmsg_get_x_mms_im_format:
	// "FN=Microsoft%20Sans%20Serif; EF=BI; CO=800000; CS=0; PF=22".
	boldItalicNavyMsgr = "WAAtAE0ATQBTAC0ASQBNAC0ARgBvAHIAbQBhAHQAOgAgAEYATgA9AE0AaQBjAHIAbwBzAG8AZgB0ACUAMgAwAFMAYQBuAHMAJQAyADAAUwBlAHIAaQBmADsAIABFAEYAPQBCAEkAOwAgAEMATwA9ADgAMAAwADAAMAAwADsAIABDAFMAPQAwADsAIABQAEYAPQAyADIADQAKAA0ACgA"
)

func TestParseTextFormatPidginSipe(t *testing.T) {
	tf, err := ParseTextFormat(sipeTextFormat)
	require.NoError(t, err)
	assert.Equal(t, "text/plain", tf.ContentType.Type)
	charset, _ := tf.ContentType.Get("charset")
	assert.Equal(t, "UTF-8", charset)
	_, hasBody := tf.ContentType.Get("ms-body")
	assert.False(t, hasBody, "ms-body is the Body, not a parameter")
	assert.Equal(t, "Hello <world> & ünïcode", string(tf.Body))

	msg, err := tf.Message()
	require.NoError(t, err)
	// No effects, no colour: the text is all there is.
	assert.Equal(t, sfb.Message{Text: "Hello <world> & ünïcode"}, msg)

	msgr, _ := tf.ContentType.Get("msgr")
	f, err := ParseMsgr(msgr)
	require.NoError(t, err)
	assert.Equal(t, Format{Font: "MS Sans Serif", Color: "0", PitchFamily: "0"}, f)
	// Written back as pidgin-sipe writes it, byte for byte.
	assert.Equal(t, sipeMsgr, f.Msgr())
}

func TestTextFormatRoundTrip(t *testing.T) {
	tf, err := ParseTextFormat(sipeTextFormat)
	require.NoError(t, err)
	again, err := ParseTextFormat(tf.String())
	require.NoError(t, err)
	assert.Equal(t, tf, again)
	assert.True(t, strings.HasSuffix(tf.String(), ";ms-body="+sipeBody), tf.String())
}

func TestParseMsgrClients(t *testing.T) {
	f, err := ParseMsgr(lyncMsgr)
	require.NoError(t, err)
	assert.Equal(t, Format{Font: "Segoe UI", Color: "0", Charset: "0", PitchFamily: "0"}, f)
	assert.Empty(t, f.HTML("hi"), "plain Segoe UI needs no HTML")

	f, err = ParseMsgr(boldItalicNavyMsgr)
	require.NoError(t, err)
	assert.Equal(t, "Microsoft Sans Serif", f.Font)
	assert.Equal(t, "BI", f.Effects)
	// CO is blue-green-red: 800000 is navy, as msn_parse_format reads it.
	assert.Equal(t, "#000080", f.RGB())
	assert.Equal(t, `<span style="color:#000080"><b><i>a &lt; b<br>c</i></b></span>`, f.HTML("a < b\nc"))
}

// X-MMS-IM-Format as Messenger-era clients wrote it, which Communicator
// and Lync kept: a font name with a trailing escaped blank, six-digit
// black, effects alone.
func TestParseFormatVariants(t *testing.T) {
	f, err := ParseFormat("FN=Microsoft%20YaHei%20; EF=; CO=0; CS=1; PF=0")
	require.NoError(t, err)
	assert.Equal(t, Format{Font: "Microsoft YaHei ", Color: "0", Charset: "1", PitchFamily: "0"}, f)
	f, err = ParseFormat("FN=Arial; EF=I; CO=000000; CS=0; PF=22")
	require.NoError(t, err)
	assert.Empty(t, f.RGB(), "000000 is the default black")
	assert.Equal(t, "<i>x</i>", f.HTML("x"))
	for _, bad := range []string{"FN", "EF=X", "CO=12345678", "CO=zz", "FN=%zz"} {
		_, err := ParseFormat(bad)
		assert.ErrorIs(t, err, ErrMalformed, bad)
	}
}

func TestDecodeMessagePlainWithMsgr(t *testing.T) {
	// pidgin-sipe's MESSAGE: "Content-Type: text/plain; charset=UTF-8;msgr=..."
	msg, err := DecodeMessage("text/plain; charset=UTF-8;msgr="+boldItalicNavyMsgr, []byte("bold\r\nline"))
	require.NoError(t, err)
	assert.Equal(t, "bold\nline", msg.Text)
	assert.Equal(t, `<span style="color:#000080"><b><i>bold<br>line</i></b></span>`, msg.HTML)
}

func TestDecodeMessageForms(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body string
		want           sfb.Message
	}{
		{"plain without charset", "text/plain", "hi", sfb.Message{Text: "hi"}},
		{"plain with BOM", "text/plain;charset=utf-8", "\xef\xbb\xbfhi", sfb.Message{Text: "hi"}},
		{"windows-1252", "text/plain; charset=windows-1252", "caf\xe9", sfb.Message{Text: "café"}},
		{"latin-1 quoted", `text/plain; charset="ISO-8859-1"`, "\xfcber", sfb.Message{Text: "über"}},
		{
			// pidgin-sipe drops line ends of HTML source (get_html_message).
			"html", "text/html; charset=UTF-8",
			"<span style=\"font-family:Segoe UI\">a &amp; b<br/>\r\nnext</span>",
			sfb.Message{Text: "a & b\nnext", HTML: "<span style=\"font-family:Segoe UI\">a &amp; b<br/>\r\nnext</span>"},
		},
		{"rtf only", "text/rtf", `{\rtf1\ansi\deff0 {\fonttbl {\f0 Segoe UI;}}\f0 hi\par}`, sfb.Message{RTF: `{\rtf1\ansi\deff0 {\fonttbl {\f0 Segoe UI;}}\f0 hi\par}`}},
		{
			"lync multipart/alternative", `multipart/alternative; boundary="----=_NextPart_000_0001"`,
			"------=_NextPart_000_0001\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nHello\r\n" +
				"------=_NextPart_000_0001\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n<b>Hello</b>\r\n" +
				"------=_NextPart_000_0001\r\nContent-Type: text/rtf\r\n\r\n{\\rtf1 \\b Hello\\b0}\r\n" +
				"------=_NextPart_000_0001--\r\n",
			sfb.Message{Text: "Hello", HTML: "<b>Hello</b>", RTF: `{\rtf1 \b Hello\b0}`},
		},
		{
			// The sender's HTML wins over the one msgr would make; the
			// first part of a type counts.
			"msgr plain and two html parts", "multipart/alternative; boundary=z",
			"--z\r\nContent-Type: text/plain; charset=UTF-8;msgr=" + boldItalicNavyMsgr + "\r\n\r\nhi\r\n" +
				"--z\r\nContent-Type: text/html\r\n\r\n<u>hi</u>\r\n" +
				"--z\r\nContent-Type: text/html\r\n\r\n<s>hi</s>\r\n--z--\r\n",
			sfb.Message{Text: "hi", HTML: "<u>hi</u>"},
		},
		{
			"related with a picture, html base64", "multipart/related;boundary=b1",
			"--b1\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aGk8L2I+\r\n" +
				"--b1\r\nContent-Type: image/gif\r\nContent-ID: <e1>\r\n\r\nGIF89a\r\n--b1--\r\n",
			sfb.Message{Text: "hi", HTML: "<b>hi</b>"},
		},
		{
			"alternative with nested related, quoted-printable", "multipart/alternative; boundary=outer",
			"--outer\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n" +
				"--outer\r\nContent-Type: multipart/related; boundary=inner\r\n\r\n" +
				"--inner\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n<i>caf\xc3\xa9</i>\r\n--inner--\r\n" +
				"--outer--\r\n",
			sfb.Message{Text: "café", HTML: "<i>café</i>"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := DecodeMessage(tc.ct, []byte(tc.body))
			require.NoError(t, err)
			assert.Equal(t, tc.want, msg)
		})
	}
}

func TestDecodeMessageRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body string
		want           error
	}{
		{"invalid utf-8", "text/plain; charset=UTF-8", "a\xffb", ErrMalformed},
		{"empty", "text/plain", "  \r\n", ErrMalformed},
		{"unknown charset", "text/plain; charset=x-klingon", "hi", ErrUnsupportedType},
		{"picture", "image/gif", "GIF89a", ErrUnsupportedType},
		{"file transfer", "text/x-msmsgsinvite; charset=UTF-8", "Invitation-Command: INVITE", ErrUnsupportedType},
		{"no media type", "plain", "hi", ErrMalformed},
		{"repeated charset", "text/plain; charset=UTF-8; charset=UTF-8", "hi", ErrMalformed},
		{"unterminated quote", `text/plain; charset="UTF-8`, "hi", ErrMalformed},
		{"control character", "text/plain;\x00charset=UTF-8", "hi", ErrMalformed},
		{"bad msgr", "text/plain; msgr=!!!", "hi", ErrMalformed},
		{"msgr without the header", "text/plain; msgr=" + utf16Base64("Foo: bar\r\n\r\n"), "hi", ErrMalformed},
		{"no boundary", "multipart/alternative", "--x\r\n\r\nhi\r\n--x--", ErrMalformed},
		{"no parts", "multipart/alternative; boundary=x", "hello", ErrMalformed},
		{"only pictures", "multipart/related; boundary=x", "--x\r\nContent-Type: image/gif\r\n\r\nGIF\r\n--x--\r\n", ErrMalformed},
		{"bad transfer encoding", "multipart/alternative; boundary=x", "--x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uue\r\n\r\nhi\r\n--x--\r\n", ErrUnsupportedType},
		{"too large", "text/plain", strings.Repeat("a", MaxBodySize+1), ErrMalformed},
		{"nested too deep", "multipart/related; boundary=a",
			"--a\r\nContent-Type: multipart/related; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/related; boundary=c\r\n\r\n" +
				"--c\r\nContent-Type: multipart/related; boundary=d\r\n\r\n--d\r\n\r\nhi\r\n--d--\r\n--c--\r\n--b--\r\n--a--\r\n", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeMessage(tc.ct, []byte(tc.body))
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.want)
		})
	}
}

func TestParseTextFormatRefuses(t *testing.T) {
	for _, tc := range []struct{ name, v string }{
		{"no ms-body", "text/plain; charset=UTF-8"},
		{"ms-body not base64", "text/plain; ms-body=%%%"},
		{"no type", "ms-body=SGk="},
		{"too large", "text/plain; ms-body=" + strings.Repeat("QUFB", MaxHeaderSize/4+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTextFormat(tc.v)
			assert.ErrorIs(t, err, ErrMalformed)
		})
	}
	// A body ms-body carries that is not a message is refused as such.
	tf, err := ParseTextFormat("text/x-msmsgsinvite; charset=UTF-8;ms-body=SGk=")
	require.NoError(t, err)
	_, err = tf.Message()
	assert.ErrorIs(t, err, ErrUnsupportedType)
}

func TestEncodeMessage(t *testing.T) {
	plain := sfb.Message{Text: "hi"}
	rich := sfb.Message{Text: "hi", HTML: "<b>hi</b>"}
	sipeAccept := strings.Fields("text/plain text/html image/gif multipart/alternative application/im-iscomposing+xml application/ms-imdn+xml text/x-msmsgsinvite")
	sipeNoGMime := strings.Fields("text/plain text/html image/gif application/im-iscomposing+xml application/ms-imdn+xml text/x-msmsgsinvite")

	for _, tc := range []struct {
		name     string
		msg      sfb.Message
		accept   []string
		wantType string
	}{
		{"plain", plain, sipeAccept, TypePlain},
		{"rich to multipart peer", rich, sipeAccept, TypeAlternative},
		{"rich to a pidgin-sipe without gmime", rich, sipeNoGMime, TypeHTML},
		{"rich before the SDP", rich, nil, TypeHTML},
		{"rich to a text-only peer", rich, []string{"text/plain"}, TypePlain},
		{"html only to a text-only peer", sfb.Message{HTML: "<p>a</p><p>b</p>"}, []string{"text/plain"}, TypePlain},
		{"rtf only", sfb.Message{RTF: `{\rtf1 hi}`}, []string{"text/*"}, TypeRTF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, body, err := EncodeMessage(tc.msg, tc.accept)
			require.NoError(t, err)
			assert.Equal(t, tc.wantType, ct.Type)
			// Whatever was chosen reads back as what the peer sees.
			got, err := DecodeMessage(ct.String(), body)
			require.NoError(t, err)
			switch ct.Type {
			case TypeAlternative, TypeHTML:
				assert.Equal(t, tc.msg.HTML, got.HTML)
				assert.Equal(t, HTMLText(tc.msg.HTML), got.Text)
			case TypePlain:
				assert.Equal(t, sfb.Message{Text: cmpOr(tc.msg.Text, HTMLText(tc.msg.HTML))}, got)
			case TypeRTF:
				assert.Equal(t, tc.msg, got)
			}
		})
	}

	ct, body, err := EncodeMessage(sfb.Message{Text: "hi", HTML: "<b>hi</b>", RTF: `{\rtf1 hi}`}, []string{"multipart/alternative", "text/rtf"})
	require.NoError(t, err)
	got, err := DecodeMessage(ct.String(), body)
	require.NoError(t, err)
	assert.Equal(t, sfb.Message{Text: "hi", HTML: "<b>hi</b>", RTF: `{\rtf1 hi}`}, got)
	boundary, _ := ct.Get("boundary")
	r := multipart.NewReader(strings.NewReader(string(body)), boundary)
	p, err := r.NextPart()
	require.NoError(t, err)
	assert.Equal(t, "text/plain; charset=UTF-8", p.Header.Get("Content-Type"), "the plain text first, as RFC 2046 orders alternatives")

	for _, bad := range []sfb.Message{{}, {Text: " \n"}, {Text: "a\xff"}, {Text: strings.Repeat("a", MaxBodySize+1)}} {
		_, _, err := EncodeMessage(bad, nil)
		assert.ErrorIs(t, err, sfb.ErrUnsupported)
	}
	_, _, err = EncodeMessage(sfb.Message{RTF: `{\rtf1 hi}`}, []string{"text/plain"})
	assert.ErrorIs(t, err, sfb.ErrUnsupported, "an RTF-only message cannot go to a peer without text/rtf")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestEncodeTextFormat(t *testing.T) {
	tf, err := EncodeTextFormat(sfb.Message{Text: "Hello <world> & ünïcode"})
	require.NoError(t, err)
	assert.Equal(t, "text/plain; charset=UTF-8;ms-body="+sipeBody, tf.String())

	tf, err = EncodeTextFormat(sfb.Message{Text: "hi", HTML: "<b>hi</b>"})
	require.NoError(t, err)
	parsed, err := ParseTextFormat(tf.String())
	require.NoError(t, err)
	msg, err := parsed.Message()
	require.NoError(t, err)
	assert.Equal(t, sfb.Message{Text: "hi", HTML: "<b>hi</b>"}, msg)
}

func TestTyping(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body string
		want           bool
	}{
		// sipe-user.c's sipe_core_user_feedback_typing, byte for byte.
		{"pidgin-sipe typing", "application/xml", `<?xml version="1.0"?><KeyboardActivity> <status status="type" /></KeyboardActivity>`, true},
		{"pidgin-sipe idle", "application/xml", `<?xml version="1.0"?><KeyboardActivity> <status status="idle" /></KeyboardActivity>`, false},
		{"lync typing", "application/xml", "<?xml version=\"1.0\"?>\r\n<KeyboardActivity>\r\n  <status status=\"type\" />\r\n</KeyboardActivity>\r\n", true},
		// RFC 3994, section 6's example.
		{"rfc 3994 active", "application/im-iscomposing+xml", `<?xml version="1.0" encoding="UTF-8"?>
<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="urn:ietf:params:xml:ns:im-composing iscomposing.xsd">
  <state>active</state>
  <contenttype>text/plain</contenttype>
  <refresh>90</refresh>
</isComposing>`, true},
		{"rfc 3994 idle", "application/im-iscomposing+xml", `<?xml version="1.0" encoding="UTF-8"?>
<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="urn:ietf:params:xml:ns:im-composing iscomposing.xsd">
  <state>idle</state>
  <lastactive>2003-01-27T10:43:00Z</lastactive>
  <contenttype>audio</contenttype>
</isComposing>`, false},
		{"ours typing", TypeKeyboardActivity, string(KeyboardActivity(true)), true},
		{"ours idle", TypeKeyboardActivity, string(KeyboardActivity(false)), false},
		{"ours composing", TypeIsComposing, string(IsComposing(true, 60)), true},
		{"ours composing idle", TypeIsComposing, string(IsComposing(false, 0)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTyping(tc.ct, []byte(tc.body))
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	assert.Equal(t, `<?xml version="1.0"?><KeyboardActivity><status status="type" /></KeyboardActivity>`, string(KeyboardActivity(true)))

	for _, tc := range []struct {
		name, ct, body string
		want           error
	}{
		{"unknown status", "application/xml", `<KeyboardActivity><status status="dance"/></KeyboardActivity>`, ErrMalformed},
		{"other root", "application/xml", `<action xmlns="http://schemas.microsoft.com/sip/multiparty/"/>`, ErrMalformed},
		{"not xml", "application/xml", `<KeyboardActivity>`, ErrMalformed},
		{"trailing element", "application/xml", `<KeyboardActivity><status status="type"/></KeyboardActivity><x/>`, ErrMalformed},
		{"wrong namespace", "application/im-iscomposing+xml", `<isComposing><state>active</state></isComposing>`, ErrMalformed},
		{"unknown state", "application/im-iscomposing+xml", `<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"><state>busy</state></isComposing>`, ErrMalformed},
		{"text", "text/plain", "typing", ErrUnsupportedType},
		{"too large", "application/xml", `<KeyboardActivity><status status="type"/>` + strings.Repeat(" ", maxTypingBody) + `</KeyboardActivity>`, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTyping(tc.ct, []byte(tc.body))
			assert.ErrorIs(t, err, tc.want)
		})
	}
}

func TestSDP(t *testing.T) {
	// sipe_im_invite's SDP towards OCS 2007 and later.
	invite := "v=0\r\no=- 0 0 IN IP4 192.0.2.7\r\ns=session\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n" +
		"m=message 5061 sip null\r\n" +
		"a=accept-types:text/plain text/html image/gif multipart/alternative application/im-iscomposing+xml application/ms-imdn+xml text/x-msmsgsinvite\r\n"
	s, err := ParseSDP([]byte(invite))
	require.NoError(t, err)
	assert.Equal(t, netip.MustParseAddr("192.0.2.7"), s.Addr)
	assert.Equal(t, MediaMessage, s.Media)
	assert.Equal(t, 5061, s.Port)
	assert.Equal(t, "null", s.Format)
	assert.True(t, s.Accepts(TypeAlternative))
	assert.False(t, s.Accepts(TypeRTF))
	assert.Equal(t, invite, string(s.Marshal()), "written back as pidgin-sipe writes it")

	// send_invite_response's answer of OCS 2005 (x-ms-message, its URI).
	ok := "v=0\r\no=- 0 0 IN IP6 2001:db8::1\r\ns=session\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n" +
		"m=x-ms-message 5060 sip sip:bob@contoso.com\r\na=accept-types:text/plain\r\n"
	s, err = ParseSDP([]byte(ok))
	require.NoError(t, err)
	assert.Equal(t, MediaLegacyMessage, s.Media)
	assert.Equal(t, "sip:bob@contoso.com", s.Format)
	assert.Equal(t, []string{"text/plain"}, s.AcceptTypes)
	assert.Equal(t, ok, string(s.Marshal()))

	ours := SDP{Addr: netip.MustParseAddr("198.51.100.2"), Port: 443, Format: "sip:alice@contoso.com"}.Marshal()
	s, err = ParseSDP(ours)
	require.NoError(t, err)
	assert.Equal(t, AcceptTypes(), s.AcceptTypes)
	for _, typ := range AcceptTypes() {
		assert.True(t, IsMessageType(typ) || IsTypingType(typ), "we advertise %s, which we read", typ)
	}

	// MS-SDP 3.1.5.3's examples: RTC 1.2's (x-ms-message, null) and RTC
	// 1.3's (message, the peer's URI), neither with accept-types.
	for _, tc := range []struct{ body, media, format string }{
		{"v=0\r\no=- 0 0 IN IP4 172.27.174.212\r\ns=session\r\nc=IN IP4 172.27.174.212\r\nt=0 0\r\nm=x-ms-message 5060 sip null\r\n", MediaLegacyMessage, "null"},
		{"v=0\r\no=- 0 0 IN IP4 157.56.66.71\r\ns=session\r\nc=IN IP4 157.56.66.71\r\nt=0 0\r\nm=message 5060 sip sip:peer@tradewind.com\r\n", MediaMessage, "sip:peer@tradewind.com"},
	} {
		s, err := ParseSDP([]byte(tc.body))
		require.NoError(t, err)
		assert.Equal(t, tc.media, s.Media)
		assert.Equal(t, tc.format, s.Format)
		assert.Equal(t, 5060, s.Port)
		assert.Nil(t, s.AcceptTypes, "unknown: the sender assumes text and HTML")
	}

	// accept-types at session level, before m=.
	s, err = ParseSDP([]byte("v=0\r\na=accept-types:text/plain text/html\r\nm=message 5060 sip null\r\n"))
	require.NoError(t, err)
	assert.Equal(t, []string{"text/plain", "text/html"}, s.AcceptTypes)

	for _, tc := range []struct {
		name, body string
		want       error
	}{
		{"audio call", "v=0\r\nm=audio 50000 RTP/AVP 0\r\n", ErrUnsupportedType},
		{"no version", "m=message 5060 sip null\r\n", ErrMalformed},
		{"version 1", "v=1\r\nm=message 5060 sip null\r\n", ErrMalformed},
		{"bad line", "v=0\r\nhello\r\n", ErrMalformed},
		{"bad port", "v=0\r\nm=message 99999 sip null\r\n", ErrMalformed},
		{"short m", "v=0\r\nm=message 5060\r\n", ErrMalformed},
		{"two messages", "v=0\r\nm=message 5060 sip null\r\nm=message 5061 sip null\r\n", ErrMalformed},
		{"too large", "v=0\r\n" + strings.Repeat("a=x\r\n", maxSDP/5+1), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSDP([]byte(tc.body))
			assert.ErrorIs(t, err, tc.want)
		})
	}
}

func TestEndPoints(t *testing.T) {
	// The example of sipe-im.c's get_end_points.
	eps, err := ParseEndPoints(`"alice alisson" <sip:alice@atlanta.local>, <sip:bob@atlanta.local>;epid=ebca82d94d, <sip:carol@atlanta.local>`)
	require.NoError(t, err)
	assert.Equal(t, []Endpoint{
		{URI: "sip:alice@atlanta.local"},
		{URI: "sip:bob@atlanta.local", EPID: "ebca82d94d"},
		{URI: "sip:carol@atlanta.local"},
	}, eps)
	assert.Equal(t, "<sip:alice@atlanta.local>, <sip:bob@atlanta.local>;epid=ebca82d94d, <sip:carol@atlanta.local>", FormatEndPoints(eps))

	for _, bad := range []string{"", "sip:alice@x", "<sip:alice@x", "<mailto:a@x>", "<sip:>", strings.Repeat("<sip:a@b>,", maxEndPoints+1)} {
		_, err := ParseEndPoints(bad)
		assert.ErrorIs(t, err, ErrMalformed, "%q", truncate(bad))
	}
}

func TestContentTypeString(t *testing.T) {
	ct := ContentType{Type: "multipart/alternative", Params: []Param{{"boundary", "a b"}, {"x", `q"uote`}, {"msgr", "ab/c+d"}}}
	assert.Equal(t, `multipart/alternative; boundary="a b"; x="q\"uote"; msgr=ab/c+d`, ct.String())
	back, err := ParseContentType(ct.String())
	require.NoError(t, err)
	assert.Equal(t, ct, back)
}

func TestErrorsCarryContext(t *testing.T) {
	_, err := DecodeMessage("multipart/alternative; boundary=x", []byte("--x\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n\xff\r\n--x--\r\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "multipart/alternative part 0")
	assert.Contains(t, err.Error(), "UTF-8")
	assert.True(t, errors.Is(err, ErrMalformed))
}
