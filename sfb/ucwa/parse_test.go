package ucwa

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/ucwa/ucwaref"
)

func TestParseDataURI(t *testing.T) {
	tests := []struct {
		in, media, text string
		wantErr         bool
	}{
		{in: "data:text/plain;charset=utf-8,Hi+Tosh%0d%0a", media: "text/plain", text: "Hi Tosh"},
		{in: "data:text/plain;charset=utf-8,Hello%20there", media: "text/plain", text: "Hello there"},
		{in: "data : text/plain;base64,SGk=", media: "text/plain", text: "Hi"},
		{in: "data:text/html;base64,PGI+aGk8L2I+", media: "text/html", text: "<b>hi</b>"},
		{in: "data:text/plain;base64,SGk", media: "text/plain", text: "Hi"},
		{in: "data:,plain", media: "text/plain", text: "plain"},
		{in: "data:text/plain;charset=utf-8,line1%0d%0aline2", media: "text/plain", text: "line1\nline2"},
		{in: "http://x/y", wantErr: true},
		{in: "data:text/plain;base64", wantErr: true},
		{in: "data:text/plain;base64,***", wantErr: true},
		{in: "data:text/plain,%zz", wantErr: true},
		{in: "data:text/plain," + strings.Repeat("a", MaxMessageBytes+1), wantErr: true},
	}
	for _, tt := range tests {
		d, err := ParseDataURI(tt.in)
		if tt.wantErr {
			assert.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.media, d.MediaType, tt.in)
		text, valid := d.Text()
		assert.True(t, valid)
		assert.Equal(t, tt.text, text, tt.in)
	}
	enc := EncodeDataURI("text/plain", "Grüße ✓")
	d, err := ParseDataURI(enc)
	require.NoError(t, err)
	assert.Equal(t, "Grüße ✓", string(d.Data))
}

func TestParseChallenge(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		href   string
		grants []string
		ok     bool
	}{
		{"CreateAnApplication", []string{`Bearer trusted_issuers="x", client_id="y"`, `MsRtcOAuth href="https://lyncweb.contoso.com/WebTicket/oauthtoken",grant_type="urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password"`},
			"https://lyncweb.contoso.com/WebTicket/oauthtoken", []string{"urn:microsoft.rtc:windows", "urn:microsoft.rtc:anonmeeting", "password"}, true},
		{"unquoted href (AuthenticationInUCWA)", []string{`MsRtcOAuth href=https://contoso.com/WebTicket/oauthtoken,grant_type="urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password"`},
			"https://contoso.com/WebTicket/oauthtoken", []string{"urn:microsoft.rtc:windows", "urn:microsoft.rtc:anonmeeting", "password"}, true},
		{"only bearer", []string{`Bearer realm="x"`}, "", nil, false},
		{"no href", []string{`MsRtcOAuth grant_type="password"`}, "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, ok := parseChallenge(tt.values)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.href, ch.Href)
			assert.Equal(t, tt.grants, ch.GrantTypes)
		})
	}
}

// TestReferenceChallenges parses every MsRtcOAuth challenge in the
// reference.
func TestReferenceChallenges(t *testing.T) {
	corpus := loadReference(t)
	n := 0
	for _, tr := range corpus.Transcripts {
		if tr.Response == nil {
			continue
		}
		vals := tr.Response.Header.Values("Www-Authenticate")
		if len(vals) == 0 {
			continue
		}
		ch, ok := parseChallenge(vals)
		require.True(t, ok, "%s:%d", tr.File, tr.Line)
		assert.Contains(t, ch.GrantTypes, "password")
		n++
	}
	assert.GreaterOrEqual(t, n, 1)
}

func TestTimestamp(t *testing.T) {
	var m Message
	require.NoError(t, json.Unmarshal([]byte(`{"timeStamp":"\/Date(1364327898968)\/"}`), &m))
	assert.Equal(t, time.UnixMilli(1364327898968).UTC(), m.TimeStamp.Time)
	require.NoError(t, json.Unmarshal([]byte(`{"timeStamp":"/Date(1364327898968+0100)/"}`), &m))
	assert.Equal(t, time.UnixMilli(1364327898968).UTC(), m.TimeStamp.Time)
	assert.Error(t, json.Unmarshal([]byte(`{"timeStamp":"/Date(abc)/"}`), &m))
}

