package bridge

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// MetricsTokenEnv is the environment variable that holds the metrics
// listener's bearer token when network.metrics.bearer_token is empty.
const MetricsTokenEnv = "SFB_BRIDGE_METRICS_TOKEN"

// minMetricsToken is the shortest bearer token accepted.
const minMetricsToken = 16

// MetricsConfig is the metrics section (docs/metrics.md).
type MetricsConfig struct {
	// Listen is the address of the Prometheus listener; empty: none.
	Listen string `yaml:"listen"`
	// BearerToken is what a scrape must send as "Authorization: Bearer";
	// required unless Listen is a loopback address.
	BearerToken string `yaml:"bearer_token"`
}

// Token returns the bearer token from the configuration or the
// environment; "" when neither has one.
func (m *MetricsConfig) Token() string {
	if m.BearerToken != "" {
		return m.BearerToken
	}
	return strings.TrimSpace(os.Getenv(MetricsTokenEnv))
}

// validate refuses a listener that anyone on the network could read
// without a token: the series name no one, but they show the state of the
// whole migration and of the SfB pool.
func (m *MetricsConfig) validate() error {
	if m.Listen == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(m.Listen)
	if err != nil || port == "" {
		return fmt.Errorf("network.metrics.listen %q: must be host:port, e.g. 127.0.0.1:9341", m.Listen)
	}
	token := m.Token()
	if token != "" && len(token) < minMetricsToken {
		return fmt.Errorf("network.metrics.bearer_token: must be at least %d characters, e.g. from `openssl rand -base64 32`", minMetricsToken)
	}
	if token == "" && !loopbackHost(host) {
		return fmt.Errorf("network.metrics.listen %q is reachable from other machines, so it needs a bearer token: "+
			"set network.metrics.bearer_token or the environment variable %s (and the scrape's authorization), "+
			"or listen on 127.0.0.1", m.Listen, MetricsTokenEnv)
	}
	return nil
}

// loopbackHost reports whether host only reaches this machine: localhost
// or a loopback IP; an empty host (every interface) does not.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
