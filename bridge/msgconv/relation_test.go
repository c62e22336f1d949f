package msgconv

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

func TestExcerpt(t *testing.T) {
	assert.Equal(t, "first line", Excerpt("\n  first line \nsecond"))
	assert.Equal(t, "", Excerpt(" \n "))
	long := strings.Repeat("ä", 100)
	got := Excerpt(long)
	assert.Equal(t, strings.Repeat("ä", maxQuoteRunes-1)+"…", got)
	assert.Equal(t, "ab", Excerpt("a\u202Eb"), "no bidi overrides in the quote")
}

func TestWithQuote(t *testing.T) {
	got := WithQuote(sfb.Message{Text: "yes", HTML: "<b>yes</b>"}, "Alice <A>", "Lunch at 12?\nor 1?")
	assert.Equal(t, "> Alice <A>: Lunch at 12?\nyes", got.Text)
	assert.Equal(t, "&gt; Alice &lt;A&gt;: Lunch at 12?<br><b>yes</b>", got.HTML)

	plain := WithQuote(sfb.Message{Text: "yes"}, "", "q")
	assert.Equal(t, sfb.Message{Text: "> q\nyes"}, plain, "no author, no HTML form")
	assert.Equal(t, sfb.Message{Text: "yes"}, WithQuote(sfb.Message{Text: "yes"}, "Alice", " "), "nothing to quote")

	full := sfb.Message{Text: strings.Repeat("x", MaxSfBMessageBytes-10)}
	assert.Equal(t, full, WithQuote(full, "Alice", "question"), "no quote beyond SfB's limit")
	wide := sfb.Message{Text: "yes", HTML: strings.Repeat("<b>x</b>", MaxSfBMessageBytes/8)}
	assert.Equal(t, sfb.Message{Text: "> Alice: question\nyes"}, WithQuote(wide, "Alice", "question"), "the HTML form gives way first")
}

func TestEdited(t *testing.T) {
	assert.Equal(t, sfb.Message{Text: "(edited) new", HTML: "(edited) <i>new</i>"}, Edited(sfb.Message{Text: "new", HTML: "<i>new</i>"}))
	assert.Equal(t, sfb.Message{Text: "(edited) new"}, Edited(sfb.Message{Text: "new"}))
}

func TestReaction(t *testing.T) {
	assert.Equal(t, sfb.Message{Text: "Alice reacted 👍 to: Lunch at 12?"}, Reaction("Alice", "👍", "Lunch at 12?\nor 1?"))
	assert.Equal(t, sfb.Message{Text: "reacted 🎉"}, Reaction("", "🎉", ""))
}
