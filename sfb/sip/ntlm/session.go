package ntlm

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// ClientFlags are the flags a SIP client accepts, as Office Communicator
// and pidgin-sipe answer an SfB CHALLENGE (pidgin-sipe's
// sip-sec-ntlm-tests.c records Communicator 2007 R2 answering with exactly
// these): connection-less NTLMv2 with extended session security, 128-bit
// keys and key exchange; signing, no sealing.
const ClientFlags = NegotiateUnicode | RequestTarget | NegotiateSign | NegotiateDatagram |
	NegotiateNTLM | NegotiateAlwaysSign | NegotiateExtendedSessionSecurity | NegotiateIdentify |
	NegotiateTargetInfo | NegotiateVersion | Negotiate128 | NegotiateKeyExchange

// ErrUnsupported is wrapped when the peer asks for something this package
// does not do (NTLMv1, no extended session security, no key exchange,
// connection-oriented mode): SfB never needs them, and accepting them
// would weaken the exchange.
var ErrUnsupported = errors.New("ntlm: unsupported")

// ErrAuthenticationFailed is returned by the server when the proof in an
// AUTHENTICATE message does not match the user's password.
var ErrAuthenticationFailed = errors.New("ntlm: authentication failed")

// Session is an established NTLM security context. Sign uses the keys of
// its own direction and Verify those of the peer.
type Session struct {
	User, Domain string
	keys         sessionKeys
	client       bool
}

// Sign computes the connection-less signature of message under seqNum.
func (s *Session) Sign(seqNum uint32, message []byte) [SignatureSize]byte {
	if s.client {
		return mac(s.keys.ClientSigning, s.keys.ClientSealing, seqNum, message)
	}
	return mac(s.keys.ServerSigning, s.keys.ServerSealing, seqNum, message)
}

// Verify checks the peer's connection-less signature of message.
func (s *Session) Verify(seqNum uint32, message, sig []byte) error {
	if s.client {
		return verifyMAC(s.keys.ServerSigning, s.keys.ServerSealing, seqNum, message, sig)
	}
	return verifyMAC(s.keys.ClientSigning, s.keys.ClientSealing, seqNum, message, sig)
}

// Client answers an SfB CHALLENGE with an AUTHENTICATE message.
type Client struct {
	User        string
	Domain      string
	Workstation string
	// NTHash is NTOWFv1 of the password: the client keeps the hash, not
	// the password.
	NTHash []byte

	// Rand and Now default to crypto/rand and time.Now; tests fix them.
	Rand io.Reader
	Now  func() time.Time
}

// fileTime converts t to a Windows FILETIME (100 ns since 1601).
func fileTime(t time.Time) uint64 {
	const epochDelta = 116444736000000000
	return uint64(t.UnixNano()/100) + epochDelta
}

// Authenticate parses challenge and returns the AUTHENTICATE message and
// the session it establishes.
func (c *Client) Authenticate(challenge []byte) ([]byte, *Session, error) {
	ch, err := ParseChallenge(challenge)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the NTLM challenge: %w", err)
	}
	if missing := flagsRequiredForConnectionlessSIP &^ ch.Flags; missing != 0 {
		return nil, nil, fmt.Errorf("%w: the challenge lacks flags %#08x (connection-less NTLMv2 with extended session security and key exchange)", ErrUnsupported, uint32(missing))
	}
	random := c.Rand
	if random == nil {
		random = rand.Reader
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	var clientChallenge [8]byte
	exportedSessionKey := make([]byte, 16)
	if _, err := io.ReadFull(random, clientChallenge[:]); err != nil {
		return nil, nil, fmt.Errorf("ntlm: client challenge: %w", err)
	}
	if _, err := io.ReadFull(random, exportedSessionKey); err != nil {
		return nil, nil, fmt.Errorf("ntlm: session key: %w", err)
	}
	pairs, err := ParseAVPairs(ch.TargetInfo)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the NTLM challenge: %w", err)
	}
	// MS-NLMP 3.1.5.1.2: the server's MsvAvTimestamp, when present, is
	// used instead of the client's clock, and the LM response is zeros.
	timestamp := fileTime(now())
	serverTime := false
	for _, p := range pairs {
		if p.ID == AVTimestamp && len(p.Value) == 8 {
			timestamp = binary.LittleEndian.Uint64(p.Value)
			serverTime = true
		}
	}
	responseKey := ntowfv2(c.NTHash, c.User, c.Domain)
	temp := clientChallengeBlob(timestamp, clientChallenge, ch.TargetInfo)
	lm, nt, sessionBaseKey := v2Responses(responseKey, ch.ServerChallenge, clientChallenge, temp)
	if serverTime {
		lm = make([]byte, 24)
	}
	msg := &AuthenticateMessage{
		Flags:               ch.Flags & ClientFlags,
		LMChallengeResponse: lm,
		NTChallengeResponse: nt,
		Domain:              c.Domain,
		User:                c.User,
		Workstation:         c.Workstation,
		// NTLMv2: KeyExchangeKey is the SessionBaseKey (MS-NLMP 3.4.5.1).
		EncryptedRandomSessionKey: rc4Crypt(sessionBaseKey, exportedSessionKey),
		Version:                   defaultVersion(),
	}
	return msg.Marshal(), &Session{User: c.User, Domain: c.Domain, keys: deriveKeys(exportedSessionKey), client: true}, nil
}

