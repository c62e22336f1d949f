package matrixapp

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/id"
)

const goodPickleKey = "0123456789abcdef0123456789abcdef0123456789abcdef"

// safeConfig is encryption and double puppeting set up as
// docs/operator-guide.md says.
func safeConfig() *bridgeconfig.Config {
	cfg := &bridgeconfig.Config{}
	cfg.Homeserver.Domain = "example.org"
	cfg.AppService.ASToken = "the-bridges-own-as-token-0123456789abcdef"
	cfg.AppService.EphemeralEvents = true
	cfg.Encryption.Allow = true
	cfg.Encryption.PickleKey = goodPickleKey
	cfg.Encryption.AllowKeySharing = true
	cfg.Encryption.VerificationLevels.Share = id.TrustStateCrossSignedTOFU
	cfg.DoublePuppet.Secrets = map[string]string{
		"example.org": "as_token:a-second-registrations-token-0123456789",
		// mautrix's example entry for another server stays harmless.
		"example.com": exampleDoublePuppetToken,
	}
	return cfg
}

func TestSafeEncryptionAndDoublePuppetingPass(t *testing.T) {
	assert.Empty(t, unsafeSettings(safeConfig(), savedSettings{pickleKey: goodPickleKey}))
	assert.Empty(t, unsafeSettings(safeConfig(), savedSettings{pickleKey: "generate", pickleKeyFromEnv: true}), "the key comes from the environment")
	off := &bridgeconfig.Config{}
	assert.Empty(t, unsafeSettings(off, savedSettings{pickleKey: "generate"}), "without encryption the pickle key is unused")
}

func TestUnsafeCombinationsAreRefused(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*bridgeconfig.Config, *savedSettings)
		want   string
	}{
		{"default without allow", func(c *bridgeconfig.Config, _ *savedSettings) {
			c.Encryption.Allow, c.Encryption.Default = false, true
		}, "encryption.default and encryption.require need encryption.allow"},
		{"require without default", func(c *bridgeconfig.Config, _ *savedSettings) { c.Encryption.Require = true }, "drop every message"},
		{"pickle key not saved", func(_ *bridgeconfig.Config, s *savedSettings) { s.pickleKey = "generate" }, "was not saved"},
		{"pickle key missing from the file", func(_ *bridgeconfig.Config, s *savedSettings) { s.pickleKey = "" }, "was not saved"},
		{"short pickle key", func(c *bridgeconfig.Config, s *savedSettings) { c.Encryption.PickleKey, s.pickleKey = "short", "short" }, "5 characters"},
		{"appservice mode without ephemeral events", func(c *bridgeconfig.Config, _ *savedSettings) {
			c.Encryption.Appservice, c.AppService.EphemeralEvents = true, false
		}, "appservice.ephemeral_events"},
		{"plaintext mentions", func(c *bridgeconfig.Config, _ *savedSettings) { c.Encryption.PlaintextMentions = true }, "plaintext_mentions"},
		{"key sharing to unverified devices", func(c *bridgeconfig.Config, _ *savedSettings) {
			c.Encryption.VerificationLevels.Share = id.TrustStateUnset
		}, "unverified with allow_key_sharing"},
		{"key sharing trusting any cross-signing", func(c *bridgeconfig.Config, _ *savedSettings) {
			c.Encryption.VerificationLevels.Share = id.TrustStateCrossSignedUntrusted
		}, "cross-signed-untrusted with allow_key_sharing"},
		{"double puppet secret of another kind", func(c *bridgeconfig.Config, _ *savedSettings) {
			c.DoublePuppet.Secrets["example.org"] = "a-shared-secret-of-the-old-module"
		}, "only uses appservice tokens"},
		{"the example's double puppet token", func(c *bridgeconfig.Config, _ *savedSettings) {
			c.DoublePuppet.Secrets["example.org"] = exampleDoublePuppetToken
		}, "still the example's token"},
		{"the bridge's own token for double puppeting", func(c *bridgeconfig.Config, _ *savedSettings) {
			c.DoublePuppet.Secrets["example.org"] = asTokenPrefix + c.AppService.ASToken
		}, "needs a second registration"},
		{"short double puppet token", func(c *bridgeconfig.Config, _ *savedSettings) {
			c.DoublePuppet.Secrets["example.org"] = "as_token:guessable"
		}, "9 characters may act as every user"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := safeConfig()
			saved := savedSettings{pickleKey: goodPickleKey}
			tt.change(cfg, &saved)
			problems := unsafeSettings(cfg, saved)
			require.Len(t, problems, 1, "%q", problems)
			assert.Contains(t, problems[0], tt.want)
			for _, secret := range []string{cfg.AppService.ASToken, "a-second-registrations-token", goodPickleKey} {
				assert.NotContains(t, problems[0], secret, "a secret in the message")
			}
		})
	}
}

// A bridge whose generated pickle key could not be saved (here: run with
// -n, --no-update) refuses to start and says why, before it touches the
// database.
func TestUnsavedPickleKeyStopsTheBridge(t *testing.T) {
	dir := t.TempDir()
	// Encryption is on in the example.
	writeConfig(t, dir, nil)
	out, err := run(t, dir, nil, "-g", "-c", "config.yaml", "-r", "registration.yaml")
	require.NoError(t, err, string(out))
	// -g saved a generated key; put the placeholder back, as a read-only
	// configuration would keep it.
	path := filepath.Join(dir, "config.yaml")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	text := string(data)
	start := strings.Index(text, "pickle_key: ")
	require.GreaterOrEqual(t, start, 0)
	end := start + strings.IndexByte(text[start:], '\n')
	require.NoError(t, os.WriteFile(path, []byte(text[:start]+"pickle_key: generate"+text[end:]), 0o600))

	out, err = run(t, dir, nil, "-c", "config.yaml", "-n")
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, string(out))
	assert.Equal(t, 11, exit.ExitCode(), string(out))
	assert.Contains(t, string(out), "not safe to run with")
	assert.Contains(t, string(out), "encryption.pickle_key: the generated key was not saved")
}
