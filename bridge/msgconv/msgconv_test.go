package msgconv

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

func TestSfBHTMLToMatrix(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain text", "hello", "hello"},
		{"SfB font wrapper flattened",
			`<span style="font-family:Segoe UI;font-size:10pt;color:#000000">hello <b>world</b></span>`,
			`hello <b>world</b>`},
		{"bold and italic from style",
			`<span style="font-weight:bold; font-style:italic">x</span>`,
			`<b><i>x</i></b>`},
		{"underline and strike from text-decoration",
			`<span style="text-decoration: underline line-through">x</span>`,
			`<u><del>x</del></u>`},
		{"div keeps structure, loses style",
			`<div style="direction:ltr;font-weight:700">a</div><div>b</div>`,
			`<div><b>a</b></div><div>b</div>`},
		{"script dropped with content", `hi<script>alert(1)</script>!`, `hi!`},
		{"style dropped with content", `<style>body{}</style>x`, `x`},
		{"event handler attributes dropped", `<b onclick="alert(1)" onmouseover=x>bold</b>`, `<b>bold</b>`},
		{"javascript link unwrapped", `<a href="javascript:alert(1)">click</a>`, `click`},
		{"javascript link with blanks and case", `<a href=" JaVaScRiPt:alert(1)">c</a>`, `c`},
		{"data link unwrapped", `<a href="data:text/html;base64,PHNjcmlwdD4=">c</a>`, `c`},
		{"relative link unwrapped", `<a href="/etc/passwd">c</a>`, `c`},
		{"https link kept", `<a href="https://example.org/a?b=1&c=2" target="_blank" onclick="x">ex</a>`,
			`<a href="https://example.org/a?b=1&amp;c=2">ex</a>`},
		{"mailto link kept", `<a href="mailto:bob@contoso.com">Bob</a>`, `<a href="mailto:bob@contoso.com">Bob</a>`},
		{"unknown tags keep their text", `<marquee><blink>old</blink></marquee>`, `old`},
		{"img replaced by alt", `<img src="http://x/y.png" alt="smile" onerror="x">`, `smile`},
		{"strike renamed", `<strike>gone</strike>`, `<del>gone</del>`},
		{"font colour validated", `<font color="#ff0000" face="Arial">r</font><font color="red;x">s</font>`,
			`<font color="#ff0000">r</font>s`}, // a font without a valid colour says nothing
		{"style colour to data-mx-color", `<span style="font-family:Segoe UI;color:#FF0000">red</span>`,
			`<font data-mx-color="#ff0000">red</font>`},
		{"style colour with emphasis", `<span style="color: rgb(0, 128, 0); font-weight:bold">g</span>`,
			`<font data-mx-color="#008000"><b>g</b></font>`},
		{"style colour by name and short hex", `<span style="color:Red">a</span><div style="color:#0f0">b</div>`,
			`<font data-mx-color="#ff0000">a</font><div><font data-mx-color="#00ff00">b</font></div>`},
		{"last valid style colour wins", `<span style="color:#ff0000;color:bogus">r</span><span style="color:red;color:#000">k</span>`,
			`<font data-mx-color="#ff0000">r</font>k`},
		{"unsafe or unknown style colours dropped",
			`<span style="color:expression(alert(1))">a</span><span style="color:rgb(300,0,0)">b</span>` +
				`<span style="color:var(--x)">c</span><span style="color:#ff00zz">d</span><span style="color:rgba(1,2,3,0.5)">e</span>`,
			`abcde`},
		{"font colour normalised", `<font color="Blue">b</font><font color="#ABC">c</font><font color="#abcd">d</font>`,
			`<font color="#0000ff">b</font><font color="#aabbcc">c</font>d`},
		{"data-mx-color kept", `<span data-mx-color="#123456" data-mx-bg-color="javascript:x">s</span>`,
			`<span data-mx-color="#123456">s</span>`},
		{"comment dropped", `a<!-- secret -->b`, `ab`},
		{"text escaped", `1 &lt; 2 &amp;&amp; "q"`, `1 &lt; 2 &amp;&amp; &#34;q&#34;`},
		{"iframe dropped", `<iframe src="https://evil"></iframe>ok`, `ok`},
		{"svg dropped", `<svg><script>x</script><a xlink:href="javascript:1">t</a></svg>ok`, `ok`},
		{"code language class kept", `<pre><code class="language-go">x</code></pre>`, `<pre><code class="language-go">x</code></pre>`},
		{"code bad class dropped", `<code class="x onload">y</code>`, `<code>y</code>`},
		{"list", `<ol start="3" type="a"><li>a</li></ol>`, `<ol start="3"><li>a</li></ol>`},
		{"line breaks", `a<br/>b<BR>c`, `a<br>b<br>c`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SfBHTMLToMatrix(tt.in)
			assert.Equal(t, tt.want, got)
			assertSanitised(t, got, matrixPolicy)
		})
	}
}

