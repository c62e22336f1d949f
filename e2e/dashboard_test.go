package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/synapse"
)

// artefactDir keeps what a test leaves for people to look at (the
// dashboard's screenshot); CI keeps it, git ignores it.
const artefactDir = "artefacts"

// chromium returns the browser to drive: $SFB_CHROMIUM (set by make from
// scripts/ensure-chromium.sh, which installs Debian's chromium package) or
// chromium on PATH. In CI a missing browser is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("SFB_CHROMIUM"), "chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	const reason = "needs Chromium: run scripts/ensure-chromium.sh (installs Debian's chromium) or set SFB_CHROMIUM"
	if synapse.Required() {
		t.Fatal(reason)
	}
	t.Skip(reason)
	return ""
}

// The migration team's member opens the dashboard in a browser, signs in
// with the shared secret, and sees the waves imported through the API
// with their counts and a person whose login is in error; a mode change
// made through the API appears without reloading the page.
func TestDashboardInChromium(t *testing.T) {
	// The browser first: a missing one fails (CI) or skips at once.
	browser := chromium(t)
	env := setup(t)

	// One person signed in whose password is then changed on the SfB side:
	// the bridge's next sign-in is refused and the login is in error.
	broken := env.newPair(t, "dashbroken")
	secret := env.st.ProvisioningSecret
	csv := "sip_address;matrix_id;wave;mode\n" +
		"dashbroken@contoso.com;" + string(broken.mx.ID) + ";Dash Welle A;\n" +
		"dash.anna@contoso.com;@dash.anna:localhost;Dash Welle A;coexistence\n" +
		"dash.ben@contoso.com;@dash.ben:localhost;Dash Welle A;\n" +
		"dash.carla@contoso.com;@dash.carla:localhost;Dash Welle B;\n"
	require.Equal(t, 200, migrationAPI(t, env, "POST", "/import?dry_run=false", secret, csv, nil))
	start := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	require.Equal(t, 200, migrationAPI(t, env, "PUT", "/waves/Dash%20Welle%20A", secret, `{"planned_start":"`+start+`"}`, nil))

	require.NoError(t, env.sim.SetPassword(broken.self.URI, "changed-by-the-directory"))
	env.sim.ExpireTokens(broken.self.URI)
	require.Eventually(t, func() bool {
		var p struct {
			Login struct {
				Status string `json:"status"`
			} `json:"login"`
		}
		return migrationAPI(t, env, "GET", "/people/dashbroken@contoso.com", secret, "", &p) == 200 && p.Login.Status == "error"
	}, hop, 250*time.Millisecond, "the login with the changed password goes into error")

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.WindowSize(1400, 1000),
	)...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	page := env.st.Bridge.URL() + "/_sfb/dashboard/?lang=de"
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.ID("credential"))))
	loginTitle, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main h2")))
	require.NoError(t, err)
	assert.Equal(t, "Anmelden", loginTitle, "German by default and by the switch")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("credential"), secret),
		chromedp.Submit(chromedp.ID("credential")),
	))
	waitCtx, cancelWait := context.WithTimeout(ctx, 20*time.Second)
	err = chromedp.Do(waitCtx, chromedp.WaitVisible(chromedp.ID("waves")))
	cancelWait()
	if err != nil {
		shown, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		t.Fatalf("the page after signing in has no waves (%v):\n%s", err, shown)
	}

	text := func(selector string) (string, error) {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(selector)))
		return strings.TrimSpace(s), err
	}
	cell := func(selector string) string {
		t.Helper()
		s, err := text(selector)
		require.NoError(t, err, selector)
		return s
	}
	waveA := `#waves tr[data-wave="Dash Welle A"] `
	assert.Equal(t, "3", cell(waveA+"td.assigned"))
	assert.Equal(t, "1", cell(waveA+"td.signed-in"))
	assert.Equal(t, "1", cell(waveA+"td.in-error"))
	assert.Equal(t, "1", cell(waveA+"td.coexistence"))
	assert.Equal(t, "2", cell(waveA+"td.sfb_only"))
	assert.Contains(t, cell(waveA+"td.planned"), "in 2 Tagen", "progress towards the wave's date")
	person := `#people tr[data-person="dashbroken@contoso.com"] `
	assert.Contains(t, cell(person+"td.status"), "Fehler")
	assert.Contains(t, cell(person+"td.error"), "sfb-bad-credentials")
	assert.Contains(t, cell(`#logins-in-error tr[data-error-person="dashbroken@contoso.com"] td.error`), "sfb-bad-credentials",
		"among the bridge's errors")

	// A mode change through the API shows on the open page, which must
	// not reload for it: the marker set now would be gone.
	_, err = chromedp.Run(ctx, chromedp.Evaluate[int](`window.sfbMarker = 42`))
	require.NoError(t, err)
	waveB := `#waves tr[data-wave="Dash Welle B"] td.mode`
	require.Equal(t, "–", cell(waveB))
	require.Equal(t, 200, migrationAPI(t, env, "PUT", "/waves/Dash%20Welle%20B/mode", secret, `{"mode":"matrix_only"}`, nil))
	changed := time.Now()
	require.Eventually(t, func() bool {
		// The refresh may replace the table between finding the cell and
		// reading it; the next poll reads it again.
		s, err := text(waveB)
		return err == nil && s == "matrix_only"
	}, 60*time.Second, 500*time.Millisecond, "the mode change appears on the page")
	t.Logf("the mode change appeared on the page after %s", time.Since(changed).Round(100*time.Millisecond))
	marker, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.sfbMarker || 0`))
	require.NoError(t, err)
	assert.Equal(t, 42, marker, "the page was not reloaded")
	assert.Equal(t, "1", cell(`#waves tr[data-wave="Dash Welle B"] td.matrix_only`))

	// Search for the person in error, as the team would.
	require.NoError(t, chromedp.Do(ctx, chromedp.SetValue(chromedp.ID("q"), "dashbroken")))
	_, err = chromedp.RunResponse(ctx, chromedp.Submit(chromedp.ID("q")))
	require.NoError(t, err)
	assert.Contains(t, cell(`#people-count`), "1 von 1")

	require.NoError(t, os.MkdirAll(artefactDir, 0o755))
	shot, err := filepath.Abs(filepath.Join(artefactDir, "dashboard.png"))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(env.st.Bridge.URL()+"/_sfb/dashboard/"),
		chromedp.WaitVisible(chromedp.ID("waves")),
	))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(shot, png, 0o644))
	t.Logf("dashboard screenshot: %s", shot)
}
