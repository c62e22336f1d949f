package ucwa

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf16"
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
// clients append one). The charset parameter is honoured for UTF-8,
// US-ASCII, ISO-8859-1 and UTF-16; CheckCharset reports one it cannot
// decode.
func (d *DataURI) Text() (string, bool) {
	s, valid := d.decodeCharset()
	if !utf8.ValidString(s) {
		valid = false
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

// CheckCharset reports a charset parameter Text cannot decode.
func (d *DataURI) CheckCharset() error {
	switch cs := d.charset(); cs {
	case "", "utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin1", "latin-1", "utf-16", "utf-16le", "utf-16be":
		return nil
	default:
		return fmt.Errorf("data URI charset %q: %w", truncate(cs, 40), errUnknownCharset)
	}
}

var errUnknownCharset = errors.New("unknown charset")

// charset is the charset parameter, lower case and unquoted.
func (d *DataURI) charset() string {
	return strings.ToLower(strings.Trim(d.Params["charset"], `"`))
}

// decodeCharset turns the data into a Go string after its charset
// parameter; valid is false when the bytes did not fit it.
func (d *DataURI) decodeCharset() (string, bool) {
	cs := d.charset()
	switch cs {
	case "iso-8859-1", "latin1", "latin-1":
		r := make([]rune, len(d.Data))
		for i, b := range d.Data {
			r[i] = rune(b)
		}
		return string(r), true
	case "utf-16", "utf-16le", "utf-16be":
		data, big := d.Data, cs == "utf-16be"
		if len(data) >= 2 && data[0] == 0xFE && data[1] == 0xFF {
			data, big = data[2:], true
		} else if len(data) >= 2 && data[0] == 0xFF && data[1] == 0xFE {
			data, big = data[2:], false
		}
		u := make([]uint16, len(data)/2)
		for i := range u {
			if big {
				u[i] = uint16(data[2*i])<<8 | uint16(data[2*i+1])
			} else {
				u[i] = uint16(data[2*i+1])<<8 | uint16(data[2*i])
			}
		}
		s := string(utf16.Decode(u))
		return s, len(data)%2 == 0 && !strings.ContainsRune(s, utf8.RuneError)
	default:
		return string(d.Data), true
	}
}
