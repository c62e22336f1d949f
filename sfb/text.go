package sfb

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// CleanText makes text from the server fit to show and to publish: it
// drops control characters (but newlines) and invalid UTF-8, trims, and
// cuts to maxRunes. ok is false when it had to change more than the blanks
// around.
func CleanText(v string, maxRunes int) (clean string, ok bool) {
	ok = utf8.ValidString(v)
	v = strings.ToValidUTF8(v, "")
	clean = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && r != '\n' {
			ok = false
			return -1
		}
		return r
	}, v)
	if utf8.RuneCountInString(clean) > maxRunes {
		ok = false
		clean = string([]rune(clean)[:maxRunes])
	}
	return strings.TrimSpace(clean), ok
}
