package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

var mediaLinkPattern = regexp.MustCompile(`https?://\S+`)

// An image sent from Element reaches the SfB colleague as a link that a
// plain HTTP client, without any Matrix token, downloads byte for byte;
// the same link with another file name is refused.
func TestMatrixImageReachesSfBAsDownloadableLink(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "imogen")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	room := env.openPortal(t, p, "Send me the chart?")

	image := make([]byte, 70_000)
	_, err := rand.Read(image)
	require.NoError(t, err)
	copy(image, "\x89PNG\r\n\x1a\n")
	uploaded, err := p.mx.Client.UploadBytes(ctx, image, "image/png")
	require.NoError(t, err)
	_, err = p.mx.Client.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgImage,
		Body:    "chart.png",
		URL:     uploaded.ContentURI.CUString(),
		Info:    &event.FileInfo{MimeType: "image/png", Size: len(image)},
	})
	require.NoError(t, err)

	got := env.waitReceived(t, p, "the image as a link", func(r sim.Received) bool {
		return strings.HasPrefix(r.Message.Text, "📎 chart.png (70.0 KB): ")
	})
	link := mediaLinkPattern.FindString(got.Message.Text)
	require.NotEmpty(t, link, got.Message.Text)
	assert.Contains(t, got.Message.HTML, `<a href="`+link+`">`)

	resp, body := download(t, ctx, link)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.True(t, bytes.Equal(image, body), "the same bytes (%d of %d)", len(body), len(image))
	assert.Equal(t, "image/png", resp.Header.Get("Content-Type"))
	assert.Equal(t, `inline; filename="chart.png"; filename*=UTF-8''chart.png`, resp.Header.Get("Content-Disposition"))
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))

	tampered := strings.TrimSuffix(link, "chart.png") + "chart.html"
	resp, body = download(t, ctx, tampered)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Contains(t, string(body), "not valid")
	assert.NotContains(t, string(body), "PNG")
}

func download(t *testing.T, ctx context.Context, link string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}
