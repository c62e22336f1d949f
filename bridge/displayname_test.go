package bridge

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

func TestFormatDisplaynameNeutralisesSpoofing(t *testing.T) {
	c := defaultConfig()
	name, err := c.FormatDisplayname(sfb.Person{URI: "sip:eve@contoso.com", DisplayName: "Eve\u202E nimdA\n(IT)\x1b"})
	require.NoError(t, err)
	assert.Equal(t, "Eve nimdA (IT) (SfB)", name)
}
