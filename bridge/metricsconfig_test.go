package bridge

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMetricsConfig(t *testing.T) {
	const token = "0123456789abcdef"
	tests := []struct {
		name    string
		cfg     MetricsConfig
		env     string
		wantErr string
	}{
		{name: "off"},
		{name: "loopback without token", cfg: MetricsConfig{Listen: "127.0.0.1:9341"}},
		{name: "localhost without token", cfg: MetricsConfig{Listen: "localhost:9341"}},
		{name: "ipv6 loopback", cfg: MetricsConfig{Listen: "[::1]:9341"}},
		{name: "all interfaces without token", cfg: MetricsConfig{Listen: ":9341"}, wantErr: "needs a bearer token"},
		{name: "internal address without token", cfg: MetricsConfig{Listen: "10.0.0.5:9341"}, wantErr: "needs a bearer token"},
		{name: "internal address with token", cfg: MetricsConfig{Listen: "10.0.0.5:9341", BearerToken: token}},
		{name: "token from the environment", cfg: MetricsConfig{Listen: "0.0.0.0:9341"}, env: token},
		{name: "short token", cfg: MetricsConfig{Listen: "0.0.0.0:9341", BearerToken: "short"}, wantErr: "at least 16"},
		{name: "no port", cfg: MetricsConfig{Listen: "127.0.0.1"}, wantErr: "must be host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(MetricsTokenEnv, tt.env)
			err := tt.cfg.validate()
			if tt.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tt.wantErr)
			}
		})
	}
}

func TestMetricsTokenPrefersTheConfiguration(t *testing.T) {
	t.Setenv(MetricsTokenEnv, " from-the-environment \n")
	assert.Equal(t, "from-the-environment", (&MetricsConfig{}).Token())
	assert.Equal(t, "from-the-config", (&MetricsConfig{BearerToken: "from-the-config"}).Token())
}
