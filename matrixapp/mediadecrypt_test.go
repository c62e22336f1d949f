package matrixapp

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/medialink"
)

// encryptedUpload puts on the test homeserver what a client in an
// encrypted room uploads: the ciphertext of plain under a fresh key.
func (s *mediaTestServer) encryptedUpload(t *testing.T, mediaID string, plain []byte) *attachment.EncryptedFile {
	t.Helper()
	file := attachment.NewEncryptedFile()
	ciphertext := bytes.Clone(plain)
	file.EncryptInPlace(ciphertext)
	s.encrypted[mediaID] = ciphertext
	return file
}

func (s *mediaTestServer) encryptedLink(t *testing.T, mediaID, name, mediaType string, file *attachment.EncryptedFile) string {
	t.Helper()
	link, err := s.signer.LinkEncrypted(id.ContentURI{Homeserver: "example.org", FileID: mediaID}, name, mediaType, file)
	require.NoError(t, err)
	return link
}

// The link to a file from an encrypted room serves the plaintext, with
// the type the sender gave; neither the file's key nor the homeserver's
// token shows anywhere in the answer.
func TestEncryptedMediaLinkServesThePlaintext(t *testing.T) {
	s := newMediaTestServer(t, "application/pdf")
	plain := make([]byte, 300_000)
	_, err := rand.Read(plain)
	require.NoError(t, err)
	file := s.encryptedUpload(t, "Enc1", plain)

	resp, body := get(t, s.encryptedLink(t, "Enc1", "scan.png", "image/png", file))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.True(t, bytes.Equal(plain, []byte(body)), "the decrypted bytes")
	assert.Equal(t, "image/png", resp.Header.Get("Content-Type"))
	assert.Equal(t, "300000", resp.Header.Get("Content-Length"))
	assert.Equal(t, `inline; filename="scan.png"; filename*=UTF-8''scan.png`, resp.Header.Get("Content-Disposition"))
	text := headerText(resp.Header)
	assert.NotContains(t, text, testASToken)
	assert.NotContains(t, text, file.Key.Key)

	// Without a type from the sender, the file is a download.
	resp, _ = get(t, s.encryptedLink(t, "Enc1", "scan", "", file))
	assert.Equal(t, "application/octet-stream", resp.Header.Get("Content-Type"))
	assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment;"))
}

// A ciphertext that is not what the sender encrypted (the homeserver's
// copy changed) is never served, not even in part: the hash is checked
// before the first byte.
func TestEncryptedMediaLinkChecksTheHash(t *testing.T) {
	s := newMediaTestServer(t, "application/pdf")
	plain := []byte("the real numbers, which must not be replaced")
	file := s.encryptedUpload(t, "Enc2", plain)
	s.encrypted["Enc2"][3] ^= 0x20

	resp, body := get(t, s.encryptedLink(t, "Enc2", "numbers.txt", "text/plain", file))
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.Contains(t, body, "not what the sender sent")
	assert.NotContains(t, body, "numbers")
}

func TestTamperedOrExpiredEncryptedMediaLinksAreForbidden(t *testing.T) {
	s := newMediaTestServer(t, "application/pdf")
	file := s.encryptedUpload(t, "Enc3", []byte("secret plan"))
	valid := s.encryptedLink(t, "Enc3", "plan.txt", "text/plain", file)
	u, err := url.Parse(valid)
	require.NoError(t, err)
	seg := strings.Split(strings.TrimPrefix(u.EscapedPath(), medialink.PathPrefix+"e/"), "/")
	require.Len(t, seg, 6)
	join := func(parts ...string) string {
		return s.bridge.URL + medialink.PathPrefix + "e/" + strings.Join(parts, "/")
	}
	expired, err := s.signer.LinkEncryptedUntil(id.ContentURI{Homeserver: "example.org", FileID: "Enc3"}, "plan.txt", "text/plain", file, time.Now().Add(-time.Second))
	require.NoError(t, err)
	sealed, err := base64.RawURLEncoding.DecodeString(seg[4])
	require.NoError(t, err)
	sealed[len(sealed)-1] ^= 1

	cases := map[string]struct{ link, text string }{
		"other media":  {join(seg[0], "Enc4", seg[2], seg[3], seg[4], seg[5]), "not valid"},
		"later expiry": {join(seg[0], seg[1], "99999999999", seg[3], seg[4], seg[5]), "not valid"},
		"other name":   {join(seg[0], seg[1], seg[2], seg[3], seg[4], "plan.html"), "not valid"},
		"other seal":   {join(seg[0], seg[1], seg[2], seg[3], base64.RawURLEncoding.EncodeToString(sealed), seg[5]), "not valid"},
		"plain route":  {s.bridge.URL + medialink.PathPrefix + strings.Join([]string{seg[0], seg[1], seg[2], seg[3], seg[5]}, "/"), "not valid"},
		"expired":      {expired, "has expired"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			resp, body := get(t, c.link)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			assert.Contains(t, body, c.text)
			assert.NotContains(t, body, "secret plan")
		})
	}
	assert.Zero(t, s.hsFetches.Load(), "no refused link reached the homeserver")

	resp, body := get(t, valid)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "secret plan", body)
}
