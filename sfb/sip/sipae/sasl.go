package sipae

import (
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-sasl"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/ntlm"
)

var (
	_ sasl.Client = (*Client)(nil)
	_ sasl.Server = (*Server)(nil)
)

// ErrHandshake is wrapped when a handshake step comes out of order.
var ErrHandshake = errors.New("sipae: handshake out of order")

// Client is the client side of connection-less NTLM over SIP (MS-SIPAE;
// the exchange as pidgin-sipe's sip-transport.c runs it):
//
//  1. the server's 401/407 offers NTLM with realm, targetname and version;
//  2. Start gives the empty token sent as gssapi-data="";
//  3. the next 401/407 carries the CHALLENGE in gssapi-data and an opaque;
//     Next answers it with the AUTHENTICATE;
//  4. SA then gives the security association that signs every request
//     from this one on (the request carrying the AUTHENTICATE included,
//     for version 4 and later) and verifies the server's signatures.
type Client struct {
	ntlm    ntlm.Client
	started bool
	session *ntlm.Session
}

// NewClient returns a client for user in domain (the NetBIOS domain or
// empty for a user principal name in user).
func NewClient(user, domain, password string) *Client {
	return &Client{ntlm: ntlm.Client{User: user, Domain: domain, NTHash: ntlm.NTOWFv1(password)}}
}

// Start implements sasl.Client: connection-less NTLM has no NEGOTIATE
// message, the first token is empty.
func (c *Client) Start() (mech string, ir []byte, err error) {
	if c.started {
		return "", nil, fmt.Errorf("%w: Start called twice", ErrHandshake)
	}
	c.started = true
	return SchemeNTLM, []byte{}, nil
}

// Next implements sasl.Client: it answers the server's CHALLENGE.
func (c *Client) Next(challenge []byte) ([]byte, error) {
	if !c.started || c.session != nil {
		return nil, fmt.Errorf("%w: Next without Start, or after the AUTHENTICATE", ErrHandshake)
	}
	msg, session, err := c.ntlm.Authenticate(challenge)
	if err != nil {
		return nil, err
	}
	c.session = session
	return msg, nil
}

// SA returns the security association established by Next, for the
// parameters of the server's challenge header (realm, targetname, opaque,
// version).
func (c *Client) SA(challenge *Params) (*SA, error) {
	if c.session == nil {
		return nil, fmt.Errorf("%w: no security association before the AUTHENTICATE", ErrHandshake)
	}
	return newSA(c.session, true, challenge.Realm, challenge.TargetName, challenge.Opaque, challenge.Version, nil), nil
}

// Credentials returns the Authorization (or Proxy-Authorization)
// parameters carrying token in answer to challenge.
func Credentials(challenge *Params, token []byte) *Params {
	return &Params{
		Scheme: SchemeNTLM, QOP: "auth", Opaque: challenge.Opaque, Realm: challenge.Realm,
		TargetName: challenge.TargetName, GSSAPIData: token, HasGSSAPIData: true, Version: challenge.Version,
	}
}

// Server is the server side of the exchange, for the simulator: Next first
// answers the empty token with a CHALLENGE, then checks the AUTHENTICATE.
type Server struct {
	ntlm      *ntlm.Server
	challenge *ntlm.ChallengeMessage
	session   *ntlm.Session
	rand      io.Reader
}

// NewServer returns the server side of one handshake.
func NewServer(s *ntlm.Server) *Server { return &Server{ntlm: s, rand: s.Rand} }

// Next implements sasl.Server.
func (s *Server) Next(response []byte) (challenge []byte, done bool, err error) {
	switch {
	case s.session != nil:
		return nil, true, fmt.Errorf("%w: the handshake is over", ErrHandshake)
	case s.challenge == nil:
		if len(response) != 0 {
			return nil, false, fmt.Errorf("%w: connection-less NTLM starts with an empty token, got %d bytes", ErrHandshake, len(response))
		}
		if s.challenge, err = s.ntlm.Challenge(); err != nil {
			return nil, false, err
		}
		return s.challenge.Marshal(), false, nil
	default:
		session, err := s.ntlm.Accept(s.challenge, response)
		if err != nil {
			return nil, false, err
		}
		s.session = session
		return nil, true, nil
	}
}

// SA returns the security association established by the handshake, with
// the realm, targetname, opaque and version the server announced.
func (s *Server) SA(realm, target, opaque string, version int) (*SA, error) {
	if s.session == nil {
		return nil, fmt.Errorf("%w: no security association before the AUTHENTICATE is accepted", ErrHandshake)
	}
	return newSA(s.session, false, realm, target, opaque, version, s.rand), nil
}
