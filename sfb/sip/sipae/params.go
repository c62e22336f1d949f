// Package sipae implements the SIP authentication extensions of Skype for
// Business (MS-SIPAE) for NTLM: the authentication header parameters, the
// security association negotiated over 401/407 challenges, and the signing
// of SIP messages over their canonical fields.
//
// The client handshake has the shape of github.com/emersion/go-sasl's
// sasl.Client and the server's that of sasl.Server; the SIP transport
// carries their tokens in the gssapi-data parameter.
package sipae

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Realm is the realm every SfB server announces.
const Realm = "SIP Communications Service"

// ProtocolVersion is the MS-SIPAE version this package speaks: 4 is what
// Lync and SfB servers announce and what adds To URI and
// P-Asserted-Identity to the signed fields.
const ProtocolVersion = 4

// SchemeNTLM is the authentication scheme implemented here.
const SchemeNTLM = "NTLM"

// MaxHeaderSize bounds the header values this package parses.
const MaxHeaderSize = 16 << 10

// ErrMalformedHeader is wrapped by every header parse error.
var ErrMalformedHeader = errors.New("sipae: malformed authentication header")

// Params are the parameters of a WWW-Authenticate, Proxy-Authenticate,
// Authorization, Proxy-Authorization or (Proxy-)Authentication-Info header
// of MS-SIPAE. Empty fields are absent.
type Params struct {
	Scheme     string // "NTLM", "Kerberos", "TLS-DSK"
	QOP        string
	Realm      string
	TargetName string
	Opaque     string
	// GSSAPIData is the decoded gssapi-data; HasGSSAPIData tells an empty
	// gssapi-data="" (the client's first step in connection-less NTLM)
	// from none.
	GSSAPIData    []byte
	HasGSSAPIData bool
	Version       int

	// Client signatures (Authorization).
	CRand    string
	CNum     uint32
	Response string
	// Server signatures (Authentication-Info).
	SRand   string
	SNum    uint32
	RspAuth string
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedHeader, fmt.Sprintf(format, args...))
}

// ParseHeader parses the value of an MS-SIPAE authentication header. It
// follows RFC 3261's auth-param syntax (token or quoted-string values,
// comma-separated), refuses repeated parameters, and ignores parameters it
// does not know (sts-uri of TLS-DSK, for one).
func ParseHeader(value string) (*Params, error) {
	if len(value) > MaxHeaderSize {
		return nil, malformed("%d bytes, more than %d", len(value), MaxHeaderSize)
	}
	s := strings.TrimLeft(value, " \t")
	end := strings.IndexAny(s, " \t")
	if end < 0 {
		end = len(s)
	}
	p := &Params{Scheme: s[:end]}
	if !isToken(p.Scheme) {
		return nil, malformed("scheme %q", p.Scheme)
	}
	s = s[end:]
	seen := map[string]bool{}
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			break
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return nil, malformed("parameter %q without a value", s)
		}
		name := strings.ToLower(strings.TrimRight(s[:eq], " \t"))
		if !isToken(name) {
			return nil, malformed("parameter name %q", name)
		}
		if seen[name] {
			return nil, malformed("parameter %s repeated", name)
		}
		seen[name] = true
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		var err error
		quoted := strings.HasPrefix(s, `"`)
		if quoted {
			val, s, err = quotedString(s)
			if err != nil {
				return nil, fmt.Errorf("%w (parameter %s)", err, name)
			}
		} else {
			comma := strings.IndexByte(s, ',')
			if comma < 0 {
				comma = len(s)
			}
			val, s = strings.TrimRight(s[:comma], " \t"), s[comma:]
			if !isToken(val) {
				return nil, malformed("parameter %s: value %q is neither a token nor quoted", name, val)
			}
		}
		if err := p.set(name, val); err != nil {
			return nil, err
		}
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			break
		}
		if s[0] != ',' {
			return nil, malformed("expected a comma after parameter %s, found %q", name, s)
		}
		s = s[1:]
	}
	return p, nil
}

