package sfb

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// A configuration built in code gets every default a configuration file
// would, and keeps what it sets.
func TestWithDefaults(t *testing.T) {
	want := DefaultConfig()
	want.Transport = "" // chosen by whoever builds the transport
	assert.Equal(t, want, Config{}.WithDefaults())

	c := Config{RequestTimeout: time.Second, SIP: SIPConfig{Mode: SIPModeTrusted, Connections: 2}}.WithDefaults()
	assert.Equal(t, time.Second, c.RequestTimeout)
	assert.Equal(t, SIPModeTrusted, c.SIP.Mode)
	assert.Equal(t, 2, c.SIP.Connections)
	assert.Equal(t, DefaultSIPConfig().RegisterRate, c.SIP.RegisterRate)
}
