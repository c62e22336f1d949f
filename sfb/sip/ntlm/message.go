// Package ntlm implements the parts of NTLM (MS-NLMP) that Skype for
// Business uses to authenticate SIP: NTLMv2 with extended session security
// in connection-less (datagram) mode, the NEGOTIATE, CHALLENGE and
// AUTHENTICATE messages, session key derivation and message signatures.
//
// Only the Go standard library and golang.org/x/crypto/md4 are used.
// Every computation is checked against the test vectors of MS-NLMP
// section 4.2 in the tests.
package ntlm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf16"
)

// Flag is a bit of the NegotiateFlags field (MS-NLMP 2.2.2.5).
type Flag uint32

// The NegotiateFlags used here (MS-NLMP 2.2.2.5).
const (
	NegotiateUnicode                  Flag = 0x00000001
	NegotiateOEM                      Flag = 0x00000002
	RequestTarget                     Flag = 0x00000004
	NegotiateSign                     Flag = 0x00000010
	NegotiateSeal                     Flag = 0x00000020
	NegotiateDatagram                 Flag = 0x00000040
	NegotiateLMKey                    Flag = 0x00000080
	NegotiateNTLM                     Flag = 0x00000200
	NegotiateAnonymous                Flag = 0x00000800
	NegotiateOEMDomainSupplied        Flag = 0x00001000
	NegotiateOEMWorkstationSupplied   Flag = 0x00002000
	NegotiateAlwaysSign               Flag = 0x00008000
	TargetTypeDomain                  Flag = 0x00010000
	TargetTypeServer                  Flag = 0x00020000
	NegotiateExtendedSessionSecurity  Flag = 0x00080000
	NegotiateIdentify                 Flag = 0x00100000
	RequestNonNTSessionKey            Flag = 0x00400000
	NegotiateTargetInfo               Flag = 0x00800000
	NegotiateVersion                  Flag = 0x02000000
	Negotiate128                      Flag = 0x20000000
	NegotiateKeyExchange              Flag = 0x40000000
	Negotiate56                       Flag = 0x80000000
	flagsRequiredForConnectionlessSIP      = NegotiateUnicode | NegotiateNTLM | NegotiateAlwaysSign |
		NegotiateExtendedSessionSecurity | NegotiateTargetInfo | NegotiateSign | NegotiateDatagram |
		NegotiateKeyExchange | Negotiate128
)

// Has reports whether all bits of f are set.
func (fl Flag) Has(f Flag) bool { return fl&f == f }

// MessageType is the MessageType field of an NTLM message.
type MessageType uint32

// The three NTLM message types.
const (
	TypeNegotiate    MessageType = 1
	TypeChallenge    MessageType = 2
	TypeAuthenticate MessageType = 3
)

var signature = []byte("NTLMSSP\x00")

// MaxMessageSize bounds every message this package parses or builds: SIP
// carries them base64-encoded in a header, and real ones are a few hundred
// bytes.
const MaxMessageSize = 8 << 10

// Version is the VERSION structure (MS-NLMP 2.2.2.10).
type Version struct {
	Major, Minor uint8
	Build        uint16
	NTLMRevision uint8
}

// defaultVersion is what this package announces: Windows 6.1.7600 with
// NTLMSSP_REVISION_W2K3.
func defaultVersion() *Version {
	return &Version{Major: 6, Minor: 1, Build: 7600, NTLMRevision: 15}
}

func (v Version) bytes() []byte {
	b := make([]byte, 8)
	b[0], b[1] = v.Major, v.Minor
	binary.LittleEndian.PutUint16(b[2:], v.Build)
	b[7] = v.NTLMRevision
	return b
}

