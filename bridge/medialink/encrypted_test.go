package medialink

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/id"
)

// encryptedSegments splits an encrypted file's link into the decoded path
// segments VerifyEncrypted takes.
func encryptedSegments(t *testing.T, link string) []string {
	t.Helper()
	u, err := url.Parse(link)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(u.EscapedPath(), PathPrefix+encryptedSegment), u.EscapedPath())
	parts := strings.Split(strings.TrimPrefix(u.EscapedPath(), PathPrefix+encryptedSegment), "/")
	require.Len(t, parts, 6)
	for i, p := range parts {
		parts[i], err = url.PathUnescape(p)
		require.NoError(t, err)
	}
	return parts
}

func testEncryptedFile(t *testing.T) (*attachment.EncryptedFile, []byte) {
	t.Helper()
	file := attachment.NewEncryptedFile()
	ciphertext := []byte("a chart only the room may see")
	file.EncryptInPlace(ciphertext)
	return file, ciphertext
}

func TestEncryptedLinkCarriesTheKeySealed(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newTestSigner(t, now)
	uri := id.ContentURI{Homeserver: "example.org", FileID: "EnCrYpTeD"}
	file, ciphertext := testEncryptedFile(t)
	link, err := s.LinkEncrypted(uri, "chart.png", "image/png; charset=binary", file)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(link, "https://bridge.example.org/sfb/media/v1/e/example.org/EnCrYpTeD/"), link)
	// Neither the key nor the IV nor the hash is readable in the link.
	for _, secret := range []string{file.Key.Key, file.InitVector, file.Hashes.SHA256} {
		raw, err := base64.RawURLEncoding.DecodeString(strings.NewReplacer("+", "-", "/", "_").Replace(secret))
		require.NoError(t, err)
		assert.NotContains(t, link, secret)
		assert.NotContains(t, link, base64.RawURLEncoding.EncodeToString(raw))
		assert.NotContains(t, link, base64.RawStdEncoding.EncodeToString(raw))
	}
	again, err := s.LinkEncrypted(uri, "chart.png", "image/png", file)
	require.NoError(t, err)
	assert.NotEqual(t, encryptedSegments(t, link)[4], encryptedSegments(t, again)[4], "a fresh nonce for every link")

	p := encryptedSegments(t, link)
	got, err := s.VerifyEncrypted(p[0], p[1], p[2], p[3], p[4], p[5])
	require.NoError(t, err)
	assert.Equal(t, uri, got.URI)
	assert.Equal(t, "chart.png", got.Name)
	assert.Equal(t, "image/png", got.MediaType)
	require.NotNil(t, got.File)
	plain := bytes.Clone(ciphertext)
	require.NoError(t, got.File.DecryptInPlace(plain), "the link's key, IV and hash decrypt and check the file")
	assert.Equal(t, "a chart only the room may see", string(plain))

	s.now = func() time.Time { return now.Add(7 * 24 * time.Hour) }
	_, err = s.VerifyEncrypted(p[0], p[1], p[2], p[3], p[4], p[5])
	assert.ErrorIs(t, err, ErrExpired)
}

func TestTamperedEncryptedLinksDoNotVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newTestSigner(t, now)
	file, _ := testEncryptedFile(t)
	link, err := s.LinkEncrypted(id.ContentURI{Homeserver: "example.org", FileID: "EnCrYpTeD"}, "chart.png", "image/png", file)
	require.NoError(t, err)
	p := encryptedSegments(t, link)
	flipped := []byte(p[4])
	flipped[len(flipped)/2] ^= 1
	other, err := s.LinkEncrypted(id.ContentURI{Homeserver: "example.org", FileID: "Other"}, "chart.png", "image/png", file)
	require.NoError(t, err)
	o := encryptedSegments(t, other)
	cases := map[string][6]string{
		"other media ID":         {p[0], "EnCrYpTeE", p[2], p[3], p[4], p[5]},
		"later expiry":           {p[0], p[1], "1900000000", p[3], p[4], p[5]},
		"other name":             {p[0], p[1], p[2], p[3], p[4], "chart.html"},
		"sealed part changed":    {p[0], p[1], p[2], p[3], string(flipped), p[5]},
		"another link's seal":    {p[0], p[1], p[2], p[3], o[4], p[5]},
		"another link's MAC":     {p[0], p[1], p[2], o[3], p[4], p[5]},
		"sealed part cut":        {p[0], p[1], p[2], p[3], p[4][:10], p[5]},
		"empty sealed part":      {p[0], p[1], p[2], p[3], "", p[5]},
		"MAC of the plain kind":  {p[0], p[1], p[2], plainMAC(t, s, p), p[4], p[5]},
		"sealed part not base64": {p[0], p[1], p[2], p[3], "!!" + p[4][2:], p[5]},
		"MAC spelt another way":  {p[0], p[1], p[2], respell(t, p[3]), p[4], p[5]},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := s.VerifyEncrypted(c[0], c[1], c[2], c[3], c[4], c[5])
			assert.ErrorIs(t, err, ErrInvalid)
		})
	}
	// The plain route does not take an encrypted link's MAC either.
	_, err = s.Verify(p[0], p[1], p[2], p[3], p[5])
	assert.ErrorIs(t, err, ErrInvalid)

	// Another bridge's key opens nothing.
	otherKey, err := NewSigner([]byte("another key, another bridge 0123"), "https://bridge.example.org", time.Hour)
	require.NoError(t, err)
	otherKey.now = s.now
	_, err = otherKey.VerifyEncrypted(p[0], p[1], p[2], p[3], p[4], p[5])
	assert.ErrorIs(t, err, ErrInvalid)
}

