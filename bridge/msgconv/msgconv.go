// Package msgconv converts instant-message content between Skype for
// Business and Matrix: SfB's plain text and HTML to m.room.message content
// and back, sanitised to what each side accepts.
package msgconv

import (
	"errors"
	"fmt"
	"html"
	"strings"

	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

const (
	// maxMatrixFieldJSON bounds body and formatted_body each, measured as
	// encoded JSON, so that an event stays below Matrix's 65,536-byte limit
	// with room for the envelope and the other field.
	maxMatrixFieldJSON = 28 * 1024
	// MaxSfBMessageBytes bounds what the bridge sends to SfB, per form
	// (text and HTML). SfB clients show messages of a few thousand
	// characters; far longer ones are pastes that the server or the
	// recipient's client may refuse, and the sender should know.
	MaxSfBMessageBytes = 32 * 1024
	// maxHTMLInput bounds HTML the bridge parses at all; beyond it only
	// the plain-text form is used.
	maxHTMLInput = 256 * 1024
)

var (
	// ErrEmpty: the message has no text to send.
	ErrEmpty = errors.New("message has no text")
	// ErrTooLong: the message is longer than SfB accepts.
	ErrTooLong = errors.New("message is too long for Skype for Business")
)

// ToMatrix converts an instant message from SfB into Matrix message
// content: one event's worth, or several in order when the message is
// longer than one Matrix event holds (see split.go). The plain-text body
// is always set; formatted_body only when the HTML carried formatting that
// survives sanitising. It returns nothing for a message without text.
func ToMatrix(msg sfb.Message) []*event.MessageEventContent {
	text := replaceEmoticons(cleanText(msg.Text))
	if strings.TrimSpace(text) == "" && strings.TrimSpace(msg.HTML) == "" && msg.RTF != "" {
		text = replaceEmoticons(RTFToText(msg.RTF))
	}
	var formatted string
	if h := cleanText(msg.HTML); strings.TrimSpace(h) != "" {
		if len(h) > maxHTMLInput {
			// Too large to parse; its text still goes.
			if strings.TrimSpace(text) == "" {
				text = tidyLines(cleanText(tokenText(h, new(int))))
			}
		} else {
			formatted = strings.TrimSpace(SfBHTMLToMatrix(h))
			// The body is the text of what Element shows, not the
			// plain form beside the HTML: a transport that gets HTML
			// only derives that one crudely (UCWA keeps the text of
			// Office style blocks and <xml> islands).
			if t := HTMLToText(formatted); strings.TrimSpace(t) != "" {
				text = t
			}
			if !strings.ContainsRune(formatted, '<') {
				// Only text and entities were left: the body says it all.
				formatted = ""
			}
		}
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return nil
	}
	if jsonSize(text) <= maxMatrixFieldJSON && jsonSize(formatted) <= maxMatrixFieldJSON {
		return []*event.MessageEventContent{newContent(text, formatted)}
	}
	if formatted != "" {
		if parts, ok := splitFormatted(formatted); ok {
			return parts
		}
	}
	// Without formatting, the body may take the room of both fields.
	var parts []*event.MessageEventContent
	for _, piece := range splitText(text, 2*maxMatrixFieldJSON, jsonRuneSize) {
		parts = append(parts, newContent(piece, ""))
	}
	return parts
}

// splitFormatted cuts sanitised HTML into parts that each fit one event,
// with the plain-text body of each part derived from its HTML.
func splitFormatted(formatted string) ([]*event.MessageEventContent, bool) {
	pieces, ok := splitHTML(formatted, maxMatrixFieldJSON)
	if !ok {
		return nil, false
	}
	parts := make([]*event.MessageEventContent, 0, len(pieces))
	for _, piece := range pieces {
		text := HTMLToText(piece)
		if jsonSize(text) > maxMatrixFieldJSON {
			return nil, false
		}
		if text == "" {
			// Markup without text, such as an <hr> cut off at
			// the end: nothing to show on its own.
			continue
		}
		if !strings.ContainsRune(piece, '<') {
			piece = ""
		}
		parts = append(parts, newContent(text, piece))
	}
	return parts, len(parts) > 0
}

func newContent(body, formatted string) *event.MessageEventContent {
	content := &event.MessageEventContent{MsgType: event.MsgText, Body: body}
	if formatted != "" {
		content.Format = event.FormatHTML
		content.FormattedBody = formatted
	}
	return content
}

// SfBHTMLToMatrix sanitises an HTML message from SfB to the subset the
// Matrix specification allows, flattening SfB's styled font wrappers.
func SfBHTMLToMatrix(in string) string {
	return matrixPolicy.sanitize(cleanText(in))
}

// MatrixHTMLToSfB sanitises a Matrix formatted_body for SfB: reply
// fallbacks removed, mentions reduced to their text, only basic formatting
// kept.
func MatrixHTMLToSfB(in string) string {
	return sfbPolicy.sanitize(cleanText(in))
}

// FromMatrix converts Matrix message content (m.text, m.notice, m.emote)
// into an SfB message. Reply fallbacks are removed. For m.emote, senderName
// (the Matrix user's name as the peer knows it) leads the text, as SfB has
// no emotes. Other message types are the caller's to refuse.
func FromMatrix(content *event.MessageEventContent, senderName string) (sfb.Message, error) {
	c := *content
	c.RemoveReplyFallback()
	text := strings.TrimSpace(cleanText(c.Body))
	var htmlOut string
	if c.Format == event.FormatHTML && strings.TrimSpace(c.FormattedBody) != "" && len(c.FormattedBody) <= maxHTMLInput {
		htmlOut = strings.TrimSpace(MatrixHTMLToSfB(event.TrimReplyFallbackHTML(c.FormattedBody)))
		if text == "" {
			text = HTMLToText(htmlOut)
		}
		if !strings.ContainsRune(htmlOut, '<') {
			htmlOut = ""
		}
	}
	if text == "" {
		return sfb.Message{}, ErrEmpty
	}
	if c.MsgType == event.MsgEmote {
		prefix := "* "
		if name := strings.TrimSpace(cleanText(senderName)); name != "" {
			prefix = "* " + name + " "
		}
		text = prefix + text
		if htmlOut != "" {
			htmlOut = html.EscapeString(prefix) + htmlOut
		}
	}
	if len(text) > MaxSfBMessageBytes {
		return sfb.Message{}, fmt.Errorf("%w (%d bytes, at most %d)", ErrTooLong, len(text), MaxSfBMessageBytes)
	}
	if len(htmlOut) > MaxSfBMessageBytes {
		// The text alone fits: send it without formatting rather than
		// refuse it.
		htmlOut = ""
	}
	return sfb.Message{Text: text, HTML: htmlOut}, nil
}
