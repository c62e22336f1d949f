package dashboard

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/dbtest"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/matrixapp/migrationapi"
)

const (
	testSecret = "0123456789abcdef-provisioning"
	adminToken = "syt_admin_token"
	userToken  = "syt_user_token"
	admin      = id.UserID("@lead:example.org")
)

const wave1 = "sip_address;matrix_id;wave;mode\r\n" +
	"alice@contoso.com;@alice:example.org;Welle 1;\r\n" +
	"bob@contoso.com;@bob:example.org;Welle 1;matrix_only\r\n" +
	"carol@contoso.com;@carol:example.org;;\r\n"

type testPage struct {
	srv  *httptest.Server
	svc  *migration.Service
	dash *Dashboard
}

func newTestPage(t *testing.T) *testPage {
	t.Helper()
	db := dbtest.SQLite(t)
	ctx := context.Background()
	logins := map[string]migration.Login{
		"alice@contoso.com": {Status: migration.LoginConnected, State: "CONNECTED"},
		"bob@contoso.com":   {Status: migration.LoginError, State: "BAD_CREDENTIALS", Error: "sfb-password-wrong: The password was refused"},
	}
	svc := migration.New(db, zerolog.Nop(), migration.Options{Logins: func(a string) migration.Login {
		if l, ok := logins[a]; ok {
			return l
		}
		return migration.Login{Status: migration.LoginNone}
	}})
	lead := migration.Actor{Who: string(admin), From: "test"}
	_, err := svc.Import(ctx, []byte(wave1), false, lead)
	require.NoError(t, err)
	require.NoError(t, svc.PutWave(ctx, "Welle 1", time.Now().Add(72*time.Hour), lead))
	require.NoError(t, db.AddAudit(ctx, database.AuditEvent{Action: database.AuditReloginRequired, LoginID: "bob@contoso.com", Detail: "the password was refused"}))

	auth := migrationapi.NewAuth(testSecret, func(u id.UserID) bool { return u == admin }, func(_ context.Context, token string) (id.UserID, error) {
		switch token {
		case adminToken:
			return admin, nil
		case userToken:
			return "@someone:example.org", nil
		}
		return "", errors.New("M_UNKNOWN_TOKEN")
	})
	activity := ActivityFunc(func(int) []Minute {
		return []Minute{{Start: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC), PresenceUpdates: 7}}
	})
	d, err := New(Options{Service: func() *migration.Service { return svc }, Auth: auth, Activity: activity, Log: zerolog.New(zerolog.NewTestWriter(t))})
	require.NoError(t, err)
	mux := http.NewServeMux()
	d.Register(mux)
	tp := &testPage{srv: httptest.NewServer(mux), svc: svc, dash: d}
	t.Cleanup(tp.srv.Close)
	return tp
}

// client is a browser: it keeps cookies and follows redirects.
func (tp *testPage) client(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar}
}

func get(t *testing.T, c *http.Client, u string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, c, req)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, c, req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func (tp *testPage) url(path string) string { return tp.srv.URL + Prefix + path }

// login signs c in with credential and returns the page and its CSRF
// token.
func (tp *testPage) login(t *testing.T, c *http.Client, credential string) string {
	t.Helper()
	status, body := post(t, c, tp.url("/login"), url.Values{"credential": {credential}})
	require.Equal(t, http.StatusOK, status, body)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	require.NotNil(t, m, "the page has a CSRF token")
	return m[1]
}

func TestRefusedWithoutSessionShowsLoginFormOnly(t *testing.T) {
	tp := newTestPage(t)
	c := tp.client(t)
	for _, path := range []string{"/", "/live", "/live?q=bob", "/no-such-page"} {
		status, body := get(t, c, tp.url(path))
		assert.Equal(t, http.StatusUnauthorized, status, path)
		assert.Contains(t, body, `name="credential"`, path)
		for _, secret := range []string{"alice@contoso.com", "bob@contoso.com", "Welle 1", "sfb-password-wrong"} {
			assert.NotContains(t, body, secret, "no data before authentication: %s", path)
		}
	}
	for _, path := range []string{"/mode", "/import", "/logout"} {
		status, _ := post(t, c, tp.url(path), url.Values{"target": {"wave"}, "name": {"Welle 1"}, "mode": {"matrix_only"}})
		assert.Equal(t, http.StatusUnauthorized, status, path)
	}
	w, err := tp.svc.Wave(context.Background(), "Welle 1")
	require.NoError(t, err)
	assert.Empty(t, w.Mode, "nothing changed")

	// A Matrix user who is no bridge admin, a wrong secret, a forged cookie.
	for _, credential := range []string{userToken, testSecret + "x", ""} {
		status, body := post(t, c, tp.url("/login"), url.Values{"credential": {credential}})
		assert.Equal(t, http.StatusUnauthorized, status)
		assert.Contains(t, body, words["de"]["login.refused"])
	}
	u, _ := url.Parse(tp.srv.URL + Prefix + "/")
	c.Jar.SetCookies(u, []*http.Cookie{{Name: cookieName, Value: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}})
	status, _ := get(t, c, tp.url("/"))
	assert.Equal(t, http.StatusUnauthorized, status)
}