func TestConfigURLPolicy(t *testing.T) {
	log := zerolog.Nop()
	tests := []struct {
		name string
		cfg  sfb.Config
		ok   bool
	}{
		{"https", sfb.Config{DiscoveryURL: "https://lyncdiscover.contoso.com/autodiscover/autodiscoverservice.svc/root"}, true},
		{"http loopback allowed", sfb.Config{DiscoveryURL: "http://127.0.0.1:8080/x", AllowInsecureLoopback: true}, true},
		{"http loopback not allowed", sfb.Config{DiscoveryURL: "http://127.0.0.1:8080/x"}, false},
		{"http remote", sfb.Config{DiscoveryURL: "http://lyncdiscover.contoso.com/x", AllowInsecureLoopback: true}, false},
		{"relative", sfb.Config{DiscoveryURL: "/root"}, false},
		{"activity too slow", sfb.Config{ActivityInterval: 5 * time.Minute}, false},
		{"missing CA file", sfb.Config{CAFile: "/nonexistent/ca.pem"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, log)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
		})
	}
}

func TestSameOrganisation(t *testing.T) {
	tr, err := New(sfb.Config{}, zerolog.Nop())
	require.NoError(t, err)
	creds := sfb.Credentials{SignInAddress: "alice@contoso.com"}
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://lyncweb.contoso.com/Autodiscover/AutodiscoverService.svc/root", true},
		{"https://contoso.com/WebTicket/oauthtoken", true},
		{"https://pool1.emea.contoso.com/x", true},
		{"https://contoso.com.evil.example/x", false},
		{"https://evilcontoso.com/x", false},
		{"https://lyncweb.fabrikam.com/x", false},
		{"http://lyncweb.contoso.com/x", false},
	}
	for _, tt := range tests {
		u, _ := url.Parse(tt.url)
		err := tr.sameOrganisation(creds, u)
		assert.Equal(t, tt.ok, err == nil, "%s: %v", tt.url, err)
	}
}

// TestDiscoveryRedirects runs autodiscovery for contoso.com with every host
// routed to one TLS test server: the internal root fails, the external one
// redirects inside the organisation, a redirect out of it is refused.
func TestDiscoveryRedirects(t *testing.T) {
	tests := []struct {
		name     string
		redirect string
		wantErr  string
	}{
		{"within organisation", "https://lyncweb.contoso.com/autodiscover/autodiscoverservice.svc/root", ""},
		{"other organisation", "https://lyncweb.evil.example/autodiscover/autodiscoverservice.svc/root", "outside the organisation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.srv.Close()
			var hosts []string
			f.override = func(w http.ResponseWriter, r *http.Request, _ string) bool {
				hosts = append(hosts, r.Host)
				if r.URL.Path != "/autodiscover/autodiscoverservice.svc/root" {
					return false
				}
				switch r.Host {
				case "lyncdiscoverinternal.contoso.com":
					writeJSON(w, 404, `{"code":"NotFound"}`)
				case "lyncdiscover.contoso.com":
					writeJSON(w, 200, `{"_links":{"redirect":{"href":"`+tt.redirect+`"}}}`)
				default:
					writeJSON(w, 200, `{"_links":{"user":{"href":"https://`+r.Host+`/autodiscover/autodiscoverservice.svc/root/oauth/user"}}}`)
				}
				return true
			}
			srv := newTLSFake(t, f)
			tr, err := New(sfb.Config{}, zerolog.New(zerolog.NewTestWriter(t)), WithHTTPClient(srv), WithTimings(testTimings()))
			require.NoError(t, err)
			// The fake hands out absolute URLs on its own address for the
			// user resource; route those through the same server.
			c := tr.newConn("sip:toshm@contoso.com", tr.log, sfb.Credentials{SignInAddress: "toshm@contoso.com", Password: "secret"})
			apps, err := tr.discover(t.Context(), c, "sip:toshm@contoso.com")
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				assert.NotContains(t, hosts, "lyncweb.evil.example")
				return
			}
			require.NoError(t, err)
			assert.True(t, strings.HasSuffix(apps, "/ucwa/oauth/v1/applications"))
			assert.Equal(t, []string{"lyncdiscoverinternal.contoso.com", "lyncdiscover.contoso.com", "lyncweb.contoso.com", "lyncweb.contoso.com"}, hosts[:4])
			assert.Equal(t, "cwt=token1", c.currentToken().Value)
		})
	}
}