// plainMAC is the MAC a plain link to the same media, expiry and name
// would carry.
func plainMAC(t *testing.T, s *Signer, p []string) string {
	t.Helper()
	return base64.RawURLEncoding.EncodeToString(s.macOf("sfb-media-link-v1", id.ContentURI{Homeserver: p[0], FileID: p[1]}, p[2], p[5]))
}

func TestEncryptedLinkRefusesUnusableFiles(t *testing.T) {
	s := newTestSigner(t, time.Unix(1_800_000_000, 0))
	uri := id.ContentURI{Homeserver: "example.org", FileID: "EnCrYpTeD"}
	good, _ := testEncryptedFile(t)
	cases := map[string]func(f *attachment.EncryptedFile){
		"old version":       func(f *attachment.EncryptedFile) { f.Version = "v1" },
		"other algorithm":   func(f *attachment.EncryptedFile) { f.Key.Algorithm = "A128CTR" },
		"short key":         func(f *attachment.EncryptedFile) { f.Key.Key = f.Key.Key[:20] },
		"no hash":           func(f *attachment.EncryptedFile) { f.Hashes.SHA256 = "" },
		"IV not base64":     func(f *attachment.EncryptedFile) { f.InitVector = "!!!!!!!!!!!!!!!!!!!!!!" },
		"key not base64url": func(f *attachment.EncryptedFile) { f.Key.Key = strings.Repeat("*", len(f.Key.Key)) },
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			f := *good
			change(&f)
			_, err := s.LinkEncrypted(uri, "x.png", "image/png", &f)
			assert.Error(t, err)
		})
	}
	_, err := s.LinkEncrypted(uri, "x.png", "image/png", nil)
	assert.Error(t, err)
}

// No link that the signer did not make opens, whatever its segments; a
// genuine link's segments with the sealed part changed do not either.
func FuzzVerifyEncrypted(f *testing.F) {
	s, err := NewSigner(testKey, "https://bridge.example.org", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	file := attachment.NewEncryptedFile()
	file.EncryptInPlace(make([]byte, 16))
	link, err := s.LinkEncrypted(id.ContentURI{Homeserver: "example.org", FileID: "EnCrYpTeD"}, "scan.png", "image/png", file)
	if err != nil {
		f.Fatal(err)
	}
	u, err := url.Parse(link)
	if err != nil {
		f.Fatal(err)
	}
	p := strings.Split(strings.TrimPrefix(u.EscapedPath(), PathPrefix+encryptedSegment), "/")
	f.Add(p[0], p[1], p[2], p[3], p[4]+"x", p[5])
	f.Add("example.org", "AbCdEf", "1800000000", "AAAA", "AAAA", "report.pdf")
	f.Fuzz(func(t *testing.T, server, mediaID, expiry, mac, sealed, name string) {
		genuine := server == p[0] && mediaID == p[1] && expiry == p[2] && mac == p[3] && sealed == p[4] && name == p[5]
		if _, err := s.VerifyEncrypted(server, mediaID, expiry, mac, sealed, name); err == nil && !genuine {
			t.Fatalf("a link the signer did not make opened: %q %q %q %q %q %q", server, mediaID, expiry, mac, sealed, name)
		}
	})
}

// respell changes the unused low bits of the last character of unpadded
// base64url: the same bytes to a lenient decoder, another string.
func respell(t *testing.T, s string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	require.NotZero(t, len(s)%4, "a length whose last character has unused bits")
	last := strings.IndexByte(alphabet, s[len(s)-1])
	require.GreaterOrEqual(t, last, 0)
	other := s[:len(s)-1] + string(alphabet[last^1])
	a, err := base64.RawURLEncoding.DecodeString(s)
	require.NoError(t, err)
	b, err := base64.RawURLEncoding.DecodeString(other)
	require.NoError(t, err)
	require.Equal(t, a, b, "the same bytes, spelt another way")
	return other
}
