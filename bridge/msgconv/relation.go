package msgconv

import (
	"html"
	"strings"
	"unicode/utf8"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// maxQuoteRunes bounds the part of a message quoted in a reply or named in
// a reaction: enough to recognise it, short enough not to repeat it.
const maxQuoteRunes = 80

// Excerpt is the first non-empty line of text, cut at maxQuoteRunes with
// an ellipsis: how a reply or reaction names the message it refers to.
func Excerpt(text string) string {
	line := ""
	for l := range strings.SplitSeq(cleanText(text), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			line = l
			break
		}
	}
	if utf8.RuneCountInString(line) <= maxQuoteRunes {
		return line
	}
	return string([]rune(line)[:maxQuoteRunes-1]) + "…"
}

// WithQuote puts a short quote of the message replied to ("> Alice: first
// line") before msg, as SfB has no replies. An empty excerpt quotes
// nothing, and neither does a reply that the quote would make too long
// for SfB.
func WithQuote(msg sfb.Message, author, original string) sfb.Message {
	excerpt := Excerpt(original)
	if excerpt == "" {
		return msg
	}
	quote := "> " + excerpt
	if author = CleanName(author); author != "" {
		quote = "> " + author + ": " + excerpt
	}
	quoted := prefixed(msg, quote+"\n", html.EscapeString(quote)+"<br>")
	if len(quoted.Text) > MaxSfBMessageBytes {
		// The reply itself fits (FromMatrix checked); the quote is
		// what gives way.
		return msg
	}
	if len(quoted.HTML) > MaxSfBMessageBytes {
		quoted.HTML = ""
	}
	return quoted
}

// Edited marks msg as the new text of a message edited in Matrix: SfB
// cannot change a message it delivered.
func Edited(msg sfb.Message) sfb.Message {
	return prefixed(msg, "(edited) ", "(edited) ")
}

// Reaction is the message that tells the SfB side about a reaction:
// "Alice reacted 👍 to: first line".
func Reaction(sender, key, target string) sfb.Message {
	text := "reacted " + cleanText(strings.TrimSpace(key))
	if sender = CleanName(sender); sender != "" {
		text = sender + " " + text
	}
	if excerpt := Excerpt(target); excerpt != "" {
		text += " to: " + excerpt
	}
	return sfb.Message{Text: text}
}

// prefixed puts text before msg's text, and htmlPrefix (escaped already)
// before its HTML form when it has one.
func prefixed(msg sfb.Message, text, htmlPrefix string) sfb.Message {
	msg.Text = text + msg.Text
	if msg.HTML != "" {
		msg.HTML = htmlPrefix + msg.HTML
	}
	return msg
}
