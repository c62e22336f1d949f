package im

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/htmlindex"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// The content types of message bodies.
const (
	TypePlain       = "text/plain"
	TypeHTML        = "text/html"
	TypeRTF         = "text/rtf"
	TypeAlternative = "multipart/alternative"
	TypeRelated     = "multipart/related"
)

// Limits of a multipart body.
const (
	maxParts      = 16
	maxPartsDepth = 3
)

// IsMessageType reports whether a body of content type t (lower-case, no
// parameters) is a message DecodeMessage reads, rather than typing or
// something else a MESSAGE can carry.
func IsMessageType(t string) bool {
	switch t {
	case TypePlain, TypeHTML, TypeRTF, TypeAlternative, TypeRelated:
		return true
	}
	return false
}

// DecodeMessage reads the body of a MESSAGE whose Content-Type is
// contentType.
func DecodeMessage(contentType string, body []byte) (sfb.Message, error) {
	ct, err := ParseContentType(contentType)
	if err != nil {
		return sfb.Message{}, err
	}
	return DecodeMessageAs(ct, body)
}

// DecodeMessageAs reads a message body of content type ct: a MESSAGE's,
// or the ms-body of an Ms-Text-Format (TextFormat.Message).
//
// text/plain fills Text (and HTML when its msgr format asks for bold,
// italic, underline, strike-through, a colour or right-to-left text);
// text/html fills HTML and a plain Text taken from it; text/rtf fills RTF
// only; multipart/alternative and multipart/related fill each from the
// first part of its type (pictures and other parts are skipped).
func DecodeMessageAs(ct ContentType, body []byte) (sfb.Message, error) {
	if len(body) > MaxBodySize {
		return sfb.Message{}, fmt.Errorf("%s body of %d bytes, more than %d: %w", ct.Type, len(body), MaxBodySize, ErrMalformed)
	}
	var d decoded
	if err := d.read(ct, body, 0); err != nil {
		return sfb.Message{}, err
	}
	msg := d.msg
	if msg.HTML == "" && d.format != nil {
		msg.HTML = d.format.HTML(msg.Text)
	}
	if msg.Text == "" && msg.HTML != "" {
		msg.Text = HTMLText(msg.HTML)
	}
	if strings.TrimSpace(msg.Text) == "" && strings.TrimSpace(msg.HTML) == "" && strings.TrimSpace(msg.RTF) == "" {
		return sfb.Message{}, fmt.Errorf("%s message without text: %w", ct.Type, ErrMalformed)
	}
	return msg, nil
}

// Message decodes the first message an Ms-Text-Format carries.
func (t TextFormat) Message() (sfb.Message, error) {
	msg, err := DecodeMessageAs(t.ContentType, t.Body)
	if err != nil {
		return sfb.Message{}, fmt.Errorf("ms-text-format: %w", err)
	}
	return msg, nil
}

// decoded collects the forms of one message; the first part of each type
// counts.
type decoded struct {
	msg sfb.Message
	// format is the msgr of the text/plain form.
	format *Format
}

func (d *decoded) read(ct ContentType, body []byte, depth int) error {
	msg := &d.msg
	charset, _ := ct.Get("charset")
	switch ct.Type {
	case TypePlain:
		if msg.Text != "" {
			return nil
		}
		text, err := decodeText(body, charset)
		if err != nil {
			return fmt.Errorf("text/plain: %w", err)
		}
		msg.Text = strings.ReplaceAll(text, "\r\n", "\n")
		if v, ok := ct.Get("msgr"); ok {
			f, err := ParseMsgr(v)
			if err != nil {
				return fmt.Errorf("text/plain: %w", err)
			}
			d.format = &f
		}
	case TypeHTML:
		if msg.HTML != "" {
			return nil
		}
		text, err := decodeText(body, charset)
		if err != nil {
			return fmt.Errorf("text/html: %w", err)
		}
		msg.HTML = text
	case TypeRTF:
		if msg.RTF != "" {
			return nil
		}
		text, err := decodeText(body, charset)
		if err != nil {
			return fmt.Errorf("text/rtf: %w", err)
		}
		msg.RTF = text
	case TypeAlternative, TypeRelated:
		if depth == maxPartsDepth {
			return fmt.Errorf("%s nested more than %d deep: %w", ct.Type, maxPartsDepth, ErrMalformed)
		}
		return d.readParts(ct, body, depth+1)
	default:
		return fmt.Errorf("message of type %s: %w", ct.Type, ErrUnsupportedType)
	}
	return nil
}

