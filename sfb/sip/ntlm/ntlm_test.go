package ntlm

import (
	"bytes"
	"crypto/rc4"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	require.NoError(t, err)
	return b
}

// The common values of MS-NLMP 4.2.1.
const (
	vecUser        = "User"
	vecDomain      = "Domain"
	vecPassword    = "Password"
	vecWorkstation = "COMPUTER"
)

var (
	vecServerChallenge  = [8]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	vecClientChallenge  = [8]byte{0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa}
	vecRandomSessionKey = bytes.Repeat([]byte{0x55}, 16)
)

// MS-NLMP 4.2.4.3: the CHALLENGE_MESSAGE of the NTLMv2 example.
const vecChallengeMessage = `
4e544c4d53535000020000000c000c00 3800000033828ae20123456789abcdef
00000000000000002400240044000000 060070170000000f5300650072007600
6500720002000c0044006f006d006100 69006e0001000c005300650072007600
6500720000000000`

// MS-NLMP 4.2.4.3: the AUTHENTICATE_MESSAGE of the NTLMv2 example.
const vecAuthenticateMessage = `
4e544c4d535350000300000018001800 6c00000054005400840000000c000c00
48000000080008005400000010001000 5c00000010001000d8000000358288e2
0501280a0000000f44006f006d006100 69006e00550073006500720043004f00
4d005000550054004500520086c35097 ac9cec102554764a57cccc19aaaaaaaa
aaaaaaaa68cd0ab851e51c96aabc927b ebef6a1c010100000000000000000000
00000000aaaaaaaaaaaaaaaa00000000 02000c0044006f006d00610069006e00
01000c00530065007200760065007200 0000000000000000c5dad2544fc97990
94ce1ce90bc9d03e`

func TestNTLMv2Vectors(t *testing.T) {
	ntHash := NTOWFv1(vecPassword)
	// MS-NLMP 4.2.2.1.2 (NTOWFv1), 4.2.4.1.1 (NTOWFv2).
	assert.Equal(t, unhex(t, "a4f49c406510bdcab6824ee7c30fd852"), ntHash, "NTOWFv1")
	responseKey := ntowfv2(ntHash, vecUser, vecDomain)
	assert.Equal(t, unhex(t, "0c868a403bfd7a93a3001ef22ef02e3f"), responseKey, "NTOWFv2")

	challenge, err := ParseChallenge(unhex(t, vecChallengeMessage))
	require.NoError(t, err)
	assert.Equal(t, Flag(0xe28a8233), challenge.Flags)
	assert.Equal(t, vecServerChallenge, challenge.ServerChallenge)
	assert.Equal(t, "Server", challenge.TargetName)
	assert.Equal(t, &Version{Major: 6, Minor: 0, Build: 6000, NTLMRevision: 15}, challenge.Version)
	pairs, err := ParseAVPairs(challenge.TargetInfo)
	require.NoError(t, err)
	assert.Equal(t, []AVPair{AVString(AVNbDomainName, "Domain"), AVString(AVNbComputerName, "Server")}, pairs)
	// Encoding gives the same bytes back.
	assert.Equal(t, unhex(t, vecChallengeMessage), challenge.Marshal())

	// MS-NLMP 4.2.4.1.3 (temp, with the timestamp zero), 4.2.4.2.1
	// (LMv2 response), 4.2.4.2.2 (NTProofStr), 4.2.4.1.2 (session base key).
	temp := clientChallengeBlob(0, vecClientChallenge, challenge.TargetInfo)
	assert.Equal(t, unhex(t, `0101000000000000 0000000000000000 aaaaaaaaaaaaaaaa 00000000
		02000c0044006f006d00610069006e00 01000c00530065007200760065007200 00000000 00000000`), temp)
	lm, nt, sessionBaseKey := v2Responses(responseKey, vecServerChallenge, vecClientChallenge, temp)
	assert.Equal(t, unhex(t, "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"), lm, "LMv2 response")
	assert.Equal(t, unhex(t, "68cd0ab851e51c96aabc927bebef6a1c"), nt[:16], "NTProofStr")
	assert.Equal(t, unhex(t, "8de40ccadbc14a82f15cb0ad0de95ca3"), sessionBaseKey, "SessionBaseKey")
	// MS-NLMP 4.2.4.2.3: the encrypted session key (KeyExchangeKey is the
	// SessionBaseKey for NTLMv2).
	encrypted := rc4Crypt(sessionBaseKey, vecRandomSessionKey)
	assert.Equal(t, unhex(t, "c5dad2544fc9799094ce1ce90bc9d03e"), encrypted, "EncryptedRandomSessionKey")

	// MS-NLMP 4.2.4.3: the whole AUTHENTICATE message, as it is in the
	// specification (its flags and version are its own, not the
	// challenge's).
	auth := &AuthenticateMessage{
		Flags:                     0xe2888235,
		LMChallengeResponse:       lm,
		NTChallengeResponse:       nt,
		Domain:                    vecDomain,
		User:                      vecUser,
		Workstation:               vecWorkstation,
		EncryptedRandomSessionKey: encrypted,
		Version:                   &Version{Major: 5, Minor: 1, Build: 2600, NTLMRevision: 15},
	}
	assert.Equal(t, unhex(t, vecAuthenticateMessage), auth.Marshal())
	parsed, err := ParseAuthenticate(unhex(t, vecAuthenticateMessage))
	require.NoError(t, err)
	assert.Equal(t, auth, parsed)

	// The server side recovers the same exported session key.
	exported, err := acceptV2(ntHash, vecServerChallenge, parsed)
	require.NoError(t, err)
	assert.Equal(t, vecRandomSessionKey, exported)

	// MS-NLMP 4.2.4.4: keys, and GSS_WrapEx of "Plaintext" (sealed, then
	// the signature continuing the same RC4 stream, connection-oriented).
	keys := deriveKeys(exported)
	assert.Equal(t, unhex(t, "4788dc861b4782f35d43fd98fe1a2d39"), keys.ClientSigning, "client signing key")
	assert.Equal(t, unhex(t, "59f600973cc4960a25480a7c196e4c58"), keys.ClientSealing, "client sealing key")
	plaintext := encodeUTF16("Plaintext")
	handle, err := rc4.NewCipher(keys.ClientSealing)
	require.NoError(t, err)
	sealed := make([]byte, len(plaintext))
	handle.XORKeyStream(sealed, plaintext)
	assert.Equal(t, unhex(t, "54e50165bf1936dc996020c1811b0f06fb5f"), sealed, "sealed data")
	sig := macConnectionOriented(keys.ClientSigning, handle, 0, plaintext)
	assert.Equal(t, unhex(t, "01000000 7fb38ec5c55d4976 00000000"), sig[:], "signature")
}

