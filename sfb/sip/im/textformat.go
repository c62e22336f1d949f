package im

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// HeaderTextFormat is the header of an INVITE that carries the first
// message of the conversation; pidgin-sipe writes it in lower case, Lync as
// here (header names are case-insensitive).
const HeaderTextFormat = "Ms-Text-Format"

// TextFormat is the value of Ms-Text-Format:
//
//	text/plain; charset=UTF-8;msgr=WAAtAE0ATQBT...;ms-body=SGk=
//
// a content type whose ms-body parameter is the message body in base64.
type TextFormat struct {
	// ContentType is the body's content type, every parameter but
	// ms-body (charset, msgr, boundary) kept.
	ContentType ContentType
	// Body is the decoded ms-body.
	Body []byte
}

// ParseTextFormat reads an Ms-Text-Format value.
func ParseTextFormat(v string) (TextFormat, error) {
	ct, err := ParseContentType(v)
	if err != nil {
		return TextFormat{}, fmt.Errorf("ms-text-format: %w", err)
	}
	tf := TextFormat{ContentType: ContentType{Type: ct.Type}}
	var body string
	found := false
	for _, p := range ct.Params {
		if p.Name == "ms-body" {
			body, found = p.Value, true
			continue
		}
		tf.ContentType.Params = append(tf.ContentType.Params, p)
	}
	if !found {
		return TextFormat{}, fmt.Errorf("ms-text-format %s without ms-body: %w", ct.Type, ErrMalformed)
	}
	if tf.Body, err = decodeBase64(body); err != nil {
		return TextFormat{}, fmt.Errorf("ms-text-format: ms-body: %w", err)
	}
	if len(tf.Body) > MaxBodySize {
		return TextFormat{}, fmt.Errorf("ms-text-format: ms-body of %d bytes, more than %d: %w", len(tf.Body), MaxBodySize, ErrMalformed)
	}
	return tf, nil
}

// String writes the header value, ms-body last as every client does.
func (t TextFormat) String() string {
	return t.ContentType.String() + ";ms-body=" + base64.StdEncoding.EncodeToString(t.Body)
}

// decodeBase64 accepts base64 with or without its padding: SfB writes
// ms-body padded and msgr without.
func decodeBase64(s string) ([]byte, error) {
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("base64: %v: %w", err, ErrMalformed)
	}
	return b, nil
}

// Format is the X-MMS-IM-Format that Lync and SfB clients (and
// pidgin-sipe) attach to a text/plain message in the msgr parameter of its
// content type: the font, effects and colour the whole message is shown in.
//
//	X-MMS-IM-Format: FN=Segoe%20UI; EF=B; CO=0000ff; CS=0; PF=00
type Format struct {
	// Font is the font name, unescaped (FN).
	Font string
	// Effects are the letters B, I, U and S (EF).
	Effects string
	// Color is six hex digits in Windows order, blue green red (CO);
	// "0" is the default black.
	Color string
	// Charset and PitchFamily are the Windows font's (CS, PF), kept as
	// written.
	Charset, PitchFamily string
	// RightToLeft (RL=1) is text written right to left.
	RightToLeft bool
}

// Has reports whether the effects include e (one of 'B', 'I', 'U', 'S').
func (f Format) Has(e byte) bool { return strings.IndexByte(f.Effects, e) >= 0 }

// RGB returns the colour as "#rrggbb", or "" when it is the default.
func (f Format) RGB() string {
	c := strings.ToLower(f.Color)
	if len(c) != 6 || c == "000000" {
		return ""
	}
	return "#" + c[4:6] + c[2:4] + c[0:2]
}

const msgrPrefix = "X-MMS-IM-Format:"

// maxMsgr bounds the msgr parameter: a font name and a few short fields.
const maxMsgr = 4 << 10

