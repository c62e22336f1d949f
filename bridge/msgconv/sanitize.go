package msgconv

import (
	"net/url"
	"regexp"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// maxDepth bounds how deep the sanitiser keeps element structure; deeper
// content is kept as text. Real messages nest a handful of levels; hostile
// input nests thousands.
const maxDepth = 64

// attrRule validates one attribute value and returns what to write, or
// false to drop the attribute.
type attrRule func(val string) (string, bool)

// policy is the set of elements one side of the bridge accepts, with the
// attributes allowed on each.
type policy struct {
	allowed map[string]map[string]attrRule
	// renamed maps deprecated or foreign tags to an allowed equivalent.
	renamed map[string]string
	// styleToTags turns inline CSS (bold, italic, underline,
	// strike-through) into tags, because SfB clients express formatting
	// that way and wrap every message in styled spans.
	styleToTags bool
	// matrixLinksToText replaces matrix.to links (mentions, room links)
	// with their text: they mean nothing to an SfB client.
	matrixLinksToText bool
}

// droppedWithContent are elements whose content is never shown as text:
// scripts, styles, embedded documents, form controls, and Matrix reply
// fallbacks (the reply relation says the same, and SfB cannot show it).
var droppedWithContent = map[string]bool{
	"script": true, "style": true, "head": true, "title": true, "meta": true, "link": true, "base": true,
	"iframe": true, "frame": true, "frameset": true, "object": true, "embed": true, "applet": true,
	"noscript": true, "noembed": true, "noframes": true, "template": true, "svg": true, "math": true,
	"textarea": true, "select": true, "option": true, "button": true, "input": true, "form": true,
	"audio": true, "video": true, "canvas": true, "source": true, "track": true, "param": true,
	"xmp": true, "plaintext": true, "mx-reply": true,
}

var voidElements = map[string]bool{"br": true, "hr": true}

var (
	colorPattern    = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)
	digitsPattern   = regexp.MustCompile(`^[0-9]{1,9}$`)
	languagePattern = regexp.MustCompile(`^language-[a-zA-Z0-9_+#.-]{1,32}$`)
)

func allowColor(val string) (string, bool) {
	val = strings.TrimSpace(val)
	return val, colorPattern.MatchString(val)
}

func allowDigits(val string) (string, bool) {
	val = strings.TrimSpace(val)
	return val, digitsPattern.MatchString(val)
}

func allowLanguageClass(val string) (string, bool) {
	val = strings.TrimSpace(val)
	return val, languagePattern.MatchString(val)
}

// allowLink keeps absolute http, https and mailto links only: anything else
// (javascript:, data:, relative paths that would resolve against the
// client) is dropped.
func allowLink(val string) (string, bool) {
	val = strings.TrimSpace(val)
	u, err := url.Parse(val)
	if err != nil {
		return "", false
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		if u.Host == "" {
			return "", false
		}
	case "mailto":
		if u.Opaque == "" {
			return "", false
		}
	default:
		return "", false
	}
	return u.String(), true
}

// matrixPolicy is the HTML subset of the Matrix client-server
// specification (m.room.message, org.matrix.custom.html) minus img, whose
// src must be an mxc:// URI that SfB content never has.
var matrixPolicy = &policy{
	allowed: map[string]map[string]attrRule{
		"font": {"color": allowColor, "data-mx-color": allowColor, "data-mx-bg-color": allowColor},
		"span": {"data-mx-color": allowColor, "data-mx-bg-color": allowColor},
		"del":  nil, "s": nil,
		"h1": nil, "h2": nil, "h3": nil, "h4": nil, "h5": nil, "h6": nil,
		"blockquote": nil, "p": nil,
		"a":   {"href": allowLink},
		"ul":  nil,
		"ol":  {"start": allowDigits},
		"sup": nil, "sub": nil, "li": nil,
		"b": nil, "i": nil, "u": nil, "strong": nil, "em": nil,
		"code": {"class": allowLanguageClass},
		"hr":   nil, "br": nil, "div": nil,
		"table": nil, "thead": nil, "tbody": nil, "tr": nil, "th": nil, "td": nil, "caption": nil,
		"pre": nil, "details": nil, "summary": nil,
	},
	renamed:     map[string]string{"strike": "del", "tt": "code", "kbd": "code", "samp": "code", "ins": "u"},
	styleToTags: true,
}

// sfbPolicy is what the bridge sends to SfB as text/html: basic
// formatting that SfB clients render. Colours, spoilers, maths and custom
// emoji have no SfB form and are reduced to their text.
var sfbPolicy = &policy{
	allowed: map[string]map[string]attrRule{
		"b": nil, "i": nil, "u": nil, "strong": nil, "em": nil, "del": nil, "s": nil,
		"code": nil, "pre": nil, "blockquote": nil, "p": nil, "div": nil, "br": nil, "hr": nil,
		"ul": nil, "ol": {"start": allowDigits}, "li": nil,
		"a":  {"href": allowLink},
		"h1": nil, "h2": nil, "h3": nil, "h4": nil, "h5": nil, "h6": nil,
		"sup": nil, "sub": nil,
		"table": nil, "thead": nil, "tbody": nil, "tr": nil, "th": nil, "td": nil, "caption": nil,
	},
	renamed:           map[string]string{"strike": "del"},
	matrixLinksToText: true,
}

