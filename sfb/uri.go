package sfb

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// URI is a SIP URI in canonical form: "sip:" followed by the lower-cased
// user@domain address, as SfB compares them case-insensitively.
type URI string

// maxURILength bounds addresses from outside; SfB itself limits SIP URIs to
// 454 characters.
const maxURILength = 454

// ParseURI accepts "sip:alice@contoso.com", "SIP:Alice@Contoso.com" and the
// bare address "alice@contoso.com" and returns the canonical URI. Blanks
// around the scheme separator ("sip : x", seen in Microsoft's samples) are
// tolerated.
func ParseURI(s string) (URI, error) {
	raw := s
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, ':'); i >= 0 {
		scheme := strings.TrimSpace(s[:i])
		if !strings.EqualFold(scheme, "sip") {
			return "", fmt.Errorf("parse SIP URI %q: scheme %q is not sip", raw, scheme)
		}
		s = strings.TrimSpace(s[i+1:])
	}
	if len(s) > maxURILength {
		return "", fmt.Errorf("parse SIP URI: %d bytes is longer than %d", len(s), maxURILength)
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("parse SIP URI %q: invalid UTF-8", raw)
	}
	user, domain, ok := strings.Cut(s, "@")
	if !ok || user == "" || domain == "" || strings.Contains(domain, "@") {
		return "", fmt.Errorf("parse SIP URI %q: want user@domain", raw)
	}
	if strings.ContainsAny(s, " \t\r\n<>\"") {
		return "", fmt.Errorf("parse SIP URI %q: contains blanks or delimiters", raw)
	}
	return URI("sip:" + strings.ToLower(s)), nil
}

// Address is the URI without its scheme: alice@contoso.com.
func (u URI) Address() string { return strings.TrimPrefix(string(u), "sip:") }

// Domain is the part after the @.
func (u URI) Domain() string {
	_, domain, _ := strings.Cut(u.Address(), "@")
	return domain
}

func (u URI) String() string { return string(u) }