// ParseMsgr reads the msgr parameter: base64 (without padding) of the
// UTF-16LE text "X-MMS-IM-Format: <fields>\r\n\r\n".
func ParseMsgr(v string) (Format, error) {
	if len(v) > maxMsgr {
		return Format{}, fmt.Errorf("msgr of %d bytes, more than %d: %w", len(v), maxMsgr, ErrMalformed)
	}
	raw, err := decodeBase64(v)
	if err != nil {
		return Format{}, fmt.Errorf("msgr: %w", err)
	}
	if len(raw)%2 != 0 {
		return Format{}, fmt.Errorf("msgr: odd length for UTF-16: %w", ErrMalformed)
	}
	u := make([]uint16, len(raw)/2)
	for i := range u {
		u[i] = uint16(raw[2*i]) | uint16(raw[2*i+1])<<8
	}
	text := string(utf16.Decode(u))
	// Headers end at the blank line; only X-MMS-IM-Format is defined.
	text, _, _ = strings.Cut(text, "\r\n\r\n")
	var fields string
	found := false
	for line := range strings.SplitSeq(text, "\r\n") {
		name, value, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(name), strings.TrimSuffix(msgrPrefix, ":")) {
			fields, found = strings.TrimSpace(value), true
		}
	}
	if !found {
		return Format{}, fmt.Errorf("msgr without X-MMS-IM-Format: %w", ErrMalformed)
	}
	return ParseFormat(fields)
}

// ParseFormat reads the fields of X-MMS-IM-Format ("FN=...; EF=...").
// Unknown fields are ignored, as clients add their own.
func ParseFormat(fields string) (Format, error) {
	var f Format
	for field := range strings.SplitSeq(fields, ";") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		name, value, ok := strings.Cut(field, "=")
		if !ok {
			return Format{}, fmt.Errorf("X-MMS-IM-Format field %q: %w", truncate(field), ErrMalformed)
		}
		switch strings.ToUpper(name) {
		case "FN":
			font, err := url.PathUnescape(value)
			if err != nil || !utf8.ValidString(font) {
				return Format{}, fmt.Errorf("X-MMS-IM-Format font %q: %w", truncate(value), ErrMalformed)
			}
			f.Font = font
		case "EF":
			for i := 0; i < len(value); i++ {
				if strings.IndexByte("BIUS", value[i]) < 0 {
					return Format{}, fmt.Errorf("X-MMS-IM-Format effect %q: %w", value[i], ErrMalformed)
				}
			}
			f.Effects = value
		case "CO":
			if !isHex(value) || len(value) > 6 {
				return Format{}, fmt.Errorf("X-MMS-IM-Format colour %q: %w", truncate(value), ErrMalformed)
			}
			f.Color = value
		case "CS":
			f.Charset = value
		case "PF":
			f.PitchFamily = value
		case "RL":
			f.RightToLeft = value == "1"
		}
	}
	return f, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune("0123456789abcdefABCDEF", rune(s[i])) {
			return false
		}
	}
	return s != ""
}

// String writes the fields as pidgin-sipe does ("FN=MS%20Sans%20Serif;
// EF=B; CO=0; PF=0; RL=0"), with CS when set.
func (f Format) String() string {
	var b strings.Builder
	font := f.Font
	if font == "" {
		font = "Segoe UI"
	}
	b.WriteString("FN=" + url.PathEscape(font))
	b.WriteString("; EF=" + f.Effects)
	color := f.Color
	if color == "" {
		color = "0"
	}
	b.WriteString("; CO=" + color)
	if f.Charset != "" {
		b.WriteString("; CS=" + f.Charset)
	}
	pf := f.PitchFamily
	if pf == "" {
		pf = "0"
	}
	b.WriteString("; PF=" + pf)
	if f.RightToLeft {
		b.WriteString("; RL=1")
	} else {
		b.WriteString("; RL=0")
	}
	return b.String()
}

// Msgr encodes the format as the msgr parameter.
func (f Format) Msgr() string {
	return utf16Base64(msgrPrefix + " " + f.String() + "\r\n\r\n")
}

// utf16Base64 is base64 without padding of s in UTF-16LE, msgr's form.
func utf16Base64(s string) string {
	u := utf16.Encode([]rune(s))
	var raw bytes.Buffer
	for _, c := range u {
		raw.WriteByte(byte(c))
		raw.WriteByte(byte(c >> 8))
	}
	return base64.RawStdEncoding.EncodeToString(raw.Bytes())
}
