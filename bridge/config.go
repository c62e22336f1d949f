package bridge

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	up "go.mau.fi/util/configupgrade"
	"gopkg.in/yaml.v3"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/medialink"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/msgconv"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/secret"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// ExampleConfig is the network section of the example configuration, with
// every option documented.
//
//go:embed example-config.yaml
var ExampleConfig string

// Config is the network section of the bridge configuration.
type Config struct {
	sfb.Config `yaml:",inline"`

	// KeepPassword stores passwords (sealed) for unattended token renewal.
	KeepPassword bool `yaml:"keep_password"`
	// SecretKey is the base64 AES-256 key that seals stored secrets; empty
	// means the environment variable secret.EnvKey.
	SecretKey string `yaml:"secret_key"`
	// DisplaynameTemplate formats ghost display names.
	DisplaynameTemplate string `yaml:"displayname_template"`
	// Presence configures presence in both directions.
	Presence PresenceConfig `yaml:"presence"`
	// Media configures the links through which SfB users fetch the files
	// Matrix users send.
	Media MediaConfig `yaml:"media"`
	// Messages configures what SfB is told of Matrix features it lacks.
	Messages MessagesConfig `yaml:"messages"`
	// Migration configures migration modes and waves (docs/migration.md).
	Migration MigrationConfig `yaml:"migration"`
	// Meetings configures meeting invitations and calls in both
	// directions.
	Meetings MeetingsConfig `yaml:"meetings"`
	// Groups configures multi-party conversations (docs/groups.md).
	Groups GroupsConfig `yaml:"groups"`
	// AdminNotices configures the bridge bot's notices to bridge admins
	// (adminnotice.go).
	AdminNotices AdminNoticesConfig `yaml:"admin_notices"`
	// Metrics configures the Prometheus listener.
	Metrics MetricsConfig `yaml:"metrics"`

	displaynameTemplate *template.Template
}

// PresenceConfig is the presence section (see docs/presence.md).
type PresenceConfig struct {
	// Enabled watches SfB people and writes their presence to ghosts.
	Enabled bool `yaml:"enabled"`
	// WriteRate is the ceiling of presence writes per second to the
	// homeserver, refreshes included.
	WriteRate float64 `yaml:"write_rate"`
	// RefreshInterval is how often a visible ghost's presence is written
	// again; below the homeserver's sync_online_timeout.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// Publish is whether logins publish their Matrix presence on SfB,
	// unless a login says otherwise.
	Publish bool `yaml:"publish"`
	// PublishDebounce is how long a Matrix presence must hold before it
	// is published.
	PublishDebounce time.Duration `yaml:"publish_debounce"`
	// OfflineAs is the SfB availability of a Matrix user who is offline:
	// Away or Offline.
	OfflineAs sfb.Availability `yaml:"offline_as"`
}

// MediaConfig is the media section (docs/operator-guide.md, "Files and
// images").
type MediaConfig struct {
	// PublicURL is where SfB users reach the bridge's listener; empty
	// turns file links off.
	PublicURL string `yaml:"public_url"`
	// LinkKey is the base64 key that signs links; empty means the
	// environment variable MediaKeyEnv.
	LinkKey string `yaml:"link_key"`
	// LinkLifetime is how long a link works.
	LinkLifetime time.Duration `yaml:"link_lifetime"`
	// MaxFileSize caps files and images from SfB that the bridge
	// uploads to Matrix, in bytes; 0 means the homeserver's upload limit.
	// A larger file becomes a notice in the room.
	MaxFileSize int64 `yaml:"max_file_size"`
}

// MediaKeyEnv is the environment variable that holds the media link key
// when network.media.link_key is empty.
const MediaKeyEnv = "SFB_BRIDGE_MEDIA_KEY"

// maxLinkLifetime bounds link_lifetime: a link is a credential sent in
// chat, and a year is longer than any file should stay reachable by it.
const maxLinkLifetime = 366 * 24 * time.Hour

