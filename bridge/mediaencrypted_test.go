package bridge

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/medialink"
)

// A file from an encrypted room (content.file instead of content.url)
// reaches SfB as a link like any other; the link opens, with the bridge's
// key only, to the file's key and the type the sender gave.
func TestEncryptedMatrixFileReachesSfBAsLink(t *testing.T) {
	e := newTestEnv(t, withMediaLinks("https://bridge.example.org"))
	ul, client, session := e.mustLogin()
	portal := e.portalFor(ul.ID, bob)
	file := attachment.NewEncryptedFile()
	ciphertext := []byte("plaintext of the scan")
	file.EncryptInPlace(ciphertext)
	content := &event.MessageEventContent{
		MsgType: event.MsgImage,
		Body:    "scan.png",
		File:    &event.EncryptedFileInfo{EncryptedFile: *file, URL: "mxc://example.org/EnCrYpTeD"},
		Info:    &event.FileInfo{MimeType: "image/png", Size: 21},
	}
	resp, err := client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$encfile", content))
	require.NoError(t, err)
	assert.True(t, resp.Pending)
	require.Eventually(t, func() bool { return len(session.sentMessages()) == 1 }, 5*time.Second, 2*time.Millisecond)
	sent := session.sentMessages()[0]

	prefix := "📎 scan.png (21 bytes): "
	require.True(t, strings.HasPrefix(sent.Msg.Text, prefix), sent.Msg.Text)
	link := strings.TrimPrefix(sent.Msg.Text, prefix)
	assert.NotContains(t, sent.Msg.Text+sent.Msg.HTML, file.Key.Key, "the file's key is not readable in the message")
	u, err := url.Parse(link)
	require.NoError(t, err)
	parts := strings.Split(strings.TrimPrefix(u.Path, medialink.PathPrefix+"e/"), "/")
	require.Len(t, parts, 6, u.Path)
	media, err := e.conn.MediaLinks().VerifyEncrypted(parts[0], parts[1], parts[2], parts[3], parts[4], parts[5])
	require.NoError(t, err)
	assert.Equal(t, "mxc://example.org/EnCrYpTeD", media.URI.String())
	assert.Equal(t, "image/png", media.MediaType)
	require.NotNil(t, media.File)
	plain := bytes.Clone(ciphertext)
	require.NoError(t, media.File.DecryptInPlace(plain))
	assert.Equal(t, "plaintext of the scan", string(plain))
}

// An encrypted file whose key the bridge cannot use is refused with a
// notice, not sent as a link that could never work.
func TestEncryptedMatrixFileWithUnusableKeyIsRefused(t *testing.T) {
	e := newTestEnv(t, withMediaLinks("https://bridge.example.org"))
	ul, client, session := e.mustLogin()
	portal := e.portalFor(ul.ID, bob)
	content := &event.MessageEventContent{MsgType: event.MsgFile, Body: "secret.pdf", File: &event.EncryptedFileInfo{URL: "mxc://example.org/enc"}}
	_, err := client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$enc", content))
	requireNotice(t, err, event.MessageStatusFail, "encrypted in a way the bridge cannot read")
	assert.Empty(t, session.sentMessages())
	requireOutboxEmpty(t, e, ul.ID)
}
