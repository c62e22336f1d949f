package sfb

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Config is what every transport needs to reach the organisation's Skype for
// Business deployment. It is part of the bridge's network configuration.
type Config struct {
	// Transport names the implementation: "ucwa" (the default) or "sip".
	Transport string `yaml:"transport"`
	// SIP configures the SIP transport (Transport "sip"); the UCWA
	// transport ignores it.
	SIP SIPConfig `yaml:"sip"`
	// DiscoveryURL overrides autodiscovery (lyncdiscoverinternal.<domain>,
	// then lyncdiscover.<domain>) for split-DNS organisations and the
	// simulator, e.g. https://lyncdiscover.contoso.com/autodiscover/autodiscoverservice.svc/root.
	DiscoveryURL string `yaml:"discovery_url"`
	// CAFile is a PEM bundle of extra trusted roots for a private PKI.
	// TLS is always verified.
	CAFile string `yaml:"ca_file"`
	// AllowInsecureLoopback permits plain HTTP, and only towards loopback
	// addresses (the simulator, tests).
	AllowInsecureLoopback bool `yaml:"allow_insecure_loopback"`
	// UserAgent is sent with every request and names the application to the
	// server.
	UserAgent string `yaml:"user_agent"`
	// RequestTimeout bounds one ordinary request (not the event channel).
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// ActivityInterval is how often the session reports user activity so
	// the server keeps the user's presence; at most 4 minutes.
	ActivityInterval time.Duration `yaml:"activity_interval"`

	// SignInRate is how many sign-ins per second start towards one SfB
	// pool; at most MaxSignInRate unless SimulatorSignInRate.
	SignInRate float64 `yaml:"sign_in_rate"`
	// SimulatorSignInRate lifts MaxSignInRate for benchmarks against the
	// simulator. CheckSignInRate refuses it unless DiscoveryURL is plain
	// HTTP on a loopback address, so that no configuration that reaches a
	// real pool can use it.
	SimulatorSignInRate bool `yaml:"simulator_sign_in_rate"`
	// BackoffMin and BackoffMax bound the exponential backoff after
	// transient failures: the pause of a whole pool that refused a
	// request, and a session's retries of its event channel, token
	// renewal and invitations.
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// EventTimeout bounds one pending GET of UCWA's event channel; the
	// server answers it within 3 minutes.
	EventTimeout time.Duration `yaml:"event_timeout"`
	// OperationTimeout bounds the wait for the outcome of a message or
	// invitation the bridge sent.
	OperationTimeout time.Duration `yaml:"operation_timeout"`
	// AcceptWait bounds how long a message to a peer waits for the accept
	// of that peer's invitation: sent before, it would start a second
	// conversation.
	AcceptWait time.Duration `yaml:"accept_wait"`
	// TypingRefresh is how often "is typing" is repeated while the user
	// types; TypingMax ends the repetition when no "stopped typing" comes.
	TypingRefresh time.Duration `yaml:"typing_refresh"`
	TypingMax     time.Duration `yaml:"typing_max"`
	// PresenceWatchLimit is how many people one login watches at most;
	// the server may allow fewer (403 LimitExceeded), then the login
	// watches what it took.
	PresenceWatchLimit int `yaml:"presence_watch_limit"`
}

// MaxSignInRate is the most sign-ins per second a real SfB pool takes:
// Microsoft sizes a Front End pool for at most 12 concurrent logons per
// second.
const MaxSignInRate = 12

// MinEventTimeout is how long a UCWA server holds a pending GET at least
// (EventChannelDetails.md: 180 s by default, never less).
const MinEventTimeout = 3 * time.Minute