// GroupsConfig is the groups section (docs/groups.md).
type GroupsConfig struct {
	// Relay says through whose login the messages of Matrix users
	// without one go in a group room started from Matrix.
	Relay GroupRelay `yaml:"relay"`
}

// GroupRelay is who relays for Matrix users without a login.
type GroupRelay string

const (
	// GroupRelayCreator relays through the login of the room's creator,
	// each message prefixed with the sender's name (bridgev2's relay
	// mode, formatted by bridge.relay.message_formats).
	GroupRelayCreator GroupRelay = "creator"
	// GroupRelayOff relays nothing: their messages are refused.
	GroupRelayOff GroupRelay = "off"
)

// MessagesConfig is the messages section (see docs/messages.md).
type MessagesConfig struct {
	// Reactions is what a Matrix reaction becomes on SfB.
	Reactions ReactionMode `yaml:"reactions"`
}

// ReactionMode says what a Matrix reaction becomes on SfB, which has none.
type ReactionMode string

const (
	// ReactionsAsMessages sends "Alice reacted 👍 to: ...".
	ReactionsAsMessages ReactionMode = "message"
	// ReactionsDropped sends nothing.
	ReactionsDropped ReactionMode = "drop"
)

// MigrationConfig is the migration section.
type MigrationConfig struct {
	// PollInterval is how often the mode tables are read for changes
	// made by another process.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Announcements configures the bridge bot's messages to people whose
	// wave started (waveannounce.go).
	Announcements AnnouncementsConfig `yaml:"announcements"`
}

// AnnouncementsConfig says whether and how often the bridge bot tells
// people whose wave started how to sign in.
type AnnouncementsConfig struct {
	Enabled bool `yaml:"enabled"`
	// ReminderInterval is the time between the announcement and each
	// reminder; MaxReminders how many reminders at most (0: none).
	ReminderInterval time.Duration `yaml:"reminder_interval"`
	MaxReminders     int           `yaml:"max_reminders"`
}

// defaultConfig holds the values an option takes when the configuration
// leaves it out, the same as the example.
func defaultConfig() Config {
	return Config{
		Config:              sfb.DefaultConfig(),
		KeepPassword:        true,
		DisplaynameTemplate: "{{or .DisplayName .Address}} (SfB)",
		Presence: PresenceConfig{
			Enabled:         true,
			WriteRate:       1000,
			RefreshInterval: 20 * time.Second,
			Publish:         false,
			PublishDebounce: 10 * time.Second,
			OfflineAs:       sfb.AvailabilityAway,
		},
		Media:    MediaConfig{LinkLifetime: 7 * 24 * time.Hour},
		Messages: MessagesConfig{Reactions: ReactionsAsMessages},
		Migration: MigrationConfig{
			PollInterval:  migration.DefaultPollInterval,
			Announcements: AnnouncementsConfig{Enabled: true, ReminderInterval: 48 * time.Hour, MaxReminders: 3},
		},
		Meetings: defaultMeetingsConfig(),
		Groups:   GroupsConfig{Relay: GroupRelayCreator},

		AdminNotices: defaultAdminNotices(),
	}
}

type rawConfig Config

// UnmarshalYAML fills defaults for what the document leaves out and
// compiles the display name template.
func (c *Config) UnmarshalYAML(node *yaml.Node) error {
	*c = defaultConfig()
	if err := node.Decode((*rawConfig)(c)); err != nil {
		return err
	}
	return c.compile()
}

func (c *Config) compile() error {
	tpl, err := template.New("displayname").Option("missingkey=error").Parse(c.DisplaynameTemplate)
	if err != nil {
		return fmt.Errorf("parse network.displayname_template: %w", err)
	}
	c.displaynameTemplate = tpl
	return nil
}