func TestMatrixHTMLToSfB(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"reply fallback removed",
			`<mx-reply><blockquote><a href="https://matrix.to/#/!r/$e">In reply to</a> <a href="https://matrix.to/#/@a:x">@a:x</a><br>old</blockquote></mx-reply>new <b>text</b>`,
			`new <b>text</b>`},
		{"mention reduced to text", `hi <a href="https://matrix.to/#/@alice:example.org">Alice</a>!`, `hi Alice!`},
		{"spoiler reduced to text", `<span data-mx-spoiler="why">secret</span>`, `secret`},
		{"colour reduced to text", `<font data-mx-color="#ff0000">red</font>`, `red`},
		{"custom emoji becomes alt", `<img data-mx-emoticon src="mxc://x/y" alt=":cat:">`, `:cat:`},
		{"links kept", `<a href="https://jitsi.example.org/room">join</a>`, `<a href="https://jitsi.example.org/room">join</a>`},
		{"formatting kept", `<strong>s</strong> <em>e</em> <code>c</code> <del>d</del>`, `<strong>s</strong> <em>e</em> <code>c</code> <del>d</del>`},
		{"script dropped", `<script>alert(1)</script>x`, `x`},
		{"details unwrapped", `<details><summary>s</summary>body</details>`, `sbody`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MatrixHTMLToSfB(tt.in)
			assert.Equal(t, tt.want, got)
			assertSanitised(t, got, sfbPolicy)
		})
	}
}

func TestHTMLToText(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"collapses whitespace", "a \n\t b", "a b"},
		{"br and blocks", "<p>one</p><p>two<br>three</p><div>four</div>", "one\ntwo\nthree\nfour"},
		{"lists", "<ul><li>a</li><li>b</li></ul>", "- a\n- b"},
		{"pre keeps whitespace", "<pre>a  b\n  c</pre>", "a  b\n  c"},
		{"link target appended", `see <a href="https://x.org/p">the page</a>`, "see the page (https://x.org/p)"},
		{"link target not repeated", `<a href="https://x.org/">https://x.org/</a>`, "https://x.org/"},
		{"mention without target", `<a href="https://matrix.to/#/@a:b">Alice</a>`, "Alice"},
		{"script text never shown", `<script>alert(1)</script>ok`, "ok"},
		{"entities decoded", `1 &lt; 2`, "1 < 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, HTMLToText(tt.in))
		})
	}
}

