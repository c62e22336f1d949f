package bridge

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// uploadIntent is a ghost's intent as far as file bridging uses it: it
// keeps what was uploaded, or fails with err.
type uploadIntent struct {
	bridgev2.MatrixAPI
	err error

	mu      sync.Mutex
	uploads []upload
}

type upload struct {
	room           id.RoomID
	data           []byte
	name, mimeType string
}

func (i *uploadIntent) UploadMedia(_ context.Context, roomID id.RoomID, data []byte, fileName, mimeType string) (id.ContentURIString, *event.EncryptedFileInfo, error) {
	if i.err != nil {
		return "", nil, i.err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.uploads = append(i.uploads, upload{roomID, append([]byte(nil), data...), fileName, mimeType})
	return "mxc://example.org/upload1", nil, nil
}

func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	img.Set(1, 1, color.RGBA{R: 255, A: 255})
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, img))
	return buf.Bytes()
}

// opener serves data as an offered file's content and counts the fetches.
func opener(data []byte, err error, opened *int) func(context.Context) (io.ReadCloser, error) {
	return func(context.Context) (io.ReadCloser, error) {
		*opened++
		if err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(data)), nil
	}
}

var filePortal = &bridgev2.Portal{Portal: &database.Portal{MXID: "!room:example.org"}}

// convertOffer emits offer on a fresh login and converts the event the
// bridge queued for it.
func convertOffer(t *testing.T, e *testEnv, intent *uploadIntent, offer sfb.FileOffered) (*simplevent.Message[sfb.FileOffered], *bridgev2.ConvertedMessage, error) {
	t.Helper()
	_, _, session := e.mustLogin()
	session.emit(offer)
	events := e.queuedEvents()
	require.Len(t, events, 1)
	msg, ok := events[0].(*simplevent.Message[sfb.FileOffered])
	require.True(t, ok, "got %T", events[0])
	converted, err := msg.ConvertMessage(e.ctx, filePortal, intent)
	return msg, converted, err
}

func onlyContent(t *testing.T, converted *bridgev2.ConvertedMessage) *event.MessageEventContent {
	t.Helper()
	require.Len(t, converted.Parts, 1)
	assert.Equal(t, event.EventMessage, converted.Parts[0].Type)
	return converted.Parts[0].Content
}

func offerFromBob(id string, f sfb.File) sfb.FileOffered {
	return sfb.FileOffered{ID: id, Conversation: sfb.Conversation{Peer: bob}, From: sfb.Person{URI: bob, DisplayName: "Bob Builder"}, File: f, Time: time.UnixMilli(1700000000000)}
}

func TestImageFromSfBUploadedAsImage(t *testing.T) {
	e := newTestEnv(t)
	pic := testPNG(t, 7, 3)
	opened := 0
	intent := &uploadIntent{}
	msg, converted, err := convertOffer(t, e, intent, offerFromBob("msg-1#img0",
		sfb.File{Name: `C:\Users\bob\Pictures\screenshot.png`, ContentType: "image/png", Size: -1, Open: opener(pic, nil, &opened)}))
	require.NoError(t, err)
	assert.Equal(t, networkid.MessageID("msg-1#img0"), msg.GetID(), "deduplicated by the offer's ID")
	assert.Equal(t, networkid.UserID("bob@contoso.com"), msg.GetSender().Sender)
	assert.Equal(t, networkid.PortalKey{ID: "bob@contoso.com", Receiver: msg.GetPortalKey().Receiver}, msg.GetPortalKey())

	content := onlyContent(t, converted)
	assert.Equal(t, event.MsgImage, content.MsgType)
	assert.Equal(t, "screenshot.png", content.Body, "the name without the sender's folders")
	assert.Equal(t, id.ContentURIString("mxc://example.org/upload1"), content.URL)
	require.NotNil(t, content.Info)
	assert.Equal(t, "image/png", content.Info.MimeType)
	assert.Equal(t, len(pic), content.Info.Size)
	assert.Equal(t, 7, content.Info.Width)
	assert.Equal(t, 3, content.Info.Height)
	require.Len(t, intent.uploads, 1)
	assert.Equal(t, pic, intent.uploads[0].data)
	assert.Equal(t, id.RoomID("!room:example.org"), intent.uploads[0].room)
	assert.Equal(t, "screenshot.png", intent.uploads[0].name)
	assert.Equal(t, 1, opened)
}

