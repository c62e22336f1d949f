package sipae

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/ntlm"
)

// headers is a minimal SIP header reader for the tests: the first value
// of each header by name.
func headers(msg string) func(string) string {
	h := map[string]string{}
	lines := strings.Split(strings.SplitN(msg, "\r\n\r\n", 2)[0], "\r\n")
	for _, l := range lines[1:] {
		name, val, _ := strings.Cut(l, ":")
		if _, ok := h[strings.ToLower(name)]; !ok {
			h[strings.ToLower(name)] = strings.TrimSpace(val)
		}
	}
	return func(name string) string { return h[strings.ToLower(name)] }
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

// A REGISTER and its 200 recorded by pidgin-sipe (src/core/
// sip-sec-ntlm-tests.c) between Office Communicator 2007 R2 and OCS 2007
// R2; user "User", domain "COSMO", password "Pa$$word". The CHALLENGE is
// the one the REGISTER's gssapi-data answers.
const (
	recordedChallenge = `4E544C4D53535000020000000000000038000000F38298E2DD1BAAF4E7E218D1000000000000000096009600380000000502CE0E0000000F02000A0043004F0053004D004F000100180043004F0053004D004F002D004F00430053002D00520032000400160063006F0073006D006F002E006C006F00630061006C000300300063006F0073006D006F002D006F00630073002D00720032002E0063006F0073006D006F002E006C006F00630061006C000500160063006F0073006D006F002E006C006F00630061006C0000000000`
	recordedRegister  = "REGISTER sip:cosmo.local SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS 192.168.172.6:12723\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:user@cosmo.local>;tag=3e49177a52;epid=c8ca638a15\r\n" +
		"To: <sip:user@cosmo.local>\r\n" +
		"Call-ID: 4037df9284354df39065195bd57a4b14\r\n" +
		"CSeq: 3 REGISTER\r\n" +
		"Contact: <sip:192.168.172.6:12723;transport=tls;ms-opaque=fad3dfab32>;methods=\"INVITE, MESSAGE, INFO, OPTIONS, BYE, CANCEL, NOTIFY, ACK, REFER, BENOTIFY\";proxy=replace;+sip.instance=\"<urn:uuid:34D859DB-6585-5F91-A3B4-DE853C15347D>\"\r\n" +
		"User-Agent: UCCAPI/3.5.6907.0 OC/3.5.6907.0 (Microsoft Office Communicator 2007 R2)\r\n" +
		"Supported: gruu-10, adhoclist, msrtc-event-categories\r\n" +
		"Supported: ms-forking\r\n" +
		"ms-keep-alive: UAC;hop-hop=yes\r\n" +
		"Event: registration\r\n" +
		"Proxy-Authorization: NTLM qop=\"auth\", realm=\"SIP Communications Service\", opaque=\"2BDBAC9D\", targetname=\"cosmo-ocs-r2.cosmo.local\", version=4, gssapi-data=\"TlRMTVNTUAADAAAAGAAYAHIAAADGAMYAigAAAAoACgBIAAAACAAIAFIAAAAYABgAWgAAABAAEABQAQAAVYKYYgUCzg4AAAAPQwBPAFMATQBPAFUAcwBlAHIAQwBPAFMATQBPAC0ATwBDAFMALQBSADIAoeku/k4Hi/fFwASazGFmwtauh1yw/apBjcDIAK527KYG0rn769BHMQEBAAAAAAAAWVGaFye5ygHWrodcsP2qQQAAAAACAAoAQwBPAFMATQBPAAEAGABDAE8AUwBNAE8ALQBPAEMAUwAtAFIAMgAEABYAYwBvAHMAbQBvAC4AbABvAGMAYQBsAAMAMABjAG8AcwBtAG8ALQBvAGMAcwAtAHIAMgAuAGMAbwBzAG0AbwAuAGwAbwBjAGEAbAAFABYAYwBvAHMAbQBvAC4AbABvAGMAYQBsAAAAAAAAAAAAMctznhyoCkmFkeiueXEV5A==\", crand=\"13317733\", cnum=\"1\", response=\"0100000029618e9651b65a7764000000\"\r\n" +
		"Content-Length: 0\r\n\r\n"
	recordedOK = "SIP/2.0 200 OK\r\n" +
		"ms-keep-alive: UAS; tcp=no; hop-hop=yes; end-end=no; timeout=300\r\n" +
		"Authentication-Info: NTLM rspauth=\"01000000E615438A917661BE64000000\", srand=\"9616454F\", snum=\"1\", opaque=\"2BDBAC9D\", qop=\"auth\", targetname=\"cosmo-ocs-r2.cosmo.local\", realm=\"SIP Communications Service\"\r\n" +
		"From: \"User\"<sip:user@cosmo.local>;tag=3e49177a52;epid=c8ca638a15\r\n" +
		"To: <sip:user@cosmo.local>;tag=5E61CCD925D17E043D9A74835A88F664\r\n" +
		"Call-ID: 4037df9284354df39065195bd57a4b14\r\n" +
		"CSeq: 3 REGISTER\r\n" +
		"Via: SIP/2.0/TLS 192.168.172.6:12723;ms-received-port=12723;ms-received-cid=2600\r\n" +
		"Expires: 7200\r\n" +
		"Server: RTC/3.5\r\n" +
		"Content-Length: 0\r\n\r\n"
)

func TestRecordedSignatureBuffers(t *testing.T) {
	reg, err := FieldsFrom(headers(recordedRegister), 0)
	require.NoError(t, err)
	auth, err := ParseHeader(headers(recordedRegister)("Proxy-Authorization"))
	require.NoError(t, err)
	assert.Equal(t, "<NTLM><13317733><1><SIP Communications Service><cosmo-ocs-r2.cosmo.local><4037df9284354df39065195bd57a4b14><3><REGISTER><sip:user@cosmo.local><3e49177a52><sip:user@cosmo.local><><><><>",
		string(signatureBuffer(auth.Version, SchemeNTLM, auth.CRand, auth.CNum, auth.Realm, auth.TargetName, reg)))

	ok, err := FieldsFrom(headers(recordedOK), 200)
	require.NoError(t, err)
	info, err := ParseHeader(headers(recordedOK)("Authentication-Info"))
	require.NoError(t, err)
	assert.Equal(t, "<NTLM><9616454F><1><SIP Communications Service><cosmo-ocs-r2.cosmo.local><4037df9284354df39065195bd57a4b14><3><REGISTER><sip:user@cosmo.local><3e49177a52><sip:user@cosmo.local><5E61CCD925D17E043D9A74835A88F664><><><7200><200>",
		string(signatureBuffer(4, SchemeNTLM, info.SRand, info.SNum, info.Realm, info.TargetName, ok)))

	// The server side accepts the recorded AUTHENTICATE and the signed
	// REGISTER that carried it, once.
	challenge, err := ntlm.ParseChallenge(unhex(t, recordedChallenge))
	require.NoError(t, err)
	srv := &ntlm.Server{NTHash: func(user, domain string) ([]byte, bool) { return ntlm.NTOWFv1("Pa$$word"), true }}
	session, err := srv.Accept(challenge, auth.GSSAPIData)
	require.NoError(t, err)
	sa := newSA(session, false, Realm, "cosmo-ocs-r2.cosmo.local", "2BDBAC9D", 4, nil)
	require.NoError(t, sa.Verify(reg, auth))
	assert.ErrorIs(t, sa.Verify(reg, auth), ErrReplay)
}

func TestHandshakeAndSigning(t *testing.T) {
	const target = "fe01.contoso.com"
	users := map[string]string{"alice": "correct horse"}
	ntlmServer := &ntlm.Server{NetBIOSDomain: "CONTOSO", NetBIOSComputer: "FE01", NTHash: func(user, domain string) ([]byte, bool) {
		p, ok := users[user]
		return ntlm.NTOWFv1(p), ok && domain == "CONTOSO"
	}}
	server := NewServer(ntlmServer)
	client := NewClient("alice", "CONTOSO", "correct horse")

	// 401 to the unauthenticated REGISTER: NTLM offered.
	offer, err := ParseHeader((&Params{Scheme: SchemeNTLM, Realm: Realm, TargetName: target, Version: ProtocolVersion}).String())
	require.NoError(t, err)
	mech, ir, err := client.Start()
	require.NoError(t, err)
	assert.Equal(t, "NTLM", mech)
	first := Credentials(offer, ir).String()
	assert.Equal(t, `NTLM qop="auth", realm="SIP Communications Service", targetname="fe01.contoso.com", gssapi-data="", version=4`, first)

	// The server reads gssapi-data="" and answers with its CHALLENGE.
	got, err := ParseHeader(first)
	require.NoError(t, err)
	require.True(t, got.HasGSSAPIData)
	token, done, err := server.Next(got.GSSAPIData)
	require.NoError(t, err)
	require.False(t, done)
	challengeHeader := &Params{Scheme: SchemeNTLM, Opaque: "1A2B3C4D", GSSAPIData: token, TargetName: target, Realm: Realm, Version: ProtocolVersion}

	// The client answers and signs the REGISTER carrying the AUTHENTICATE.
	challenge, err := ParseHeader(challengeHeader.String())
	require.NoError(t, err)
	answer, err := client.Next(challenge.GSSAPIData)
	require.NoError(t, err)
	csa, err := client.SA(challenge)
	require.NoError(t, err)
	register := Fields{CallID: "c1", CSeq: 2, Method: "REGISTER", FromURI: "sip:alice@contoso.com", FromTag: "f1", ToURI: "sip:alice@contoso.com"}
	sig, err := csa.Sign(register)
	require.NoError(t, err)
	authz := Credentials(challenge, answer)
	authz.CRand, authz.CNum, authz.Response = sig.CRand, sig.CNum, sig.Response
	assert.Equal(t, uint32(1), authz.CNum)

	received, err := ParseHeader(authz.String())
	require.NoError(t, err)
	_, done, err = server.Next(received.GSSAPIData)
	require.NoError(t, err)
	require.True(t, done)
	ssa, err := server.SA(Realm, target, "1A2B3C4D", ProtocolVersion)
	require.NoError(t, err)
	user, domain := ssa.User()
	assert.Equal(t, [2]string{"alice", "CONTOSO"}, [2]string{user, domain})
	require.NoError(t, ssa.Verify(register, received))

	// The 200 is signed by the server and verified by the client.
	ok := register
	ok.ToTag, ok.Expires, ok.StatusCode = "t1", "7200", 200
	info, err := ssa.Sign(ok)
	require.NoError(t, err)
	infoHeader := info.String()
	assert.Contains(t, infoHeader, `snum="1"`)
	parsedInfo, err := ParseHeader(infoHeader)
	require.NoError(t, err)
	require.NoError(t, csa.Verify(ok, parsedInfo))

	// A tampered message, a replayed cnum and the server's own signature
	// sent back are refused.
	tampered := ok
	tampered.StatusCode = 403
	assert.ErrorIs(t, csa.Verify(tampered, parsedInfo), ErrBadSignature)
	assert.ErrorIs(t, csa.Verify(ok, parsedInfo), ErrReplay)
	assert.ErrorIs(t, ssa.Verify(register, received), ErrReplay)

	// Later requests: cnum counts up; out of order within the window is
	// fine, once.
	msg := Fields{CallID: "c2", CSeq: 1, Method: "MESSAGE", FromURI: "sip:alice@contoso.com", FromTag: "f2", ToURI: "sip:bob@contoso.com"}
	s2, err := csa.Sign(msg)
	require.NoError(t, err)
	s3, err := csa.Sign(msg)
	require.NoError(t, err)
	assert.Equal(t, []uint32{2, 3}, []uint32{s2.CNum, s3.CNum})
	require.NoError(t, ssa.Verify(msg, s3))
	require.NoError(t, ssa.Verify(msg, s2))
	assert.ErrorIs(t, ssa.Verify(msg, s2), ErrReplay)
	other := msg
	other.ToURI = "sip:mallory@contoso.com"
	s4, err := csa.Sign(msg)
	require.NoError(t, err)
	assert.ErrorIs(t, ssa.Verify(other, s4), ErrBadSignature)
	assert.ErrorIs(t, ssa.Verify(msg, &Params{Scheme: SchemeNTLM}), ErrNotSigned)
	wrongRealm := *s4
	wrongRealm.TargetName = "fe02.contoso.com"
	assert.ErrorIs(t, ssa.Verify(msg, &wrongRealm), ErrWrongSA)
}

func TestWrongPasswordRefused(t *testing.T) {
	server := NewServer(&ntlm.Server{NetBIOSDomain: "CONTOSO", NetBIOSComputer: "FE01", NTHash: func(string, string) ([]byte, bool) {
		return ntlm.NTOWFv1("right"), true
	}})
	client := NewClient("alice", "CONTOSO", "wrong")
	_, ir, err := client.Start()
	require.NoError(t, err)
	challenge, _, err := server.Next(ir)
	require.NoError(t, err)
	answer, err := client.Next(challenge)
	require.NoError(t, err)
	_, done, err := server.Next(answer)
	assert.ErrorIs(t, err, ntlm.ErrAuthenticationFailed)
	assert.False(t, done)
	_, err = server.SA(Realm, "fe01", "", ProtocolVersion)
	assert.ErrorIs(t, err, ErrHandshake)
}

func TestHandshakeOrder(t *testing.T) {
	client := NewClient("a", "", "p")
	_, err := client.Next([]byte("x"))
	assert.ErrorIs(t, err, ErrHandshake)
	_, err = client.SA(&Params{})
	assert.ErrorIs(t, err, ErrHandshake)
	server := NewServer(&ntlm.Server{})
	_, _, err = server.Next([]byte("NTLMSSP\x00"))
	assert.ErrorIs(t, err, ErrHandshake, "connection-less: no NEGOTIATE")
}

func TestParseHeader(t *testing.T) {
	p, err := ParseHeader(`NTLM opaque="4452DFB0", gssapi-data="TlRMTVNTUAACAAAA", targetname="ocs1.contoso.com", realm="SIP Communications Service", version=4, sts-uri="https://x/"`)
	require.NoError(t, err)
	assert.Equal(t, &Params{Scheme: "NTLM", Opaque: "4452DFB0", GSSAPIData: []byte("NTLMSSP\x00\x02\x00\x00\x00"), HasGSSAPIData: true,
		TargetName: "ocs1.contoso.com", Realm: Realm, Version: 4}, p)

	p, err = ParseHeader(`Kerberos realm="a\"b\\c" , targetname = "sip/fe" ,version=3`)
	require.NoError(t, err)
	assert.Equal(t, `a"b\c`, p.Realm)
	assert.Equal(t, "sip/fe", p.TargetName)
	again, err := ParseHeader(p.String())
	require.NoError(t, err)
	assert.Equal(t, p, again)

	for _, bad := range []string{
		``, `NTLM realm`, `NTLM realm="x`, `NTLM realm="x" targetname="y"`, `NTLM realm="a", realm="b"`,
		`NTLM version=x`, `NTLM version=0`, `NTLM cnum="0"`, `NTLM cnum="4294967296"`, `NTLM crand="xyz"`,
		`NTLM response="0100"`, `NTLM rspauth="zz000000000000000000000000000000"`, `NTLM gssapi-data="***"`,
		`NTLM realm=a b`, "NTLM realm=\"a\r\nb\"", `"NTLM" realm="x"`, strings.Repeat("a", MaxHeaderSize+1),
	} {
		_, err := ParseHeader(bad)
		assert.ErrorIs(t, err, ErrMalformedHeader, "%q", bad)
	}
}

func TestFieldsFrom(t *testing.T) {
	h := map[string]string{
		"i": "abc", "f": "sip:alice@contoso.com;tag=1;epid=2", "t": `"Bob" <sip:bob@contoso.com;transport=tls>;tag=9`,
		"CSeq": "7 MESSAGE", "P-Asserted-Identity": `"Bob"<sip:bob@contoso.com>, <tel:+4930123>`,
	}
	f, err := FieldsFrom(func(n string) string { return h[n] }, 0)
	require.NoError(t, err)
	assert.Equal(t, Fields{CallID: "abc", CSeq: 7, Method: "MESSAGE", FromURI: "sip:alice@contoso.com", FromTag: "1",
		ToURI: "sip:bob@contoso.com;transport=tls", ToTag: "9", AssertedID: "sip:bob@contoso.com", AssertedTel: "tel:+4930123"}, f)

	for name, v := range map[string]string{"CSeq": "x MESSAGE", "i": "", "t": "<sip:x"} {
		bad := map[string]string{}
		for k, val := range h {
			bad[k] = val
		}
		bad[name] = v
		_, err := FieldsFrom(func(n string) string { return bad[n] }, 0)
		assert.Error(t, err, name)
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add(headers(recordedRegister)("Proxy-Authorization"))
	f.Add(headers(recordedOK)("Authentication-Info"))
	f.Add(`NTLM realm="SIP Communications Service", targetname="fe", version=4`)
	f.Add(`Kerberos realm="a\"b", targetname="sip/fe"`)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseHeader(s)
		if err != nil {
			return
		}
		again, err := ParseHeader(p.String())
		if err != nil {
			t.Fatalf("re-parsing %q (from %q): %v", p.String(), s, err)
		}
		if again.String() != p.String() {
			t.Fatalf("round trip changed %q to %q", p.String(), again.String())
		}
	})
}

