// Package im holds the bodies of Skype for Business instant messaging over
// SIP, without the network: the Ms-Text-Format header that carries the
// first message in an INVITE, message bodies (text/plain with the msgr
// formatting Lync and SfB clients add, text/html, text/rtf,
// multipart/alternative) to and from sfb.Message, the typing bodies
// (KeyboardActivity INFO, RFC 3994 isComposing), the SDP of an IM INVITE and
// its 200, and the EndPoints header. The transport (sfb/sip) and the
// simulator share it, so both read and write the same forms.
//
// The forms follow pidgin-sipe (sipe-im.c, sipe-incoming.c, sipmsg.c,
// sipe-user.c) and what Lync and SfB clients send. Converting between HTML,
// RTF and Matrix formatting is the bridge's business; this package only
// carries each form as the sender wrote it.
package im

import (
	"errors"
	"fmt"
	"strings"
)

// ErrMalformed is wrapped by every error about input that does not follow
// the form it claims (answered 400 by a receiver).
var ErrMalformed = errors.New("malformed")

// ErrUnsupportedType is wrapped when a body's content type is not one this
// package reads (answered 415 by a receiver, as pidgin-sipe does).
var ErrUnsupportedType = errors.New("unsupported content type")

// Limits on what is parsed. SfB clients cap a message far below them.
const (
	// MaxBodySize bounds a message body, and the decoded ms-body.
	MaxBodySize = 64 << 10
	// MaxHeaderSize bounds a Content-Type or Ms-Text-Format value (the
	// ms-body inside it is base64 of at most MaxBodySize).
	MaxHeaderSize = MaxBodySize*4/3 + 4<<10
	// maxParams bounds the parameters of one content type.
	maxParams = 32
)

// ContentType is a media type with its parameters in the order written.
// Parameter names are lower-case; values are unquoted.
type ContentType struct {
	// Type is the lower-case media type, e.g. "text/plain".
	Type   string
	Params []Param
}

// Param is one parameter of a ContentType.
type Param struct{ Name, Value string }

// Get returns the value of the parameter name (lower-case) and whether it
// is present.
func (c ContentType) Get(name string) (string, bool) {
	for _, p := range c.Params {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// String writes the content type as SfB clients do: parameters separated
// by "; ", values quoted only when they need it.
func (c ContentType) String() string {
	var b strings.Builder
	b.WriteString(c.Type)
	for _, p := range c.Params {
		b.WriteString("; ")
		b.WriteString(p.Name)
		b.WriteByte('=')
		if needsQuotes(p.Value) {
			b.WriteString(`"` + strings.ReplaceAll(strings.ReplaceAll(p.Value, `\`, `\\`), `"`, `\"`) + `"`)
		} else {
			b.WriteString(p.Value)
		}
	}
	return b.String()
}

func needsQuotes(v string) bool {
	if v == "" {
		return true
	}
	for _, r := range v {
		// base64 values ('/', '+', '=') go unquoted, as msgr= and
		// ms-body= always are.
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`";,\()<>@:[]?{}`, r) {
			return true
		}
	}
	return false
}

// ParseContentType reads a Content-Type (or Ms-Text-Format) value. It is
// more lenient than mime.ParseMediaType where SfB needs it: msgr= and
// ms-body= carry unquoted base64, whose '/' and '=' RFC 2045 tokens do
// not allow. Repeated parameters and malformed ones are refused.
func ParseContentType(v string) (ContentType, error) {
	if len(v) > MaxHeaderSize {
		return ContentType{}, fmt.Errorf("content type of %d bytes, more than %d: %w", len(v), MaxHeaderSize, ErrMalformed)
	}
	segs, err := splitParams(v)
	if err != nil {
		return ContentType{}, err
	}
	mt := strings.ToLower(strings.TrimSpace(segs[0]))
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || !isToken(typ) || !isToken(sub) {
		return ContentType{}, fmt.Errorf("media type %q: %w", truncate(segs[0]), ErrMalformed)
	}
	ct := ContentType{Type: mt}
	for _, s := range segs[1:] {
		s = strings.TrimSpace(s)
		if s == "" {
			continue // "text/plain; charset=UTF-8;" as some clients end it
		}
		name, value, ok := strings.Cut(s, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || !isToken(name) {
			return ContentType{}, fmt.Errorf("parameter %q of %s: %w", truncate(s), mt, ErrMalformed)
		}
		value = strings.TrimSpace(value)
		if strings.HasPrefix(value, `"`) {
			if value, err = unquote(value); err != nil {
				return ContentType{}, fmt.Errorf("parameter %s of %s: %w", name, mt, err)
			}
		} else if strings.ContainsAny(value, " \t\"") {
			return ContentType{}, fmt.Errorf("parameter %s of %s: unquoted value with space or quote: %w", name, mt, ErrMalformed)
		}
		if _, dup := ct.Get(name); dup {
			return ContentType{}, fmt.Errorf("parameter %s of %s repeated: %w", name, mt, ErrMalformed)
		}
		if len(ct.Params) == maxParams {
			return ContentType{}, fmt.Errorf("more than %d parameters in %s: %w", maxParams, mt, ErrMalformed)
		}
		ct.Params = append(ct.Params, Param{Name: name, Value: value})
	}
	return ct, nil
}

// splitParams splits v at the semicolons outside quoted strings.
func splitParams(v string) ([]string, error) {
	var segs []string
	start, quoted := 0, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == ';' && !quoted:
			segs = append(segs, v[start:i])
			start = i + 1
		case c < ' ' && c != '\t' || c == 0x7f:
			return nil, fmt.Errorf("control character in content type: %w", ErrMalformed)
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quoted string in content type: %w", ErrMalformed)
	}
	return append(segs, v[start:]), nil
}

func unquote(v string) (string, error) {
	if len(v) < 2 || v[len(v)-1] != '"' {
		return "", fmt.Errorf("text after quoted string: %w", ErrMalformed)
	}
	var b strings.Builder
	for i := 1; i < len(v)-1; i++ {
		c := v[i]
		if c == '"' {
			return "", fmt.Errorf("text after quoted string: %w", ErrMalformed)
		}
		if c == '\\' {
			i++
			if i == len(v)-1 {
				return "", fmt.Errorf("escape at end of quoted string: %w", ErrMalformed)
			}
			c = v[i]
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// truncate keeps error messages short when the input is long.
func truncate(s string) string {
	const n = 64
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
