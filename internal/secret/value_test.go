package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

const password = "correct horse battery staple"

func TestSecretNeverPrints(t *testing.T) {
	s := Secret(password)
	type holder struct {
		User     string
		Password Secret
	}
	h := holder{User: "alice", Password: s}

	outputs := map[string]string{}
	for _, verb := range []string{"%s", "%v", "%+v", "%#v", "%q", "%x", "%X", "%d", "%10s", "%-10v"} {
		outputs["Sprintf "+verb] = fmt.Sprintf(verb, s)
		outputs["Sprintf struct "+verb] = fmt.Sprintf(verb, h)
		outputs["Sprintf pointer struct "+verb] = fmt.Sprintf(verb, &h)
	}
	outputs["Sprint"] = fmt.Sprint(s)
	outputs["String"] = s.String()

	js, err := json.Marshal(h)
	require.NoError(t, err)
	outputs["json"] = string(js)

	y, err := yaml.Marshal(h)
	require.NoError(t, err)
	outputs["yaml"] = string(y)

	text, err := s.MarshalText()
	require.NoError(t, err)
	outputs["text"] = string(text)

	var zbuf bytes.Buffer
	zl := zerolog.New(&zbuf)
	zl.Info().Interface("iface", s).Stringer("stringer", s).Object("object", s).Any("any", h).Msg("login")
	outputs["zerolog"] = zbuf.String()

	var sbuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&sbuf, nil)).Info("login", "password", s, "holder", h)
	outputs["slog"] = sbuf.String()

	for name, out := range outputs {
		assert.NotContainsf(t, out, "horse", "%s leaked the secret: %s", name, out)
		assert.Containsf(t, out, Redacted, "%s did not print the redaction marker: %s", name, out)
	}
	assert.Equal(t, password, s.Reveal())
}

func TestSecretDecodesRealValue(t *testing.T) {
	type config struct {
		Password Secret `json:"password" yaml:"password"`
	}
	var fromJSON config
	require.NoError(t, json.Unmarshal([]byte(`{"password":"`+password+`"}`), &fromJSON))
	assert.Equal(t, password, fromJSON.Password.Reveal())

	var fromYAML config
	require.NoError(t, yaml.Unmarshal([]byte("password: "+password+"\n"), &fromYAML))
	assert.Equal(t, password, fromYAML.Password.Reveal())

	var bad config
	err := json.Unmarshal([]byte(`{"password":42}`), &bad)
	require.Error(t, err)
	assert.True(t, bad.Password.IsEmpty())
	assert.False(t, strings.Contains(err.Error(), password))
}