func TestConcurrentSigning(t *testing.T) {
	srv := &ntlm.Server{NetBIOSDomain: "D", NetBIOSComputer: "FE", NTHash: func(string, string) ([]byte, bool) { return ntlm.NTOWFv1("p"), true }}
	server := NewServer(srv)
	client := NewClient("u", "D", "p")
	_, ir, err := client.Start()
	require.NoError(t, err)
	challenge, _, err := server.Next(ir)
	require.NoError(t, err)
	answer, err := client.Next(challenge)
	require.NoError(t, err)
	_, _, err = server.Next(answer)
	require.NoError(t, err)
	csa, err := client.SA(&Params{Realm: Realm, TargetName: "fe", Version: ProtocolVersion})
	require.NoError(t, err)
	ssa, err := server.SA(Realm, "fe", "", ProtocolVersion)
	require.NoError(t, err)

	// Signed from many goroutines, each number is used once, and all of
	// them verify in any order within the window.
	const n = replayWindow
	f := Fields{CallID: "c", CSeq: 1, Method: "MESSAGE", FromURI: "sip:u@d", FromTag: "1", ToURI: "sip:v@d"}
	sigs := make([]*Params, n)
	done := make(chan struct{})
	for i := range sigs {
		go func() {
			defer func() { done <- struct{}{} }()
			sigs[i], _ = csa.Sign(f)
		}()
	}
	for range sigs {
		<-done
	}
	seen := map[uint32]bool{}
	for i := len(sigs) - 1; i >= 0; i-- {
		require.NotNil(t, sigs[i])
		assert.False(t, seen[sigs[i].CNum], "cnum %d used twice", sigs[i].CNum)
		seen[sigs[i].CNum] = true
		assert.NoError(t, ssa.Verify(f, sigs[i]))
	}
	for _, s := range sigs {
		assert.ErrorIs(t, ssa.Verify(f, s), ErrReplay)
	}
	// The number is signed: changing it breaks the signature.
	next, err := csa.Sign(f)
	require.NoError(t, err)
	changed := *next
	changed.CNum++
	assert.ErrorIs(t, ssa.Verify(f, &changed), ErrBadSignature)
}

func TestReplayWindow(t *testing.T) {
	sa := &SA{}
	require.NoError(t, sa.accept(100))
	assert.ErrorIs(t, sa.accept(100-replayWindow), ErrReplay, "older than the window, though unseen")
	require.NoError(t, sa.accept(100-replayWindow+1))
	assert.ErrorIs(t, sa.accept(100-replayWindow+1), ErrReplay)
	require.NoError(t, sa.accept(300))
	assert.ErrorIs(t, sa.accept(101), ErrReplay, "after a jump, what lies more than the window below is too old")
	require.NoError(t, sa.accept(250))
	assert.ErrorIs(t, sa.accept(250), ErrReplay)
	assert.ErrorIs(t, sa.accept(300), ErrReplay)
}
