package msgconv

import (
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// spoofRunes are the bidirectional embeddings, overrides and isolates.
const spoofRunes = "\u202A\u202B\u202C\u202D\u202E\u2066\u2067\u2068\u2069"

func TestToMatrixRemovesControlsAndBidiOverrides(t *testing.T) {
	tests := []struct {
		name          string
		in            sfb.Message
		wantBody      string
		wantFormatted string
	}{
		{"escape sequence and bell", sfb.Message{Text: "a\x1b[31mred\x07 b"}, "a[31mred b", ""},
		{"C1 controls and DEL", sfb.Message{Text: "x\u0085y\u009bz\x7f!"}, "xyz!", ""},
		{"newline and tab kept", sfb.Message{Text: "a\n\tb"}, "a\n\tb", ""},
		{"right-to-left override in text", sfb.Message{Text: "invoice\u202Efdp.exe"}, "invoicefdp.exe", ""},
		{"every bidi control", sfb.Message{Text: "a" + spoofRunes + "b"}, "ab", ""},
		{"override as an HTML entity",
			sfb.Message{HTML: `<b>invoice&#x202E;fdp.exe</b>`}, "invoicefdp.exe", "<b>invoicefdp.exe</b>"},
		{"override in a link text",
			sfb.Message{HTML: `<a href="https://contoso.com/">&#8238;moc.elgoog</a>`},
			"moc.elgoog (https://contoso.com/)", `<a href="https://contoso.com/">moc.elgoog</a>`},
		{"control character as an HTML entity", sfb.Message{HTML: "<i>a&#27;b\u009bc&#x7f;</i>"}, "abc", "<i>abc</i>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := onePart(t, ToMatrix(tt.in))
			assert.Equal(t, tt.wantBody, got.Body)
			assert.Equal(t, tt.wantFormatted, got.FormattedBody)
		})
	}
}

func TestCleanName(t *testing.T) {
	assert.Equal(t, "Alice Admin", CleanName(" Alice\n\t Admin\u202E\x00 "))
	assert.Equal(t, "Bob (IT)", CleanName("Bob\u2066 (IT)\u2069"))
}

// assertClean fails when s holds a rune that must not reach Matrix.
func assertClean(t testing.TB, s string) {
	t.Helper()
	if i := strings.IndexFunc(s, func(r rune) bool {
		return (unicode.IsControl(r) && r != '\n' && r != '\t') || strings.ContainsRune(spoofRunes, r)
	}); i >= 0 {
		t.Fatalf("control or bidi character at %d in %q", i, s)
	}
}

func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"", "Alice", "a\u202Eb", "\x1b[2J", "x\ny", "\xff\u2066"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := CleanName(in)
		assertClean(t, got)
		assert.NotContains(t, got, "\n")
		assert.Equal(t, got, CleanName(got), "cleaning twice changes nothing")
	})
}
