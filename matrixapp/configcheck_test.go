package matrixapp

import (
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// -g on the example configuration as written says which fields to fill
// in, in the bridge's words.
func TestGenerateRegistrationOnTheExampleSaysWhatToFillIn(t *testing.T) {
	dir := t.TempDir()
	out, err := run(t, dir, nil, "-e", "-c", "config.yaml")
	require.NoError(t, err, string(out))
	out, err = run(t, dir, nil, "-g", "-c", "config.yaml", "-r", "registration.yaml")
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, string(out))
	for _, field := range []string{"homeserver.address", "homeserver.domain", "database.uri", "bridge.permissions", "docs/operator-guide.md"} {
		assert.Contains(t, string(out), field)
	}
	assert.NotContains(t, string(out), "as_token", "-g fills the tokens in itself")
}

// A configuration error is told in the bridge's words, with the operator
// guide, not mautrix's FAQ.
func TestConfigurationErrorsInOwnWords(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, nil)
	out, err := run(t, dir, nil, "-g", "-c", "config.yaml", "-r", "registration.yaml")
	require.NoError(t, err, string(out))

	out, err = run(t, dir, nil, "-c", "config.yaml", "-n")
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, string(out))
	assert.Equal(t, 11, exit.ExitCode())
	assert.Contains(t, string(out), "homeserver.address")
	assert.Contains(t, string(out), "database.uri")
	assert.NotContains(t, string(out), "homeserver.domain", "set by writeConfig")
	assert.Contains(t, string(out), "docs/operator-guide.md")
	assert.NotContains(t, string(out), "docs.mau.fi")
}

func TestParseArgs(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want cliArgs
	}{
		{[]string{"-g"}, cliArgs{configPath: "config.yaml", generate: true}},
		{[]string{"-c", "x.yaml", "-g", "-r", "r.yaml"}, cliArgs{configPath: "x.yaml", generate: true}},
		{[]string{"--config=y.yaml", "--generate-registration"}, cliArgs{configPath: "y.yaml", generate: true}},
		{[]string{"-e", "-c", "-"}, cliArgs{configPath: "-", example: true}},
		{[]string{"-c", "x.yaml"}, cliArgs{configPath: "x.yaml"}},
		{[]string{"--", "-g"}, cliArgs{configPath: "config.yaml"}},
	} {
		assert.Equal(t, tt.want, parseArgs(tt.args), "%v", tt.args)
	}
}

// The example configuration starts without mautrix's warnings.
func TestExampleConfigLoadsWithoutWarnings(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, nil)
	out, err := run(t, dir, nil, "-g", "-c", "config.yaml", "-r", "registration.yaml")
	require.NoError(t, err, string(out))
	assert.NotContains(t, string(out), "Ignoring")
	out, _ = run(t, dir, nil, "-c", "config.yaml", "-n")
	assert.NotContains(t, string(out), "Ignoring")
	assert.NotContains(t, string(out), "WRN")
}