// Server issues CHALLENGE messages and checks AUTHENTICATE messages, the
// role of an SfB Front End (and of the simulator).
type Server struct {
	// NetBIOSDomain and NetBIOSComputer name the server in the TargetInfo;
	// DNSDomain and DNSComputer are added when set.
	NetBIOSDomain, NetBIOSComputer string
	DNSDomain, DNSComputer         string
	// NTHash returns NTOWFv1 of the user's password, or false when the
	// user is unknown.
	NTHash func(user, domain string) ([]byte, bool)
	Rand   io.Reader
}

// ServerFlags are the flags of the server's CHALLENGE, those an SfB Front
// End sends (pidgin-sipe's recording of OCS 2007 R2: 0xE29882F3).
const ServerFlags = NegotiateUnicode | NegotiateOEM | NegotiateSign | NegotiateSeal | NegotiateDatagram |
	NegotiateLMKey | NegotiateNTLM | NegotiateAlwaysSign | NegotiateExtendedSessionSecurity |
	NegotiateIdentify | NegotiateTargetInfo | NegotiateVersion | Negotiate128 | NegotiateKeyExchange | Negotiate56

// Challenge returns a new CHALLENGE message.
func (s *Server) Challenge() (*ChallengeMessage, error) {
	random := s.Rand
	if random == nil {
		random = rand.Reader
	}
	ch := &ChallengeMessage{Flags: ServerFlags, Version: defaultVersion()}
	if _, err := io.ReadFull(random, ch.ServerChallenge[:]); err != nil {
		return nil, fmt.Errorf("ntlm: server challenge: %w", err)
	}
	pairs := []AVPair{AVString(AVNbDomainName, s.NetBIOSDomain), AVString(AVNbComputerName, s.NetBIOSComputer)}
	if s.DNSDomain != "" {
		pairs = append(pairs, AVString(AVDNSDomainName, s.DNSDomain))
	}
	if s.DNSComputer != "" {
		pairs = append(pairs, AVString(AVDNSComputerName, s.DNSComputer))
	}
	ch.TargetInfo = MarshalAVPairs(pairs)
	return ch, nil
}

// Accept checks an AUTHENTICATE message against the challenge it answers
// and returns the established session.
func (s *Server) Accept(challenge *ChallengeMessage, authenticate []byte) (*Session, error) {
	msg, err := ParseAuthenticate(authenticate)
	if err != nil {
		return nil, fmt.Errorf("reading the NTLM authenticate message: %w", err)
	}
	if missing := flagsRequiredForConnectionlessSIP &^ msg.Flags; missing != 0 {
		return nil, fmt.Errorf("%w: the authenticate message lacks flags %#08x", ErrUnsupported, uint32(missing))
	}
	hash, ok := s.NTHash(msg.User, msg.Domain)
	if !ok {
		// The same error as a wrong password: do not tell who exists.
		return nil, fmt.Errorf("%w for %s\\%s", ErrAuthenticationFailed, msg.Domain, msg.User)
	}
	exported, err := acceptV2(hash, challenge.ServerChallenge, msg)
	if err != nil {
		return nil, err
	}
	return &Session{User: msg.User, Domain: msg.Domain, keys: deriveKeys(exported)}, nil
}

// acceptV2 verifies the NTLMv2 proof (MS-NLMP 3.3.2, 3.2.5.1.2) and
// returns the exported session key.
func acceptV2(ntHash []byte, serverChallenge [8]byte, msg *AuthenticateMessage) ([]byte, error) {
	nt := msg.NTChallengeResponse
	switch {
	case len(nt) == 0:
		return nil, fmt.Errorf("%w: anonymous authentication", ErrUnsupported)
	case len(nt) == 24:
		return nil, fmt.Errorf("%w: NTLMv1 response", ErrUnsupported)
	case len(nt) < 16+28+4:
		return nil, malformed("NtChallengeResponse of %d bytes, too short for NTLMv2", len(nt))
	case nt[16] != 1 || nt[17] != 1:
		return nil, malformed("NTLMv2_CLIENT_CHALLENGE version %d.%d, want 1.1", nt[16], nt[17])
	}
	if len(msg.EncryptedRandomSessionKey) != 16 {
		return nil, fmt.Errorf("%w: no EncryptedRandomSessionKey (key exchange)", ErrUnsupported)
	}
	temp := nt[16:]
	responseKey := ntowfv2(ntHash, msg.User, msg.Domain)
	var clientChallenge [8]byte
	copy(clientChallenge[:], temp[16:24])
	_, want, sessionBaseKey := v2Responses(responseKey, serverChallenge, clientChallenge, temp)
	if subtle.ConstantTimeCompare(want[:16], nt[:16]) != 1 {
		return nil, fmt.Errorf("%w for %s\\%s", ErrAuthenticationFailed, msg.Domain, msg.User)
	}
	return rc4Crypt(sessionBaseKey, msg.EncryptedRandomSessionKey), nil
}