func TestToMatrix(t *testing.T) {
	tests := []struct {
		name          string
		in            sfb.Message
		wantBody      string
		wantFormatted string
	}{
		{"text only", sfb.Message{Text: "hello"}, "hello", ""},
		{"CRLF normalised", sfb.Message{Text: "a\r\nb"}, "a\nb", ""},
		{"styled wrapper only gives no formatted body",
			sfb.Message{Text: "hello", HTML: `<span style="font-family:Segoe UI">hello</span>`}, "hello", ""},
		{"formatting kept",
			sfb.Message{Text: "hello world", HTML: `<span style="font-size:10pt">hello <b>world</b></span>`},
			"hello world", "hello <b>world</b>"},
		{"text derived from HTML when missing",
			sfb.Message{HTML: `<p>one</p><p><i>two</i></p>`}, "one\ntwo", "<p>one</p><p><i>two</i></p>"},
		{"invalid UTF-8 replaced", sfb.Message{Text: "a\xffb\x00c"}, "a\uFFFDbc", ""},
		{"RTF only", sfb.Message{RTF: `{\rtf1 one\par two (smile)}`}, "one\ntwo 🙂", ""},
		{"RTF ignored when text is set", sfb.Message{Text: "text", RTF: `{\rtf1 rtf}`}, "text", ""},
		{"emoticon names in text", sfb.Message{Text: "thanks (beer)"}, "thanks 🍺", ""},
		{"body from the HTML, not a crude plain form",
			sfb.Message{Text: "p.MsoNormal{margin:0}\nAgenda Normal", HTML: `<style>p.MsoNormal{margin:0}</style><p><b>Agenda</b></p><xml>Normal</xml>`},
			"Agenda", "<p><b>Agenda</b></p>"},
		{"text kept when the HTML has none", sfb.Message{Text: "see picture", HTML: `<img src="x.png">`}, "see picture", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := onePart(t, ToMatrix(tt.in))
			assert.Equal(t, event.MsgText, got.MsgType)
			assert.Equal(t, tt.wantBody, got.Body)
			assert.Equal(t, tt.wantFormatted, got.FormattedBody)
			if tt.wantFormatted != "" {
				assert.Equal(t, event.FormatHTML, got.Format)
			} else {
				assert.Empty(t, got.Format)
			}
		})
	}
}

// onePart returns the only part of a converted message.
func onePart(t *testing.T, parts []*event.MessageEventContent) *event.MessageEventContent {
	t.Helper()
	require.Len(t, parts, 1)
	return parts[0]
}

func TestFromMatrix(t *testing.T) {
	tests := []struct {
		name     string
		content  event.MessageEventContent
		sender   string
		wantText string
		wantHTML string
		wantErr  error
	}{
		{"plain", event.MessageEventContent{MsgType: event.MsgText, Body: "hi"}, "", "hi", "", nil},
		{"formatted",
			event.MessageEventContent{MsgType: event.MsgText, Body: "**hi**", Format: event.FormatHTML, FormattedBody: "<strong>hi</strong>"},
			"", "**hi**", "<strong>hi</strong>", nil},
		{"formatting that reduces to text is dropped",
			event.MessageEventContent{MsgType: event.MsgText, Body: "Alice: hi", Format: event.FormatHTML,
				FormattedBody: `<a href="https://matrix.to/#/@alice:x">Alice</a>: hi`},
			"", "Alice: hi", "", nil},
		{"reply fallback removed from both forms",
			event.MessageEventContent{MsgType: event.MsgText,
				Body:          "> <@a:x> old\n\nnew",
				Format:        event.FormatHTML,
				FormattedBody: `<mx-reply><blockquote>old</blockquote></mx-reply><em>new</em>`,
				RelatesTo:     (&event.RelatesTo{}).SetReplyTo(id.EventID("$old"))},
			"", "new", "<em>new</em>", nil},
		{"emote names the sender",
			event.MessageEventContent{MsgType: event.MsgEmote, Body: "waves"}, "Bob", "* Bob waves", "", nil},
		{"notice", event.MessageEventContent{MsgType: event.MsgNotice, Body: "n"}, "", "n", "", nil},
		{"empty", event.MessageEventContent{MsgType: event.MsgText, Body: "  "}, "", "", "", ErrEmpty},
		{"too long", event.MessageEventContent{MsgType: event.MsgText, Body: strings.Repeat("x", MaxSfBMessageBytes+1)}, "", "", "", ErrTooLong},
		{"invalid UTF-8", event.MessageEventContent{MsgType: event.MsgText, Body: "a\xc3"}, "", "a\uFFFD", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromMatrix(&tt.content, tt.sender)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantText, got.Text)
			assert.Equal(t, tt.wantHTML, got.HTML)
		})
	}
}

