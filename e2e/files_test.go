package e2e

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// A picture an SfB colleague pastes into a message (a UCWA-based client
// sends it inline in the HTML) arrives in Element as m.image whose
// content downloads, through authenticated media, to the same bytes; a
// picture the bridge does not fetch arrives as a notice naming it and
// saying where it is; emoticon images without alt arrive as emoji.
func TestSfBPicturesArriveInElement(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "pablo")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	room := env.openPortal(t, p, "Hello Pablo")

	img := image.NewRGBA(image.Rect(0, 0, 12, 5))
	for x := range 12 {
		img.Set(x, x%5, color.RGBA{R: uint8(20 * x), G: 90, B: 200, A: 255})
	}
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, img))
	pic := buf.Bytes()

	from := p.mx.mark()
	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI,
		sfb.Message{HTML: sim.PastedImageHTML("Here is the error I get:", "image/png", pic)}))
	p.mx.waitFor(from, hop, "the text of the message", isMessage(room, p.ghost, equals("Here is the error I get:")))
	evt := p.mx.waitFor(from, hop, "the pasted picture as m.image", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Sender == p.ghost && evt.Type == event.EventMessage &&
			evt.Content.AsMessage().MsgType == event.MsgImage
	})
	msg := evt.Content.AsMessage()
	assert.Equal(t, "image.png", msg.Body)
	require.NotNil(t, msg.Info)
	assert.Equal(t, "image/png", msg.Info.MimeType)
	assert.Equal(t, len(pic), msg.Info.Size)
	assert.Equal(t, 12, msg.Info.Width)
	assert.Equal(t, 5, msg.Info.Height)
	mxc, err := msg.URL.Parse()
	require.NoError(t, err)
	got, err := p.mx.Client.DownloadBytes(ctx, mxc)
	require.NoError(t, err, "authenticated media download")
	assert.Equal(t, pic, got, "the same bytes")

	from = p.mx.mark()
	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{
		HTML: `<span style="font-family:Segoe UI;font-size:9pt;">org chart: <img src="https://intranet.contoso.com/hr/org-chart.png"></span>`,
	}))
	notice := p.mx.waitFor(from, hop, "a notice naming the picture", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Sender == p.ghost && evt.Type == event.EventMessage &&
			evt.Content.AsMessage().MsgType == event.MsgNotice
	})
	body := notice.Content.AsMessage().Body
	assert.Contains(t, body, `"org-chart.png"`)
	assert.Contains(t, body, "https://intranet.contoso.com/hr/org-chart.png")

	from = p.mx.mark()
	emoticons, err := sim.Sample("webapp-emoticon-images-no-alt")
	require.NoError(t, err)
	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{HTML: emoticons}))
	evt = p.mx.waitFor(from, hop, "the emoticons as emoji", isMessage(room, p.ghost, func(b string) bool {
		return strings.HasPrefix(b, "Thanks for the slides")
	}))
	assert.Equal(t, "Thanks for the slides 🙂 see you at 10 ☕", evt.Content.AsMessage().Body)

	images := 0
	for _, e := range p.mx.Events(0) {
		if e.RoomID == room && e.Type == event.EventMessage && e.Content.AsMessage().MsgType == event.MsgImage {
			images++
		}
	}
	assert.Equal(t, 1, images, "the picture once")
}
