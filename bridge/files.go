package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/gif"  // image sizes of offered GIFs
	_ "image/jpeg" // and JPEGs
	_ "image/png"  // and PNGs
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/medialink"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/msgconv"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// defaultUploadSize is the upload limit until the homeserver said its
// own: bridgev2's default, Synapse's too.
const defaultUploadSize = 50 << 20

// fileFetchTimeout bounds fetching one offered file from SfB.
const fileFetchTimeout = 2 * time.Minute

var _ bridgev2.MaxFileSizeingNetwork = (*Connector)(nil)

// SetMaxFileSize implements bridgev2.MaxFileSizeingNetwork: bridgev2 calls
// it with the homeserver's upload limit (m.upload.size) after startup.
func (c *Connector) SetMaxFileSize(maxSize int64) {
	c.homeserverUploadSize.Store(maxSize)
}

// maxIncomingFileSize is the largest file from SfB the bridge uploads:
// network.media.max_file_size, but never more than the homeserver takes.
func (c *Connector) maxIncomingFileSize() int64 {
	limit := c.homeserverUploadSize.Load()
	if limit <= 0 {
		limit = defaultUploadSize
	}
	if own := c.Config.Media.MaxFileSize; own > 0 && own < limit {
		limit = own
	}
	return limit
}

// handleFileOffered bridges a file or image an SfB user sent: uploaded to
// Matrix when the transport can fetch it, else a notice naming it (see
// convertSfBFile). Like a message, it is deduplicated by its ID.
func (c *Client) handleFileOffered(ctx context.Context, evt sfb.FileOffered) {
	meta, id, ok := c.incoming(ctx, "file offer", evt.ID, evt.Conversation, evt.From, evt.Time,
		evt.File.Name+"\x00"+strconv.FormatInt(evt.File.Size, 10))
	if !ok {
		return
	}
	c.queueReliably(ctx, &simplevent.Message[sfb.FileOffered]{
		EventMeta:          meta,
		ID:                 id,
		Data:               evt,
		ConvertMessageFunc: c.conn.convertSfBFile,
	})
}

// errFileTooLarge: the file is larger than the bridge uploads.
var errFileTooLarge = errors.New("file is larger than the upload limit")

// convertSfBFile fetches an offered file and uploads it to Matrix as
// m.image, m.video, m.audio or m.file. Whatever keeps it from Matrix
// (the transport cannot fetch it, fetching failed, it is too large, the
// homeserver refused it) becomes a notice that names the file and says
// how to get it: a file is never dropped in silence. Only a homeserver
// that is unavailable for now fails the event, so that it is retried.
func (c *Connector) convertSfBFile(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, evt sfb.FileOffered) (*bridgev2.ConvertedMessage, error) {
	log := zerolog.Ctx(ctx)
	f := evt.File
	name := offeredFileName(f)
	limit := c.maxIncomingFileSize()
	switch {
	case f.Open == nil && isWebAddress(f.Location):
		return fileNotice(elsewhereNotice(evt.From, name, f.Location)), nil
	case f.Open == nil:
		return fileNotice(cannotFetchNotice(evt.From, name, f.Size)), nil
	case f.Size > limit:
		return fileNotice(tooLargeNotice(evt.From, name, f.Size, limit)), nil
	}
	data, err := fetchOffered(ctx, f, limit)
	if errors.Is(err, errFileTooLarge) {
		return fileNotice(tooLargeNotice(evt.From, name, -1, limit)), nil
	}
	if err != nil {
		log.Warn().Err(err).Str("file", name).Msg("Failed to fetch file offered on SfB")
		return fileNotice(fetchFailedNotice(evt.From, name, f.Size)), nil
	}
	mimeType := contentType(f.ContentType, data)
	info := &event.FileInfo{MimeType: mimeType, Size: len(data)}
	msgType := fileMsgType(mimeType)
	if msgType == event.MsgImage {
		// Cheap: only the header is read. Before the upload, which
		// encrypts data in place in an encrypted room.
		if cfg, _, err := image.DecodeConfig(bytes.NewReader(data)); err == nil {
			info.Width, info.Height = cfg.Width, cfg.Height
		}
	}
	url, encrypted, err := intent.UploadMedia(ctx, portal.MXID, data, name, mimeType)
	switch {
	case errors.Is(err, bridgev2.ErrMediaTooLarge):
		return fileNotice(tooLargeNotice(evt.From, name, int64(len(data)), limit)), nil
	case transientFailure(err):
		return nil, fmt.Errorf("upload %s from SfB: %w", name, err)
	case err != nil:
		log.Warn().Err(err).Str("file", name).Msg("Homeserver refused a file offered on SfB")
		return fileNotice(fetchFailedNotice(evt.From, name, int64(len(data)))), nil
	}
	// In an encrypted room the address is in encrypted, url is empty.
	content := &event.MessageEventContent{MsgType: msgType, Body: name, FileName: name, URL: url, File: encrypted, Info: info}
	return onePart(content, nil), nil
}

