package bridge

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/secret"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

func TestExampleConfigMatchesDefaults(t *testing.T) {
	var fromExample Config
	require.NoError(t, yaml.Unmarshal([]byte(ExampleConfig), &fromExample))
	want := defaultConfig()
	fromExample.displaynameTemplate = nil
	assert.Equal(t, want, fromExample, "the example documents the defaults")

	var empty Config
	require.NoError(t, yaml.Unmarshal([]byte("{}"), &empty))
	empty.displaynameTemplate = nil
	assert.Equal(t, want, empty, "options left out take the defaults")
}

func TestConfigDecodesDurationsAndOverrides(t *testing.T) {
	var c Config
	require.NoError(t, yaml.Unmarshal([]byte(`
transport: ucwa
discovery_url: http://127.0.0.1:8080/autodiscover
allow_insecure_loopback: true
request_timeout: 5s
activity_interval: 90s
keep_password: false
displayname_template: "{{.Address}}"
`), &c))
	assert.Equal(t, "http://127.0.0.1:8080/autodiscover", c.DiscoveryURL)
	assert.True(t, c.AllowInsecureLoopback)
	assert.Equal(t, 5*time.Second, c.RequestTimeout)
	assert.Equal(t, 90*time.Second, c.ActivityInterval)
	assert.False(t, c.KeepPassword)
	name, err := c.FormatDisplayname(sfb.Person{URI: "sip:bob@contoso.com", DisplayName: "Bob"})
	require.NoError(t, err)
	assert.Equal(t, "bob@contoso.com", name)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"unknown transport", func(c *Config) { c.Transport = "sip" }, "network.transport"},
		{"activity interval too long", func(c *Config) { c.ActivityInterval = 5 * time.Minute }, "activity_interval"},
		{"zero timeout", func(c *Config) { c.RequestTimeout = 0 }, "request_timeout"},
		{"sign-in rate above SfB's limit", func(c *Config) { c.SignInRate = 50 }, "sign_in_rate"},
		{"broken template", func(c *Config) { c.DisplaynameTemplate = "{{.Nope" }, "displayname_template"},
		{"template with unknown field", func(c *Config) { c.DisplaynameTemplate = "{{.Phone}}" }, "displayname_template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	c := defaultConfig()
	assert.NoError(t, c.Validate())
}

func TestSecretKeyRequirement(t *testing.T) {
	tests := []struct {
		name    string
		keep    bool
		cfgKey  string
		envKey  string
		wantErr string
		wantBox bool
	}{
		{"keep password without key refuses to start", true, "", "", "SFB_BRIDGE_SECRET_KEY", false},
		{"key from config", true, testKey, "", "", true},
		{"key from environment", true, "", testKey, "", true},
		{"malformed key", true, "c2hvcnQ=", "", "network.secret_key", false},
		{"malformed key in environment", true, "", "not base64!", "SFB_BRIDGE_SECRET_KEY", false},
		{"no password kept, no key", false, "", "", "", false},
		{"no password kept, key still seals tokens", false, testKey, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(secret.EnvKey, tt.envKey)
			c := NewConnector(nil)
			c.Config.KeepPassword = tt.keep
			c.Config.SecretKey = tt.cfgKey
			err := c.ValidateConfig()
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				for _, key := range []string{tt.cfgKey, tt.envKey} {
					if key != "" {
						assert.NotContains(t, err.Error(), key, "the key itself is never echoed")
					}
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantBox, c.box != nil)
		})
	}
}

func TestMissingKeyErrorIsActionable(t *testing.T) {
	t.Setenv(secret.EnvKey, "")
	c := NewConnector(nil)
	err := c.ValidateConfig()
	require.ErrorIs(t, err, ErrNoSecretKey)
	assert.Contains(t, err.Error(), "network.secret_key")
	assert.Contains(t, err.Error(), "keep_password")
}

func TestGetName(t *testing.T) {
	name := NewConnector(nil).GetName()
	assert.Equal(t, "Skype for Business", name.DisplayName)
	assert.Equal(t, "sfb", name.NetworkID)
	assert.Equal(t, "sfb", name.BeeperBridgeType)
	assert.Equal(t, uint16(29340), name.DefaultPort)
	assert.Equal(t, "!sfb", name.DefaultCommandPrefix)
}
