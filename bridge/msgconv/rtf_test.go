package msgconv

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

// lyncRTF is the shape of an RTF message from a Lync 2010 client: a font
// and colour table, formatting, a paragraph per line, an escaped
// character in the code page and a Unicode character with its fallback.
const lyncRTF = `{\rtf1\fbidis\ansi\ansicpg1252\deff0\deflang1031{\fonttbl{\f0\fswiss\fprq2\fcharset0 Segoe UI;}}
{\colortbl ;\red0\green0\blue0;}
{\*\generator Msftedit 5.41.21.2510;}\viewkind4\uc1\pard\ltrpar\cf1\f0\fs20 Gr\'fc\'dfe aus \b M\'fcnchen\b0 !\par
Zweite Zeile \u8364?\tab 5\par
{\field{\*\fldinst{HYPERLINK "https://intranet.contoso.com/"}}{\fldrslt{\ul Intranet}}}\par
}`

func TestRTFToText(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"Lync message", lyncRTF, "Grüße aus München!\nZweite Zeile €\t5\nIntranet"},
		{"escaped braces and backslash", `{\rtf1 a\{b\}c\\d}`, `a{b}c\d`},
		{"ignorable destination skipped", `{\rtf1 {\*\unknown secret}shown}`, "shown"},
		{"picture skipped", `{\rtf1 {\pict\pngblip 89504e47}x}`, "x"},
		{"binary skipped", "{\\rtf1 a\\bin4 \\par}b}", "ab"},
		{"surrogate pair", `{\rtf1 \u-10179?\u-8704?}`, "😀"},
		{"two-byte fallback", `{\rtf1\uc2 \u8364\'80\'80 x}`, "€ x"},
		{"code page", `{\rtf1\ansi\ansicpg1251 \'cf\'f0\'e8\'e2\'e5\'f2}`, "Привет"},
		{"line and non-breaking space", `{\rtf1 a\line b\~c}`, "a\nb\u00a0c"},
		{"not RTF", "plain text", "plain text"},
		{"unbalanced", `}}{\rtf1 x\`, "x"},
		{"control characters removed", "{\\rtf1 a\\'1bb\\u8238?c}", "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, RTFToText(tt.in))
		})
	}
}

func FuzzRTFToText(f *testing.F) {
	for _, s := range []string{lyncRTF, `{\rtf1 \u-10179?}`, `{\*\x}`, `\'`, `\bin99999999 `, `{\uc9 \u65`, strings.Repeat("{", 1000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := RTFToText(in)
		if !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8: %q", got)
		}
		assertClean(t, got)
		// Text never grows beyond a few bytes per input byte (an escape
		// of one byte gives a rune of at most 3).
		if len(got) > 3*len(in)+3 {
			t.Fatalf("%d bytes of text from %d bytes of RTF", len(got), len(in))
		}
	})
}