func TestLoginSetsAStrictHttpOnlyExpiringCookie(t *testing.T) {
	tp := newTestPage(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, https := range []bool{false, true} {
		req, err := http.NewRequest(http.MethodPost, tp.url("/login"), strings.NewReader(url.Values{"credential": {testSecret}}.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if https {
			req.Header.Set("X-Forwarded-Proto", "https")
		}
		resp, err := noRedirect.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		var sess *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == cookieName {
				sess = c
			}
		}
		require.NotNil(t, sess)
		assert.True(t, sess.HttpOnly)
		assert.Equal(t, http.SameSiteStrictMode, sess.SameSite)
		assert.Equal(t, https, sess.Secure, "Secure when reached over https")
		assert.Equal(t, int(DefaultSessionTTL/time.Second), sess.MaxAge)
		assert.Equal(t, Prefix+"/", sess.Path)
		assert.NotContains(t, sess.Value, testSecret, "the credential is sealed")
	}

	c := tp.client(t)
	tp.login(t, c, adminToken)
	status, _ := get(t, c, tp.url("/"))
	require.Equal(t, http.StatusOK, status)
	tp.dash.now = func() time.Time { return time.Now().Add(DefaultSessionTTL + time.Minute) }
	status, _ = get(t, c, tp.url("/"))
	assert.Equal(t, http.StatusUnauthorized, status, "the session expired")
}

func TestPageShowsWavesPeopleErrorsAndAudit(t *testing.T) {
	tp := newTestPage(t)
	c := tp.client(t)
	tp.login(t, c, adminToken)
	status, body := get(t, c, tp.url("/"))
	require.Equal(t, http.StatusOK, status)
	row := regexp.MustCompile(`(?s)<tr data-wave="Welle 1">.*?</tr>`).FindString(body)
	require.NotEmpty(t, row)
	for class, want := range map[string]string{"assigned": "2", "signed-in": "2", "connected": "1", "in-error": "1", "sfb_only": "1", "matrix_only": "1", "coexistence": "0"} {
		assert.Regexp(t, `class="num `+class+`">`+want+`<`, row, class)
	}
	assert.Contains(t, row, "1 von 2 verbunden")
	assert.Contains(t, row, "in 3 Tagen")
	bob := regexp.MustCompile(`(?s)<tr data-person="bob@contoso.com"[^>]*>.*?</tr>`).FindString(body)
	assert.Contains(t, bob, "sfb-password-wrong: The password was refused")
	assert.Contains(t, bob, "Fehler")
	assert.Regexp(t, `(?s)<table id="logins-in-error">.*data-error-person="bob@contoso.com".*</table>`, body)
	assert.Contains(t, body, `<table id="errors">`)
	assert.Contains(t, body, "relogin_required")
	assert.Contains(t, body, "import", "the audit log")

	// The search narrows the people; the live fragment keeps it.
	_, body = get(t, c, tp.url("/live?q=password"))
	assert.Contains(t, body, `data-person="bob@contoso.com"`)
	assert.NotContains(t, body, `data-person="alice@contoso.com"`)
	_, body = get(t, c, tp.url("/live?status=connected"))
	assert.Contains(t, body, `data-person="alice@contoso.com"`)
	assert.NotContains(t, body, `data-person="bob@contoso.com"`)
	assert.NotContains(t, body, "<html", "the fragment is no page")
}

func TestModeChangeNeedsTheSessionsCSRFToken(t *testing.T) {
	tp := newTestPage(t)
	c := tp.client(t)
	csrf := tp.login(t, c, adminToken)
	ctx := context.Background()
	form := url.Values{"target": {"wave"}, "name": {"Welle 1"}, "mode": {"coexistence"}}

	status, _ := post(t, c, tp.url("/mode"), form)
	assert.Equal(t, http.StatusForbidden, status, "no token")
	form.Set("csrf", csrf+"x")
	status, _ = post(t, c, tp.url("/mode"), form)
	assert.Equal(t, http.StatusForbidden, status, "a wrong token")
	form.Set("csrf", csrf)
	req, err := http.NewRequest(http.MethodPost, tp.url("/mode"), strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	status, _ = do(t, c, req)
	assert.Equal(t, http.StatusForbidden, status, "another site")
	w, err := tp.svc.Wave(ctx, "Welle 1")
	require.NoError(t, err)
	require.Empty(t, w.Mode, "nothing changed")

	status, body := post(t, c, tp.url("/mode"), form)
	require.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, "Welle 1 hat jetzt Modus coexistence.")
	w, err = tp.svc.Wave(ctx, "Welle 1")
	require.NoError(t, err)
	assert.Equal(t, migration.Coexistence, w.Mode)

	status, body = post(t, c, tp.url("/mode"), url.Values{"csrf": {csrf}, "target": {"person"}, "name": {"not an address"}, "mode": {"matrix_only"}})
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, body, "Nicht ausgeführt")

	events, err := tp.svc.Audit(ctx, "", 1)
	require.NoError(t, err)
	require.Len(t, events, 1)
	assert.Equal(t, database.AuditWaveModeSet, events[0].Action)
	assert.Equal(t, string(admin), events[0].Actor)
	assert.True(t, strings.HasPrefix(events[0].Origin, "dashboard 127.0.0.1"), events[0].Origin)
}

func TestImportIsCheckedThenConfirmed(t *testing.T) {
	tp := newTestPage(t)
	c := tp.client(t)
	csrf := tp.login(t, c, testSecret)
	ctx := context.Background()
	upload := func(file string) (int, string) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		require.NoError(t, mw.WriteField("csrf", csrf))
		fw, err := mw.CreateFormFile("file", "welle2.csv")
		require.NoError(t, err)
		_, err = fw.Write([]byte(file))
		require.NoError(t, err)
		require.NoError(t, mw.Close())
		req, err := http.NewRequest(http.MethodPost, tp.url("/import"), &buf)
		require.NoError(t, err)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		return do(t, c, req)
	}

	status, body := upload("sip_address,matrix_id,wave\ndave@contoso.com,@dave:example.org,Welle 2\nnot-an-address,@x:example.org,Welle 2\n")
	require.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, "Nichts wurde geändert")
	assert.Regexp(t, `<td>3</td><td>[^<]+</td>`, body, "the bad row with its line number")
	assert.NotContains(t, body, `name="confirm"`, "a file with bad rows cannot be confirmed")

	file := "sip_address,matrix_id,wave\ndave@contoso.com,@dave:example.org,Welle 2\n"
	status, body = upload(file)
	require.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, "1 neue")
	_, err := tp.svc.Wave(ctx, "Welle 2")
	require.ErrorIs(t, err, migration.ErrNotFound, "the dry run changed nothing")
	m := regexp.MustCompile(`name="confirm" value="([^"]+)"`).FindStringSubmatch(body)
	require.NotNil(t, m)

	status, body = post(t, c, tp.url("/import"), url.Values{"csrf": {csrf}, "confirm": {m[1]}})
	require.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, "Importiert: 1 neue")
	p, err := tp.svc.Person(ctx, "dave@contoso.com")
	require.NoError(t, err)
	assert.Equal(t, "Welle 2", p.Wave)
	events, err := tp.svc.Audit(ctx, "", 2)
	require.NoError(t, err)
	assert.Equal(t, []string{database.AuditImport, database.AuditImportDryRun}, []string{events[0].Action, events[1].Action})
	assert.Equal(t, migrationapi.SecretActor, events[0].Actor)
}

