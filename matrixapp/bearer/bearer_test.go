package bearer

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestToken(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer abc":   "abc",
		"bearer abc":   "abc",
		"BEARER  abc ": "abc",
		"Basic abc":    "",
		"Bearer":       "",
		"Bearer ":      "",
		"abc":          "",
		"":             "",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		got, ok := Token(r)
		assert.Equal(t, want, got, "%q", header)
		assert.Equal(t, want != "", ok, "%q", header)
	}
}

func TestMatches(t *testing.T) {
	const secret = "0123456789abcdef"
	for header, want := range map[string]bool{
		"Bearer " + secret:       true,
		"bearer " + secret:       true,
		"Bearer " + secret + "x": false,
		"Bearer " + secret[:15]:  false,
		"Basic " + secret:        false,
		secret:                   false,
		"Bearer ":                false,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", header)
		assert.Equal(t, want, Matches(r, secret), "%q", header)
	}
}
