package sfb

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSIPServer(t *testing.T) {
	for in, want := range map[string]SIPServer{
		"sip.contoso.com:5061":      {Host: "sip.contoso.com", Port: 5061},
		"tls://sip.contoso.com:443": {Host: "sip.contoso.com", Port: 443},
		"sip.contoso.com":           {Host: "sip.contoso.com", Port: 5061},
		"tcp://127.0.0.1:5060":      {Host: "127.0.0.1", Port: 5060, TCP: true},
		"TCP://127.0.0.1":           {Host: "127.0.0.1", Port: 5060, TCP: true},
		"[::1]:5061":                {Host: "::1", Port: 5061},
	} {
		c := SIPConfig{Server: in}
		got, ok, err := c.ParseServer()
		require.NoError(t, err, in)
		assert.True(t, ok)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"sip.contoso.com:x", "host:0", "host:70000", "http://x/y:5061", ":5061"} {
		c := SIPConfig{Server: in}
		_, _, err := c.ParseServer()
		assert.Error(t, err, in)
	}
	_, ok, err := (&SIPConfig{}).ParseServer()
	assert.NoError(t, err)
	assert.False(t, ok)
}

// The simulator's sign-in rate is refused unless the SIP server is plain
// TCP on loopback with allow_insecure_loopback.
func TestSIPSimulatorSignInRate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Transport, cfg.SimulatorSignInRate, cfg.SignInRate = TransportSIP, true, 500
	cfg.SIP.Server, cfg.AllowInsecureLoopback = "tcp://127.0.0.1:5060", true
	assert.NoError(t, cfg.CheckSignInRate())
	for _, edit := range []func(*Config){
		func(c *Config) { c.SIP.Server = "" },
		func(c *Config) { c.SIP.Server = "127.0.0.1:5061" },
		func(c *Config) { c.SIP.Server = "tcp://sip.contoso.com:5060" },
		func(c *Config) { c.AllowInsecureLoopback = false },
	} {
		c := cfg
		edit(&c)
		assert.Error(t, c.CheckSignInRate())
	}
}