func TestLanguageFollowsSwitchThenBrowserThenGerman(t *testing.T) {
	tp := newTestPage(t)
	c := tp.client(t)
	_, body := get(t, c, tp.url("/"))
	assert.Contains(t, body, `<html lang="de">`)
	assert.Contains(t, body, "Anmelden")
	_, body = get(t, c, tp.url("/"), "Accept-Language", "en-GB,en;q=0.9,de;q=0.5")
	assert.Contains(t, body, `<html lang="en">`)
	assert.Contains(t, body, "Sign in")
	_, body = get(t, c, tp.url("/"), "Accept-Language", "fr-FR,fr;q=0.9")
	assert.Contains(t, body, `<html lang="de">`, "German when the browser asks for neither")

	tp.login(t, c, adminToken)
	_, body = get(t, c, tp.url("/?lang=en"), "Accept-Language", "de")
	assert.Contains(t, body, "Waves")
	_, body = get(t, c, tp.url("/"), "Accept-Language", "de")
	assert.Contains(t, body, "Waves", "the switch is remembered")
	assert.Contains(t, body, "1 of 2 connected")
}

func TestEveryTextInEveryLanguage(t *testing.T) {
	for _, lang := range languages {
		for _, other := range languages {
			for key := range words[other] {
				assert.Contains(t, words[lang], key, "%s lacks %q", lang, key)
			}
		}
	}
}
