package sfb

import "time"

// Config is what every transport needs to reach the organisation's Skype for
// Business deployment. It is part of the bridge's network configuration.
type Config struct {
	// Transport names the implementation: "ucwa" (the only one so far).
	Transport string `yaml:"transport"`
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
}