func (p *Params) set(name, val string) error {
	var err error
	switch name {
	case "qop":
		p.QOP = val
	case "realm":
		p.Realm = val
	case "targetname":
		p.TargetName = val
	case "opaque":
		p.Opaque = val
	case "gssapi-data":
		p.HasGSSAPIData = true
		if p.GSSAPIData, err = base64.StdEncoding.DecodeString(val); err != nil {
			return malformed("gssapi-data: %v", err)
		}
	case "version":
		v, err := strconv.ParseUint(val, 10, 8)
		if err != nil || v == 0 {
			return malformed("version %q", val)
		}
		p.Version = int(v)
	case "crand", "srand":
		if val == "" || len(val) > 16 || !isHex(val) {
			return malformed("%s %q is not 1 to 16 hexadecimal digits", name, val)
		}
		if name == "crand" {
			p.CRand = val
		} else {
			p.SRand = val
		}
	case "cnum", "snum":
		n, err := strconv.ParseUint(val, 10, 32)
		if err != nil || n == 0 {
			return malformed("%s %q is not a sequence number", name, val)
		}
		if name == "cnum" {
			p.CNum = uint32(n)
		} else {
			p.SNum = uint32(n)
		}
	case "response", "rspauth":
		if b, err := hex.DecodeString(val); err != nil || len(b) != 16 {
			return malformed("%s %q is not a 16-byte hexadecimal signature", name, val)
		}
		if name == "response" {
			p.Response = val
		} else {
			p.RspAuth = val
		}
	}
	return nil
}

// String formats the parameters in the order SfB clients and servers use
// (pidgin-sipe's recordings of Communicator and OCS in
// sip-sec-ntlm-tests.c); absent ones are left out.
func (p *Params) String() string {
	var b strings.Builder
	b.WriteString(p.Scheme)
	sep := " "
	add := func(name, val string, quote bool) {
		b.WriteString(sep)
		sep = ", "
		b.WriteString(name)
		b.WriteByte('=')
		if quote {
			b.WriteByte('"')
			for i := 0; i < len(val); i++ {
				if val[i] == '"' || val[i] == '\\' {
					b.WriteByte('\\')
				}
				b.WriteByte(val[i])
			}
			b.WriteByte('"')
		} else {
			b.WriteString(val)
		}
	}
	addQuoted := func(name, val string) {
		if val != "" {
			add(name, val, true)
		}
	}
	addQuoted("rspauth", p.RspAuth)
	addQuoted("srand", p.SRand)
	if p.SNum != 0 {
		add("snum", strconv.FormatUint(uint64(p.SNum), 10), true)
	}
	addQuoted("qop", p.QOP)
	addQuoted("opaque", p.Opaque)
	addQuoted("realm", p.Realm)
	addQuoted("targetname", p.TargetName)
	if p.HasGSSAPIData || p.GSSAPIData != nil {
		add("gssapi-data", base64.StdEncoding.EncodeToString(p.GSSAPIData), true)
	}
	if p.Version != 0 {
		add("version", strconv.Itoa(p.Version), false)
	}
	addQuoted("crand", p.CRand)
	if p.CNum != 0 {
		add("cnum", strconv.FormatUint(uint64(p.CNum), 10), true)
	}
	addQuoted("response", p.Response)
	return b.String()
}

func quotedString(s string) (val, rest string, err error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			i++
			if i == len(s) {
				return "", "", malformed("unterminated quoted string")
			}
			b.WriteByte(s[i])
		case '\r', '\n', 0:
			return "", "", malformed("control character in a quoted string")
		default:
			b.WriteByte(c)
		}
	}
	return "", "", malformed("unterminated quoted string")
}

// isToken reports whether s is an RFC 3261 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || strings.IndexByte("-.!%*_+`'~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
