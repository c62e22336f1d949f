package msgconv

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/microcosm-cc/bluemonday"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// maxDepth bounds how deep the sanitiser keeps element structure; deeper
// content is kept as text. Real messages nest a handful of levels; hostile
// input nests thousands.
const maxDepth = 64

// attrRule normalises one attribute value before sanitising (a colour to
// #rrggbb, a link to its canonical form) and returns what to write, or
// false to drop the attribute. pattern is what the sanitiser then accepts
// of the normalised value; nil accepts any (links are checked by scheme).
type attrRule struct {
	normalise func(val string) (string, bool)
	pattern   *regexp.Regexp
}

// policy is the set of elements one side of the bridge accepts, with the
// attributes allowed on each, and the transformations done before the
// sanitiser sees the HTML.
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
	// emoticons replaces SfB's emoticon names ("(smile)") outside code
	// with emoji.
	emoticons bool
	// sanitizer enforces allowed; built from it by newPolicy.
	sanitizer *bluemonday.Policy
}

// newPolicy builds the bluemonday policy that enforces p.allowed.
func newPolicy(p *policy) *policy {
	bm := bluemonday.NewPolicy()
	bm.AllowURLSchemes("http", "https", "mailto")
	bm.RequireParseableURLs(true)
	var skip []string
	for tag := range droppedWithContent {
		if !emptyElements[tag] {
			skip = append(skip, tag)
		}
	}
	bm.SkipElementsContent(skip...)
	for tag, attrs := range p.allowed {
		bm.AllowElements(tag)
		for name, rule := range attrs {
			b := bm.AllowAttrs(name)
			if rule.pattern != nil {
				b = b.Matching(rule.pattern)
			}
			b.OnElements(tag)
		}
	}
	p.sanitizer = bm
	return p
}

// droppedWithContent are elements whose content is never shown as text:
// scripts, styles, embedded documents, form controls, and Matrix reply
// fallbacks (the reply relation says the same, and SfB cannot show it),
// and the <xml> islands of Office documents pasted into SfB.
var droppedWithContent = map[string]bool{
	"script": true, "style": true, "head": true, "title": true, "meta": true, "link": true, "base": true,
	"iframe": true, "frame": true, "frameset": true, "object": true, "embed": true, "applet": true,
	"noscript": true, "noembed": true, "noframes": true, "template": true, "svg": true, "math": true,
	"textarea": true, "select": true, "option": true, "button": true, "input": true, "form": true,
	"audio": true, "video": true, "canvas": true, "source": true, "track": true, "param": true,
	"xmp": true, "plaintext": true, "mx-reply": true, "xml": true,
}

var voidElements = map[string]bool{"br": true, "hr": true}

// emptyElements are the elements dropped with their content that HTML
// defines as having none (no end tag follows).
var emptyElements = map[string]bool{
	"meta": true, "link": true, "base": true, "embed": true, "source": true, "track": true, "param": true, "input": true,
}

