package ucwa

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// onePixelPNG is a 1x1 PNG, as a pasted picture's bytes.
var onePixelPNG, _ = base64.StdEncoding.DecodeString("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

func TestInlineImages(t *testing.T) {
	pngURI := "data:image/png;base64," + base64.StdEncoding.EncodeToString(onePixelPNG)
	body := `<span style="font-family:Segoe UI;font-size:9pt;">Look: <img src="` + pngURI + `" width="1">` +
		`<img class="emoticon emoticon-smile" src="data:image/png;base64,AAAA">` +
		`<img src="https://lyncweb.contoso.com/Content/emoticons/Smile_40x40.png">` +
		`<IMG SRC="/ucwa/images/chart.png"/>` +
		`<img src="data:text/html,<b>x</b>">` +
		`<img src="javascript:alert(1)"><img alt="no source">` +
		`<img src="https://intranet.contoso.com/logo.gif"></span>`
	got := inlineImages(body)
	require.Len(t, got, 3, "the picture, the pool image and the web image; no emoticons, no other data or schemes")
	assert.Equal(t, onePixelPNG, got[0].data)
	assert.Equal(t, "image/png", got[0].contentType)
	assert.Equal(t, "/ucwa/images/chart.png", got[1].src)
	assert.Nil(t, got[1].data)
	assert.Equal(t, "https://intranet.contoso.com/logo.gif", got[2].src)

	assert.Empty(t, inlineImages(`<b>no pictures</b>`))
	assert.Len(t, inlineImages(strings.Repeat(`<img src="/a.png">`, 50)), maxInlineImages)
}

func TestImageName(t *testing.T) {
	assert.Equal(t, "image.png", imageName(1, "image/png"))
	assert.Equal(t, "image-2.jpg", imageName(2, "image/jpeg"))
	assert.Equal(t, "image", imageName(1, ""))
}

func FuzzInlineImages(f *testing.F) {
	f.Add(`<img src="data:image/png;base64,iVBORw0KGgo=">`)
	f.Add(`<img class="emoticon" src="/emoticons/smile.png"><img src="/x.png"`)
	f.Add(`<img src="data:image/gif;base64,%%%">`)
	f.Fuzz(func(t *testing.T, body string) {
		imgs := inlineImages(body)
		if len(imgs) > maxInlineImages {
			t.Fatalf("%d images", len(imgs))
		}
		for _, img := range imgs {
			if img.data != nil && !strings.HasPrefix(img.contentType, "image/") {
				t.Fatalf("data of type %q taken as an image", img.contentType)
			}
		}
	})
}

// TestSimPastedImageIsOffered: a picture pasted into a message from a
// UCWA-based client arrives as the message and an offered file with the
// picture's bytes; a picture on the pool is fetched with the session's
// token; one on another server is not fetched, its address given.
func TestSimPastedImageIsOffered(t *testing.T) {
	var mu sync.Mutex
	var poolAuth []string
	srv, tr := startSim(t, sim.Options{}, func(simulator http.Handler) http.Handler {
		mux := http.NewServeMux()
		mux.HandleFunc("/pool-content/chart.png", func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			poolAuth = append(poolAuth, r.Header.Get("Authorization"))
			mu.Unlock()
			if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "image/png")
			_, _ = w.Write(onePixelPNG)
		})
		mux.Handle("/", simulator)
		return mux
	})
	session, rec := simSignIn(t, tr)

	pngURI := "data:image/png;base64," + base64.StdEncoding.EncodeToString(onePixelPNG)
	ctx := context.Background()
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{
		HTML: `<span>see <img src="` + pngURI + `"><img src="/pool-content/chart.png"><img src="https://intranet.example/logo.gif"></span>`,
	}))
	require.Eventually(t, func() bool { return len(eventsOf[sfb.FileOffered](rec.all())) == 3 }, waitFor, tick)
	msgs := messages(rec.all())
	require.Len(t, msgs, 1)
	assert.Equal(t, "see", strings.TrimSpace(msgs[0].Message.Text))
	files := eventsOf[sfb.FileOffered](rec.all())
	for i, f := range files {
		assert.Equal(t, msgs[0].ID+"#image"+string(rune('1'+i)), f.ID)
		assert.Equal(t, bob, f.From.URI)
		assert.Equal(t, bob, f.Conversation.Peer)
	}

	pasted := files[0].File
	assert.Equal(t, "image.png", pasted.Name)
	assert.Equal(t, "image/png", pasted.ContentType)
	assert.EqualValues(t, len(onePixelPNG), pasted.Size)
	assert.Equal(t, onePixelPNG, readAll(t, pasted))

	onPool := files[1].File
	assert.Equal(t, "chart.png", onPool.Name)
	assert.Equal(t, onePixelPNG, readAll(t, onPool))
	mu.Lock()
	assert.Equal(t, []string{"Bearer " + session.Token().Value}, poolAuth, "fetched once, with the session's token")
	mu.Unlock()

	elsewhere := files[2].File
	assert.Nil(t, elsewhere.Open, "no host but the pool is fetched from")
	assert.Equal(t, "https://intranet.example/logo.gif", elsewhere.Location)
	assert.Equal(t, "logo.gif", elsewhere.Name)
}

func readAll(t *testing.T, f sfb.File) []byte {
	t.Helper()
	require.NotNil(t, f.Open)
	rc, err := f.Open(context.Background())
	require.NoError(t, err)
	defer rc.Close()
	data, err := io.ReadAll(rc)
	require.NoError(t, err)
	return data
}
