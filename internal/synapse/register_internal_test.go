package synapse

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRegistrationMAC(t *testing.T) {
	// Expected values computed with Python's hmac the way Synapse's
	// register_new_matrix_user does.
	tests := []struct {
		admin bool
		want  string
	}{
		{true, "49d393ab63eb8cf30306447aeca7b3f1defdf08e"},
		{false, "7bef82b38a8823c7968914cd855409fd29bef4f5"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, registrationMAC("s3cret", "abcnonce", "alice", "pa\u00e4ss", tt.admin))
	}
}

func TestWriteSigningKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.key")
	require.NoError(t, writeSigningKey(path))
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	fields := strings.Fields(string(data))
	require.Len(t, fields, 3)
	assert.Equal(t, "ed25519", fields[0])
	assert.Regexp(t, `^a_[0-9a-f]{4}$`, fields[1])
	// 32-byte seed in unpadded standard base64.
	assert.Regexp(t, `^[A-Za-z0-9+/]{43}$`, fields[2])
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
}

func TestWantedAndRequired(t *testing.T) {
	tests := []struct {
		ci, e2e, venv string
		wanted, req   bool
	}{
		{"", "", "", false, false},
		{"true", "", "", true, true},
		{"false", "", "", false, false},
		{"", "1", "", true, false},
		{"", "0", "", false, false},
		{"", "", "/opt/venv", true, false},
	}
	for _, tt := range tests {
		t.Setenv("CI", tt.ci)
		t.Setenv("SFB_E2E", tt.e2e)
		t.Setenv("SFB_SYNAPSE_VENV", tt.venv)
		wanted, reason := Wanted()
		assert.Equal(t, tt.wanted, wanted, "%+v", tt)
		assert.Equal(t, tt.req, Required(), "%+v", tt)
		if !wanted {
			assert.NotEmpty(t, reason)
		}
	}
}
