package bridge

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	up "go.mau.fi/util/configupgrade"
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
presence:
    refresh_interval: 15s
    publish: true
`), &c))
	assert.Equal(t, 15*time.Second, c.Presence.RefreshInterval)
	assert.True(t, c.Presence.Publish)
	assert.Equal(t, 1000.0, c.Presence.WriteRate, "an option left out of the section keeps its default")
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
		{"unknown transport", func(c *Config) { c.Transport = "xmpp" }, `network.transport "xmpp": must be "ucwa" (UCWA 2.0 over HTTPS) or "sip"`},
		{"activity interval too long", func(c *Config) { c.ActivityInterval = 5 * time.Minute }, "activity_interval"},
		{"zero timeout", func(c *Config) { c.RequestTimeout = 0 }, "request_timeout"},
		{"sign-in rate above SfB's limit", func(c *Config) { c.SignInRate = 50 }, "sign_in_rate 50: must be above 0 and at most 12"},
		{"no sign-ins", func(c *Config) { c.SignInRate = 0 }, "sign_in_rate 0"},
		{"backoff bounds reversed", func(c *Config) { c.BackoffMax = c.BackoffMin / 2 }, "backoff_max"},
		{"event timeout within the server's hold", func(c *Config) { c.EventTimeout = 3 * time.Minute }, "network.event_timeout 3m0s: must be longer"},
		{"no accept wait", func(c *Config) { c.AcceptWait = -time.Second }, "network.accept_wait"},
		{"zero operation timeout", func(c *Config) { c.OperationTimeout = 0 }, "network.operation_timeout"},
		{"typing refresh beyond its maximum", func(c *Config) { c.TypingRefresh = time.Minute }, "typing_refresh"},
		{"no presence writes", func(c *Config) { c.Presence.WriteRate = 0 }, "network.presence.write_rate"},
		{"no refresh", func(c *Config) { c.Presence.RefreshInterval = 0 }, "network.presence.refresh_interval 0s"},
		{"negative debounce", func(c *Config) { c.Presence.PublishDebounce = -time.Second }, "network.presence.publish_debounce"},
		{"offline as busy", func(c *Config) { c.Presence.OfflineAs = sfb.AvailabilityBusy }, `network.presence.offline_as "Busy"`},
		{"unknown reaction mode", func(c *Config) { c.Messages.Reactions = "emoji" }, `network.messages.reactions "emoji"`},
		{"unknown group relay", func(c *Config) { c.Groups.Relay = "everyone" }, `network.groups.relay "everyone"`},
		{"reminders every second", func(c *Config) { c.Migration.Announcements.ReminderInterval = time.Second }, "network.migration.announcements: reminder_interval 1s"},
		{"too many reminders", func(c *Config) { c.Migration.Announcements.MaxReminders = 100 }, "max_reminders 100"},
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
	c.Transport = "sip"
	assert.NoError(t, c.Validate(), "the SIP transport")
}

// TestSimulatorSignInRateRefusedTowardsRealPools: the lift of the 12/s
// limit is for benchmarks against the simulator on this machine; every
// configuration that may reach a real pool refuses it, whatever the rate.
func TestSimulatorSignInRateRefusedTowardsRealPools(t *testing.T) {
	production := []struct {
		name         string
		discoveryURL string
		insecure     bool
	}{
		{"autodiscovery", "", false},
		{"https discovery", "https://lyncdiscover.contoso.com/autodiscover/autodiscoverservice.svc/root", false},
		{"https on loopback (a local proxy)", "https://127.0.0.1:4443/autodiscover/autodiscoverservice.svc/root", true},
		{"plain http to a private address", "http://10.1.2.3/autodiscover/autodiscoverservice.svc/root", true},
		{"loopback without allow_insecure_loopback", "http://127.0.0.1:8080/autodiscover/autodiscoverservice.svc/root", false},
	}
	for _, tt := range production {
		for _, rate := range []float64{10, 500} {
			t.Run(fmt.Sprintf("%s at %g per second", tt.name, rate), func(t *testing.T) {
				c := defaultConfig()
				c.DiscoveryURL, c.AllowInsecureLoopback = tt.discoveryURL, tt.insecure
				c.SimulatorSignInRate, c.SignInRate = true, rate
				err := c.Validate()
				require.Error(t, err)
				assert.Contains(t, err.Error(), "network.simulator_sign_in_rate is for benchmarks against the simulator only")
			})
		}
	}

	c := defaultConfig()
	c.DiscoveryURL, c.AllowInsecureLoopback = "http://127.0.0.1:8080/autodiscover/autodiscoverservice.svc/root", true
	c.SignInRate = 500
	err := c.Validate()
	require.Error(t, err, "the simulator too needs the option for more than 12 per second")
	assert.Contains(t, err.Error(), "at most 12")
	c.SimulatorSignInRate = true
	assert.NoError(t, c.Validate())
	c.DiscoveryURL = "http://localhost:8080/autodiscover/autodiscoverservice.svc/root"
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

// TestUpgraderKeepsEveryOption: an operator's value of every network
// option survives the upgrade of the file to a newer example.
func TestUpgraderKeepsEveryOption(t *testing.T) {
	const mine = `
transport: sip
sip:
    mode: trusted
    server: fe01.contoso.com:5061
    cert_file: /etc/sfb-bridge/app.pem
    key_file: /etc/sfb-bridge/app.key
    application_fqdn: bridge.contoso.com
    connections: 8
    max_outstanding: 200
    register_rate: 150
discovery_url: http://127.0.0.1:9/autodiscover/autodiscoverservice.svc/root
ca_file: /etc/ssl/contoso.pem
allow_insecure_loopback: true
user_agent: contoso-bridge
request_timeout: 11s
activity_interval: 2m
sign_in_rate: 300
simulator_sign_in_rate: true
backoff_min: 3s
backoff_max: 5m
event_timeout: 5m
operation_timeout: 90s
accept_wait: 7s
typing_refresh: 3s
typing_max: 20s
keep_password: false
secret_key: c2VjcmV0
displayname_template: "{{.Address}}"
messages:
    reactions: drop
groups:
    relay: "off"
`
	var base, cfg yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(ExampleConfig), &base))
	require.NoError(t, yaml.Unmarshal([]byte(mine), &cfg))
	upgradeConfig(up.NewHelper(base.Content[0], cfg.Content[0]))
	out, err := yaml.Marshal(&base)
	require.NoError(t, err)

	var upgraded, want Config
	require.NoError(t, yaml.Unmarshal(out, &upgraded))
	require.NoError(t, yaml.Unmarshal([]byte(mine), &want))
	upgraded.displaynameTemplate, want.displaynameTemplate = nil, nil
	assert.Equal(t, want, upgraded)
	assert.NotEqual(t, defaultConfig(), upgraded)
}

func TestOneOfNamesEveryChoice(t *testing.T) {
	assert.NoError(t, oneOf("network.meetings.calls", CallsNotice, CallsOff, CallsNotice, CallsJitsi))
	assert.EqualError(t, oneOf("network.meetings.calls", CallMode("ring"), CallsOff, CallsNotice, CallsJitsi),
		`network.meetings.calls "ring": must be "off", "notice" or "jitsi"`)
	assert.EqualError(t, oneOf("network.groups.relay", GroupRelay("all"), GroupRelayCreator, GroupRelayOff),
		`network.groups.relay "all": must be "creator" or "off"`)
}
