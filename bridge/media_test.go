package bridge

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/medialink"
)

const testMediaKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // base64 of 32 bytes

func withMediaLinks(publicURL string) envOption {
	return func(_ *testEnv, c *Config) {
		c.Media.PublicURL = publicURL
		c.Media.LinkKey = testMediaKey
	}
}

// A file from Matrix reaches SfB as its name, size and a signed link to
// the bridge, after the caption.
func TestMatrixFileReachesSfBAsLink(t *testing.T) {
	e := newTestEnv(t, withMediaLinks("https://bridge.example.org"))
	ul, client, session := e.mustLogin()
	portal := e.portalFor(ul.ID, bob)
	content := &event.MessageEventContent{
		MsgType:  event.MsgImage,
		Body:     "the <b>chart</b> from today",
		FileName: "chart & data.png",
		URL:      "mxc://example.org/AbCdEf",
		Info:     &event.FileInfo{MimeType: "image/png", Size: 2_345_678},
	}
	resp, err := client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$file", content))
	require.NoError(t, err)
	assert.True(t, resp.Pending)
	require.Eventually(t, func() bool { return len(session.sentMessages()) == 1 }, 5*time.Second, 2*time.Millisecond)
	sent := session.sentMessages()[0]
	assert.Equal(t, bob, sent.To)

	lines := strings.Split(sent.Msg.Text, "\n")
	require.Len(t, lines, 2, sent.Msg.Text)
	assert.Equal(t, "the <b>chart</b> from today", lines[0])
	prefix := "📎 chart & data.png (2.3 MB): "
	require.True(t, strings.HasPrefix(lines[1], prefix), lines[1])
	link := strings.TrimPrefix(lines[1], prefix)
	u, err := url.Parse(link)
	require.NoError(t, err)
	assert.Equal(t, "bridge.example.org", u.Host)
	parts := strings.Split(strings.TrimPrefix(u.Path, medialink.PathPrefix), "/")
	require.Len(t, parts, 5, u.Path)
	media, err := e.conn.MediaLinks().Verify(parts[0], parts[1], parts[2], parts[3], parts[4])
	require.NoError(t, err, "the link is signed with the configured key")
	assert.Equal(t, "mxc://example.org/AbCdEf", media.URI.String())
	assert.Equal(t, "chart & data.png", media.Name)

	escaped := strings.ReplaceAll(link, "&", "&amp;")
	assert.Equal(t, `the &lt;b&gt;chart&lt;/b&gt; from today<br>📎 chart &amp; data.png (2.3 MB): <a href="`+escaped+`">`+escaped+`</a>`, sent.Msg.HTML)
}

func TestFileWithoutMXCIsRefusedWithNotice(t *testing.T) {
	e := newTestEnv(t, withMediaLinks("https://bridge.example.org"))
	ul, client, session := e.mustLogin()
	portal := e.portalFor(ul.ID, bob)
	_, err := client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$nourl", &event.MessageEventContent{MsgType: event.MsgFile, Body: "x.pdf", URL: "https://example.org/x.pdf"}))
	requireNotice(t, err, event.MessageStatusFail, "no valid address")
	assert.Empty(t, session.sentMessages())
	requireOutboxEmpty(t, e, ul.ID)
}

func TestMediaConfig(t *testing.T) {
	t.Setenv(MediaKeyEnv, "")
	m := MediaConfig{LinkLifetime: time.Hour}
	links, err := m.mediaLinks()
	require.NoError(t, err)
	assert.Nil(t, links, "no public URL: files are refused")

	m.PublicURL = "https://bridge.example.org"
	require.NoError(t, m.validate())
	_, err = m.mediaLinks()
	assert.ErrorIs(t, err, ErrNoSecretKey)
	assert.ErrorContains(t, err, MediaKeyEnv)

	t.Setenv(MediaKeyEnv, testMediaKey)
	links, err = m.mediaLinks()
	require.NoError(t, err)
	assert.Equal(t, time.Hour, links.Lifetime())

	m.LinkKey = "too short"
	_, err = m.mediaLinks()
	assert.ErrorContains(t, err, "network.media.link_key")
	assert.NotContains(t, err.Error(), "too short", "the key is not repeated in the error")

	for _, bad := range []MediaConfig{
		{PublicURL: "bridge.example.org", LinkLifetime: time.Hour},
		{PublicURL: "https://bridge.example.org", LinkLifetime: 0},
		{PublicURL: "https://bridge.example.org", LinkLifetime: 400 * 24 * time.Hour},
		{LinkLifetime: time.Hour, MaxFileSize: -1},
	} {
		assert.Error(t, bad.validate(), "%+v", bad)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int]string{
		1: "1 byte", 999: "999 bytes", 1000: "1.0 KB", 2_345_678: "2.3 MB",
		999_960: "1.0 MB", 5_000_000_000: "5.0 GB", 7_000_000_000_000_000: "7000.0 TB",
	} {
		assert.Equal(t, want, formatSize(n), "%d", n)
	}
}

// The file's name comes from filename, else from the body; the body is a
// caption only when it differs from the file name; an unknown size is
// left out rather than shown as zero.
func TestFileMessageWording(t *testing.T) {
	t.Setenv(MediaKeyEnv, testMediaKey)
	m := MediaConfig{PublicURL: "https://bridge.example.org", LinkLifetime: time.Hour}
	links, err := m.mediaLinks()
	require.NoError(t, err)
	c := &Connector{mediaLinks: links}
	tests := []struct {
		name    string
		content event.MessageEventContent
		want    string
	}{
		{"body is the name", event.MessageEventContent{Body: "notes.txt", Info: &event.FileInfo{Size: 999}}, "📎 notes.txt (999 bytes): "},
		{"no size", event.MessageEventContent{Body: "notes.txt"}, "📎 notes.txt: "},
		{"filename equal to body", event.MessageEventContent{Body: "a.pdf", FileName: "a.pdf"}, "📎 a.pdf: "},
		{"path in the name", event.MessageEventContent{Body: "../../x.sh"}, "📎 _.._x.sh: "},
		{"caption", event.MessageEventContent{Body: "see\nattached", FileName: "a.pdf"}, "see\nattached\n📎 a.pdf: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.content.MsgType = event.MsgFile
			tt.content.URL = "mxc://example.org/AbCdEf"
			out, err := c.fileMessage(&tt.content)
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(out.Text, tt.want+"https://bridge.example.org/sfb/media/v1/example.org/AbCdEf/"), out.Text)
			assert.NotContains(t, out.HTML, "\n", "SfB shows HTML line breaks only as <br>")
		})
	}
}
