package sim_test

import (
	"bytes"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pidginsipe/recorded"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/ntlm"
)

var imMethods = map[sip.RequestMethod]bool{sip.REGISTER: true, sip.INVITE: true, sip.ACK: true, sip.INFO: true, sip.MESSAGE: true, sip.BYE: true}

var statusLine = regexp.MustCompile(`^SIP/2.0 (\d{3}) `)

// TestPidginSipeRecordedSession replays the requests of registration and
// IM pidgin-sipe sent in the recorded session, byte for byte (its
// signatures included), to the simulator: the sign-in (the simulator
// issues the recorded NTLM CHALLENGE and opaque, so the recorded
// AUTHENTICATE and every later signature verify), an IM session with bob
// (INVITE with Ms-Text-Format, ACK, typing INFO, MESSAGE, BYE) and the
// sign-out. Each is answered, signed, with the status the canned Front End
// answered it with. (The presence requests are left out: those inside a
// dialog carry the canned server's tags, which the simulator never gave.)
func TestPidginSipeRecordedSession(t *testing.T) {
	challenge, err := hex.DecodeString(recorded.Value(t, "ntlm-challenge"))
	require.NoError(t, err)
	ch, err := ntlm.ParseChallenge(challenge)
	require.NoError(t, err)
	offer := recorded.Read(t, "004-server-401-register.sip")
	opaque := regexp.MustCompile(`opaque="([0-9A-F]{8})"`).FindSubmatch(offer)
	require.NotNil(t, opaque)
	opaqueBytes, err := hex.DecodeString(string(opaque[1]))
	require.NoError(t, err)
	random := append(append(ch.ServerChallenge[:], opaqueBytes...), make([]byte, 1<<16)...)

	e := newSIPEnv(t, sim.Options{
		Users: []sim.User{
			{URI: "sip:alice@contoso.com", DisplayName: "Alice", Password: recorded.Value(t, "password")},
			{URI: "sip:bob@contoso.com", DisplayName: "Bob", Password: "x"},
			{URI: "sip:carol@contoso.com", DisplayName: "Carol", Password: "x"},
		},
		SIP: sim.SIPOptions{FQDN: recorded.Value(t, "server"), Rand: bytes.NewReader(random)},
	}, false)
	c := e.dial(t, "sip:alice@contoso.com", "")

	answered := map[string]bool{}
	for _, f := range recorded.Messages(t, "*-client-*.sip") {
		if strings.Contains(f.Name, "-client-200-") {
			continue // answers to the canned server's own requests
		}
		raw := f.Raw
		msg, err := sip.ParseMessage(raw)
		require.NoError(t, err, f.Name)
		req := msg.(*sip.Request)
		if !imMethods[req.Method] {
			continue
		}
		_, err = c.nc.Write(raw)
		require.NoError(t, err)
		if req.Method == sip.ACK {
			continue
		}
		want := recordedAnswer(t, f.Name, req)
		res, got := c.response(int(req.CSeq().SeqNo), string(req.Method))
		assert.Equal(t, want, res.StatusCode, "%s answered:\n%s", f.Name, got)
		if res.StatusCode == 200 || res.StatusCode == 202 {
			assert.NotEmpty(t, hdr(res)("Authentication-Info"), "%s: the answer is signed", f.Name)
		}
		answered[string(req.Method)] = true
		if req.Method == sip.REGISTER && res.StatusCode == 200 && hdr(req)("Expires") != "0" {
			assert.Equal(t, 1, e.sim.SIPRegistrations("sip:alice@contoso.com"))
		}
	}
	for _, m := range []string{"REGISTER", "INVITE", "INFO", "MESSAGE", "BYE"} {
		assert.True(t, answered[m], m)
	}
	assert.Equal(t, 0, e.sim.SIPRegistrations("sip:alice@contoso.com"), "signed out")
	got := e.sim.Received("sip:bob@contoso.com")
	require.NotEmpty(t, got)
	assert.Equal(t, "Hello Bob, first message", got[0].Message.Text)
}

// recordedAnswer is the status the canned Front End answered the request
// recorded as name with: the first server response after it with its
// Call-ID and CSeq.
func recordedAnswer(t *testing.T, name string, req *sip.Request) int {
	t.Helper()
	for _, s := range recorded.Messages(t, "*-server-*.sip") {
		if s.Name < name {
			continue
		}
		m := statusLine.FindSubmatch(s.Raw)
		if m == nil {
			continue
		}
		msg, err := sip.ParseMessage(s.Raw)
		require.NoError(t, err, s.Name)
		if msg.CallID().Value() == req.CallID().Value() && msg.CSeq().SeqNo == req.CSeq().SeqNo && msg.CSeq().MethodName == req.Method {
			n, _ := strconv.Atoi(string(m[1]))
			return n
		}
	}
	t.Fatalf("no recorded answer to %s", name)
	return 0
}