func (d *decoded) readParts(ct ContentType, body []byte, depth int) error {
	boundary, ok := ct.Get("boundary")
	if !ok || boundary == "" || len(boundary) > 70 {
		return fmt.Errorf("%s without a valid boundary: %w", ct.Type, ErrMalformed)
	}
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	for n := 0; ; n++ {
		part, err := r.NextRawPart()
		if errors.Is(err, io.EOF) {
			if n == 0 {
				return fmt.Errorf("%s without parts: %w", ct.Type, ErrMalformed)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s part %d: %v: %w", ct.Type, n, err, ErrMalformed)
		}
		if n == maxParts {
			return fmt.Errorf("%s with more than %d parts: %w", ct.Type, maxParts, ErrMalformed)
		}
		data, err := io.ReadAll(io.LimitReader(part, MaxBodySize+1))
		if err != nil {
			return fmt.Errorf("%s part %d: %v: %w", ct.Type, n, err, ErrMalformed)
		}
		pct := ContentType{Type: TypePlain} // RFC 2046's default
		if v := part.Header.Get("Content-Type"); v != "" {
			if pct, err = ParseContentType(v); err != nil {
				return fmt.Errorf("%s part %d: %w", ct.Type, n, err)
			}
		}
		if !IsMessageType(pct.Type) {
			continue // a picture of multipart/related, an unknown alternative
		}
		if data, err = decodeTransfer(part.Header, data); err != nil {
			return fmt.Errorf("%s part %d: %w", ct.Type, n, err)
		}
		if err := d.read(pct, data, depth); err != nil {
			return fmt.Errorf("%s part %d: %w", ct.Type, n, err)
		}
	}
}

// decodeTransfer undoes a part's Content-Transfer-Encoding.
func decodeTransfer(h textproto.MIMEHeader, data []byte) ([]byte, error) {
	switch cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); cte {
	case "", "7bit", "8bit", "binary":
		return data, nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, string(data)))
		if err != nil {
			return nil, fmt.Errorf("base64 part: %v: %w", err, ErrMalformed)
		}
		return b, nil
	case "quoted-printable":
		b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(data)))
		if err != nil {
			return nil, fmt.Errorf("quoted-printable part: %v: %w", err, ErrMalformed)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("content-transfer-encoding %q: %w", truncate(cte), ErrUnsupportedType)
	}
}

// decodeText turns a body in charset (UTF-8 when empty, as SIP's default)
// into valid UTF-8.
func decodeText(b []byte, charset string) (string, error) {
	switch strings.ToLower(charset) {
	case "", "utf-8", "utf8":
		b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
		if !utf8.Valid(b) {
			return "", fmt.Errorf("invalid UTF-8: %w", ErrMalformed)
		}
		return string(b), nil
	}
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return "", fmt.Errorf("charset %q: %w", truncate(charset), ErrUnsupportedType)
	}
	out, err := enc.NewDecoder().Bytes(b)
	if err != nil {
		return "", fmt.Errorf("charset %s: %v: %w", charset, err, ErrMalformed)
	}
	return strings.ToValidUTF8(string(out), "\uFFFD"), nil
}

// HTML renders text in the format as HTML when the format changes how it
// looks beyond its font (effects, colour, direction); "" otherwise.
func (f Format) HTML(text string) string {
	var open, close []string
	if f.RightToLeft {
		open, close = append(open, `<span dir="rtl">`), append(close, "</span>")
	}
	if c := f.RGB(); c != "" {
		open, close = append(open, `<span style="color:`+c+`">`), append(close, "</span>")
	}
	for _, e := range []byte("BIUS") {
		if f.Has(e) {
			tag := strings.ToLower(string(e))
			open, close = append(open, "<"+tag+">"), append(close, "</"+tag+">")
		}
	}
	if len(open) == 0 {
		return ""
	}
	slices.Reverse(close)
	body := strings.ReplaceAll(html.EscapeString(text), "\n", "<br>")
	return strings.Join(open, "") + body + strings.Join(close, "")
}

var (
	tagRE   = regexp.MustCompile(`(?s)<[^>]*>`)
	breakRE = regexp.MustCompile(`(?i)<br\s*/?>|</p>|</div>`)
	lineRE  = regexp.MustCompile(`[\r\n]+`)
)

// HTMLText is the plain text of an HTML message, roughly: what a client
// without HTML would show. The bridge converts the HTML itself; this only
// keeps sfb.Message.Text set.
func HTMLText(h string) string {
	// Line ends in HTML source are not text (pidgin-sipe drops them too).
	h = lineRE.ReplaceAllString(h, "")
	h = breakRE.ReplaceAllString(h, "\n")
	h = tagRE.ReplaceAllString(h, "")
	return strings.TrimSpace(html.UnescapeString(h))
}