// fetchOffered reads an offered file, at most limit bytes.
func fetchOffered(ctx context.Context, f sfb.File, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, fileFetchTimeout)
	defer cancel()
	body, err := f.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, errFileTooLarge
	}
	return data, nil
}

// offeredFileName is the name the file gets in Matrix: the sender's,
// reduced to a safe base name, or one made from its type.
func offeredFileName(f sfb.File) string {
	if strings.TrimSpace(f.Name) != "" {
		// The name without any folder the sender's client put in it.
		return medialink.SafeName(path.Base(strings.ReplaceAll(f.Name, `\`, "/")))
	}
	base := "file"
	if strings.HasPrefix(f.ContentType, "image/") {
		base = "image"
	}
	if exts, _ := mime.ExtensionsByType(f.ContentType); len(exts) > 0 {
		return base + exts[0]
	}
	return base
}

// contentType is the file's MIME type as the sender gave it, or sniffed
// when they gave none.
func contentType(given string, data []byte) string {
	if mt, _, err := mime.ParseMediaType(given); err == nil && mt != "application/octet-stream" {
		return mt
	}
	mt, _, _ := mime.ParseMediaType(http.DetectContentType(data))
	return mt
}

func fileMsgType(mimeType string) event.MessageType {
	switch {
	case strings.HasPrefix(mimeType, "image/"):
		return event.MsgImage
	case strings.HasPrefix(mimeType, "video/"):
		return event.MsgVideo
	case strings.HasPrefix(mimeType, "audio/"):
		return event.MsgAudio
	}
	return event.MsgFile
}

func fileNotice(text string) *bridgev2.ConvertedMessage {
	return onePart(&event.MessageEventContent{MsgType: event.MsgNotice, Body: text}, nil)
}

// The notices are for the colleague in the room, not for an operator:
// what was sent, and what to do to get it.

func cannotFetchNotice(from sfb.Person, name string, size int64) string {
	who := personName(from)
	return fmt.Sprintf("%s sent the file %s on Skype for Business. Files sent that way cannot be passed on to Matrix: "+
		"please ask %s to send it by email or to share it through a shared folder or a link.", who, describeFile(name, size), who)
}

func elsewhereNotice(from sfb.Person, name, location string) string {
	return fmt.Sprintf("%s showed the picture %s on Skype for Business. It is kept on another web server, so it is not copied here; "+
		"you can open it at %s", personName(from), strconv.Quote(name), location)
}

func fetchFailedNotice(from sfb.Person, name string, size int64) string {
	who := personName(from)
	return fmt.Sprintf("%s sent the file %s on Skype for Business, but it could not be passed on to Matrix. "+
		"Please ask %s to send it again by email or to share it through a shared folder or a link.", who, describeFile(name, size), who)
}

func tooLargeNotice(from sfb.Person, name string, size, limit int64) string {
	who := personName(from)
	return fmt.Sprintf("%s sent the file %s on Skype for Business. It is larger than the %s that can be passed on to Matrix: "+
		"please ask %s to share it through a shared folder or a link.", who, describeFile(name, size), formatSize(int(limit)), who)
}

// describeFile is a file's name in quotes and its size when known.
func describeFile(name string, size int64) string {
	if size > 0 {
		return fmt.Sprintf("%q (%s)", name, formatSize(int(size)))
	}
	return strconv.Quote(name)
}

// isWebAddress reports whether a notice may offer s as a link.
func isWebAddress(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && !strings.ContainsAny(s, " \n")
}

// personName is how notices name p: the directory name without control
// characters or runs of white space, else the address.
func personName(p sfb.Person) string {
	if name := msgconv.CleanName(p.DisplayName); name != "" {
		return name
	}
	return p.URI.Address()
}
