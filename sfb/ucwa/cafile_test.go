package ucwa

import (
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// TestCAFile: a CA file is used whole or refused with an error that
// names the file and what is wrong with it.
func TestCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(nil)
	srv.Close()
	good := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	corrupt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("secret")})
	tests := []struct {
		name    string
		content []byte // nil: the file does not exist
		wantErr string
	}{
		{"missing file", nil, "no such file"},
		{"empty file", []byte{}, "holds no PEM certificates"},
		{"not PEM", []byte("just some text\n"), "holds no PEM certificates"},
		{"corrupt certificate", corrupt, "certificate 1"},
		{"corrupt after a good one", append(append([]byte{}, good...), corrupt...), "certificate 2"},
		{"private key", append(append([]byte{}, good...), key...), "PEM block 2 is a PRIVATE KEY"},
		{"good", good, ""},
		{"good with text around", append(append([]byte("issuer: test\n"), good...), "trailer\n"...), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ca.pem")
			if tt.content != nil {
				require.NoError(t, os.WriteFile(path, tt.content, 0o600))
			}
			tr, err := New(sfb.Config{CAFile: path}, zerolog.Nop())
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.NotNil(t, tr)
				return
			}
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Contains(t, err.Error(), path, "the error names the file")
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}