// sanitize parses an HTML fragment and writes back only what p allows.
// Unknown elements are unwrapped (their text stays); dangerous ones go with
// their content.
func (p *policy) sanitize(in string) string {
	nodes, err := html.ParseFragment(strings.NewReader(in), &html.Node{Type: html.ElementNode, Data: "body", DataAtom: atom.Body})
	if err != nil {
		// The tokenizer accepts any input; an error means the reader
		// failed, which a strings.Reader does not. Fall back to text.
		return html.EscapeString(in)
	}
	var sb strings.Builder
	for _, n := range nodes {
		p.render(&sb, n, 0)
	}
	return sb.String()
}

func (p *policy) render(sb *strings.Builder, n *html.Node, depth int) {
	switch n.Type {
	case html.TextNode:
		sb.WriteString(html.EscapeString(n.Data))
		return
	case html.ElementNode:
	case html.DocumentNode:
		p.renderChildren(sb, n, depth)
		return
	default:
		// Comments, doctypes and raw nodes carry nothing to show.
		return
	}
	tag := strings.ToLower(n.Data)
	if droppedWithContent[tag] {
		return
	}
	if tag == "img" {
		if alt := attr(n, "alt"); alt != "" {
			sb.WriteString(html.EscapeString(alt))
		}
		return
	}
	if depth >= maxDepth {
		sb.WriteString(html.EscapeString(textContent(n)))
		return
	}
	if renamed, ok := p.renamed[tag]; ok {
		tag = renamed
	}
	if tag == "a" && p.matrixLinksToText {
		if href := attr(n, "href"); isMatrixToLink(href) {
			p.renderChildren(sb, n, depth+1)
			return
		}
	}

	var wrappers []string
	if p.styleToTags {
		wrappers = styleTags(attr(n, "style"))
	}
	rules, ok := p.allowed[tag]
	if ok && tag == "span" && !hasAllowedAttr(n, rules) {
		// A bare span carries nothing; SfB wraps every message in
		// several of them.
		ok = false
	}
	if ok && tag == "a" {
		if _, valid := allowLink(attr(n, "href")); !valid {
			ok = false
		}
	}
	if ok {
		sb.WriteString("<" + tag)
		for _, a := range n.Attr {
			rule, allowed := rules[strings.ToLower(a.Key)]
			if !allowed || a.Namespace != "" {
				continue
			}
			if val, valid := rule(a.Val); valid {
				sb.WriteString(" " + strings.ToLower(a.Key) + `="` + html.EscapeString(val) + `"`)
			}
		}
		sb.WriteString(">")
		if !voidElements[tag] {
			p.renderWrapped(sb, n, depth, wrappers)
			sb.WriteString("</" + tag + ">")
		}
	} else {
		p.renderWrapped(sb, n, depth, wrappers)
	}
}

// renderWrapped writes n's children inside the tags that its style
// stood for.
func (p *policy) renderWrapped(sb *strings.Builder, n *html.Node, depth int, wrappers []string) {
	for _, w := range wrappers {
		sb.WriteString("<" + w + ">")
	}
	p.renderChildren(sb, n, depth+1)
	for i := len(wrappers) - 1; i >= 0; i-- {
		sb.WriteString("</" + wrappers[i] + ">")
	}
}

func (p *policy) renderChildren(sb *strings.Builder, n *html.Node, depth int) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		p.render(sb, c, depth)
	}
}

func hasAllowedAttr(n *html.Node, rules map[string]attrRule) bool {
	for _, a := range n.Attr {
		if rule, ok := rules[strings.ToLower(a.Key)]; ok {
			if _, valid := rule(a.Val); valid {
				return true
			}
		}
	}
	return false
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if strings.EqualFold(a.Key, key) && a.Namespace == "" {
			return a.Val
		}
	}
	return ""
}

func isMatrixToLink(href string) bool {
	u, err := url.Parse(strings.TrimSpace(href))
	return err == nil && strings.EqualFold(u.Host, "matrix.to")
}

// styleTags maps the inline CSS that SfB clients use for emphasis to tags.
// Fonts, sizes and colours are dropped on purpose: SfB sends its sender's
// client defaults (Segoe UI 10pt black), which would be unreadable on a dark
// Matrix theme and say nothing the sender chose.
func styleTags(style string) []string {
	if style == "" {
		return nil
	}
	var tags []string
	for _, decl := range strings.Split(style, ";") {
		prop, val, ok := strings.Cut(decl, ":")
		if !ok {
			continue
		}
		prop = strings.ToLower(strings.TrimSpace(prop))
		val = strings.ToLower(strings.TrimSpace(val))
		switch prop {
		case "font-weight":
			if val == "bold" || val == "bolder" || val == "700" || val == "800" || val == "900" {
				tags = append(tags, "b")
			}
		case "font-style":
			if val == "italic" || val == "oblique" {
				tags = append(tags, "i")
			}
		case "text-decoration", "text-decoration-line":
			if strings.Contains(val, "underline") {
				tags = append(tags, "u")
			}
			if strings.Contains(val, "line-through") {
				tags = append(tags, "del")
			}
		}
	}
	return tags
}

func textContent(n *html.Node) string {
	var sb strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			sb.WriteString(n.Data)
			return
		}
		if n.Type == html.ElementNode && droppedWithContent[strings.ToLower(n.Data)] {
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return sb.String()
}