// FuzzParseDataURI: the decoder never panics, never returns more than the
// cap, and its text is valid UTF-8.
func FuzzParseDataURI(f *testing.F) {
	for _, s := range []string{"data:text/plain;charset=utf-8,Hi+Tosh%0d%0a", "data:text/plain;base64,somebase64encodedmessage",
		"data : text/plain;base64,SGk=", "data:text/html;charset=utf8,URLEncodedMessageString", "data:,", "data:;base64,%"} {
		f.Add(s)
	}
	if corpus, err := ucwaref.LoadDefault(); err == nil {
		for _, rel := range []string{"messagingInvitation", "message"} {
			for _, r := range corpus.Resources(rel) {
				links, _ := r.Object["_links"].(map[string]any)
				for _, k := range []string{"message", "plainMessage", "htmlMessage"} {
					if l, ok := links[k].(map[string]any); ok {
						if h, ok := l["href"].(string); ok {
							f.Add(h)
						}
					}
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDataURI(s)
		if err != nil {
			return
		}
		if len(d.Data) > MaxMessageBytes {
			t.Fatalf("data of %d bytes passed the cap", len(d.Data))
		}
		text, _ := d.Text()
		if !utf8.ValidString(text) {
			t.Fatalf("text is not valid UTF-8")
		}
	})
}

// FuzzEventBody: decoding and processing an event-channel body never
// panics, whatever the server sends.
func FuzzEventBody(f *testing.F) {
	f.Add([]byte(`{"_links":{"next":{"href":"/e?ack=2"}},"sender":[]}`))
	f.Add([]byte(incomingInvitation("i", "data:,x")))
	if corpus, err := ucwaref.LoadDefault(); err == nil {
		for _, r := range corpus.Resources(ucwaref.EventsRel) {
			f.Add([]byte(r.JSON))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var evs Events
		if err := json.Unmarshal(data, &evs); err != nil {
			return
		}
		s := newOfflineSession(t)
		s.processBatch(evs, "fuzz")
	})
}

// TestMessageCharsets: the charset of a message's data URI decides how its
// bytes are read; bytes that do not fit are replaced (and reported), a
// charset the client cannot read is a clear unsupported error.
func TestMessageCharsets(t *testing.T) {
	tests := []struct {
		name, link, want string
		valid            bool
		wantErr          error
	}{
		{"utf-8", "data:text/plain;charset=utf-8,Gr%C3%BC%C3%9Fe", "Grüße", true, nil},
		{"latin-1", "data:text/plain;charset=ISO-8859-1,Gr%FC%DFe", "Grüße", true, nil},
		{"utf-16 with BOM", "data:text/plain;charset=utf-16;base64,//5HAHIA/ADfAGUA", "Grüße", true, nil},
		{"utf-16be", "data:text/plain;charset=utf-16be;base64,AEcAcgD8AN8AZQ==", "Grüße", true, nil},
		{"quoted utf-16be", "data:text/plain;charset=\"UTF-16BE\";base64,AEcAcgD8AN8AZQ==", "Grüße", true, nil},
		{"invalid utf-8", "data:text/plain;charset=utf-8,Gr%FC%DFe", "Gr\uFFFDe", false, nil},
		{"unknown charset", "data:text/plain;charset=koi8-r,abc", "", false, sfb.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, valid, err := decodeMessageText(tt.link, "")
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Contains(t, err.Error(), "koi8-r")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, msg.Text)
			assert.Equal(t, tt.valid, valid)
		})
	}
}