func TestFromMatrixDoesNotModifyInput(t *testing.T) {
	content := &event.MessageEventContent{MsgType: event.MsgText, Body: "> <@a:x> old\n\nnew", Format: event.FormatHTML,
		FormattedBody: "<mx-reply>old</mx-reply>new", RelatesTo: (&event.RelatesTo{}).SetReplyTo("$old")}
	_, err := FromMatrix(content, "")
	require.NoError(t, err)
	assert.Equal(t, "<mx-reply>old</mx-reply>new", content.FormattedBody)
}

func TestDeepNestingIsBounded(t *testing.T) {
	in := strings.Repeat("<b>", 5000) + "x" + strings.Repeat("</b>", 5000)
	got := SfBHTMLToMatrix(in)
	// Too deep for the parser (and over maxFormattingOpen): the text
	// stays, the markup goes, and none of it is shown escaped.
	assert.Equal(t, "x", got)
	assertSanitised(t, got, matrixPolicy)
	assert.Equal(t, "x", HTMLToText(in))

	divs := strings.Repeat("<div>", 600) + "x"
	assert.Equal(t, "x", SfBHTMLToMatrix(divs), "beyond the parser's 512 open elements")
	assert.Equal(t, "x", HTMLToText(divs))

	kept := strings.Repeat("<div>", 200) + "x"
	got = SfBHTMLToMatrix(kept)
	assert.Equal(t, maxDepth, strings.Count(got, "<div>"), "structure kept up to maxDepth, text below")
	assert.Contains(t, got, "x")
}

// assertSanitised re-parses out and checks it holds only what p allows:
// allowed elements, allowed attributes, links with safe schemes, no raw
// script tags and no event handlers. (The text "javascript:" may appear as
// text, escaped, where it is harmless.)
func assertSanitised(t testing.TB, out string, p *policy) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("output is not valid UTF-8: %q", out)
	}
	lower := strings.ToLower(out)
	if strings.Contains(lower, "<script") || strings.Contains(lower, "<style") || strings.Contains(lower, "<iframe") {
		t.Fatalf("output contains a dangerous tag: %q", out)
	}
	nodes, err := html.ParseFragment(strings.NewReader(out), &html.Node{Type: html.ElementNode, Data: "body", DataAtom: atom.Body})
	if err != nil {
		t.Fatalf("re-parse output: %v", err)
	}
	var check func(n *html.Node)
	check = func(n *html.Node) {
		if n.Type == html.CommentNode {
			t.Fatalf("output contains a comment: %q", out)
		}
		if n.Type == html.ElementNode {
			rules, ok := p.allowed[n.Data]
			if !ok {
				t.Fatalf("output contains element %q not allowed: %q", n.Data, out)
			}
			for _, a := range n.Attr {
				if strings.HasPrefix(strings.ToLower(a.Key), "on") {
					t.Fatalf("output contains event handler %q: %q", a.Key, out)
				}
				if _, ok := rules[a.Key]; !ok {
					t.Fatalf("output contains attribute %q on %q: %q", a.Key, n.Data, out)
				}
				if a.Key == "href" {
					u, err := url.Parse(a.Val)
					if err != nil {
						t.Fatalf("output link %q does not parse: %v", a.Val, err)
					}
					switch strings.ToLower(u.Scheme) {
					case "http", "https", "mailto":
					default:
						t.Fatalf("output link with scheme %q: %q", u.Scheme, out)
					}
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			check(c)
		}
	}
	for _, n := range nodes {
		check(n)
	}
}

func fuzzSeeds(f *testing.F) {
	for _, s := range []string{
		"", "plain", "<b>x</b>", `<a href="javascript:alert(1)">x</a>`, `<img src=x onerror=alert(1)>`,
		`<span style="font-weight:bold">x</span>`, `<span style="color:#F00;color:rgb(1,2,3)">c</span>`, "<script>alert(1)</script>", `<svg><a xlink:href="javascript:x">y</a></svg>`,
		"<mx-reply>q</mx-reply>a", "\xff\xfe<b>\x00</b>", `<a href="https://matrix.to/#/@a:b">A</a>`,
		"<table><tr><td>1</td></tr></table>", "<<b>>", "a\u202Eb\x1b[0m", `<a href="https://x/&#x202E;">&#x2066;y</a>`, `<a href="&#106;avascript:alert(1)">e</a>`,
		`<div><p>unclosed`, `<noscript><b onclick=x>y</b></noscript>`, `<math><mi xlink:href="javascript:1">x</mi></math>`,
	} {
		f.Add(s, s)
	}
	// The hostile shapes of the benchmarks, at 2 KiB: past the limits on
	// open formatting elements and on the parser's nesting, so that
	// fuzzing starts from the fallback paths too.
	for _, in := range adversarialInputs {
		s := in.build(2 << 10)
		f.Add("", s)
	}
}

func FuzzSfBToMatrix(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, text, htmlIn string) {
		parts := ToMatrix(sfb.Message{Text: text, HTML: htmlIn})
		for _, got := range parts {
			if !utf8.ValidString(got.Body) || !utf8.ValidString(got.FormattedBody) {
				t.Fatalf("invalid UTF-8 in %q / %q", got.Body, got.FormattedBody)
			}
			if got.Body == "" {
				t.Fatalf("part without body")
			}
			if got.FormattedBody != "" {
				assertSanitised(t, got.FormattedBody, matrixPolicy)
			}
			assertClean(t, got.Body)
			assertClean(t, got.FormattedBody)
			assertEventSize(t, got)
		}
		assertSanitised(t, SfBHTMLToMatrix(htmlIn), matrixPolicy)
	})
}

