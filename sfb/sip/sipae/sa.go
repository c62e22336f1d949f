package sipae

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/ntlm"
)

// ntlmSeqNum is the NTLM sequence number of every SIP signature. Replay is
// guarded by cnum/snum in the signed buffer instead: Communicator and OCS
// sign with 100 (0x64 in the last four bytes of both signatures of
// pidgin-sipe's recorded sign-in, sip-sec-ntlm-tests.c; sip-sec-ntlm.c
// passes 100 to MAC()).
const ntlmSeqNum = 100

// replayWindow is how many sequence numbers below the highest seen are
// still accepted once each, for messages signed concurrently and sent out
// of order on one connection (the anti-replay window of RFC 4303 3.4.3).
const replayWindow = 64

// Errors of signature verification.
var (
	ErrBadSignature = errors.New("sipae: message signature does not verify")
	ErrReplay       = errors.New("sipae: sequence number already seen or too old")
	ErrNotSigned    = errors.New("sipae: message carries no signature")
	ErrWrongSA      = errors.New("sipae: signature for another security association")
)

// SA is an established security association: it signs the messages of its
// side and verifies those of the peer. It is safe for concurrent use.
type SA struct {
	Realm      string
	TargetName string
	Opaque     string
	Version    int

	session *ntlm.Session
	client  bool
	rand    io.Reader

	mu      sync.Mutex
	sent    uint32 // last num sent
	highest uint32 // highest num received
	window  uint64 // bit i: highest-i received
}

func newSA(session *ntlm.Session, client bool, realm, target, opaque string, version int, random io.Reader) *SA {
	if random == nil {
		random = rand.Reader
	}
	return &SA{Realm: realm, TargetName: target, Opaque: opaque, Version: version, session: session, client: client, rand: random}
}

// User is the authenticated user ("DOMAIN\user" parts as sent).
func (sa *SA) User() (user, domain string) { return sa.session.User, sa.session.Domain }

// Sign signs a message of this side and returns the parameters of its
// authentication header: for a client, the Authorization (or
// Proxy-Authorization) with crand, cnum and response; for a server, the
// Authentication-Info with rspauth, srand and snum.
func (sa *SA) Sign(f Fields) (*Params, error) {
	var r [4]byte
	if _, err := io.ReadFull(sa.rand, r[:]); err != nil {
		return nil, fmt.Errorf("sipae: random for a signature: %w", err)
	}
	rnd := hex.EncodeToString(r[:])
	sa.mu.Lock()
	sa.sent++
	num := sa.sent
	sa.mu.Unlock()
	sig := sa.session.Sign(ntlmSeqNum, signatureBuffer(sa.Version, SchemeNTLM, rnd, num, sa.Realm, sa.TargetName, f))
	p := &Params{Scheme: SchemeNTLM, QOP: "auth", Opaque: sa.Opaque, Realm: sa.Realm, TargetName: sa.TargetName}
	if sa.client {
		p.CRand, p.CNum, p.Response = rnd, num, hex.EncodeToString(sig[:])
	} else {
		p.SRand, p.SNum, p.RspAuth = rnd, num, hex.EncodeToString(sig[:])
	}
	return p, nil
}

// Verify checks the peer's signature p of a message with fields f, and
// refuses a sequence number seen before.
func (sa *SA) Verify(f Fields, p *Params) error {
	rnd, num, sigHex := p.SRand, p.SNum, p.RspAuth
	if !sa.client {
		rnd, num, sigHex = p.CRand, p.CNum, p.Response
	}
	if sigHex == "" || rnd == "" || num == 0 {
		return ErrNotSigned
	}
	if p.Scheme != SchemeNTLM || (p.Realm != "" && p.Realm != sa.Realm) ||
		(p.TargetName != "" && p.TargetName != sa.TargetName) || (p.Opaque != "" && sa.Opaque != "" && p.Opaque != sa.Opaque) {
		return fmt.Errorf("%w: %s realm %q targetname %q opaque %q", ErrWrongSA, p.Scheme, p.Realm, p.TargetName, p.Opaque)
	}
	sig, err := hex.DecodeString(sigHex)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if err := sa.session.Verify(ntlmSeqNum, signatureBuffer(sa.Version, SchemeNTLM, rnd, num, sa.Realm, sa.TargetName, f), sig); err != nil {
		return ErrBadSignature
	}
	return sa.accept(num)
}

// accept records num, refusing one seen before or older than the window.
func (sa *SA) accept(num uint32) error {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	switch {
	case num > sa.highest:
		shift := num - sa.highest
		if shift >= replayWindow {
			sa.window = 0
		} else {
			sa.window <<= shift
		}
		sa.window |= 1
		sa.highest = num
		return nil
	case sa.highest-num >= replayWindow:
		return fmt.Errorf("%w: %d, highest %d", ErrReplay, num, sa.highest)
	default:
		bit := uint64(1) << (sa.highest - num)
		if sa.window&bit != 0 {
			return fmt.Errorf("%w: %d", ErrReplay, num)
		}
		sa.window |= bit
		return nil
	}
}
