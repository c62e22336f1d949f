package msgconv

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReplaceEmoticons(t *testing.T) {
	tests := []struct{ in, want string }{
		{"hi (smile)", "hi 🙂"},
		{"(smile)(sad)", "🙂🙁"},
		{"(SMILE) (Wink)", "🙂 😉"},
		{"((smile)", "(🙂"},
		{"f(x(coffee))", "f(x☕)"},
		{"(unknown) (smile", "(unknown) (smile"},
		{"prose (yes) (ok) (no)", "prose (yes) (ok) (no)"},
		{"(embarrassed)(embarrassedx)", "😳(embarrassedx)"},
		{"", ""},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, replaceEmoticons(tt.in), tt.in)
	}
}

func TestEmoticonsKeptInCode(t *testing.T) {
	assert.Equal(t, "🙂 <code>(smile)</code><pre>x(smile)</pre>",
		SfBHTMLToMatrix("(smile) <code>(smile)</code><pre>x(smile)</pre>"))
	assert.Equal(t, "(smile)", MatrixHTMLToSfB("(smile)"), "Matrix to SfB keeps the name, which SfB clients show")
}

// TestEmoticonTableDocumented keeps the table in docs/messages.md the
// same as the code's.
func TestEmoticonTableDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/messages.md")
	require.NoError(t, err)
	for name, emoji := range emoticons {
		assert.Contains(t, string(doc), "| `("+name+")` | "+emoji+" |")
	}
}
