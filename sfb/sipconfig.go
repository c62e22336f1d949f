package sfb

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Transport names (Config.Transport).
const (
	TransportUCWA = "ucwa"
	TransportSIP  = "sip"
)

// SIP modes (SIPConfig.Mode).
const (
	// SIPModePerUser registers each signed-in user as an SfB client does,
	// with the user's password (MS-SIPAE NTLM), one TLS connection each.
	SIPModePerUser = "per_user"
	// SIPModeTrusted registers every user's endpoint over a few mutual-TLS
	// connections of a trusted application, without passwords.
	SIPModeTrusted = "trusted"
)

// MaxSIPOutstandingPerUser is the most requests in flight on one per-user
// connection: SfB limits a client connection's outstanding requests as UCWA
// limits a user's.
const MaxSIPOutstandingPerUser = 20

// SIPConfig configures the SIP transport.
type SIPConfig struct {
	// Mode is SIPModePerUser (the default) or SIPModeTrusted.
	Mode string `yaml:"mode"`
	// Server overrides discovery: host:port of the pool's Front End (or
	// its load balancer), TLS; "tcp://host:port" for plain TCP, which is
	// allowed only towards loopback with allow_insecure_loopback (the
	// simulator, tests). Empty means DNS SRV for each user's domain:
	// _sipinternaltls._tcp.<domain>, then _sip._tls.<domain>.
	Server string `yaml:"server"`
	// CertFile and KeyFile are the trusted application's client
	// certificate and key (PEM) for mutual TLS; trusted mode only.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ApplicationFQDN is the trusted application's FQDN as the topology
	// knows it (the pool its certificate names); it goes into Via and
	// Contact. Empty means the certificate's first DNS name.
	ApplicationFQDN string `yaml:"application_fqdn"`
	// Connections is how many shared connections carry the endpoints in
	// trusted mode.
	Connections int `yaml:"connections"`
	// MaxOutstanding bounds the requests in flight per connection: at most
	// MaxSIPOutstandingPerUser in per-user mode; in trusted mode the server
	// does not throttle the application, so this is the bridge's own limit.
	MaxOutstanding int `yaml:"max_outstanding"`
	// RegisterRate is how many registrations per second the bridge starts
	// in trusted mode (a cold start of every endpoint); per-user sign-ins
	// follow sign_in_rate.
	RegisterRate float64 `yaml:"register_rate"`
}

// DefaultSIPConfig holds the SIP options' defaults.
func DefaultSIPConfig() SIPConfig {
	return SIPConfig{Mode: SIPModePerUser, Connections: 4, MaxOutstanding: MaxSIPOutstandingPerUser, RegisterRate: 1000}
}

// SIPServer is a parsed SIPConfig.Server.
type SIPServer struct {
	Host string
	Port int
	// TCP is plain TCP instead of TLS.
	TCP bool
}

// Addr is host:port.
func (s SIPServer) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// ParseServer reads Server; ok is false when it is empty.
func (c *SIPConfig) ParseServer() (srv SIPServer, ok bool, err error) {
	v := strings.TrimSpace(c.Server)
	if v == "" {
		return srv, false, nil
	}
	switch {
	case strings.HasPrefix(strings.ToLower(v), "tcp://"):
		srv.TCP, v = true, v[len("tcp://"):]
	case strings.HasPrefix(strings.ToLower(v), "tls://"):
		v = v[len("tls://"):]
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		// A host alone takes the SIP TLS (or TCP) port.
		host, port = strings.Trim(v, "[]"), "5061"
		if srv.TCP {
			port = "5060"
		}
	}
	n, perr := strconv.Atoi(port)
	if host == "" || strings.ContainsAny(host, "/ ") || perr != nil || n <= 0 || n > 65535 {
		return srv, false, fmt.Errorf("sip.server %q: want host:port, or tcp://host:port towards loopback", c.Server)
	}
	srv.Host, srv.Port = host, n
	return srv, true, nil
}

// simulatorOnly says why a SIP configuration may reach something other than
// a simulator on this machine.
func (c *SIPConfig) simulatorOnly(allowInsecureLoopback bool) error {
	srv, ok, err := c.ParseServer()
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("sip.server is empty, so users' domains are discovered")
	case !srv.TCP || !allowInsecureLoopback || !IsLoopback(srv.Host):
		return fmt.Errorf("it needs sip.server tcp:// to a loopback address and allow_insecure_loopback: true, not %s with allow_insecure_loopback: %t",
			c.Server, allowInsecureLoopback)
	}
	return nil
}

// TrustedApplication reports whether the transport signs users in as a
// trusted application, without their passwords. The server then vouches
// for nobody: the bridge alone decides who may sign in as whom.
func (c *Config) TrustedApplication() bool {
	return c.Transport == TransportSIP && c.SIP.Mode == SIPModeTrusted
}
