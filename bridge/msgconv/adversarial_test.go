package msgconv

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// adversarialInput is a hostile HTML shape, grown to a size by repeating a
// unit: the shapes that make HTML tree builders and naive sanitisers
// quadratic (deep nesting, misnested formatting, nested links, long
// attribute lists, many entities).
type adversarialInput struct {
	name   string
	prefix string
	unit   string
}

var adversarialInputs = []adversarialInput{
	{name: "nested-div", unit: "<div>"},
	{name: "nested-b", unit: "<b>"},
	{name: "nested-formatting", unit: "<b><i><u><s><em><strong><code><sup>"},
	{name: "nested-formatting-text", unit: "<b>x<i>y<u>z<font>"},
	{name: "misnested-formatting", unit: "<b><div></b>"},
	{name: "unclosed-formatting-blocks", unit: "<b><p>x"},
	// Distinct attributes defeat the parser's limit of three identical
	// active formatting elements, so every <p> reopens all of them.
	{name: "distinct-formatting-reopened", unit: `<b id="%d"><p>x`},
	{name: "nested-links", unit: `<a href="https://e.org/a">x<object>`},
	{name: "nested-links-marquee", unit: `<a href="https://e.org/a">x<marquee>`},
	// Hundreds of links nested inside each other (the marquee is a
	// scope marker, so the parser does not close the outer link), all
	// enclosing a wide subtree: anything done per link over its whole
	// content is quadratic.
	// (60 links: more open formatting elements than maxFormattingOpen
	// reduce the input to text.)
	{name: "wide-content-in-nested-links", prefix: strings.Repeat(`<a href="https://e.org/a">x<marquee>`, 60), unit: "<b>y</b>"},
	{name: "wide-content-in-nested-pre-links", prefix: strings.Repeat(`<a href="https://e.org/a"><marquee><pre>`, 60), unit: "  \n<i></i>"},
	{name: "nested-blockquote", unit: "<blockquote>"},
	{name: "nested-list", unit: "<ul><li>"},
	{name: "nested-table", unit: "<table><tr><td>"},
	{name: "foster-parented", unit: "<table><b>x"},
	{name: "many-attributes", prefix: "<b ", unit: `a="1" `},
	{name: "many-distinct-attributes", prefix: "<b ", unit: `a%d="1" `},
	{name: "long-style", prefix: `<span style="`, unit: "font-weight:bold;"},
	{name: "nested-style", unit: `<span style="font-weight:bold;font-style:italic">`},
	{name: "lt-run", unit: "<"},
	{name: "lt-slash-run", unit: "</"},
	{name: "entities", unit: "&amp;"},
	{name: "unterminated-entities", unit: "&ampx"},
	{name: "numeric-entities", unit: "&#x1F600;"},
	{name: "mx-reply-open", unit: "<mx-reply>"},
	{name: "mx-reply-closed", unit: "<mx-reply>q</mx-reply>"},
	{name: "matrix-links", unit: `<a href="https://matrix.to/#/@a:b">A</a>`},
	{name: "comments", unit: "<!--x-->"},
	{name: "unclosed-comment", prefix: "<!--", unit: "-"},
	{name: "whitespace-blocks", unit: " \n<p> </p>\t"},
	{name: "br-run", unit: "<br>"},
	{name: "img-alt", unit: `<img alt="a">`},
	{name: "pre-nested", unit: "<pre> x "},
	{name: "select-nested", unit: "<select><option>"},
	{name: "svg-nested", unit: "<svg><g>"},
}

// build repeats the unit until the input is size bytes long (cut at the
// end of a whole unit, so that every size has the same shape).
func (a adversarialInput) build(size int) string {
	var sb strings.Builder
	sb.WriteString(a.prefix)
	for i := 0; sb.Len() < size; i++ {
		u := a.unit
		if strings.Contains(u, "%d") {
			u = fmt.Sprintf(u, i)
		}
		if sb.Len()+len(u) > size {
			break
		}
		sb.WriteString(u)
	}
	return sb.String()
}

// adversarialSizes are 1 KiB, 16 KiB, 64 KiB (the most a Matrix event can
// carry) and maxHTMLInput, the most the package parses at all.
var adversarialSizes = []int{1 << 10, 16 << 10, 64 << 10, maxHTMLInput}

var conversions = []struct {
	name string
	run  func(string)
}{
	{"SfBHTMLToMatrix", func(s string) { SfBHTMLToMatrix(s) }},
	{"MatrixHTMLToSfB", func(s string) { MatrixHTMLToSfB(s) }},
	{"HTMLToText", func(s string) { HTMLToText(s) }},
	{"ToMatrix", func(s string) { ToMatrix(sfb.Message{HTML: s}) }},
	{"FromMatrix", func(s string) {
		_, _ = FromMatrix(&event.MessageEventContent{MsgType: event.MsgText, Format: event.FormatHTML,
			FormattedBody: s, RelatesTo: (&event.RelatesTo{}).SetReplyTo("$e")}, "")
	}},
}

// BenchmarkAdversarial measures every exported conversion on every hostile
// shape at growing sizes; ns/op divided by the size (reported as ns/B)
// should stay about constant from one size to the next.
func BenchmarkAdversarial(b *testing.B) {
	for _, conv := range conversions {
		for _, in := range adversarialInputs {
			for _, size := range adversarialSizes {
				s := in.build(size)
				b.Run(fmt.Sprintf("%s/%s/%d", conv.name, in.name, size), func(b *testing.B) {
					b.SetBytes(int64(len(s)))
					for b.Loop() {
						conv.run(s)
					}
				})
			}
		}
	}
}

