package ucwa

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// MaxMessageBytes caps one instant message, incoming or outgoing.
const MaxMessageBytes = 64 << 10

// DataURI is a decoded RFC 2397 data URI, as UCWA uses them for message
// bodies (data:text/plain;charset=utf-8,Hi+Tosh%0d%0a or ;base64,).
type DataURI struct {
	MediaType string
	Params    map[string]string
	Data      []byte
}

var errNotDataURI = errors.New("not a data URI")

// ParseDataURI decodes a data URI. The samples write blanks after the
// scheme ("data : text/plain") and form-encode blanks as "+" in the
// non-base64 form; both are accepted.
func ParseDataURI(s string) (*DataURI, error) {
	rest, ok := cutScheme(s)
	if !ok {
		return nil, fmt.Errorf("decode data URI %q: %w", truncate(s, 40), errNotDataURI)
	}
	// The encoded form may be at most a third larger than the data.
	if len(rest) > MaxMessageBytes*3+1024 {
		return nil, fmt.Errorf("decode data URI: %d bytes is too long", len(rest))
	}
	meta, payload, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, fmt.Errorf("decode data URI %q: no comma before the data", truncate(s, 40))
	}
	d := &DataURI{Params: map[string]string{}}
	parts := strings.Split(meta, ";")
	d.MediaType = strings.ToLower(strings.TrimSpace(parts[0]))
	if d.MediaType == "" {
		d.MediaType = "text/plain"
	}
	isBase64 := false
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		if strings.EqualFold(p, "base64") {
			isBase64 = true
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		d.Params[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	if isBase64 {
		payload = strings.Map(func(r rune) rune {
			if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
				return -1
			}
			return r
		}, payload)
		if p, err := url.PathUnescape(payload); err == nil {
			payload = p
		}
		data, err := base64.StdEncoding.DecodeString(payload)
		if err != nil {
			data, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(payload, "="))
		}
		if err != nil {
			return nil, fmt.Errorf("decode data URI base64: %w", err)
		}
		d.Data = data
	} else {
		data, err := url.QueryUnescape(payload)
		if err != nil {
			return nil, fmt.Errorf("decode data URI: %w", err)
		}
		d.Data = []byte(data)
	}
	if len(d.Data) > MaxMessageBytes {
		return nil, fmt.Errorf("decode data URI: message of %d bytes is larger than %d", len(d.Data), MaxMessageBytes)
	}
	return d, nil
}

func cutScheme(s string) (string, bool) {
	s = strings.TrimSpace(s)
	i := strings.IndexByte(s, ':')
	if i < 0 || !strings.EqualFold(strings.TrimSpace(s[:i]), "data") {
		return "", false
	}
	return strings.TrimSpace(s[i+1:]), true
}

// Text returns the data as UTF-8 text: invalid sequences are replaced
// (reported by the bool), CRLF becomes LF, trailing line breaks go (SfB
// clients append one).
func (d *DataURI) Text() (string, bool) {
	s := string(d.Data)
	valid := utf8.ValidString(s)
	if !valid {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.TrimRight(s, "\r\n")
	return s, valid
}

// EncodeDataURI builds the data URI for an outgoing message body.
func EncodeDataURI(mediaType, text string) string {
	return "data:" + mediaType + ";charset=utf-8;base64," + base64.StdEncoding.EncodeToString([]byte(text))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