// Validate reports the first option with an unusable value.
func (c *Config) Validate() error {
	switch {
	case c.Transport != sfb.TransportUCWA && c.Transport != sfb.TransportSIP:
		return fmt.Errorf(`network.transport %q: must be "ucwa" (UCWA 2.0 over HTTPS) or "sip" (the SIP dialect of SfB's own clients)`, c.Transport)
	case c.RequestTimeout <= 0:
		return fmt.Errorf("network.request_timeout %s: must be positive", c.RequestTimeout)
	case c.ActivityInterval <= 0 || c.ActivityInterval > 4*time.Minute:
		return fmt.Errorf("network.activity_interval %s: must be positive and at most 4m (SfB drops idle applications)", c.ActivityInterval)
	case c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin:
		return fmt.Errorf("network.backoff_min %s, backoff_max %s: must be positive, backoff_max at least backoff_min", c.BackoffMin, c.BackoffMax)
	case c.EventTimeout <= sfb.MinEventTimeout:
		return fmt.Errorf("network.event_timeout %s: must be longer than the %s a UCWA server may hold a pending GET", c.EventTimeout, sfb.MinEventTimeout)
	case c.OperationTimeout <= 0:
		return fmt.Errorf("network.operation_timeout %s: must be positive", c.OperationTimeout)
	case c.AcceptWait <= 0:
		return fmt.Errorf("network.accept_wait %s: must be positive", c.AcceptWait)
	case c.TypingRefresh <= 0 || c.TypingMax < c.TypingRefresh:
		return fmt.Errorf("network.typing_refresh %s, typing_max %s: must be positive, typing_max at least typing_refresh", c.TypingRefresh, c.TypingMax)
	}
	if err := oneOf("network.messages.reactions", c.Messages.Reactions, ReactionsAsMessages, ReactionsDropped); err != nil {
		return err
	}
	if err := oneOf("network.groups.relay", c.Groups.Relay, GroupRelayCreator, GroupRelayOff); err != nil {
		return err
	}
	if err := c.Presence.validate(); err != nil {
		return err
	}
	if err := c.Media.validate(); err != nil {
		return err
	}
	if p := c.Migration.PollInterval; p < time.Second || p > time.Minute {
		return fmt.Errorf("network.migration.poll_interval %s: must be between 1s and 1m, since a mode change must take effect within a minute", p)
	}
	if a := c.Migration.Announcements; a.ReminderInterval < time.Minute || a.MaxReminders < 0 || a.MaxReminders > 20 {
		return fmt.Errorf("network.migration.announcements: reminder_interval %s must be at least 1m and max_reminders %d between 0 and 20", a.ReminderInterval, a.MaxReminders)
	}
	if err := c.Meetings.validate(); err != nil {
		return err
	}
	if err := c.AdminNotices.validate(); err != nil {
		return err
	}
	if err := c.Metrics.validate(); err != nil {
		return err
	}
	if err := c.CheckSignInRate(); err != nil {
		return fmt.Errorf("network.%w", err)
	}
	if c.displaynameTemplate == nil {
		if err := c.compile(); err != nil {
			return err
		}
	}
	if _, err := c.FormatDisplayname(sfb.Person{URI: "sip:alice@contoso.com", DisplayName: "Alice"}); err != nil {
		return fmt.Errorf("network.displayname_template: %w", err)
	}
	return nil
}

// oneOf refuses an option whose value is none of allowed, naming them
// all: `option "x": must be "a", "b" or "c"`.
func oneOf[T ~string](option string, got T, allowed ...T) error {
	if slices.Contains(allowed, got) {
		return nil
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(string(a))
	}
	choices := quoted[len(quoted)-1]
	if len(quoted) > 1 {
		choices = strings.Join(quoted[:len(quoted)-1], ", ") + " or " + choices
	}
	return fmt.Errorf("%s %q: must be %s", option, got, choices)
}