// Recorded by pidgin-sipe (src/core/sip-sec-ntlm-tests.c) between Office
// Communicator 2007 R2 and OCS 2007 R2: user "User", domain "COSMO",
// password "Pa$$word".
const (
	ocsChallenge   = `4E544C4D53535000020000000000000038000000F38298E2DD1BAAF4E7E218D1000000000000000096009600380000000502CE0E0000000F02000A0043004F0053004D004F000100180043004F0053004D004F002D004F00430053002D00520032000400160063006F0073006D006F002E006C006F00630061006C000300300063006F0073006D006F002D006F00630073002D00720032002E0063006F0073006D006F002E006C006F00630061006C000500160063006F0073006D006F002E006C006F00630061006C0000000000`
	ocAuthenticate = `4E544C4D53535000030000001800180072000000C600C6008A0000000A000A00480000000800080052000000180018005A0000001000100050010000558298620502CE0E0000000F43004F0053004D004F00550073006500720043004F0053004D004F002D004F00430053002D0052003200A1E92EFE4E078BF7C5C0049ACC6166C2D6AE875CB0FDAA418DC0C800AE76ECA606D2B9FBEBD04731010100000000000059519A1727B9CA01D6AE875CB0FDAA410000000002000A0043004F0053004D004F000100180043004F0053004D004F002D004F00430053002D00520032000400160063006F0073006D006F002E006C006F00630061006C000300300063006F0073006D006F002D006F00630073002D00720032002E0063006F0073006D006F002E006C006F00630061006C000500160063006F0073006D006F002E006C006F00630061006C00000000000000000031CB739E1CA80A498591E8AE797115E4`
)

