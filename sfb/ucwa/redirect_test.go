package ucwa

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// TestHTTPRedirectsStayInOrganisation: an HTTP redirect (RootURL.md step
// 3: a 302 to another domain fails the discovery) is followed inside the
// organisation and refused out of it, before any request goes there; a
// 307 on the token request would otherwise re-send the password.
func TestHTTPRedirectsStayInOrganisation(t *testing.T) {
	tests := []struct {
		name     string
		path     string // the request answered with a redirect
		status   int
		location string
		wantErr  string
	}{
		{"discovery within organisation", "/autodiscover/autodiscoverservice.svc/root", http.StatusFound,
			"https://lyncweb.contoso.com/autodiscover/autodiscoverservice.svc/root?moved=1", ""},
		{"discovery to another organisation", "/autodiscover/autodiscoverservice.svc/root", http.StatusFound,
			"https://lyncweb.evil.example/autodiscover/autodiscoverservice.svc/root", "leaves the organisation"},
		{"token request to another organisation", "/WebTicket/oauthtoken", http.StatusTemporaryRedirect,
			"https://lyncweb.evil.example/WebTicket/oauthtoken", "leaves the organisation"},
		{"discovery to a look-alike domain", "/autodiscover/autodiscoverservice.svc/root", http.StatusFound,
			"https://contoso.com.evil.example/autodiscover/autodiscoverservice.svc/root", "leaves the organisation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.srv.Close()
			var mu sync.Mutex
			var hosts []string
			f.override = func(w http.ResponseWriter, r *http.Request, _ string) bool {
				mu.Lock()
				hosts = append(hosts, r.Host)
				mu.Unlock()
				if r.URL.Path == tt.path && r.URL.Query().Get("moved") == "" && !strings.Contains(r.Host, "evil") {
					http.Redirect(w, r, tt.location, tt.status)
					return true
				}
				return false
			}
			hc := newTLSFake(t, f)
			tr, err := New(sfb.Config{DiscoveryURL: "https://lyncdiscover.contoso.com/autodiscover/autodiscoverservice.svc/root"},
				zerolog.New(zerolog.NewTestWriter(t)), WithHTTPClient(hc), WithTimings(testTimings()))
			require.NoError(t, err)
			c := tr.newConn("sip:toshm@contoso.com", tr.log, sfb.Credentials{SignInAddress: "toshm@contoso.com", Password: "secret"})
			apps, err := tr.discover(t.Context(), c, "sip:toshm@contoso.com")
			mu.Lock()
			defer mu.Unlock()
			for _, h := range hosts {
				assert.NotContains(t, h, "evil", "a request went to another organisation")
			}
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.True(t, strings.HasSuffix(apps, "/ucwa/oauth/v1/applications"), apps)
			assert.Contains(t, hosts, "lyncweb.contoso.com")
		})
	}
}