func FuzzMatrixToSfB(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, body, formatted string) {
		msg, err := FromMatrix(&event.MessageEventContent{MsgType: event.MsgText, Body: body, Format: event.FormatHTML, FormattedBody: formatted}, "")
		if err != nil {
			return
		}
		if !utf8.ValidString(msg.Text) || !utf8.ValidString(msg.HTML) {
			t.Fatalf("invalid UTF-8 in %q / %q", msg.Text, msg.HTML)
		}
		if msg.Text == "" {
			t.Fatalf("empty text without error")
		}
		if msg.HTML != "" {
			assertSanitised(t, msg.HTML, sfbPolicy)
		}
		// The words "mx-reply" may be text (escaped, as here); the element
		// must be gone.
		if strings.Contains(strings.ToLower(msg.HTML), "<mx-reply") {
			t.Fatalf("reply fallback left in %q", msg.HTML)
		}
		assertSanitised(t, MatrixHTMLToSfB(formatted), sfbPolicy)
	})
}

// TestSanitiserEnforcesPolicyAlone: bluemonday, not the transformation
// walk before it, is what keeps each policy; given HTML the walk never
// writes, it still keeps only what the policy allows.
func TestSanitiserEnforcesPolicyAlone(t *testing.T) {
	in := `<script>alert(1)</script><a href="javascript:alert(1)">a</a><a href="/rel">r</a><font color="red" face="x">f</font>` +
		`<span data-mx-color="#12345g" onclick="x">s</span><img src="http://x/y.png" onerror="x"><o:p>o</o:p><b style="color:red">b</b>` +
		`<code class="evil">c</code><iframe>i</iframe><ol start="1x"><li>l</li></ol>`
	for name, p := range map[string]*policy{"matrix": matrixPolicy, "sfb": sfbPolicy} {
		got := p.sanitizer.Sanitize(in)
		assertSanitised(t, got, p)
		assert.NotContains(t, got, "alert", name)
		assert.NotContains(t, got, "i<", name, "iframe content dropped")
		assert.Contains(t, got, "<b>b</b>", name)
	}
	// Bare spans it keeps (bluemonday allows them without attributes);
	// the walk unwraps them before.
	assert.Equal(t, `arf<span>s</span>o<b>b</b><code>c</code><ol><li>l</li></ol>`, matrixPolicy.sanitizer.Sanitize(in))
	assert.Equal(t, `arfso<b>b</b><code>c</code><ol><li>l</li></ol>`, sfbPolicy.sanitizer.Sanitize(in))
}