// ocsSession returns the server's session of the recorded sign-in.
func ocsSession(t *testing.T) *Session {
	t.Helper()
	challenge, err := ParseChallenge(unhex(t, ocsChallenge))
	require.NoError(t, err)
	assert.Equal(t, Flag(0xE29882F3), challenge.Flags)
	assert.Equal(t, ServerFlags, challenge.Flags, "our server sends what OCS sends")
	srv := &Server{NTHash: func(user, domain string) ([]byte, bool) {
		return NTOWFv1("Pa$$word"), user == "User" && domain == "COSMO"
	}}
	s, err := srv.Accept(challenge, unhex(t, ocAuthenticate))
	require.NoError(t, err)
	return s
}

func TestRecordedCommunicatorSignIn(t *testing.T) {
	auth, err := ParseAuthenticate(unhex(t, ocAuthenticate))
	require.NoError(t, err)
	assert.Equal(t, ClientFlags, auth.Flags, "our client answers as Communicator does")
	assert.Equal(t, "COSMO-OCS-R2", auth.Workstation)

	s := ocsSession(t)
	assert.Equal(t, "User", s.User)
	// The signatures Communicator and OCS exchanged right after, with
	// NTLM sequence number 100 (0x64) as in every SIP signature.
	request := []byte("<NTLM><13317733><1><SIP Communications Service><cosmo-ocs-r2.cosmo.local><4037df9284354df39065195bd57a4b14><3><REGISTER><sip:user@cosmo.local><3e49177a52><sip:user@cosmo.local><><><><>")
	require.NoError(t, s.Verify(100, request, unhex(t, "0100000029618e9651b65a7764000000")))
	response := []byte("<NTLM><9616454F><1><SIP Communications Service><cosmo-ocs-r2.cosmo.local><4037df9284354df39065195bd57a4b14><3><REGISTER><sip:user@cosmo.local><3e49177a52><sip:user@cosmo.local><5E61CCD925D17E043D9A74835A88F664><><><7200><200>")
	sig := s.Sign(100, response)
	assert.Equal(t, unhex(t, "01000000E615438A917661BE64000000"), sig[:])

	tampered := bytes.Replace(request, []byte("<3>"), []byte("<4>"), 1)
	assert.ErrorIs(t, s.Verify(100, tampered, unhex(t, "0100000029618e9651b65a7764000000")), ErrBadSignature)
}

func TestWrongPasswordRefused(t *testing.T) {
	challenge, err := ParseChallenge(unhex(t, ocsChallenge))
	require.NoError(t, err)
	srv := &Server{NTHash: func(string, string) ([]byte, bool) { return NTOWFv1("Password"), true }}
	_, err = srv.Accept(challenge, unhex(t, ocAuthenticate))
	assert.ErrorIs(t, err, ErrAuthenticationFailed)

	unknown := &Server{NTHash: func(string, string) ([]byte, bool) { return nil, false }}
	_, err = unknown.Accept(challenge, unhex(t, ocAuthenticate))
	assert.ErrorIs(t, err, ErrAuthenticationFailed)
}

func TestClientServerRoundTrip(t *testing.T) {
	srv := &Server{NetBIOSDomain: "CONTOSO", NetBIOSComputer: "FE01", DNSDomain: "contoso.com", NTHash: func(user, domain string) ([]byte, bool) {
		return NTOWFv1("s3cret"), user == "alice" && domain == "CONTOSO"
	}}
	ch, err := srv.Challenge()
	require.NoError(t, err)
	cl := &Client{User: "alice", Domain: "CONTOSO", Workstation: "BRIDGE", NTHash: NTOWFv1("s3cret"),
		Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }}
	authMsg, cs, err := cl.Authenticate(ch.Marshal())
	require.NoError(t, err)
	ss, err := srv.Accept(ch, authMsg)
	require.NoError(t, err)

	msg := []byte("<NTLM><1234abcd><1><...>")
	sig := cs.Sign(100, msg)
	require.NoError(t, ss.Verify(100, msg, sig[:]))
	assert.ErrorIs(t, cs.Verify(100, msg, sig[:]), ErrBadSignature, "a client signature is not a server's")
	back := ss.Sign(100, msg)
	require.NoError(t, cs.Verify(100, msg, back[:]))
	assert.NotEqual(t, sig, back)

	// Another challenge: the old answer does not fit it.
	ch2, err := srv.Challenge()
	require.NoError(t, err)
	_, err = srv.Accept(ch2, authMsg)
	assert.ErrorIs(t, err, ErrAuthenticationFailed)
}

