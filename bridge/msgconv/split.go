package msgconv

import (
	"html"
	"strings"
	"unicode"
	"unicode/utf8"

	xhtml "golang.org/x/net/html"
)

// A message from SfB longer than one Matrix event is sent as several, in
// order; nothing is cut off. The cuts fall between paragraphs, lines or
// words where there are any, never inside a UTF-8 sequence, and in HTML
// never inside a tag: an element cut in two is closed at the end of one
// part and opened again, with its attributes, at the start of the next.

// splitText cuts s into pieces whose cost (summed per rune) is at most
// limit each. It cuts at the last paragraph break in the second half of
// what fits, else the last line break, else the last blank, else between
// two runes; blanks at the end of a piece are dropped.
func splitText(s string, limit int, cost func(rune) int) []string {
	var parts []string
	for s != "" {
		fit, used := 0, 0
		for i, r := range s {
			if used+cost(r) > limit {
				break
			}
			used += cost(r)
			fit = i + utf8.RuneLen(r)
		}
		if fit == len(s) {
			parts = append(parts, s)
			break
		}
		if fit == 0 {
			// One rune costs more than the limit: limits are far
			// above any rune's cost, so this is a caller's bug; take
			// the rune rather than loop forever.
			_, fit = utf8.DecodeRuneInString(s)
		}
		cut, skip := cutPoint(s[:fit])
		if part := strings.TrimRightFunc(s[:cut], unicode.IsSpace); part != "" {
			parts = append(parts, part)
		}
		s = s[cut+skip:]
	}
	return parts
}

// cutPoint returns where to cut in head, the part of a text that fits, and
// how many bytes of separator to drop there.
func cutPoint(head string) (cut, skip int) {
	half := len(head) / 2
	if i := strings.LastIndex(head, "\n\n"); i > half {
		return i, 2
	}
	if i := strings.LastIndexByte(head, '\n'); i > half {
		return i, 1
	}
	if i := strings.LastIndexFunc(head, unicode.IsSpace); i > half {
		_, size := utf8.DecodeRuneInString(head[i:])
		return i, size
	}
	return len(head), 0
}

// escapedRuneSize is what r costs in the JSON of HTML text, escaped as
// html.EscapeString does.
func escapedRuneSize(r rune) int {
	switch r {
	case '<', '>':
		return jsonRuneSize('&') + 3
	case '&', '"', '\'':
		return jsonRuneSize('&') + 4
	}
	return jsonRuneSize(r)
}

// splitHTML cuts sanitised HTML into fragments of at most limit bytes of
// JSON each, at element boundaries where it can. ok is false when the
// fragment does not parse or an element's own tags leave no room.
func splitHTML(in string, limit int) (parts []string, ok bool) {
	nodes, err := parseFragment(in)
	if err != nil {
		return nil, false
	}
	s := &htmlSplitter{}
	if !s.split(nodes, limit, "", "") {
		return nil, false
	}
	s.flush("", "")
	return s.parts, true
}

// htmlSplitter collects parts; cur is the part being filled, between the
// open and close tags of the elements being split.
type htmlSplitter struct {
	parts   []string
	cur     strings.Builder
	curSize int
}

func (s *htmlSplitter) flush(open, close string) {
	if s.cur.Len() > 0 {
		s.parts = append(s.parts, open+s.cur.String()+close)
	}
	s.cur.Reset()
	s.curSize = 0
}

// split adds nodes to the parts; open and close are the tags of the
// elements around them, which each part repeats, and limit is what is
// left for the content inside them.
func (s *htmlSplitter) split(nodes []*xhtml.Node, limit int, open, close string) bool {
	for _, n := range nodes {
		var sb strings.Builder
		renderSanitised(&sb, n)
		rendered := sb.String()
		size := jsonSize(rendered)
		if s.curSize+size <= limit {
			s.cur.WriteString(rendered)
			s.curSize += size
			continue
		}
		s.flush(open, close)
		if size <= limit {
			s.cur.WriteString(rendered)
			s.curSize = size
			continue
		}
		switch n.Type {
		case xhtml.TextNode:
			for _, piece := range splitText(n.Data, limit, escapedRuneSize) {
				s.flush(open, close)
				s.cur.WriteString(html.EscapeString(piece))
				s.curSize = jsonSize(html.EscapeString(piece))
			}
		case xhtml.ElementNode:
			tagOpen, tagClose := openTag(n), "</"+n.Data+">"
			inner := limit - jsonSize(tagOpen) - jsonSize(tagClose)
			if voidElements[n.Data] || inner < limit/2 {
				return false
			}
			var children []*xhtml.Node
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				children = append(children, c)
			}
			if !s.split(children, inner, open+tagOpen, tagClose+close) {
				return false
			}
			s.flush(open+tagOpen, tagClose+close)
		default:
			return false
		}
	}
	return true
}

// renderSanitised writes n as the sanitiser wrote it: its output holds
// only allowed elements with validated attributes, so writing the parsed
// tree back the same way gives the same HTML.
func renderSanitised(sb *strings.Builder, n *xhtml.Node) {
	switch n.Type {
	case xhtml.TextNode:
		sb.WriteString(html.EscapeString(n.Data))
	case xhtml.ElementNode:
		sb.WriteString(openTag(n))
		if voidElements[n.Data] {
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			renderSanitised(sb, c)
		}
		sb.WriteString("</" + n.Data + ">")
	}
}

func openTag(n *xhtml.Node) string {
	var sb strings.Builder
	sb.WriteString("<" + n.Data)
	for _, a := range n.Attr {
		sb.WriteString(" " + a.Key + `="` + html.EscapeString(a.Val) + `"`)
	}
	sb.WriteString(">")
	return sb.String()
}
