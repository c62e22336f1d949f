package synapse

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// The bridge writes ghost presence and reads m.presence: every Synapse of
// the tests, the demo and the bench has presence on, with the decay timer
// at Synapse's default as in production unless a caller shortens it
// (the e2e tests do, through ExtraConfig, to see a decay within seconds).
func TestConfigHasPresenceOn(t *testing.T) {
	s := &Server{Dir: t.TempDir()}
	path, err := s.writeConfig(18008, Options{})
	require.NoError(t, err)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var cfg struct {
		Presence map[string]any `yaml:"presence"`
	}
	require.NoError(t, yaml.Unmarshal(data, &cfg))
	assert.Equal(t, true, cfg.Presence["enabled"])
	assert.NotContains(t, cfg.Presence, "sync_online_timeout", "Synapse's default decay, as in production")
}