func TestClientRefusesWeakChallenges(t *testing.T) {
	ch, err := ParseChallenge(unhex(t, vecChallengeMessage)) // connection-oriented
	require.NoError(t, err)
	cl := &Client{User: "u", NTHash: NTOWFv1("p")}
	_, _, err = cl.Authenticate(ch.Marshal())
	assert.ErrorIs(t, err, ErrUnsupported)

	ch.Flags = ServerFlags &^ NegotiateExtendedSessionSecurity
	_, _, err = cl.Authenticate(ch.Marshal())
	assert.ErrorIs(t, err, ErrUnsupported)
}

func TestParseRejectsMalformed(t *testing.T) {
	good := unhex(t, vecAuthenticateMessage)
	cases := map[string]func([]byte) []byte{
		"truncated header":   func(b []byte) []byte { return b[:40] },
		"bad signature":      func(b []byte) []byte { b[0] = 'X'; return b },
		"wrong type":         func(b []byte) []byte { b[8] = 2; return b },
		"offset past end":    func(b []byte) []byte { b[16] = 0xff; b[17] = 0x01; return b },
		"offset in header":   func(b []byte) []byte { b[16] = 0x10; return b },
		"length past end":    func(b []byte) []byte { b[20] = 0xff; b[22] = 0xff; return b },
		"maxlen below len":   func(b []byte) []byte { b[14] = 0x01; return b },
		"odd UTF-16":         func(b []byte) []byte { b[36] = 7; b[38] = 7; return b },
		"session key length": func(b []byte) []byte { b[52] = 8; b[54] = 8; return b },
		"not unicode":        func(b []byte) []byte { b[60] &^= 1; return b },
		"too long":           func(b []byte) []byte { return append(b, make([]byte, MaxMessageSize)...) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseAuthenticate(mutate(bytes.Clone(good)))
			assert.ErrorIs(t, err, ErrMalformed)
		})
	}
	_, err := ParseAVPairs([]byte{2, 0, 4, 0, 'a', 0})
	assert.ErrorIs(t, err, ErrMalformed, "AV_PAIR longer than the list")
	_, err = ParseAVPairs([]byte{2, 0, 0, 0})
	assert.ErrorIs(t, err, ErrMalformed, "no MsvAvEOL")
	assert.True(t, errors.Is(func() error { _, err := ParseChallenge(unhex(t, vecAuthenticateMessage)); return err }(), ErrMalformed))
}

func TestNegotiateRoundTrip(t *testing.T) {
	m := &NegotiateMessage{Flags: ClientFlags | NegotiateOEMDomainSupplied, Domain: "CONTOSO", Workstation: "BRIDGE", Version: defaultVersion()}
	got, err := ParseNegotiate(m.Marshal())
	require.NoError(t, err)
	assert.Equal(t, m, got)
}

func FuzzParseNTLM(f *testing.F) {
	f.Add(unhex(f, vecChallengeMessage))
	f.Add(unhex(f, vecAuthenticateMessage))
	f.Add(unhex(f, ocsChallenge))
	f.Add(unhex(f, ocAuthenticate))
	f.Add((&NegotiateMessage{Flags: ClientFlags, Version: defaultVersion()}).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := ParseChallenge(b); err == nil {
			again, err := ParseChallenge(m.Marshal())
			if err != nil {
				t.Fatalf("re-parsing an encoded challenge: %v", err)
			}
			if !bytes.Equal(again.TargetInfo, m.TargetInfo) || again.TargetName != m.TargetName {
				t.Fatalf("challenge changed in a round trip")
			}
		}
		if m, err := ParseAuthenticate(b); err == nil {
			if _, err := ParseAuthenticate(m.Marshal()); err != nil {
				t.Fatalf("re-parsing an encoded authenticate message: %v", err)
			}
			_, _ = acceptV2(make([]byte, 16), [8]byte{}, m)
		}
		if m, err := ParseNegotiate(b); err == nil {
			if _, err := ParseNegotiate(m.Marshal()); err != nil {
				t.Fatalf("re-parsing an encoded negotiate message: %v", err)
			}
		}
	})
}