var (
	digitsPattern   = regexp.MustCompile(`^[0-9]{1,9}$`)
	languagePattern = regexp.MustCompile(`^language-[a-zA-Z0-9_+#.-]{1,32}$`)
	colorPattern    = regexp.MustCompile(`^#[0-9a-f]{6}$`)
	// namePattern is what the transformation step writes as an element
	// or attribute name; the parser accepts names (with quotes, say)
	// that would not read back as the same markup.
	namePattern = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

var (
	colorRule    = attrRule{normalise: parseColor, pattern: colorPattern}
	digitsRule   = attrRule{normalise: trimSpace, pattern: digitsPattern}
	languageRule = attrRule{normalise: trimSpace, pattern: languagePattern}
	linkRule     = attrRule{normalise: allowLink}
)

func trimSpace(val string) (string, bool) { return strings.TrimSpace(val), true }

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
var matrixPolicy = newPolicy(&policy{
	allowed: map[string]map[string]attrRule{
		"font": {"color": colorRule, "data-mx-color": colorRule, "data-mx-bg-color": colorRule},
		"span": {"data-mx-color": colorRule, "data-mx-bg-color": colorRule},
		"del":  nil, "s": nil,
		"h1": nil, "h2": nil, "h3": nil, "h4": nil, "h5": nil, "h6": nil,
		"blockquote": nil, "p": nil,
		"a":   {"href": linkRule},
		"ul":  nil,
		"ol":  {"start": digitsRule},
		"sup": nil, "sub": nil, "li": nil,
		"b": nil, "i": nil, "u": nil, "strong": nil, "em": nil,
		"code": {"class": languageRule},
		"hr":   nil, "br": nil, "div": nil,
		"table": nil, "thead": nil, "tbody": nil, "tr": nil, "th": nil, "td": nil, "caption": nil,
		"pre": nil, "details": nil, "summary": nil,
	},
	renamed:     map[string]string{"strike": "del", "tt": "code", "kbd": "code", "samp": "code", "ins": "u"},
	styleToTags: true,
	emoticons:   true,
})

// sfbPolicy is what the bridge sends to SfB as text/html: basic
// formatting that SfB clients render. Colours, spoilers, maths and custom
// emoji have no SfB form and are reduced to their text.
var sfbPolicy = newPolicy(&policy{
	allowed: map[string]map[string]attrRule{
		"b": nil, "i": nil, "u": nil, "strong": nil, "em": nil, "del": nil, "s": nil,
		"code": nil, "pre": nil, "blockquote": nil, "p": nil, "div": nil, "br": nil, "hr": nil,
		"ul": nil, "ol": {"start": digitsRule}, "li": nil,
		"a":  {"href": linkRule},
		"h1": nil, "h2": nil, "h3": nil, "h4": nil, "h5": nil, "h6": nil,
		"sup": nil, "sub": nil,
		"table": nil, "thead": nil, "tbody": nil, "tr": nil, "th": nil, "td": nil, "caption": nil,
	},
	renamed:           map[string]string{"strike": "del"},
	matrixLinksToText: true,
})

// sanitize applies the transformations of p (tags for inline CSS,
// mentions to names, images to their alt text, renamed tags, normalised
// colours and links) and then lets the sanitiser keep only what p allows.
// Unknown elements are unwrapped (their text stays); dangerous ones go with
// their content.
func (p *policy) sanitize(in string) string {
	s := sanitizer{policy: p}
	s.run(in)
	return p.sanitizer.Sanitize(s.sb.String())
}

// sanitizer is one run of a policy over one input.
type sanitizer struct {
	*policy
	sb strings.Builder
	// steps counts nodes visited, so that tests can check that the work
	// stays proportional to the input however it is shaped.
	steps int
	// inCode counts the code and pre elements open: their text is
	// written as it is.
	inCode int
}

func (s *sanitizer) run(in string) {
	nodes, err := parseFragment(in)
	if err != nil {
		// Nested deeper than the parser supports (512 open
		// elements), or too many formatting elements open: such a
		// message is hostile or broken. Keep its text, no markup.
		s.sb.WriteString(html.EscapeString(tokenText(in, &s.steps)))
		return
	}
	for _, n := range nodes {
		s.render(n, 0)
	}
}

// parseFragment parses in as the content of a <body>. It refuses input
// that keeps more than maxOpenFormatting formatting elements open: the
// HTML tree builder reopens every open formatting element at each new
// block (<b id=1><p>x<b id=2><p>x...), which makes the tree quadratic in
// the input until the parser's own limit of 512 open elements stops it
// (an 8 KiB message then cost 25 ms and tens of thousands of nodes).
func parseFragment(in string) ([]*html.Node, error) {
	if n := maxOpenFormatting(in); n > maxFormattingOpen {
		return nil, fmt.Errorf("%d formatting elements open at once, at most %d", n, maxFormattingOpen)
	}
	return html.ParseFragment(strings.NewReader(in), &html.Node{Type: html.ElementNode, Data: "body", DataAtom: atom.Body})
}

// maxFormattingOpen bounds the formatting elements open at once; real
// messages have a handful.
const maxFormattingOpen = maxDepth

// formattingElements are HTML's "formatting" elements, which the tree
// builder reopens after block boundaries.
var formattingElements = map[string]bool{
	"a": true, "b": true, "big": true, "code": true, "em": true, "font": true, "i": true, "nobr": true,
	"s": true, "small": true, "strike": true, "strong": true, "tt": true, "u": true,
}

// maxOpenFormatting is, from the tokens alone, an upper bound of how many
// formatting elements are open at once anywhere in in: per tag, start tags
// not yet matched by an end tag.
func maxOpenFormatting(in string) int {
	z := html.NewTokenizer(strings.NewReader(in))
	open := make(map[string]int)
	total, most := 0, 0
	for {
		switch z.Next() {
		case html.ErrorToken:
			return most
		case html.StartTagToken:
			name, _ := z.TagName()
			if tag := strings.ToLower(string(name)); formattingElements[tag] {
				open[tag]++
				total++
				most = max(most, total)
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if tag := strings.ToLower(string(name)); open[tag] > 0 {
				open[tag]--
				total--
			}
		}
	}
}

func (s *sanitizer) render(n *html.Node, depth int) {
	s.steps++
	sb := &s.sb
	switch n.Type {
	case html.TextNode:
		// Entities can spell what cleanText removed from the input.
		text := cleanText(n.Data)
		if s.emoticons && s.inCode == 0 {
			text = replaceEmoticons(text)
		}
		sb.WriteString(html.EscapeString(text))
		return
	case html.ElementNode:
	case html.DocumentNode:
		s.renderChildren(n, depth)
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
		alt := imageText(n)
		if s.emoticons {
			alt = replaceEmoticons(alt)
		}
		sb.WriteString(html.EscapeString(alt))
		return
	}
	if depth >= maxDepth {
		sb.WriteString(html.EscapeString(cleanText(textContent(n, &s.steps))))
		return
	}
	if renamed, ok := s.renamed[tag]; ok {
		tag = renamed
	}
	if tag == "a" && s.matrixLinksToText {
		if href := attr(n, "href"); isMatrixToLink(href) {
			s.renderChildren(n, depth+1)
			return
		}
	}

	var wrappers []wrapper
	if s.styleToTags {
		wrappers = styleTags(attr(n, "style"))
	}
	if !namePattern.MatchString(tag) {
		// A name that would not read back as itself: never an
		// element either policy allows.
		s.renderWrapped(n, depth, wrappers)
		return
	}
	attrs := s.normalisedAttrs(tag, n)
	if tag == "span" && attrs == "" {
		// A bare span carries nothing; SfB wraps every message in
		// several of them.
		s.renderWrapped(n, depth, wrappers)
		return
	}
	sb.WriteString("<" + tag + attrs + ">")
	if !voidElements[tag] {
		code := tag == "code" || tag == "pre"
		if code {
			s.inCode++
		}
		s.renderWrapped(n, depth, wrappers)
		if code {
			s.inCode--
		}
		sb.WriteString("</" + tag + ">")
	}
}

// normalisedAttrs writes the attributes of n that the policy has a rule
// for on tag, each normalised by its rule, escaped, each after a blank.
// Whether the element and its attributes stay is the sanitiser's to
// decide; what it receives here is well-formed and canonical.
func (s *sanitizer) normalisedAttrs(tag string, n *html.Node) string {
	rules := s.allowed[tag]
	var sb strings.Builder
	for _, a := range n.Attr {
		key := strings.ToLower(a.Key)
		rule, ok := rules[key]
		if !ok || a.Namespace != "" {
			continue
		}
		if val, valid := rule.normalise(cleanText(a.Val)); valid {
			sb.WriteString(" " + key + `="` + html.EscapeString(val) + `"`)
		}
	}
	return sb.String()
}

// renderWrapped writes n's children inside the tags that its style
// stood for.
func (s *sanitizer) renderWrapped(n *html.Node, depth int, wrappers []wrapper) {
	for _, w := range wrappers {
		s.sb.WriteString("<" + w.tag + w.attrs + ">")
	}
	s.renderChildren(n, depth+1)
	for i := len(wrappers) - 1; i >= 0; i-- {
		s.sb.WriteString("</" + wrappers[i].tag + ">")
	}
}

func (s *sanitizer) renderChildren(n *html.Node, depth int) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		s.render(c, depth)
	}
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

// styleTags maps the inline CSS that SfB clients use for emphasis and
// colour to tags: a colour becomes <font data-mx-color>, which Element
// shows. Fonts and sizes are dropped on purpose, and so is black, the
// colour SfB clients give every message by default: it says nothing the
// sender chose and would be unreadable on a dark Matrix theme.
//
// Each tag comes at most once, in a fixed order, whatever the style
// repeats: an element then adds at most len(styleWrapperTags) levels of
// nesting to the output, which keeps the output's depth bounded by
// maxDepth and re-parseable.
func styleTags(style string) []wrapper {
	if style == "" {
		return nil
	}
	var b, i, u, del bool
	var color string
	for _, decl := range strings.Split(style, ";") {
		prop, val, ok := strings.Cut(decl, ":")
		if !ok {
			continue
		}
		prop = strings.ToLower(strings.TrimSpace(prop))
		val = strings.ToLower(strings.TrimSpace(val))
		switch prop {
		case "font-weight":
			b = b || val == "bold" || val == "bolder" || val == "700" || val == "800" || val == "900"
		case "font-style":
			i = i || val == "italic" || val == "oblique"
		case "text-decoration", "text-decoration-line":
			u = u || strings.Contains(val, "underline")
			del = del || strings.Contains(val, "line-through")
		case "color":
			// As in CSS, the last valid declaration wins.
			if c, ok := parseColor(val); ok {
				color = c
			}
		}
	}
	var tags []wrapper
	if color != "" && color != "#000000" {
		tags = append(tags, wrapper{tag: styleWrapperTags[0], attrs: ` data-mx-color="` + color + `"`})
	}
	for k, on := range []bool{b, i, u, del} {
		if on {
			tags = append(tags, wrapper{tag: styleWrapperTags[k+1]})
		}
	}
	return tags
}

// wrapper is a tag that an element's style stands for; attrs, when set,
// starts with a blank and is escaped already.
type wrapper struct{ tag, attrs string }

// styleWrapperTags are the tags styleTags can produce, in nesting order.
var styleWrapperTags = [...]string{"font", "b", "i", "u", "del"}

// parseColor reads a CSS or HTML colour as SfB clients write it (#rgb,
// #rrggbb, rgb(r, g, b) or a basic colour name) and returns it as
// #rrggbb. Anything else (other functions, percentages, system colours,
// stray characters) is refused rather than passed on.
func parseColor(val string) (string, bool) {
	val = strings.ToLower(strings.TrimSpace(val))
	if named, ok := colorNames[val]; ok {
		return named, true
	}
	if hex, ok := strings.CutPrefix(val, "#"); ok {
		if !isHex(hex) {
			return "", false
		}
		switch len(hex) {
		case 3:
			return "#" + string([]byte{hex[0], hex[0], hex[1], hex[1], hex[2], hex[2]}), true
		case 6:
			return "#" + hex, true
		}
		return "", false
	}
	args, ok := strings.CutPrefix(val, "rgb(")
	if !ok {
		return "", false
	}
	args, ok = strings.CutSuffix(args, ")")
	parts := strings.Split(args, ",")
	if !ok || len(parts) != 3 {
		return "", false
	}
	out := "#"
	for _, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 || n > 255 {
			return "", false
		}
		out += fmt.Sprintf("%02x", n)
	}
	return out, true
}

func isHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// colorNames are the sixteen basic HTML colour names and orange, which
// Office's colour picker also names.
var colorNames = map[string]string{
	"black": "#000000", "silver": "#c0c0c0", "gray": "#808080", "grey": "#808080", "white": "#ffffff",
	"maroon": "#800000", "red": "#ff0000", "purple": "#800080", "fuchsia": "#ff00ff",
	"green": "#008000", "lime": "#00ff00", "olive": "#808000", "yellow": "#ffff00",
	"navy": "#000080", "blue": "#0000ff", "teal": "#008080", "aqua": "#00ffff", "orange": "#ffa500",
}

// textContent is the text under n, without that of elements dropped with
// their content. It adds the nodes it visits to *steps.
func textContent(n *html.Node, steps *int) string {
	var sb strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		*steps++
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

// tokenText is the text of HTML that the parser refused (too deeply
// nested), from the tokenizer, which has no depth limit: text tokens with
// entities decoded, minus the content of elements dropped with their
// content. It adds the tokens it reads to *steps.
func tokenText(in string, steps *int) string {
	z := html.NewTokenizer(strings.NewReader(in))
	var sb strings.Builder
	// skip is the element being dropped with its content, and how deep
	// it is nested in itself.
	var skip string
	var skipDepth int
	for {
		tt := z.Next()
		*steps++
		switch tt {
		case html.ErrorToken:
			// io.EOF from a strings.Reader: the end of the input.
			return sb.String()
		case html.TextToken:
			if skip == "" {
				sb.Write(z.Text())
			}
		case html.StartTagToken, html.EndTagToken:
			name, _ := z.TagName()
			tag := strings.ToLower(string(name))
			switch {
			case skip == "" && tt == html.StartTagToken && droppedWithContent[tag] && !emptyElements[tag]:
				skip, skipDepth = tag, 1
			case skip == tag && tt == html.StartTagToken:
				skipDepth++
			case skip == tag && tt == html.EndTagToken:
				if skipDepth--; skipDepth == 0 {
					skip = ""
				}
			case skip == "" && tag == "br":
				sb.WriteByte('\n')
			}
		case html.SelfClosingTagToken:
			name, _ := z.TagName()
			if skip == "" && strings.EqualFold(string(name), "br") {
				sb.WriteByte('\n')
			}
		}
	}
}