func (p *PresenceConfig) validate() error {
	switch {
	case p.WriteRate <= 0:
		return fmt.Errorf("network.presence.write_rate %g: must be above 0", p.WriteRate)
	case p.RefreshInterval < time.Second || p.RefreshInterval > 10*time.Minute:
		return fmt.Errorf("network.presence.refresh_interval %s: must be between 1s and 10m, and well below the homeserver's presence.sync_online_timeout (30s by default in Synapse)", p.RefreshInterval)
	case p.PublishDebounce < 0:
		return fmt.Errorf("network.presence.publish_debounce %s: must not be negative", p.PublishDebounce)
	case p.OfflineAs != sfb.AvailabilityAway && p.OfflineAs != sfb.AvailabilityOffline:
		return fmt.Errorf("network.presence.offline_as %q: must be Away or Offline", p.OfflineAs)
	}
	return nil
}

func (m *MediaConfig) validate() error {
	if m.LinkLifetime <= 0 || m.LinkLifetime > maxLinkLifetime {
		return fmt.Errorf("network.media.link_lifetime %s: must be positive and at most %s", m.LinkLifetime, maxLinkLifetime)
	}
	if m.MaxFileSize < 0 {
		return fmt.Errorf("network.media.max_file_size %d: must not be negative (0 is the homeserver's upload limit)", m.MaxFileSize)
	}
	if m.PublicURL == "" {
		return nil
	}
	if err := medialink.CheckPublicURL(m.PublicURL); err != nil {
		return fmt.Errorf("network.media.public_url: %w", err)
	}
	return nil
}

// mediaLinks returns the signer of file links, or nil when public_url is
// empty and files are refused.
func (m *MediaConfig) mediaLinks() (*medialink.Signer, error) {
	if m.PublicURL == "" {
		return nil, nil
	}
	source := "network.media.link_key"
	keyText := strings.TrimSpace(m.LinkKey)
	if keyText == "" {
		source = "environment variable " + MediaKeyEnv
		keyText = strings.TrimSpace(os.Getenv(MediaKeyEnv))
	}
	if keyText == "" {
		return nil, fmt.Errorf("%w: network.media.public_url is set, so files are sent to SfB as signed links, "+
			"but neither network.media.link_key nor the environment variable %s holds a key to sign them; "+
			"generate one with `openssl rand -base64 32`, or leave public_url empty to refuse files", ErrNoSecretKey, MediaKeyEnv)
	}
	key, err := secret.ParseKey(keyText)
	if err != nil {
		return nil, fmt.Errorf("read the media link key from %s: %w", source, err)
	}
	signer, err := medialink.NewSigner(key, m.PublicURL, m.LinkLifetime)
	if err != nil {
		return nil, fmt.Errorf("network.media: %w", err)
	}
	return signer, nil
}

// ErrNoSecretKey: passwords are to be kept but there is no key to seal them.
var ErrNoSecretKey = errors.New("no secret key")

// secretBox returns the box that seals stored secrets, from secret_key or
// the environment. It returns nil without error when there is no key and
// keep_password is off: then nothing is stored sealed.
func (c *Config) secretBox() (*secret.Box, error) {
	source := "network.secret_key"
	keyText := strings.TrimSpace(c.SecretKey)
	if keyText == "" {
		source = "environment variable " + secret.EnvKey
		keyText = strings.TrimSpace(os.Getenv(secret.EnvKey))
	}
	if keyText == "" {
		if c.KeepPassword {
			return nil, fmt.Errorf("%w: network.keep_password is true, so SfB passwords are stored encrypted, "+
				"but neither network.secret_key nor the environment variable %s holds a key; "+
				"generate one with `openssl rand -base64 32`, or set keep_password to false", ErrNoSecretKey, secret.EnvKey)
		}
		return nil, nil
	}
	key, err := secret.ParseKey(keyText)
	if err != nil {
		return nil, fmt.Errorf("read the secret key from %s: %w", source, err)
	}
	box, err := secret.NewBox(key)
	if err != nil {
		return nil, fmt.Errorf("use the secret key from %s: %w", source, err)
	}
	return box, nil
}

// DisplaynameParams are the fields the display name template may use.
type DisplaynameParams struct {
	DisplayName string
	Address     string
}