func TestFileFromSfBTypeSniffedWhenNotGiven(t *testing.T) {
	e := newTestEnv(t)
	opened := 0
	_, converted, err := convertOffer(t, e, &uploadIntent{}, offerFromBob("f1",
		sfb.File{Name: "notes.txt", Size: 5, Open: opener([]byte("hello"), nil, &opened)}))
	require.NoError(t, err)
	content := onlyContent(t, converted)
	assert.Equal(t, event.MsgFile, content.MsgType)
	assert.Equal(t, "text/plain", content.Info.MimeType)
	assert.Zero(t, content.Info.Width)
}

func TestFileFromSfBThatCannotBeFetchedBecomesNotice(t *testing.T) {
	e := newTestEnv(t)
	intent := &uploadIntent{}
	_, converted, err := convertOffer(t, e, intent, offerFromBob("ft-1",
		sfb.File{Name: "Quarterly report.pdf", ContentType: "application/pdf", Size: 1_234_567}))
	require.NoError(t, err)
	content := onlyContent(t, converted)
	assert.Equal(t, event.MsgNotice, content.MsgType)
	assert.Contains(t, content.Body, `Bob Builder sent the file "Quarterly report.pdf" (1.2 MB)`)
	assert.Contains(t, content.Body, "email")
	assert.Empty(t, intent.uploads)
}

func TestImageFromSfBOnAnotherServerBecomesNoticeWithItsAddress(t *testing.T) {
	e := newTestEnv(t)
	_, converted, err := convertOffer(t, e, &uploadIntent{}, offerFromBob("m#image1",
		sfb.File{Name: "logo.gif", Size: -1, Location: "https://intranet.contoso.com/logo.gif"}))
	require.NoError(t, err)
	content := onlyContent(t, converted)
	assert.Equal(t, event.MsgNotice, content.MsgType)
	assert.Contains(t, content.Body, `Bob Builder showed the picture "logo.gif"`)
	assert.Contains(t, content.Body, "https://intranet.contoso.com/logo.gif")

	e2 := newTestEnv(t)
	_, converted, err = convertOffer(t, e2, &uploadIntent{}, offerFromBob("m#image2",
		sfb.File{Name: "x.png", Size: -1, Location: "javascript:alert(1)"}))
	require.NoError(t, err)
	body := onlyContent(t, converted).Body
	assert.NotContains(t, body, "javascript", "only a web address is offered as a link")
	assert.Contains(t, body, `"x.png"`)
}

func TestFileFromSfBWhoseFetchFailsBecomesNotice(t *testing.T) {
	e := newTestEnv(t)
	opened := 0
	_, converted, err := convertOffer(t, e, &uploadIntent{}, offerFromBob("img-2",
		sfb.File{Name: "photo.jpg", Size: -1, Open: opener(nil, errors.New("403 Forbidden"), &opened)}))
	require.NoError(t, err, "a fetch that fails is said in the room, not retried for ever")
	content := onlyContent(t, converted)
	assert.Equal(t, event.MsgNotice, content.MsgType)
	assert.Contains(t, content.Body, `"photo.jpg"`)
	assert.Contains(t, content.Body, "could not be passed on")
	assert.Equal(t, 1, opened)
}

