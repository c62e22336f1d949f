package im

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// TypeSDP is the Content-Type of an IM INVITE and of its 200.
const TypeSDP = "application/sdp"

// The media of an IM session's SDP: "message" since OCS 2007, and
// "x-ms-message" that OCS 2005 and its clients use.
const (
	MediaMessage       = "message"
	MediaLegacyMessage = "x-ms-message"
)

// AcceptTypes is what this side accepts in an IM session, written into its
// SDP: what DecodeMessage and ParseTyping read.
func AcceptTypes() []string {
	return []string{TypePlain, TypeHTML, TypeRTF, TypeAlternative, TypeIsComposing}
}

// maxSDP bounds an SDP body; an IM one is a few hundred bytes.
const maxSDP = 8 << 10

// SDP is the session description of an IM INVITE and its 200:
//
//	v=0
//	o=- 0 0 IN IP4 192.0.2.1
//	s=session
//	c=IN IP4 192.0.2.1
//	t=0 0
//	m=message 5060 sip null
//	a=accept-types:text/plain text/html ...
//
// The inviter writes "null" as the format of m=, the invitee its own URI
// ("sip:bob@contoso.com"), as pidgin-sipe and SfB clients do.
type SDP struct {
	// Addr is the address of o= and c=.
	Addr netip.Addr
	// Media is MediaMessage or MediaLegacyMessage.
	Media string
	Port  int
	// Format is "null" or the sender's URI.
	Format string
	// AcceptTypes are the content types the sender takes.
	AcceptTypes []string
}

// Accepts reports whether the sender of the SDP takes content type t.
func (s SDP) Accepts(t string) bool { return acceptsType(s.AcceptTypes, t) }

// Marshal writes the SDP with CRLF line ends.
func (s SDP) Marshal() []byte {
	addr := s.Addr
	if !addr.IsValid() {
		addr = netip.IPv4Unspecified()
	}
	family := "IP4"
	if addr.Is6() && !addr.Is4In6() {
		family = "IP6"
	}
	media := s.Media
	if media == "" {
		media = MediaMessage
	}
	format := s.Format
	if format == "" {
		format = "null"
	}
	port := s.Port
	if port == 0 {
		port = 5060
	}
	accept := s.AcceptTypes
	if accept == nil {
		accept = AcceptTypes()
	}
	a := addr.Unmap().String()
	var b strings.Builder
	b.WriteString("v=0\r\n")
	b.WriteString("o=- 0 0 IN " + family + " " + a + "\r\n")
	b.WriteString("s=session\r\n")
	b.WriteString("c=IN " + family + " " + a + "\r\n")
	b.WriteString("t=0 0\r\n")
	fmt.Fprintf(&b, "m=%s %d sip %s\r\n", media, port, format)
	b.WriteString("a=accept-types:" + strings.Join(accept, " ") + "\r\n")
	return []byte(b.String())
}

// ParseSDP reads the SDP of an IM INVITE or 200. It requires v=0 and an
// m= line of a message medium over sip; an INVITE whose SDP offers
// something else (audio, application sharing) is not an IM session and is
// refused (pidgin-sipe answers it 501). Lines it does not need are skipped.
func ParseSDP(body []byte) (SDP, error) {
	if len(body) > maxSDP {
		return SDP{}, fmt.Errorf("sdp of %d bytes, more than %d: %w", len(body), maxSDP, ErrMalformed)
	}
	var s SDP
	var haveVersion, haveMedia bool
	var sessionAccept []string
	inMessage, inSession := false, true
	for i, line := range strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n") {
		if line == "" {
			continue
		}
		if len(line) < 2 || line[1] != '=' {
			return SDP{}, fmt.Errorf("sdp line %d %q: %w", i+1, truncate(line), ErrMalformed)
		}
		value := line[2:]
		switch line[0] {
		case 'v':
			if value != "0" {
				return SDP{}, fmt.Errorf("sdp version %q: %w", truncate(value), ErrMalformed)
			}
			haveVersion = true
		case 'c':
			f := strings.Fields(value)
			if len(f) != 3 || f[0] != "IN" {
				return SDP{}, fmt.Errorf("sdp connection %q: %w", truncate(value), ErrMalformed)
			}
			// An FQDN instead of an address is allowed by RFC 4566 and
			// means nothing to a session over the signalling path.
			if a, err := netip.ParseAddr(f[2]); err == nil {
				s.Addr = a
			}
		case 'm':
			f := strings.Fields(value)
			if len(f) < 4 {
				return SDP{}, fmt.Errorf("sdp media %q: %w", truncate(value), ErrMalformed)
			}
			inMessage, inSession = false, false
			if f[0] != MediaMessage && f[0] != MediaLegacyMessage {
				continue // another medium (a file transfer beside the IM)
			}
			if haveMedia {
				return SDP{}, fmt.Errorf("sdp with two message media: %w", ErrMalformed)
			}
			port, err := strconv.Atoi(f[1])
			if err != nil || port < 0 || port > 65535 || !strings.EqualFold(f[2], "sip") {
				return SDP{}, fmt.Errorf("sdp media %q: %w", truncate(value), ErrMalformed)
			}
			s.Media, s.Port, s.Format = f[0], port, f[3]
			haveMedia, inMessage = true, true
		case 'a':
			name, v, _ := strings.Cut(value, ":")
			if !strings.EqualFold(name, "accept-types") {
				continue
			}
			switch {
			case inMessage:
				s.AcceptTypes = acceptTypes(v)
			case inSession:
				sessionAccept = acceptTypes(v)
			}
		}
	}
	if !haveVersion {
		return SDP{}, fmt.Errorf("sdp without v=0: %w", ErrMalformed)
	}
	if !haveMedia {
		return SDP{}, fmt.Errorf("sdp offers no message medium: %w", ErrUnsupportedType)
	}
	if s.AcceptTypes == nil {
		s.AcceptTypes = sessionAccept
	}
	return s, nil
}

// acceptTypes reads the media types of an accept-types attribute, lower
// case; a token with anything but printable ASCII is no media type and is
// dropped (lower-casing invalid UTF-8 would also have grown it).
func acceptTypes(v string) []string {
	types := []string{}
	for _, t := range strings.Fields(v) {
		if strings.IndexFunc(t, func(r rune) bool { return r <= ' ' || r > '~' }) < 0 {
			types = append(types, strings.ToLower(t))
		}
	}
	return types
}