// workSteps runs the three tree walks of the package on in and returns the
// nodes or tokens each visited: the package's unit of work.
func workSteps(in string) map[string]int {
	toMatrix := sanitizer{policy: matrixPolicy}
	toMatrix.run(in)
	toSfB := sanitizer{policy: sfbPolicy}
	toSfB.run(in)
	text := &textWriter{}
	text.run(in)
	return map[string]int{"matrix": toMatrix.steps, "sfb": toSfB.steps, "text": text.steps}
}

// maxStepsPerToken bounds the work per token of input. The shapes here
// measure at most 1.4; the worst known shape, maxFormattingOpen distinct
// formatting elements each followed by a block the tree builder reopens
// them all in, comes to about 11. Without the formatting limit, or with a
// walk that revisits a link's content, shapes here exceed 30.
const maxStepsPerToken = 32

func countTokens(in string) int {
	z := html.NewTokenizer(strings.NewReader(in))
	n := 0
	for z.Next() != html.ErrorToken {
		n++
	}
	return n
}

// TestAdversarialWorkIsLinear counts work instead of timing it: for every
// hostile shape and size, the nodes and tokens visited stay within a
// constant per token of input. A quadratic shape (a tree quadratic in the
// input, a walk that revisits a subtree per ancestor) exceeds it.
func TestAdversarialWorkIsLinear(t *testing.T) {
	for _, in := range adversarialInputs {
		t.Run(in.name, func(t *testing.T) {
			for _, size := range []int{1 << 10, 4 << 10, 16 << 10, 64 << 10} {
				s := in.build(size)
				tokens := countTokens(s)
				for walk, steps := range workSteps(s) {
					assert.LessOrEqualf(t, steps, maxStepsPerToken*tokens+1,
						"%s walk: %d steps for %d tokens (%d bytes)", walk, steps, tokens, len(s))
				}
			}
		})
	}
}

// TestOpenFormattingIsBounded: the tree builder reopens every open
// formatting element at each block, so the tree grows with the square of
// the open formatting elements; beyond maxFormattingOpen the input is
// reduced to its text.
func TestOpenFormattingIsBounded(t *testing.T) {
	build := func(n int) string {
		var sb strings.Builder
		for i := range n {
			fmt.Fprintf(&sb, `<b id="%d"><p>x`, i)
		}
		return sb.String()
	}
	atLimit := build(maxFormattingOpen)
	assert.Equal(t, maxFormattingOpen, maxOpenFormatting(atLimit))
	assert.Contains(t, SfBHTMLToMatrix(atLimit), "<b>", "up to the limit the formatting is kept")

	over := build(maxFormattingOpen + 1)
	assert.Equal(t, maxFormattingOpen+1, maxOpenFormatting(over))
	assert.Equal(t, strings.Repeat("x", maxFormattingOpen+1), SfBHTMLToMatrix(over))
	assert.Equal(t, strings.Repeat("x", maxFormattingOpen+1), HTMLToText(over))

	closed := strings.Repeat("<b>x</b><i>y</i>", 10*maxFormattingOpen)
	assert.Equal(t, 1, maxOpenFormatting(closed), "closed elements do not count")
	assert.Equal(t, strings.Repeat("<b>x</b><i>y</i>", 10*maxFormattingOpen), SfBHTMLToMatrix(closed))
}

// TestOutputNestingIsBounded: whatever the input, the sanitised output
// nests at most maxDepth elements, each with at most one of each style
// wrapper, so it stays well inside what HTML parsers (and Go's, which
// refuses more than 512 open elements) accept.
func TestOutputNestingIsBounded(t *testing.T) {
	limit := maxDepth * (1 + len(styleWrapperTags))
	for _, in := range adversarialInputs {
		t.Run(in.name, func(t *testing.T) {
			s := in.build(16 << 10)
			for name, out := range map[string]string{"matrix": SfBHTMLToMatrix(s), "sfb": MatrixHTMLToSfB(s)} {
				nodes, err := html.ParseFragment(strings.NewReader(out), &html.Node{Type: html.ElementNode, Data: "body", DataAtom: atom.Body})
				require.NoErrorf(t, err, "%s output must parse", name)
				depth := 0
				for _, n := range nodes {
					depth = max(depth, treeDepth(n))
				}
				assert.LessOrEqualf(t, depth, limit, "%s output nesting", name)
			}
		})
	}
}

func TestRepeatedStyleGivesOneWrapper(t *testing.T) {
	in := `<span style="` + strings.Repeat("font-weight:bold;text-decoration:underline;", 1000) + `">x</span>`
	assert.Equal(t, "<b><u>x</u></b>", SfBHTMLToMatrix(in))
}

func TestTokenTextSkipsDroppedContent(t *testing.T) {
	steps := 0
	got := tokenText(`a<script>b</script>c<input>d<br>e<mx-reply>f<mx-reply>g</mx-reply>h</mx-reply>i&amp;`, &steps)
	assert.Equal(t, "acd\nei&", got)
	assert.Positive(t, steps)
}

func treeDepth(n *html.Node) int {
	d := 0
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		d = max(d, treeDepth(c))
	}
	if n.Type == html.ElementNode {
		d++
	}
	return d
}
