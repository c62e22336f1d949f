package bridge

import (
	"fmt"
	"html"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/medialink"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/msgconv"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// isFile reports whether a message type carries a file, which reaches SfB
// as a link (see bridge/medialink).
func isFile(msgType event.MessageType) bool {
	switch msgType {
	case event.MsgImage, event.MsgFile, event.MsgVideo, event.MsgAudio:
		return true
	}
	return false
}

// fileMessage is what the SfB user sees of a file: its name, size and a
// link to the bridge's listener, after the caption if there is one.
func (c *Connector) fileMessage(content *event.MessageEventContent) (sfb.Message, error) {
	if c.mediaLinks == nil {
		return sfb.Message{}, refuse(fmt.Errorf("%w: %s without network.media.public_url", sfb.ErrUnsupported, content.MsgType),
			"This bridge is not set up to pass files to Skype for Business, so the file was not sent. Share a link to it instead.")
	}
	mxc := content.URL
	if content.File != nil {
		// From an encrypted room: the link carries the file's key
		// sealed (bridge/medialink/encrypted.go).
		mxc = content.File.URL
	}
	uri, err := mxc.Parse()
	if err != nil {
		return sfb.Message{}, refuse(fmt.Errorf("parse file URL %q: %w", mxc, err),
			"The file has no valid address on the homeserver, so it was not sent to Skype for Business.")
	}
	name := medialink.SafeName(content.GetFileName())
	info := content.GetInfo()
	var link string
	if content.File != nil {
		link, err = c.mediaLinks.LinkEncrypted(uri, name, info.MimeType, &content.File.EncryptedFile)
		if err != nil {
			return sfb.Message{}, refuse(err, "The file is encrypted in a way the bridge cannot read, so it was not sent to Skype for Business.")
		}
	} else {
		link, err = c.mediaLinks.Link(uri, name)
	}
	if err != nil {
		return sfb.Message{}, refuse(err, "The file has no valid address on the homeserver, so it was not sent to Skype for Business.")
	}
	label := name
	size := info.Size
	if size > 0 {
		label += " (" + formatSize(size) + ")"
	}
	text := "📎 " + label + ": " + link
	// The HTML form shows the address too: SfB derives the plain text of
	// an HTML message from what is shown, and people can see where a link
	// leads before they open it.
	htmlText := "📎 " + html.EscapeString(label) + `: <a href="` + html.EscapeString(link) + `">` + html.EscapeString(link) + `</a>`
	// With a file name of its own, the body is a caption the sender wrote.
	if caption := strings.TrimSpace(content.Body); content.FileName != "" && caption != "" && caption != content.FileName {
		text = caption + "\n" + text
		htmlText = strings.ReplaceAll(html.EscapeString(caption), "\n", "<br>") + "<br>" + htmlText
	}
	if len(text) > msgconv.MaxSfBMessageBytes || len(htmlText) > msgconv.MaxSfBMessageBytes {
		return sfb.Message{}, fmt.Errorf("%w (caption of %d bytes)", msgconv.ErrTooLong, len(content.Body))
	}
	return sfb.Message{Text: text, HTML: htmlText}, nil
}

// formatSize writes a byte count the way a file manager does: decimal
// units, one decimal place from kilobytes on.
func formatSize(n int) string {
	switch {
	case n == 1:
		return "1 byte"
	case n < 1000:
		return strconv.Itoa(n) + " bytes"
	}
	units := []string{"KB", "MB", "GB", "TB"}
	value, unit := float64(n)/1000, 0
	for value >= 999.95 && unit < len(units)-1 {
		value /= 1000
		unit++
	}
	return strconv.FormatFloat(value, 'f', 1, 64) + " " + units[unit]
}
