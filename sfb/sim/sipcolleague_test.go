package sim_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// The scripted colleague greets a user who signs in over SIP as one who
// made their UCWA application available: an INVITE from the colleague with
// the greeting in its Ms-Text-Format, after the 200 to the REGISTER (the
// demo's first message over SIP).
func TestColleagueGreetsSIPUser(t *testing.T) {
	e := newSIPEnv(t, sim.Options{Colleague: "sip:colleague@contoso.com", ColleagueTypingDelay: time.Millisecond}, false)
	c := e.signedIn(t, alice, "alice-pw")

	inv, raw := c.request("INVITE")
	assert.Equal(t, "sip:colleague@contoso.com", inv.From().Address.String(), raw)
	_, body, ok := strings.Cut(hdr(inv)("Ms-Text-Format"), "ms-body=")
	require.True(t, ok, raw)
	body, _, _ = strings.Cut(body, ";")
	text, err := base64.StdEncoding.DecodeString(strings.TrimSpace(body))
	require.NoError(t, err)
	assert.Contains(t, string(text), "Hello Alice Aaling! This is Colleague on Skype for Business.")
}
