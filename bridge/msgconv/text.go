package msgconv

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// blockElements start and end on their own line in the plain-text form.
var blockElements = map[string]bool{
	"p": true, "div": true, "blockquote": true, "pre": true, "ul": true, "ol": true, "li": true,
	"h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true,
	"table": true, "tr": true, "hr": true, "details": true, "summary": true, "caption": true,
}

// HTMLToText renders an HTML fragment as plain text: line breaks for block
// elements and <br>, "- " before list items, whitespace collapsed as a
// browser would, link targets after their text when they differ.
func HTMLToText(in string) string {
	w := &textWriter{}
	w.run(cleanText(in))
	return tidyLines(w.sb.String())
}

func (w *textWriter) run(in string) {
	nodes, err := parseFragment(in)
	if err != nil {
		// Nested deeper than the parser supports: the text without
		// its structure.
		w.text(tokenText(in, &w.steps), false)
		return
	}
	for _, n := range nodes {
		w.walk(n, false)
	}
}

type textWriter struct {
	sb strings.Builder
	// pendingSpace is set after collapsed whitespace; written only if
	// more text follows on the same line.
	pendingSpace bool
	// steps counts nodes visited, so that tests can check that the work
	// stays proportional to the input however it is shaped.
	steps int
}

func (w *textWriter) atLineStart() bool {
	s := w.sb.String()
	return s == "" || strings.HasSuffix(s, "\n")
}

func (w *textWriter) newline() {
	w.pendingSpace = false
	if !w.atLineStart() {
		w.sb.WriteByte('\n')
	}
}

func (w *textWriter) text(s string, pre bool) {
	// Entities can spell what cleanText removed from the input.
	s = cleanText(s)
	if pre {
		w.sb.WriteString(s)
		w.pendingSpace = false
		return
	}
	for _, r := range s {
		if unicode.IsSpace(r) {
			w.pendingSpace = true
			continue
		}
		if w.pendingSpace && !w.atLineStart() {
			w.sb.WriteByte(' ')
		}
		w.pendingSpace = false
		w.sb.WriteRune(r)
	}
}

func (w *textWriter) walk(n *html.Node, pre bool) {
	w.steps++
	switch n.Type {
	case html.TextNode:
		w.text(n.Data, pre)
		return
	case html.ElementNode:
	default:
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			w.walk(c, pre)
		}
		return
	}
	tag := strings.ToLower(n.Data)
	switch {
	case droppedWithContent[tag]:
		return
	case tag == "br":
		w.pendingSpace = false
		w.sb.WriteByte('\n')
		return
	case tag == "img":
		w.text(imageText(n), false)
		return
	case tag == "hr":
		w.newline()
		w.sb.WriteString("---\n")
		return
	}
	block := blockElements[tag]
	if block {
		w.newline()
	}
	if tag == "li" {
		w.sb.WriteString("- ")
	}
	if tag == "blockquote" {
		w.sb.WriteString("> ")
	}
	start := w.sb.Len()
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		w.walk(c, pre || tag == "pre")
	}
	if tag == "a" {
		href, ok := allowLink(attr(n, "href"))
		if ok && !isMatrixToLink(href) && !isLabel(w.sb.String()[start:], href) {
			w.text(" ("+href+")", false)
		}
	}
	if block {
		w.newline()
	}
}

// isLabel reports whether a link's text, as written, just repeats its
// target. It looks at what the walk already wrote rather than collecting
// the link's text again: links can nest (inside scope markers such as
// <object>), and collecting per link would cost the nesting depth times
// the content. A text much longer than the target cannot be it, which
// bounds the trimming too.
func isLabel(written, href string) bool {
	if len(written) > 2*len(href)+16 {
		return false
	}
	label := strings.TrimSpace(written)
	return label == href || "mailto:"+label == href
}

// tidyLines trims trailing blanks from lines, keeps at most one empty line
// in a row and trims the whole text.
func tidyLines(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	empty := 0
	for _, l := range lines {
		l = strings.TrimRightFunc(l, unicode.IsSpace)
		if l == "" {
			empty++
			if empty > 1 {
				continue
			}
		} else {
			empty = 0
		}
		out = append(out, l)
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}

// cleanText makes outside text safe to carry: valid UTF-8 (invalid bytes
// become U+FFFD), \n line ends, no control characters other than newline
// and tab (NUL, which PostgreSQL text refuses, escape sequences, C1
// controls), and no bidirectional embeddings, overrides or isolates.
//
// The bidi controls go because they let a sender reorder what others see:
// "\u202Etxt.exe" shows as "exe.txt", and a name or a link text can be
// made to look like another. The Unicode bidi algorithm still orders
// right-to-left scripts from their letters; the explicit controls are
// rarely needed for that and cannot be told apart from a spoof.
func cleanText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.ContainsRune(s, '\r') {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		s = strings.ReplaceAll(s, "\r", "\n")
	}
	if strings.IndexFunc(s, removedRune) >= 0 {
		s = strings.Map(func(r rune) rune {
			if removedRune(r) {
				return -1
			}
			return r
		}, s)
	}
	return s
}

// removedRune reports whether cleanText drops r.
func removedRune(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case unicode.IsControl(r): // C0, DEL and C1
		return true
	case r >= '\u202A' && r <= '\u202E', r >= '\u2066' && r <= '\u2069':
		return true
	}
	return false
}

// CleanName makes a display name from outside safe to show: what
// cleanText removes, and line breaks and tabs as single spaces, so that a
// name stays on its line and cannot imitate a message.
func CleanName(s string) string {
	return strings.Join(strings.Fields(cleanText(s)), " ")
}

// jsonSize is how many bytes s takes as a JSON string body, the way Go's
// encoding/json writes it (HTML-escaping <, > and &), which is what counts
// against Matrix's 65,536-byte event limit.
func jsonSize(s string) int {
	n := 0
	for _, r := range s {
		n += jsonRuneSize(r)
	}
	return n
}

func jsonRuneSize(r rune) int {
	switch {
	case r == '<' || r == '>' || r == '&' || r == '\u2028' || r == '\u2029':
		return 6
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t':
		return 2
	case r < 0x20:
		return 6
	case r == utf8.RuneError:
		return 3
	default:
		return utf8.RuneLen(r)
	}
}
