package msgconv

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// maxContentJSON is what one part's content may take: Matrix limits the
// whole event to 65,536 bytes, and the homeserver adds the envelope
// (sender, room, IDs, timestamps, hashes and signatures).
const maxContentJSON = 58 * 1024

func assertEventSize(t testing.TB, content *event.MessageEventContent) {
	t.Helper()
	raw, err := json.Marshal(content)
	require.NoError(t, err)
	if len(raw) > maxContentJSON {
		t.Fatalf("part of %d bytes of JSON, at most %d", len(raw), maxContentJSON)
	}
}

func bodies(parts []*event.MessageEventContent) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p.Body)
	}
	return out
}

// words builds n bytes of text of five-letter words.
func words(n int) string {
	return strings.TrimSpace(strings.Repeat("word ", n/5))
}

func TestToMatrixSplitsLongTextAtParagraphs(t *testing.T) {
	first, second := words(40*1024), strings.ReplaceAll(words(40*1024), "word", "next")
	parts := ToMatrix(sfb.Message{Text: first + "\n\n" + second})
	require.Len(t, parts, 2)
	assert.Equal(t, first, parts[0].Body)
	assert.Equal(t, second, parts[1].Body)
	for _, p := range parts {
		assertEventSize(t, p)
	}
}

func TestToMatrixSplitsWithoutLosingText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		// exact: the parts, joined, are the input (no blank at a cut
		// to drop).
		exact bool
	}{
		{"words", words(200 * 1024), false},
		{"lines", strings.Repeat("a line of text\n", 10_000), false},
		{"one long word of multibyte runes", strings.Repeat("é€😀", 30_000), true},
		{"characters JSON escapes", strings.Repeat("<&>\"", 40_000), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts := ToMatrix(sfb.Message{Text: tt.in})
			require.Greater(t, len(parts), 1)
			for _, p := range parts {
				assert.True(t, utf8.ValidString(p.Body))
				assertEventSize(t, p)
			}
			joined := strings.Join(bodies(parts), "")
			if tt.exact {
				assert.Equal(t, tt.in, joined)
			} else {
				assert.Equal(t, strings.Fields(tt.in), strings.Fields(strings.Join(bodies(parts), " ")))
			}
		})
	}
}

func TestToMatrixSplitsHTMLBetweenElements(t *testing.T) {
	var in strings.Builder
	in.WriteString(`<span style="font-family:Segoe UI;font-weight:bold">`)
	for i := 0; in.Len() < 100*1024; i++ {
		in.WriteString(`<p>paragraph <i>` + strings.Repeat("x", i%50) + `</i> <a href="https://contoso.com/a?b&amp;c">link</a></p>`)
	}
	in.WriteString(`</span>`)
	parts := ToMatrix(sfb.Message{HTML: in.String()})
	require.Greater(t, len(parts), 1)
	var texts []string
	for _, p := range parts {
		require.Equal(t, event.FormatHTML, p.Format, "every part keeps its formatting")
		assertSanitised(t, p.FormattedBody, matrixPolicy)
		assertEventSize(t, p)
		// The style's <b> wraps every part; no element is cut open.
		assert.True(t, strings.HasPrefix(p.FormattedBody, "<b><p>"), p.FormattedBody[:20])
		assert.True(t, strings.HasSuffix(p.FormattedBody, "</p></b>"))
		assert.Equal(t, strings.Count(p.FormattedBody, "<p>"), strings.Count(p.FormattedBody, "</p>"))
		texts = append(texts, p.Body)
	}
	whole := onePartHTMLText(t, in.String())
	assert.Equal(t, strings.Fields(whole), strings.Fields(strings.Join(texts, "\n")))
}

func TestToMatrixSplitsOneLongElementInsideIt(t *testing.T) {
	long := strings.Repeat("<", 30*1024) + " " + words(40*1024)
	parts := ToMatrix(sfb.Message{HTML: `<font color="#ff0000">` + html.EscapeString(long) + `</font>`})
	require.Greater(t, len(parts), 1)
	var texts []string
	for _, p := range parts {
		assertEventSize(t, p)
		assert.True(t, strings.HasPrefix(p.FormattedBody, `<font color="#ff0000">`))
		assert.True(t, strings.HasSuffix(p.FormattedBody, `</font>`))
		texts = append(texts, p.Body)
	}
	// A cut inside the run of "<" splits that word; nothing is lost.
	assert.Equal(t, withoutBlanks(long), withoutBlanks(strings.Join(texts, "")))
}

func withoutBlanks(s string) string {
	return strings.Join(strings.Fields(s), "")
}

// onePartHTMLText is the text of HTML as one message would have had it.
func onePartHTMLText(t *testing.T, in string) string {
	t.Helper()
	return HTMLToText(SfBHTMLToMatrix(in))
}

func TestToMatrixHugeHTMLWithoutTextKeepsItsText(t *testing.T) {
	in := "<b>" + words(maxHTMLInput+1024) + "</b>"
	parts := ToMatrix(sfb.Message{HTML: in})
	require.NotEmpty(t, parts, "an HTML message too large to parse still has its text")
	assert.Equal(t, strings.Fields(words(maxHTMLInput+1024)), strings.Fields(strings.Join(bodies(parts), " ")))
}

func FuzzSplitText(f *testing.F) {
	f.Add("a b\n\nc\nd", 4)
	f.Add("é€😀xyz", 5)
	f.Fuzz(func(t *testing.T, s string, limit int) {
		if !utf8.ValidString(s) || limit < 6 || limit > 1<<16 {
			return
		}
		for _, p := range splitText(s, limit, jsonRuneSize) {
			if jsonSize(p) > limit {
				t.Fatalf("piece of %d bytes over %d", jsonSize(p), limit)
			}
			if !utf8.ValidString(p) {
				t.Fatalf("piece cut inside a rune: %q", p)
			}
		}
		assert.Equal(t, withoutBlanks(s), withoutBlanks(strings.Join(splitText(s, limit, jsonRuneSize), "")))
	})
}
