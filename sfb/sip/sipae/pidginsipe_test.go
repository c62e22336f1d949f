package sipae

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pidginsipe/recorded"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/ntlm"
)

// Our server side accepts the AUTHENTICATE pidgin-sipe sent in answer to
// the recorded CHALLENGE and verifies the signature of every later message
// pidgin-sipe sent: REGISTER, SUBSCRIBE (also inside a dialog, whose Via
// has no branch), SERVICE, INVITE, ACK, INFO, MESSAGE, BYE, the responses
// to the server's NOTIFY, MESSAGE, INVITE and BYE, and the sign-out.
func TestPidginSipeSession(t *testing.T) {
	files := recorded.Messages(t, "*-client-*.sip")
	require.Greater(t, len(files), 20)

	challenge, err := ntlm.ParseChallenge(unhex(t, recorded.Value(t, "ntlm-challenge")))
	require.NoError(t, err)
	password := recorded.Value(t, "password")
	// The server's random source yields the recorded server challenge, so
	// the CHALLENGE issued is the one pidgin-sipe answered.
	server := NewServer(&ntlm.Server{NetBIOSDomain: "CONTOSO", NetBIOSComputer: "FE01",
		Rand: bytes.NewReader(append(challenge.ServerChallenge[:], make([]byte, 4096)...)),
		NTHash: func(user, domain string) ([]byte, bool) {
			return ntlm.NTOWFv1(password), user == "alice" && domain == "CONTOSO"
		}})
	_, _, err = server.Next(nil)
	require.NoError(t, err)

	var sa *SA
	methods := map[string]bool{}
	for _, f := range files {
		msg := string(f.Raw)
		h := headers(msg)
		auth := h("Authorization")
		if sa == nil && !strings.Contains(auth, "gssapi-data=\"T") {
			continue // the unauthenticated REGISTER and gssapi-data=""
		}
		require.NotEmpty(t, auth, "%s has no Authorization", f)
		p, err := ParseHeader(auth)
		require.NoError(t, err, f)
		if sa == nil {
			_, done, err := server.Next(p.GSSAPIData)
			require.NoError(t, err, f)
			require.True(t, done)
			sa, err = server.SA(Realm, recorded.Value(t, "server"), p.Opaque, ProtocolVersion)
			require.NoError(t, err)
			user, domain := sa.User()
			assert.Equal(t, [2]string{"alice", "CONTOSO"}, [2]string{user, domain})
		}
		status := 0
		start := strings.SplitN(msg, "\r\n", 2)[0]
		if strings.HasPrefix(start, "SIP/2.0 ") {
			status = int(start[8]-'0')*100 + int(start[9]-'0')*10 + int(start[10]-'0')
		}
		fields, err := FieldsFrom(h, status)
		require.NoError(t, err, f)
		require.NoError(t, sa.Verify(fields, p), "signature of %s", f.Name)
		methods[fields.Method] = true
	}
	require.NotNil(t, sa, "no AUTHENTICATE among the recorded messages")
	for _, m := range []string{"REGISTER", "SUBSCRIBE", "SERVICE", "INVITE", "ACK", "INFO", "MESSAGE", "BYE", "NOTIFY"} {
		assert.True(t, methods[m], "no signed %s verified", m)
	}

	// A changed message no longer verifies.
	raw := files[len(files)-1].Raw
	tampered := strings.Replace(string(raw), "Expires: 0", "Expires: 3600", 1)
	require.NotEqual(t, string(raw), tampered)
	fields, err := FieldsFrom(headers(tampered), 0)
	require.NoError(t, err)
	p, err := ParseHeader(headers(tampered)("Authorization"))
	require.NoError(t, err)
	assert.ErrorIs(t, sa.Verify(fields, p), ErrBadSignature)
}