func TestFileFromSfBOverTheLimitBecomesNotice(t *testing.T) {
	t.Run("declared size over the configured limit: not fetched", func(t *testing.T) {
		e := newTestEnv(t, func(_ *testEnv, c *Config) { c.Media.MaxFileSize = 1000 })
		opened := 0
		_, converted, err := convertOffer(t, e, &uploadIntent{}, offerFromBob("big",
			sfb.File{Name: "video.mp4", Size: 5000, Open: opener(make([]byte, 5000), nil, &opened)}))
		require.NoError(t, err)
		content := onlyContent(t, converted)
		assert.Equal(t, event.MsgNotice, content.MsgType)
		assert.Contains(t, content.Body, `"video.mp4" (5.0 KB)`)
		assert.Contains(t, content.Body, "larger than the 1.0 KB")
		assert.Zero(t, opened)
	})
	t.Run("unknown size, content over the homeserver's limit", func(t *testing.T) {
		e := newTestEnv(t)
		e.conn.SetMaxFileSize(100)
		opened := 0
		intent := &uploadIntent{}
		_, converted, err := convertOffer(t, e, intent, offerFromBob("big2",
			sfb.File{Name: "dump.bin", Size: -1, Open: opener(make([]byte, 101), nil, &opened)}))
		require.NoError(t, err)
		content := onlyContent(t, converted)
		assert.Equal(t, event.MsgNotice, content.MsgType)
		assert.Contains(t, content.Body, "larger than the 100 bytes")
		assert.Empty(t, intent.uploads)
	})
	t.Run("homeserver refuses the size", func(t *testing.T) {
		e := newTestEnv(t)
		opened := 0
		_, converted, err := convertOffer(t, e, &uploadIntent{err: bridgev2.ErrMediaTooLarge}, offerFromBob("big3",
			sfb.File{Name: "a.png", Size: -1, Open: opener(testPNG(t, 1, 1), nil, &opened)}))
		require.NoError(t, err)
		assert.Equal(t, event.MsgNotice, onlyContent(t, converted).MsgType)
	})
}

func TestFileFromSfBUploadFailures(t *testing.T) {
	e := newTestEnv(t)
	opened := 0
	_, _, err := convertOffer(t, e, &uploadIntent{err: httpStatus(502)}, offerFromBob("u1",
		sfb.File{Name: "a.png", Size: -1, Open: opener(testPNG(t, 1, 1), nil, &opened)}))
	require.Error(t, err, "an unavailable homeserver fails the event, so that it is retried")
	assert.True(t, transientFailure(err))

	e2 := newTestEnv(t)
	_, converted, err := convertOffer(t, e2, &uploadIntent{err: httpStatus(403)}, offerFromBob("u2",
		sfb.File{Name: "a.png", Size: -1, Open: opener(testPNG(t, 1, 1), nil, &opened)}))
	require.NoError(t, err)
	assert.Equal(t, event.MsgNotice, onlyContent(t, converted).MsgType, "a refusal is said in the room")
}

func TestFileOfferWithoutIDGetsStableID(t *testing.T) {
	e := newTestEnv(t)
	_, _, session := e.mustLogin()
	offer := offerFromBob("", sfb.File{Name: "x.pdf", Size: 3})
	session.emit(offer)
	session.emit(offer)
	other := offer
	other.File.Name = "y.pdf"
	session.emit(other)
	session.emit(sfb.FileOffered{File: sfb.File{Name: "no sender"}})
	ids := queuedIDs(e.queuedEvents())
	require.Len(t, ids, 3, "an offer without sender is dropped")
	assert.True(t, strings.HasPrefix(string(ids[0]), "sha256:"))
	assert.Equal(t, ids[0], ids[1], "a redelivery gets the same ID")
	assert.NotEqual(t, ids[0], ids[2])
}

func TestMaxIncomingFileSize(t *testing.T) {
	c := &Connector{}
	assert.EqualValues(t, defaultUploadSize, c.maxIncomingFileSize(), "before the homeserver said")
	c.SetMaxFileSize(10 << 20)
	assert.EqualValues(t, 10<<20, c.maxIncomingFileSize())
	c.Config.Media.MaxFileSize = 1 << 20
	assert.EqualValues(t, 1<<20, c.maxIncomingFileSize(), "the configured limit when smaller")
	c.Config.Media.MaxFileSize = 100 << 20
	assert.EqualValues(t, 10<<20, c.maxIncomingFileSize(), "never more than the homeserver takes")
}