func parseVersion(b []byte) Version {
	return Version{Major: b[0], Minor: b[1], Build: binary.LittleEndian.Uint16(b[2:]), NTLMRevision: b[7]}
}

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("ntlm: malformed message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// header checks the signature and the type, and the size bounds.
func header(b []byte, want MessageType, fixed int) error {
	if len(b) > MaxMessageSize {
		return malformed("%d bytes, more than %d", len(b), MaxMessageSize)
	}
	if len(b) < fixed {
		return malformed("%d bytes, shorter than the %d of a type %d header", len(b), fixed, want)
	}
	if !bytes.Equal(b[:8], signature) {
		return malformed("no NTLMSSP signature")
	}
	if got := MessageType(binary.LittleEndian.Uint32(b[8:])); got != want {
		return malformed("message type %d, want %d", got, want)
	}
	return nil
}

// field reads the (Len, MaxLen, Offset) descriptor at b[at:] and returns the
// payload it points to. The payload must lie after the fixed header and
// inside the message.
func field(b []byte, at, fixed int, name string) ([]byte, error) {
	length := int(binary.LittleEndian.Uint16(b[at:]))
	maxLength := int(binary.LittleEndian.Uint16(b[at+2:]))
	offset := int(binary.LittleEndian.Uint32(b[at+4:]))
	if length == 0 {
		return nil, nil
	}
	if maxLength < length {
		return nil, malformed("%s: MaxLen %d below Len %d", name, maxLength, length)
	}
	if offset < fixed || offset > len(b) || length > len(b)-offset {
		return nil, malformed("%s: %d bytes at offset %d outside the %d-byte payload", name, length, offset, len(b))
	}
	return b[offset : offset+length], nil
}

// payload builds the variable part of a message after a fixed header.
type payload struct {
	fixed []byte
	data  []byte
}

func (p *payload) put(at int, v []byte) {
	binary.LittleEndian.PutUint16(p.fixed[at:], uint16(len(v)))
	binary.LittleEndian.PutUint16(p.fixed[at+2:], uint16(len(v)))
	binary.LittleEndian.PutUint32(p.fixed[at+4:], uint32(len(p.fixed)+len(p.data)))
	p.data = append(p.data, v...)
}

func (p *payload) bytes() []byte { return append(p.fixed, p.data...) }

func newFixed(t MessageType, size int) []byte {
	b := make([]byte, size)
	copy(b, signature)
	binary.LittleEndian.PutUint32(b[8:], uint32(t))
	return b
}

func encodeUTF16(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

func decodeUTF16(b []byte, name string) (string, error) {
	if len(b)%2 != 0 {
		return "", malformed("%s: odd length %d for UTF-16", name, len(b))
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u)), nil
}

// NegotiateMessage is the NEGOTIATE_MESSAGE (MS-NLMP 2.2.1.1). SIP uses
// NTLM connection-less and never sends it (MS-SIPAE); it is here
// for completeness of the message set and for the simulator's diagnostics.
type NegotiateMessage struct {
	Flags       Flag
	Domain      string // OEM
	Workstation string // OEM
	Version     *Version
}

// Marshal encodes the message.
func (m *NegotiateMessage) Marshal() []byte {
	p := payload{fixed: newFixed(TypeNegotiate, 40)}
	binary.LittleEndian.PutUint32(p.fixed[12:], uint32(m.Flags))
	p.put(16, []byte(m.Domain))
	p.put(24, []byte(m.Workstation))
	if m.Version != nil {
		copy(p.fixed[32:], m.Version.bytes())
	}
	return p.bytes()
}

// ParseNegotiate decodes a NEGOTIATE_MESSAGE.
func ParseNegotiate(b []byte) (*NegotiateMessage, error) {
	const fixed = 32
	if err := header(b, TypeNegotiate, fixed); err != nil {
		return nil, err
	}
	m := &NegotiateMessage{Flags: Flag(binary.LittleEndian.Uint32(b[12:]))}
	payloadStart := fixed
	if m.Flags.Has(NegotiateVersion) {
		if len(b) < 40 {
			return nil, malformed("NEGOTIATE with the VERSION flag but %d bytes", len(b))
		}
		v := parseVersion(b[32:])
		m.Version = &v
		payloadStart = 40
	}
	domain, err := field(b, 16, payloadStart, "DomainName")
	if err != nil {
		return nil, err
	}
	ws, err := field(b, 24, payloadStart, "Workstation")
	if err != nil {
		return nil, err
	}
	m.Domain, m.Workstation = string(domain), string(ws)
	return m, nil
}

// ChallengeMessage is the CHALLENGE_MESSAGE (MS-NLMP 2.2.1.2).
type ChallengeMessage struct {
	Flags           Flag
	TargetName      string // UTF-16 on the wire (this package requires NegotiateUnicode)
	ServerChallenge [8]byte
	TargetInfo      []byte // raw AV_PAIR list, see ParseAVPairs
	Version         *Version
}

// Marshal encodes the message.
func (m *ChallengeMessage) Marshal() []byte {
	p := payload{fixed: newFixed(TypeChallenge, 56)}
	binary.LittleEndian.PutUint32(p.fixed[20:], uint32(m.Flags))
	copy(p.fixed[24:], m.ServerChallenge[:])
	if m.Version != nil {
		copy(p.fixed[48:], m.Version.bytes())
	}
	p.put(12, encodeUTF16(m.TargetName))
	p.put(40, m.TargetInfo)
	return p.bytes()
}

// ParseChallenge decodes a CHALLENGE_MESSAGE. Only Unicode is accepted:
// SfB always negotiates it, and OEM strings would need a code page.
func ParseChallenge(b []byte) (*ChallengeMessage, error) {
	const fixed = 48
	if err := header(b, TypeChallenge, fixed); err != nil {
		return nil, err
	}
	m := &ChallengeMessage{Flags: Flag(binary.LittleEndian.Uint32(b[20:]))}
	if !m.Flags.Has(NegotiateUnicode) {
		return nil, malformed("CHALLENGE without NTLMSSP_NEGOTIATE_UNICODE")
	}
	copy(m.ServerChallenge[:], b[24:32])
	payloadStart := fixed
	if m.Flags.Has(NegotiateVersion) {
		if len(b) < 56 {
			return nil, malformed("CHALLENGE with the VERSION flag but %d bytes", len(b))
		}
		v := parseVersion(b[48:])
		m.Version = &v
		payloadStart = 56
	}
	name, err := field(b, 12, payloadStart, "TargetName")
	if err != nil {
		return nil, err
	}
	if m.TargetName, err = decodeUTF16(name, "TargetName"); err != nil {
		return nil, err
	}
	info, err := field(b, 40, payloadStart, "TargetInfo")
	if err != nil {
		return nil, err
	}
	if m.Flags.Has(NegotiateTargetInfo) {
		if _, err := ParseAVPairs(info); err != nil {
			return nil, err
		}
	}
	m.TargetInfo = bytes.Clone(info)
	return m, nil
}

// AuthenticateMessage is the AUTHENTICATE_MESSAGE (MS-NLMP 2.2.1.3).
type AuthenticateMessage struct {
	Flags                     Flag
	LMChallengeResponse       []byte
	NTChallengeResponse       []byte
	Domain                    string
	User                      string
	Workstation               string
	EncryptedRandomSessionKey []byte
	Version                   *Version
}

// Marshal encodes the message. The payload order is that of MS-NLMP
// 4.2.4.3: domain, user, workstation, LM, NT, session key.
func (m *AuthenticateMessage) Marshal() []byte {
	// No MIC: connection-less NTLM has no NEGOTIATE for it to cover, and
	// SfB clients send none.
	size := 64
	if m.Version != nil {
		size = 72
	}
	p := payload{fixed: newFixed(TypeAuthenticate, size)}
	binary.LittleEndian.PutUint32(p.fixed[60:], uint32(m.Flags))
	if m.Version != nil {
		copy(p.fixed[64:], m.Version.bytes())
	}
	p.put(28, encodeUTF16(m.Domain))
	p.put(36, encodeUTF16(m.User))
	p.put(44, encodeUTF16(m.Workstation))
	p.put(12, m.LMChallengeResponse)
	p.put(20, m.NTChallengeResponse)
	p.put(52, m.EncryptedRandomSessionKey)
	return p.bytes()
}

// ParseAuthenticate decodes an AUTHENTICATE_MESSAGE.
func ParseAuthenticate(b []byte) (*AuthenticateMessage, error) {
	const fixed = 64
	if err := header(b, TypeAuthenticate, fixed); err != nil {
		return nil, err
	}
	m := &AuthenticateMessage{Flags: Flag(binary.LittleEndian.Uint32(b[60:]))}
	if !m.Flags.Has(NegotiateUnicode) {
		return nil, malformed("AUTHENTICATE without NTLMSSP_NEGOTIATE_UNICODE")
	}
	payloadStart := fixed
	if m.Flags.Has(NegotiateVersion) {
		if len(b) < 72 {
			return nil, malformed("AUTHENTICATE with the VERSION flag but %d bytes", len(b))
		}
		v := parseVersion(b[64:])
		m.Version = &v
		payloadStart = 72
	}
	var err error
	get := func(at int, name string) []byte {
		if err != nil {
			return nil
		}
		var v []byte
		v, err = field(b, at, payloadStart, name)
		return bytes.Clone(v)
	}
	m.LMChallengeResponse = get(12, "LmChallengeResponse")
	m.NTChallengeResponse = get(20, "NtChallengeResponse")
	domain := get(28, "DomainName")
	user := get(36, "UserName")
	ws := get(44, "Workstation")
	m.EncryptedRandomSessionKey = get(52, "EncryptedRandomSessionKey")
	if err != nil {
		return nil, err
	}
	if m.Domain, err = decodeUTF16(domain, "DomainName"); err != nil {
		return nil, err
	}
	if m.User, err = decodeUTF16(user, "UserName"); err != nil {
		return nil, err
	}
	if m.Workstation, err = decodeUTF16(ws, "Workstation"); err != nil {
		return nil, err
	}
	if n := len(m.EncryptedRandomSessionKey); n != 0 && n != 16 {
		return nil, malformed("EncryptedRandomSessionKey of %d bytes, want 16", n)
	}
	return m, nil
}

// AVID identifies an AV_PAIR (MS-NLMP 2.2.2.1).
type AVID uint16

// The AV_PAIR identifiers.
const (
	AVEOL             AVID = 0
	AVNbComputerName  AVID = 1
	AVNbDomainName    AVID = 2
	AVDNSComputerName AVID = 3
	AVDNSDomainName   AVID = 4
	AVDNSTreeName     AVID = 5
	AVFlags           AVID = 6
	AVTimestamp       AVID = 7
	AVSingleHost      AVID = 8
	AVTargetName      AVID = 9
	AVChannelBindings AVID = 10
)

// AVPair is one attribute of a TargetInfo list.
type AVPair struct {
	ID    AVID
	Value []byte
}

// ParseAVPairs decodes a TargetInfo list, which must end with MsvAvEOL.
func ParseAVPairs(b []byte) ([]AVPair, error) {
	var pairs []AVPair
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, malformed("TargetInfo: %d trailing bytes", len(b))
		}
		id := AVID(binary.LittleEndian.Uint16(b))
		n := int(binary.LittleEndian.Uint16(b[2:]))
		if n > len(b)-4 {
			return nil, malformed("TargetInfo: AV_PAIR %d of %d bytes, %d left", id, n, len(b)-4)
		}
		if id == AVEOL {
			if n != 0 {
				return nil, malformed("TargetInfo: MsvAvEOL with %d bytes", n)
			}
			return pairs, nil
		}
		pairs = append(pairs, AVPair{ID: id, Value: b[4 : 4+n]})
		b = b[4+n:]
	}
	return nil, malformed("TargetInfo: no MsvAvEOL")
}

// MarshalAVPairs encodes pairs followed by MsvAvEOL.
func MarshalAVPairs(pairs []AVPair) []byte {
	var b []byte
	for _, p := range pairs {
		b = binary.LittleEndian.AppendUint16(b, uint16(p.ID))
		b = binary.LittleEndian.AppendUint16(b, uint16(len(p.Value)))
		b = append(b, p.Value...)
	}
	return append(b, 0, 0, 0, 0)
}

// AVString is an AV_PAIR holding a UTF-16 name.
func AVString(id AVID, s string) AVPair { return AVPair{ID: id, Value: encodeUTF16(s)} }
