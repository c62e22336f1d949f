package sim

import (
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"net/url"
	"strings"
	"unicode/utf8"
)

// maxMessageBytes bounds one instant message from outside (SfB itself
// limits messages to a few tens of kilobytes).
const maxMessageBytes = 64 << 10

// encodeDataURI renders text the way UCWA puts message bodies into links:
// URL-encoded ("data:text/plain;charset=utf-8,Hi+Tosh%0d%0a") or base64.
func encodeDataURI(mediaType, text string, b64 bool) string {
	if b64 {
		return "data:" + mediaType + ";charset=utf-8;base64," + base64.StdEncoding.EncodeToString([]byte(text))
	}
	return "data:" + mediaType + ";charset=utf-8," + url.QueryEscape(text)
}

// needsBase64 is true for text that the simulator sends base64-encoded,
// so that both forms occur: everything outside printable ASCII.
func needsBase64(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

// decodeDataURI parses an RFC 2397 data URI from a client. Blanks around
// the scheme and parameters are tolerated (Microsoft's own samples carry
// them); the charset must be UTF-8 when given.
func decodeDataURI(s string) (mediaType, text string, err error) {
	s = strings.TrimSpace(s)
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || !strings.EqualFold(strings.TrimSpace(scheme), "data") {
		return "", "", errors.New("data URI: scheme is not data")
	}
	meta, data, ok := strings.Cut(rest, ",")
	if !ok {
		return "", "", errors.New("data URI: no comma before the data")
	}
	params := strings.Split(meta, ";")
	mediaType = strings.ToLower(strings.TrimSpace(params[0]))
	if mediaType == "" {
		mediaType = "text/plain"
	}
	b64 := false
	for i, p := range params[1:] {
		p = strings.ToLower(strings.TrimSpace(p))
		switch {
		case p == "base64" && i == len(params)-2:
			b64 = true
		case strings.HasPrefix(p, "charset="):
			cs := strings.Trim(strings.TrimPrefix(p, "charset="), `"'`)
			if cs != "utf-8" && cs != "utf8" && cs != "us-ascii" {
				return "", "", fmt.Errorf("data URI: charset %q is not supported", cs)
			}
		}
	}
	var raw []byte
	if b64 {
		clean := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
				return -1
			}
			return r
		}, data)
		raw, err = base64.StdEncoding.DecodeString(clean)
		if err != nil {
			raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(clean, "="))
		}
		if err != nil {
			return "", "", fmt.Errorf("data URI: %w", err)
		}
	} else {
		t, err := url.QueryUnescape(data)
		if err != nil {
			return "", "", fmt.Errorf("data URI: %w", err)
		}
		raw = []byte(t)
	}
	if len(raw) > maxMessageBytes {
		return "", "", fmt.Errorf("data URI: %d bytes is more than %d", len(raw), maxMessageBytes)
	}
	if !utf8.Valid(raw) {
		return "", "", errors.New("data URI: text is not valid UTF-8")
	}
	return mediaType, string(raw), nil
}

// htmlToText gives the plain form of an HTML message: tags dropped, line
// breaks kept, entities decoded.
func htmlToText(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			break
		}
		tag := strings.ToLower(strings.Trim(s[i+1:i+j], "/ "))
		if name, _, _ := strings.Cut(tag, " "); name == "br" || name == "p" || name == "div" {
			if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
				b.WriteByte('\n')
			}
		}
		s = s[i+j+1:]
	}
	return strings.TrimSpace(html.UnescapeString(b.String()))
}
