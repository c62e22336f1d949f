package matrixapp

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/medialink"
)

const (
	testASToken  = "as-token-never-shown"
	testFileID   = "AbCdEf"
	testFileBody = "%PDF-1.7 quarterly numbers"
)

// mediaTestServer is a homeserver that serves one file over authenticated
// media to the appservice token, and the bridge's listener in front of it.
type mediaTestServer struct {
	signer    *medialink.Signer
	bridge    *httptest.Server
	hsFetches atomic.Int32
	// encrypted are further files, by media ID, served as the homeserver
	// serves the ciphertext of files from encrypted rooms.
	encrypted map[string][]byte
}

func newMediaTestServer(t *testing.T, contentType string) *mediaTestServer {
	t.Helper()
	s := &mediaTestServer{encrypted: map[string][]byte{}}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hsFetches.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+testASToken {
			http.Error(w, `{"errcode":"M_MISSING_TOKEN"}`, http.StatusUnauthorized)
			return
		}
		const download = "/_matrix/client/v1/media/download/example.org/"
		switch ciphertext, encrypted := s.encrypted[strings.TrimPrefix(r.URL.Path, download)]; {
		case encrypted:
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(ciphertext)
		case r.URL.Path == download+testFileID:
			w.Header().Set("Content-Type", contentType)
			w.Header().Set("Content-Disposition", `inline; filename="from-hs.bin"`)
			_, _ = io.WriteString(w, testFileBody)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"errcode":"M_NOT_FOUND","error":"Not found"}`)
		}
	}))
	t.Cleanup(hs.Close)
	cli, err := mautrix.NewClient(hs.URL, "@sfbbot:example.org", testASToken)
	require.NoError(t, err)

	router := http.NewServeMux()
	s.bridge = httptest.NewServer(router)
	t.Cleanup(s.bridge.Close)
	s.signer, err = medialink.NewSigner([]byte("0123456789abcdef0123456789abcdef"), s.bridge.URL, 7*24*time.Hour)
	require.NoError(t, err)
	handleMediaLinks(router, s.signer, cli.Download, zerolog.Nop())
	return s
}

func (s *mediaTestServer) link(t *testing.T, fileID, name string) string {
	t.Helper()
	link, err := s.signer.Link(id.ContentURI{Homeserver: "example.org", FileID: fileID}, name)
	require.NoError(t, err)
	return link
}

func get(t *testing.T, link string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(link)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func TestMediaLinkStreamsTheFile(t *testing.T) {
	s := newMediaTestServer(t, "application/pdf")
	resp, body := get(t, s.link(t, testFileID, "Bericht März.pdf"))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, testFileBody, body)
	assert.Equal(t, "application/pdf", resp.Header.Get("Content-Type"))
	assert.Equal(t, `attachment; filename="Bericht M_rz.pdf"; filename*=UTF-8''Bericht%20M%C3%A4rz.pdf`, resp.Header.Get("Content-Disposition"))
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	assert.Equal(t, "26", resp.Header.Get("Content-Length"))
	assert.NotContains(t, strings.ToLower(body+headerText(resp.Header)), strings.ToLower(testASToken))
}

func headerText(h http.Header) string {
	var b strings.Builder
	_ = h.Write(&b)
	return b.String()
}

// A file that a browser would run (HTML, SVG) is offered as a download,
// never shown in the bridge's origin; an unknown type is a download too.
func TestMediaLinkServesActiveTypesAsAttachments(t *testing.T) {
	for _, ct := range []string{"text/html; charset=utf-8", "image/svg+xml", "", "not a type"} {
		t.Run(ct, func(t *testing.T) {
			s := newMediaTestServer(t, ct)
			resp, body := get(t, s.link(t, testFileID, `a"b.html`))
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Disposition"), `attachment; filename="a_b.html"; filename*=UTF-8''a%22b.html`), resp.Header.Get("Content-Disposition"))
			assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
			assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "sandbox")
			if ct == "" || ct == "not a type" {
				assert.Equal(t, "application/octet-stream", resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestTamperedOrExpiredMediaLinksAreForbidden(t *testing.T) {
	s := newMediaTestServer(t, "image/png")
	valid := s.link(t, testFileID, "photo.png")
	u, err := url.Parse(valid)
	require.NoError(t, err)
	seg := strings.Split(strings.TrimPrefix(u.EscapedPath(), medialink.PathPrefix), "/")
	require.Len(t, seg, 5)
	base := s.bridge.URL + medialink.PathPrefix
	join := func(parts ...string) string { return base + strings.Join(parts, "/") }
	otherKey, err := medialink.NewSigner([]byte("another key of thirty-two bytes!"), s.bridge.URL, time.Hour)
	require.NoError(t, err)
	wrongKey, err := otherKey.Link(id.ContentURI{Homeserver: "example.org", FileID: testFileID}, "photo.png")
	require.NoError(t, err)
	expired, err := s.signer.LinkUntil(id.ContentURI{Homeserver: "example.org", FileID: testFileID}, "photo.png", time.Now().Add(-time.Second))
	require.NoError(t, err)

	cases := map[string]struct{ link, text string }{
		"other media":  {join(seg[0], "OtherFile", seg[2], seg[3], seg[4]), "not valid"},
		"other server": {join("evil.example", seg[1], seg[2], seg[3], seg[4]), "not valid"},
		"later expiry": {join(seg[0], seg[1], "99999999999", seg[3], seg[4]), "not valid"},
		"other name":   {join(seg[0], seg[1], seg[2], seg[3], "photo.html"), "not valid"},
		"other MAC":    {join(seg[0], seg[1], seg[2], strings.Repeat("A", len(seg[3])), seg[4]), "not valid"},
		"wrong key":    {wrongKey, "not valid"},
		"expired":      {expired, "has expired"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			resp, body := get(t, c.link)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			assert.Contains(t, body, c.text)
			assert.Contains(t, body, "Ask the sender to send the file again")
		})
	}
	assert.Zero(t, s.hsFetches.Load(), "no refused link reached the homeserver")

	for _, path := range []string{medialink.PathPrefix, medialink.PathPrefix + "example.org/" + testFileID, medialink.PathPrefix + strings.Join(seg, "/") + "/extra"} {
		resp, _ := get(t, s.bridge.URL+path)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, path)
	}

	resp, body := get(t, valid)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the untouched link still works")
	assert.Equal(t, testFileBody, body)
}

func TestMediaLinkToMissingFile(t *testing.T) {
	s := newMediaTestServer(t, "image/png")
	resp, body := get(t, s.link(t, "Deleted", "photo.png"))
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Contains(t, body, "no longer available")
}

func TestRFC5987Escape(t *testing.T) {
	assert.Equal(t, "a%20%C3%A9%25%27%2A.txt", rfc5987Escape("a é%'*.txt"))
}
