package medialink

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func newTestSigner(t *testing.T, now time.Time) *Signer {
	t.Helper()
	s, err := NewSigner(testKey, "https://bridge.example.org/", 7*24*time.Hour)
	require.NoError(t, err)
	s.now = func() time.Time { return now }
	return s
}

// segments splits a link into the decoded path segments Verify takes.
func segments(t *testing.T, link string) []string {
	t.Helper()
	u, err := url.Parse(link)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(u.EscapedPath(), PathPrefix), u.EscapedPath())
	parts := strings.Split(strings.TrimPrefix(u.EscapedPath(), PathPrefix), "/")
	require.Len(t, parts, 5)
	for i, p := range parts {
		parts[i], err = url.PathUnescape(p)
		require.NoError(t, err)
	}
	return parts
}

func TestLinkVerifiesUntilExpiry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newTestSigner(t, now)
	uri := id.ContentURI{Homeserver: "example.org", FileID: "AbCdEf"}
	link, err := s.Link(uri, "Quarterly report ü.pdf")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(link, "https://bridge.example.org/sfb/media/v1/example.org/AbCdEf/"), link)

	p := segments(t, link)
	got, err := s.Verify(p[0], p[1], p[2], p[3], p[4])
	require.NoError(t, err)
	assert.Equal(t, Media{URI: uri, Name: "Quarterly report ü.pdf"}, got)

	s.now = func() time.Time { return now.Add(7*24*time.Hour - time.Second) }
	_, err = s.Verify(p[0], p[1], p[2], p[3], p[4])
	require.NoError(t, err, "valid until the last second")
	s.now = func() time.Time { return now.Add(7 * 24 * time.Hour) }
	_, err = s.Verify(p[0], p[1], p[2], p[3], p[4])
	assert.ErrorIs(t, err, ErrExpired)
}

func TestTamperedLinksDoNotVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newTestSigner(t, now)
	link, err := s.Link(id.ContentURI{Homeserver: "example.org", FileID: "AbCdEf"}, "report.pdf")
	require.NoError(t, err)
	p := segments(t, link)
	later := now.Add(30 * 24 * time.Hour).Unix()
	cases := map[string][5]string{
		"other media ID":     {p[0], "AbCdEg", p[2], p[3], p[4]},
		"other server":       {"evil.example", p[1], p[2], p[3], p[4]},
		"later expiry":       {p[0], p[1], strconv.FormatInt(later, 10), p[3], p[4]},
		"other name":         {p[0], p[1], p[2], p[3], "report.html"},
		"name moved into ID": {p[0], p[1] + "r", p[2], p[3], "eport.pdf"},
		"truncated MAC":      {p[0], p[1], p[2], p[3][:20], p[4]},
		"MAC not base64":     {p[0], p[1], p[2], "!!!" + p[3][3:], p[4]},
		"empty MAC":          {p[0], p[1], p[2], "", p[4]},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := s.Verify(c[0], c[1], c[2], c[3], c[4])
			assert.ErrorIs(t, err, ErrInvalid)
		})
	}

	t.Run("wrong key", func(t *testing.T) {
		other, err := NewSigner([]byte("another key of thirty-two bytes!"), "https://bridge.example.org", time.Hour)
		require.NoError(t, err)
		other.now = s.now
		_, err = other.Verify(p[0], p[1], p[2], p[3], p[4])
		assert.ErrorIs(t, err, ErrInvalid)
	})
	t.Run("forged expired link is invalid, not expired", func(t *testing.T) {
		_, err := s.Verify(p[0], p[1], "1", p[3], p[4])
		assert.ErrorIs(t, err, ErrInvalid)
	})
}

func TestNewSignerRefusesBadSettings(t *testing.T) {
	_, err := NewSigner(testKey[:16], "https://bridge.example.org", time.Hour)
	assert.Error(t, err, "short key")
	_, err = NewSigner(testKey, "https://bridge.example.org", 0)
	assert.Error(t, err, "no lifetime")
	for _, u := range []string{"", "bridge.example.org", "ftp://bridge.example.org", "https://", "https://bridge.example.org/?x=1", "https://u:p@bridge.example.org"} {
		_, err = NewSigner(testKey, u, time.Hour)
		assert.Error(t, err, u)
	}
}

func TestSafeName(t *testing.T) {
	for in, want := range map[string]string{
		"report.pdf":             "report.pdf",
		"../../etc/passwd":       "_.._etc_passwd",
		"..\\boot.ini":           "_boot.ini",
		"  .hidden ":             "hidden",
		"":                       "file",
		"...":                    "file",
		"a\r\nb":                 "a__b",
		"evil\u202egnp.exe":      "evil_gnp.exe",
		"Übersicht März.xlsx":    "Übersicht März.xlsx",
		strings.Repeat("é", 100): strings.Repeat("é", 60),
	} {
		assert.Equal(t, want, SafeName(in), "%q", in)
	}
}

func FuzzSafeName(f *testing.F) {
	for _, s := range []string{"report.pdf", "../x", " . .x", "a\x00b", strings.Repeat("€", 50)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := SafeName(in)
		if out == "" || len(out) > maxNameBytes || !utf8.ValidString(out) {
			t.Fatalf("SafeName(%q) = %q", in, out)
		}
		if strings.ContainsAny(out, "/\\\x00\r\n") || strings.HasPrefix(out, ".") {
			t.Fatalf("SafeName(%q) = %q keeps a separator or leading dot", in, out)
		}
		if again := SafeName(out); again != out {
			t.Fatalf("SafeName not stable: %q -> %q -> %q", in, out, again)
		}
	})
}

func FuzzVerify(f *testing.F) {
	s, err := NewSigner(testKey, "https://bridge.example.org", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("example.org", "AbCdEf", "1800000000", "AAAA", "report.pdf")
	f.Fuzz(func(t *testing.T, server, mediaID, expiry, mac, name string) {
		if _, err := s.Verify(server, mediaID, expiry, mac, name); err == nil {
			t.Fatalf("an unsigned link verified: %q %q %q %q %q", server, mediaID, expiry, mac, name)
		}
	})
}