// FormatDisplayname applies the display name template to p.
func (c *Config) FormatDisplayname(p sfb.Person) (string, error) {
	if c.displaynameTemplate == nil {
		if err := c.compile(); err != nil {
			return "", err
		}
	}
	var sb strings.Builder
	err := c.displaynameTemplate.Execute(&sb, DisplaynameParams{
		DisplayName: msgconv.CleanName(p.DisplayName),
		Address:     p.URI.Address(),
	})
	if err != nil {
		return "", fmt.Errorf("format display name of %s: %w", p.URI, err)
	}
	return strings.TrimSpace(sb.String()), nil
}

func upgradeConfig(helper up.Helper) {
	helper.Copy(up.Str, "transport")
	for _, key := range []string{"mode", "server", "cert_file", "key_file", "application_fqdn"} {
		helper.Copy(up.Str, "sip", key)
	}
	helper.Copy(up.Int, "sip", "connections")
	helper.Copy(up.Int, "sip", "max_outstanding")
	helper.Copy(up.Float|up.Int, "sip", "register_rate")
	helper.Copy(up.Str, "discovery_url")
	helper.Copy(up.Str, "ca_file")
	helper.Copy(up.Bool, "allow_insecure_loopback")
	helper.Copy(up.Str, "user_agent")
	helper.Copy(up.Str, "request_timeout")
	helper.Copy(up.Str, "activity_interval")
	helper.Copy(up.Float|up.Int, "sign_in_rate")
	helper.Copy(up.Bool, "simulator_sign_in_rate")
	for _, key := range []string{"backoff_min", "backoff_max", "event_timeout", "operation_timeout", "accept_wait", "typing_refresh", "typing_max"} {
		helper.Copy(up.Str, key)
	}
	helper.Copy(up.Bool, "keep_password")
	helper.Copy(up.Str|up.Null, "secret_key")
	helper.Copy(up.Str, "displayname_template")
	helper.Copy(up.Bool, "presence", "enabled")
	helper.Copy(up.Float|up.Int, "presence", "write_rate")
	helper.Copy(up.Str, "presence", "refresh_interval")
	helper.Copy(up.Bool, "presence", "publish")
	helper.Copy(up.Str, "presence", "publish_debounce")
	helper.Copy(up.Str, "presence", "offline_as")
	helper.Copy(up.Str, "media", "public_url")
	helper.Copy(up.Str|up.Null, "media", "link_key")
	helper.Copy(up.Str, "media", "link_lifetime")
	helper.Copy(up.Int, "media", "max_file_size")
	helper.Copy(up.Str, "migration", "poll_interval")
	helper.Copy(up.Bool, "migration", "announcements", "enabled")
	helper.Copy(up.Str, "migration", "announcements", "reminder_interval")
	helper.Copy(up.Int, "migration", "announcements", "max_reminders")
	upgradeMeetingsConfig(helper)
	helper.Copy(up.Str, "messages", "reactions")
	helper.Copy(up.Str, "groups", "relay")

	helper.Copy(up.Bool, "admin_notices", "enabled")
	helper.Copy(up.Str, "admin_notices", "interval")
	helper.Copy(up.Str, "metrics", "listen")
	helper.Copy(up.Str|up.Null, "metrics", "bearer_token")
}

// GetConfig returns the example network configuration, where to decode the
// actual one, and how to carry options over from an older file.
func (c *Connector) GetConfig() (example string, data any, upgrader up.Upgrader) {
	// mxmain indents every line of the example, so a final newline
	// would leave a line of blanks.
	return strings.TrimRight(ExampleConfig, "\n"), &c.Config, up.SimpleUpgrader(upgradeConfig)
}

// ValidateConfig is called by mxmain before the bridge starts: a bad option
// or a missing secret key stops the bridge with a clear message.
func (c *Connector) ValidateConfig() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	box, err := c.Config.secretBox()
	if err != nil {
		return err
	}
	c.box = box
	links, err := c.Config.Media.mediaLinks()
	if err != nil {
		return err
	}
	c.mediaLinks = links
	c.validated = true
	return nil
}
