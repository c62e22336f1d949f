package secret

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestBox(t *testing.T) (*Box, []byte) {
	t.Helper()
	key, err := GenerateKey()
	require.NoError(t, err)
	box, err := NewBox(key)
	require.NoError(t, err)
	return box, key
}

func TestSealOpenRoundTrip(t *testing.T) {
	box, _ := newTestBox(t)
	for _, tc := range []struct {
		name      string
		plaintext []byte
		ad        []byte
	}{
		{"password", []byte("Pa55w0rd!"), []byte("alice@contoso.com")},
		{"empty plaintext", []byte{}, []byte("bob@contoso.com")},
		{"no associated data", []byte("token"), nil},
		{"large token", bytes.Repeat([]byte{0xA5}, 64<<10), []byte("carol@contoso.com")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sealed, err := box.Seal(tc.plaintext, tc.ad)
			require.NoError(t, err)
			assert.Equal(t, versionAES256GCM, sealed[0])
			assert.Len(t, sealed, 1+nonceSize+len(tc.plaintext)+16)
			if len(tc.plaintext) >= 8 {
				assert.False(t, bytes.Contains(sealed, tc.plaintext), "plaintext visible in sealed value")
			}
			opened, err := box.Open(sealed, tc.ad)
			require.NoError(t, err)
			assert.Equal(t, string(tc.plaintext), string(opened))
		})
	}
}

func TestOpenDetectsEveryBitFlip(t *testing.T) {
	box, _ := newTestBox(t)
	ad := []byte("alice@contoso.com")
	sealed, err := box.Seal([]byte("hunter2"), ad)
	require.NoError(t, err)
	for i := range sealed {
		for bit := range 8 {
			tampered := bytes.Clone(sealed)
			tampered[i] ^= 1 << bit
			_, err := box.Open(tampered, ad)
			require.Errorf(t, err, "flip of bit %d in byte %d went unnoticed", bit, i)
			if i == 0 {
				assert.ErrorIs(t, err, ErrUnsupportedVersion)
			} else {
				assert.ErrorIs(t, err, ErrOpen)
			}
		}
	}
}

func TestOpenRejects(t *testing.T) {
	box, _ := newTestBox(t)
	other, _ := newTestBox(t)
	ad := []byte("alice@contoso.com")
	sealed, err := box.Seal([]byte("hunter2"), ad)
	require.NoError(t, err)

	for _, tc := range []struct {
		name   string
		box    *Box
		sealed []byte
		ad     []byte
		want   error
	}{
		{"wrong key", other, sealed, ad, ErrOpen},
		{"wrong associated data (copied to another row)", box, sealed, []byte("bob@contoso.com"), ErrOpen},
		{"associated data missing", box, sealed, nil, ErrOpen},
		{"truncated tag", box, sealed[:len(sealed)-1], ad, ErrOpen},
		{"only version and nonce", box, sealed[:1+nonceSize], ad, ErrTooShort},
		{"empty", box, nil, ad, ErrTooShort},
		{"unknown version", box, append([]byte{2}, sealed[1:]...), ad, ErrUnsupportedVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plaintext, err := tc.box.Open(tc.sealed, tc.ad)
			assert.ErrorIs(t, err, tc.want)
			assert.Nil(t, plaintext)
		})
	}
}

func TestSealUsesFreshNonces(t *testing.T) {
	box, _ := newTestBox(t)
	seen := make(map[string]bool)
	var previous []byte
	for range 1000 {
		sealed, err := box.Seal([]byte("same plaintext"), []byte("same row"))
		require.NoError(t, err)
		nonce := string(sealed[1 : 1+nonceSize])
		require.False(t, seen[nonce], "nonce repeated")
		seen[nonce] = true
		require.NotEqual(t, previous, sealed)
		previous = sealed
	}
}

func TestNewBoxKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		_, err := NewBox(make([]byte, n))
		assert.Errorf(t, err, "key of %d bytes accepted", n)
	}
	_, err := NewBox(make([]byte, KeySize))
	assert.NoError(t, err)
}

func TestParseKey(t *testing.T) {
	key, err := GenerateKey()
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		encoded string
	}{
		{"std base64", base64.StdEncoding.EncodeToString(key)},
		{"raw std base64", base64.RawStdEncoding.EncodeToString(key)},
		{"url base64", base64.URLEncoding.EncodeToString(key)},
		{"raw url base64", base64.RawURLEncoding.EncodeToString(key)},
		{"hex lower", hex.EncodeToString(key)},
		{"hex upper", strings.ToUpper(hex.EncodeToString(key))},
		{"surrounding whitespace", "  " + EncodeKey(key) + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey(tc.encoded)
			require.NoError(t, err)
			assert.Equal(t, key, got)
		})
	}
}

func TestParseKeyErrorsDoNotEchoKey(t *testing.T) {
	short := base64.StdEncoding.EncodeToString([]byte("sixteen byte key"))
	long := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("k"), 48))
	for _, tc := range []struct {
		name, input, wantMsg string
	}{
		{"empty", "", "empty"},
		{"blank", "   ", "empty"},
		{"16-byte key", short, "decodes to 16 bytes"},
		{"48-byte key", long, "decodes to 48 bytes"},
		{"not an encoding", "this is not a key!!", "neither base64"},
		{"63 hex chars", strings.Repeat("a", 63), "decodes to 47 bytes"},
		{"65 chars", strings.Repeat("a", 65), "neither base64"},
		{"64 chars, not hex, base64 of 48 bytes", strings.Repeat("Zz", 32), "decodes to 48 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKey(tc.input)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantMsg)
			if strings.TrimSpace(tc.input) != "" {
				assert.NotContains(t, err.Error(), strings.TrimSpace(tc.input))
			}
		})
	}
}

func TestGenerateKeyIsRandom(t *testing.T) {
	a, err := GenerateKey()
	require.NoError(t, err)
	b, err := GenerateKey()
	require.NoError(t, err)
	assert.Len(t, a, KeySize)
	assert.NotEqual(t, a, b)
}

func TestEqual(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"token", "token", true},
		{"", "", true},
		{"token", "tokem", false},
		{"token", "token2", false},
		{"token", "", false},
	} {
		assert.Equalf(t, tc.want, Equal(tc.a, tc.b), "Equal(%q, %q)", tc.a, tc.b)
	}
}