// DefaultConfig holds the values an option takes when the configuration
// leaves it out.
func DefaultConfig() Config {
	return Config{
		Transport:        "ucwa",
		UserAgent:        "sfb-matrix-bridge",
		RequestTimeout:   30 * time.Second,
		ActivityInterval: 3 * time.Minute,
		SignInRate:       10,
		BackoffMin:       time.Second,
		BackoffMax:       2 * time.Minute,
		EventTimeout:     4 * time.Minute,
		OperationTimeout: time.Minute,
		AcceptWait:       5 * time.Second,
		TypingRefresh:    4 * time.Second,
		TypingMax:        30 * time.Second,

		PresenceWatchLimit: 1000,

		SIP: DefaultSIPConfig(),
	}
}

// WithDefaults is c with what it leaves zero taken from DefaultConfig,
// for a transport built from a configuration that was not read from a
// file (tests, the bench).
func (c Config) WithDefaults() Config {
	def := DefaultConfig()
	for _, f := range []struct{ v, d *time.Duration }{
		{&c.RequestTimeout, &def.RequestTimeout}, {&c.ActivityInterval, &def.ActivityInterval},
		{&c.BackoffMin, &def.BackoffMin}, {&c.BackoffMax, &def.BackoffMax},
		{&c.EventTimeout, &def.EventTimeout}, {&c.OperationTimeout, &def.OperationTimeout},
		{&c.AcceptWait, &def.AcceptWait}, {&c.TypingRefresh, &def.TypingRefresh}, {&c.TypingMax, &def.TypingMax},
	} {
		if *f.v <= 0 {
			*f.v = *f.d
		}
	}
	if c.UserAgent == "" {
		c.UserAgent = def.UserAgent
	}
	if c.SignInRate == 0 {
		c.SignInRate = def.SignInRate
	}
	if c.PresenceWatchLimit <= 0 {
		c.PresenceWatchLimit = def.PresenceWatchLimit
	}
	if c.SIP.Mode == "" {
		c.SIP.Mode = def.SIP.Mode
	}
	if c.SIP.Connections == 0 {
		c.SIP.Connections = def.SIP.Connections
	}
	if c.SIP.MaxOutstanding == 0 {
		c.SIP.MaxOutstanding = def.SIP.MaxOutstanding
	}
	if c.SIP.RegisterRate == 0 {
		c.SIP.RegisterRate = def.SIP.RegisterRate
	}
	return c
}

// CheckSignInRate refuses a sign-in rate a pool cannot take, and the
// simulator's lift of that limit in a configuration that may reach a real
// pool. The error names the options as written in the configuration.
func (c *Config) CheckSignInRate() error {
	if c.SimulatorSignInRate {
		if err := c.simulatorOnly(); err != nil {
			return fmt.Errorf("simulator_sign_in_rate is for benchmarks against the simulator only: %w", err)
		}
		if c.SignInRate <= 0 {
			return fmt.Errorf("sign_in_rate %g: must be above 0", c.SignInRate)
		}
		return nil
	}
	if c.SignInRate <= 0 || c.SignInRate > MaxSignInRate {
		return fmt.Errorf("sign_in_rate %g: must be above 0 and at most %d (SfB accepts at most %d logons per second per pool)",
			c.SignInRate, MaxSignInRate, MaxSignInRate)
	}
	return nil
}

// simulatorOnly says why the configuration may reach something other than
// a simulator on this machine.
func (c *Config) simulatorOnly() error {
	if c.Transport == TransportSIP {
		return c.SIP.simulatorOnly(c.AllowInsecureLoopback)
	}
	if c.DiscoveryURL == "" {
		return fmt.Errorf("discovery_url is empty, so users' domains are discovered")
	}
	u, err := url.Parse(c.DiscoveryURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("discovery_url %q is not an absolute URL", c.DiscoveryURL)
	}
	if !strings.EqualFold(u.Scheme, "http") || !c.AllowInsecureLoopback || !IsLoopback(u.Hostname()) {
		return fmt.Errorf("it needs discovery_url on plain http to a loopback address and allow_insecure_loopback: true, not %s with allow_insecure_loopback: %t",
			u.Redacted(), c.AllowInsecureLoopback)
	}
	return nil
}

// IsLoopback reports whether host (a name or an address, without port) is
// this machine's loopback.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
