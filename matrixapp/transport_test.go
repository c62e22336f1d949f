package matrixapp

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/ucwa"
)

// network.transport picks the transport; a name the bridge does not know
// is a configuration error in the bridge's words, before anything starts.
func TestUnknownTransportIsAConfigurationError(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, func(text string) string {
		return strings.Replace(text, "transport: ucwa", "transport: xmpp", 1)
	})
	out, err := run(t, dir, nil, "-g", "-c", "config.yaml", "-r", "registration.yaml")
	require.NoError(t, err, string(out))
	out, err = run(t, dir, nil, "-c", "config.yaml", "-n")
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, string(out))
	assert.Equal(t, 11, exit.ExitCode())
	assert.Contains(t, string(out), `network.transport "xmpp": must be "ucwa" (UCWA 2.0 over HTTPS) or "sip"`)
}

// The transport factory builds what the configuration names.
func TestTransportFactoryBuildsTheNamedTransport(t *testing.T) {
	factory := transport(func() sfb.Observer { return nil })
	cfg := sfb.DefaultConfig()
	tr, err := factory(cfg, zerolog.Nop())
	require.NoError(t, err)
	assert.IsType(t, &ucwa.Transport{}, tr)

	cfg.Transport = sfb.TransportSIP
	tr, err = factory(cfg, zerolog.Nop())
	require.NoError(t, err)
	assert.IsType(t, &sip.Transport{}, tr)

	// The SIP section is checked when the transport is made.
	cfg.SIP.Mode = sfb.SIPModeTrusted
	_, err = factory(cfg, zerolog.Nop())
	assert.ErrorContains(t, err, "trusted mode needs sip.cert_file and sip.key_file")

	cfg.Transport = "xmpp"
	_, err = factory(cfg, zerolog.Nop())
	assert.ErrorContains(t, err, `network.transport "xmpp"`)
}