// peerAcceptTypes is what a peer is assumed to accept before its SDP
// said: every SfB and Lync client takes plain text and HTML.
func peerAcceptTypes() []string { return []string{TypePlain, TypeHTML} }

// EncodeMessage writes msg as a MESSAGE body for a peer that accepts the
// content types accept (from its SDP's accept-types; nil when unknown).
// A message with HTML goes as multipart/alternative (text and HTML, and
// RTF when set and accepted) when the peer takes it, else as text/html,
// else as text/plain.
func EncodeMessage(msg sfb.Message, accept []string) (ContentType, []byte, error) {
	if err := validate(msg); err != nil {
		return ContentType{}, nil, err
	}
	if accept == nil {
		accept = peerAcceptTypes()
	}
	accepts := func(t string) bool { return acceptsType(accept, t) }
	utf8CT := func(t string) ContentType {
		return ContentType{Type: t, Params: []Param{{Name: "charset", Value: "UTF-8"}}}
	}
	text := msg.Text
	if text == "" && msg.HTML != "" {
		text = HTMLText(msg.HTML)
	}
	switch {
	case msg.HTML != "" && text != "" && accepts(TypeAlternative):
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		parts := []struct{ ct, body string }{{TypePlain, text}, {TypeHTML, msg.HTML}}
		if msg.RTF != "" && accepts(TypeRTF) {
			parts = append(parts, struct{ ct, body string }{TypeRTF, msg.RTF})
		}
		for _, p := range parts {
			pw, err := w.CreatePart(textproto.MIMEHeader{"Content-Type": {utf8CT(p.ct).String()}})
			if err != nil {
				return ContentType{}, nil, err
			}
			_, _ = io.WriteString(pw, p.body) // a bytes.Buffer does not fail
		}
		if err := w.Close(); err != nil {
			return ContentType{}, nil, err
		}
		if b.Len() > MaxBodySize {
			return ContentType{}, nil, fmt.Errorf("message of %d bytes, more than %d: %w", b.Len(), MaxBodySize, sfb.ErrUnsupported)
		}
		return ContentType{Type: TypeAlternative, Params: []Param{{Name: "boundary", Value: w.Boundary()}}}, b.Bytes(), nil
	case msg.HTML != "" && accepts(TypeHTML):
		return utf8CT(TypeHTML), []byte(msg.HTML), nil
	case text != "":
		return utf8CT(TypePlain), []byte(text), nil
	case msg.RTF != "" && accepts(TypeRTF):
		return utf8CT(TypeRTF), []byte(msg.RTF), nil
	}
	return ContentType{}, nil, fmt.Errorf("message has no form the peer accepts (%s): %w", strings.Join(accept, " "), sfb.ErrUnsupported)
}

// EncodeTextFormat writes msg as the Ms-Text-Format of an INVITE, before
// the peer's accept-types are known: HTML when it has HTML, else text.
func EncodeTextFormat(msg sfb.Message) (TextFormat, error) {
	ct, body, err := EncodeMessage(msg, peerAcceptTypes())
	if err != nil {
		return TextFormat{}, err
	}
	return TextFormat{ContentType: ct, Body: body}, nil
}

func validate(msg sfb.Message) error {
	for _, s := range []string{msg.Text, msg.HTML, msg.RTF} {
		if !utf8.ValidString(s) {
			return fmt.Errorf("message is not valid UTF-8: %w", sfb.ErrUnsupported)
		}
		if len(s) > MaxBodySize {
			return fmt.Errorf("message of %d bytes, more than %d: %w", len(s), MaxBodySize, sfb.ErrUnsupported)
		}
	}
	if strings.TrimSpace(msg.Text) == "" && strings.TrimSpace(msg.HTML) == "" && strings.TrimSpace(msg.RTF) == "" {
		return fmt.Errorf("empty message: %w", sfb.ErrUnsupported)
	}
	return nil
}

// acceptsType reports whether accept (an SDP's accept-types) takes t,
// with "*" and "text/*" wildcards.
func acceptsType(accept []string, t string) bool {
	major, _, _ := strings.Cut(t, "/")
	for _, a := range accept {
		a = strings.ToLower(a)
		if a == t || a == "*" || a == "*/*" || a == major+"/*" {
			return true
		}
	}
	return false
}
