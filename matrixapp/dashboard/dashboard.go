// Package dashboard is the migration team's page (docs/migration.md): the
// waves with their counts and progress, every person's state and last
// error, the bridge's recent errors, messages and presence per minute and
// the audit log, refreshed live; with forms to set a mode and import a CSV
// file through the same service as the JSON API (matrixapp/migrationapi).
//
// It is served under Prefix on the appservice listener and is closed to
// anyone without the provisioning shared secret or a bridge admin's
// access token: they get 401 and a login form, nothing else.
package dashboard

import (
	"bytes"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/matrixapp/migrationapi"
)

// Prefix is where the page lives.
const Prefix = "/_sfb/dashboard"

// DefaultSessionTTL is how long a login lasts: a working day.
const DefaultSessionTTL = 10 * time.Hour

// Limits of what one page shows.
const (
	maxPeopleShown = 200
	auditShown     = 50
	errorsShown    = 20
	minutesShown   = 10
	// auditRead is how many audit entries a refresh reads to find the
	// newest errors among them.
	auditRead = 200
)

//go:embed templates static
var files embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"pct": func(part, whole int) int {
		if whole == 0 {
			return 0
		}
		return part * 100 / whole
	},
	"utc": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	"auditOf": func(t translator, events []database.AuditEvent, id string) auditTable {
		return auditTable{T: t, Events: events, ID: id}
	},
	"byMode": func(c migration.Counts, m string) int { return c.ByMode[migration.Mode(m)] },
	"statuses": func() []migration.LoginStatus {
		return []migration.LoginStatus{migration.LoginError, migration.LoginConnecting, migration.LoginConnected, migration.LoginNone}
	},
}).ParseFS(files, "templates/*.html"))

// Options configure the page.
type Options struct {
	// Service returns nil until the connector started.
	Service func() *migration.Service
	Auth    *migrationapi.Auth
	// Activity gives messages and presence per minute; nil shows none.
	Activity   Activity
	SessionTTL time.Duration // DefaultSessionTTL when zero
	Log        zerolog.Logger
}

// Dashboard serves the page.
type Dashboard struct {
	opts   Options
	sealer *sealer
	now    func() time.Time
}

// New returns the page; its session key is made here and lives only in
// memory.
func New(opts Options) (*Dashboard, error) {
	if opts.SessionTTL == 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	s, err := newSealer()
	if err != nil {
		return nil, err
	}
	return &Dashboard{opts: opts, sealer: s, now: time.Now}, nil
}

// Register adds the page's routes to mux.
func (d *Dashboard) Register(mux *http.ServeMux) {
	mux.Handle("GET "+Prefix, http.RedirectHandler(Prefix+"/", http.StatusSeeOther))
	mux.Handle("GET "+Prefix+"/static/", headers(http.StripPrefix(Prefix, http.FileServerFS(files))))
	mux.Handle("POST "+Prefix+"/login", headers(http.HandlerFunc(d.login)))
	mux.Handle("GET "+Prefix+"/{$}", d.authenticated(d.page, false))
	mux.Handle("GET "+Prefix+"/live", d.authenticated(d.live, false))
	mux.Handle("POST "+Prefix+"/logout", d.authenticated(d.logout, true))
	mux.Handle("POST "+Prefix+"/mode", d.authenticated(d.setMode, true))
	mux.Handle("POST "+Prefix+"/import", d.authenticated(d.importCSV, true))
	// Anything else: the login form before authentication, 404 after.
	mux.Handle(Prefix+"/", d.authenticated(func(w http.ResponseWriter, r *http.Request, _ request) {
		http.NotFound(w, r)
	}, false))
}

// request is an authenticated request's context.
type request struct {
	actor migration.Actor
	sess  session
	lang  string
}

func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Cache-Control", "no-store")
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		// Not no-referrer: with it browsers send "Origin: null" with the
		// forms, which sameOrigin must refuse.
		hd.Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// authenticated lets only a valid session through; write requests must
// also carry the session's CSRF token and come from this origin.
func (d *Dashboard) authenticated(h func(http.ResponseWriter, *http.Request, request), write bool) http.Handler {
	return headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rememberLanguage(w, r)
		lang := language(r)
		req, ok := d.session(r)
		if !ok {
			if c, err := r.Cookie(cookieName); err == nil && c.Value != "" {
				http.SetCookie(w, expiredCookie(r))
			}
			w.Header().Set("WWW-Authenticate", migrationapi.Challenge)
			d.render(w, http.StatusUnauthorized, "login", loginData{T: tr(lang), Lang: lang, Message: "login.expired"})
			return
		}
		req.lang = lang
		if write {
			// An import file, and its copy when confirmed, at most.
			r.Body = http.MaxBytesReader(w, r.Body, 3*migration.MaxImportBytes)
		}
		if write && (!sameOrigin(r) || !req.sess.csrfMatches(r.PostFormValue("csrf"))) {
			d.render(w, http.StatusForbidden, "message", messageData{T: tr(lang), Lang: lang, Text: tr(lang).S("csrf")})
			return
		}
		h(w, r, req)
	}))
}

func (d *Dashboard) session(r *http.Request) (request, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return request{}, false
	}
	sess, err := d.sealer.open(c.Value, d.now())
	if err != nil {
		return request{}, false
	}
	actor, ok := d.opts.Auth.Credential(r, sess.Credential)
	if !ok {
		return request{}, false
	}
	actor.From = "dashboard " + actor.From
	return request{actor: actor, sess: sess}, true
}

// sameOrigin refuses a write whose Origin (sent by every current browser
// with a POST) is another site's.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

type loginData struct {
	T       translator
	Lang    string
	Message string
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	rememberLanguage(w, r)
	lang := language(r)
	credential := strings.TrimSpace(r.PostFormValue("credential"))
	if !sameOrigin(r) {
		d.render(w, http.StatusForbidden, "login", loginData{T: tr(lang), Lang: lang, Message: "login.refused"})
		return
	}
	if _, ok := d.opts.Auth.Credential(r, credential); !ok {
		d.opts.Log.Info().Str("remote", r.RemoteAddr).Msg("Dashboard sign-in refused")
		w.Header().Set("WWW-Authenticate", migrationapi.Challenge)
		d.render(w, http.StatusUnauthorized, "login", loginData{T: tr(lang), Lang: lang, Message: "login.refused"})
		return
	}
	csrf, err := newCSRFToken()
	if err != nil {
		http.Error(w, "could not start a session", http.StatusInternalServerError)
		return
	}
	value, err := d.sealer.seal(session{Credential: credential, CSRF: csrf, Expires: d.now().Add(d.opts.SessionTTL).Unix()})
	if err != nil {
		http.Error(w, "could not start a session", http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, sessionCookie(r, value, d.opts.SessionTTL))
	http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request, req request) {
	http.SetCookie(w, expiredCookie(r))
	d.render(w, http.StatusOK, "login", loginData{T: tr(req.lang), Lang: req.lang})
}

// pageData is the whole page.
type pageData struct {
	T       translator
	Lang    string
	Who     string
	CSRF    string
	Filter  filter
	Notice  string
	Failed  bool
	Import  *importView
	WaveSel []string
	Modes   []migration.Mode
	Live    liveData
}

// filter is the people search, kept in the URL so that the live refresh
// keeps it.
type filter struct {
	Text   string
	Status string
}

func (f filter) Query() string {
	v := url.Values{}
	if f.Text != "" {
		v.Set("q", f.Text)
	}
	if f.Status != "" {
		v.Set("status", f.Status)
	}
	return v.Encode()
}

func filterOf(r *http.Request) filter {
	f := filter{Text: r.URL.Query().Get("q")}
	switch s := migration.LoginStatus(r.URL.Query().Get("status")); s {
	case migration.LoginNone, migration.LoginConnecting, migration.LoginConnected, migration.LoginError:
		f.Status = string(s)
	}
	return f
}

func (d *Dashboard) page(w http.ResponseWriter, r *http.Request, req request) {
	d.render(w, http.StatusOK, "page", d.pageData(r, req, filterOf(r)))
}

func (d *Dashboard) pageData(r *http.Request, req request, f filter) pageData {
	p := pageData{T: tr(req.lang), Lang: req.lang, Who: req.actor.Who, CSRF: req.sess.CSRF, Filter: f, Modes: migration.Modes(),
		Live: d.liveData(r, req.lang, f)}
	for _, w := range p.Live.Waves {
		p.WaveSel = append(p.WaveSel, w.Name)
	}
	return p
}

func (d *Dashboard) live(w http.ResponseWriter, r *http.Request, req request) {
	d.render(w, http.StatusOK, "live", d.liveData(r, req.lang, filterOf(r)))
}

// liveData is the part of the page the browser refreshes.
type liveData struct {
	T        translator
	Updated  time.Time
	NotReady bool
	Failed   bool
	Default  migration.Mode
	Waves    []waveRow
	NoWave   migration.Counts
	People   []migration.PersonView
	Total    int
	Minutes  []Minute
	// InError are the logins in error now, Errors the newest error
	// entries of the audit log.
	InError []migration.PersonView
	Errors  []database.AuditEvent
	Audit   []database.AuditEvent
}

type auditTable struct {
	T      translator
	Events []database.AuditEvent
	ID     string
}

type waveRow struct {
	migration.WaveSummary
	Planned string
	When    string
}

// errorActions are the audit entries that are the bridge's errors.
var errorActions = map[string]bool{database.AuditLoginFailed: true, database.AuditReloginRequired: true}

func (d *Dashboard) liveData(r *http.Request, lang string, f filter) liveData {
	t := tr(lang)
	now := d.now()
	data := liveData{T: t, Updated: now.UTC()}
	if d.opts.Activity != nil {
		data.Minutes = d.opts.Activity.Minutes(minutesShown)
	}
	svc := d.opts.Service()
	if svc == nil {
		data.NotReady = true
		return data
	}
	ctx := r.Context()
	o, err := svc.Overview(ctx)
	if err != nil {
		d.opts.Log.Error().Err(err).Msg("Dashboard could not read the waves")
		data.Failed = true
		return data
	}
	data.Default, data.NoWave = o.DefaultMode, o.NoWave
	for _, w := range o.Waves {
		row := waveRow{WaveSummary: w, Planned: t.S("no.date")}
		if w.PlannedStart != nil {
			row.Planned = w.PlannedStart.UTC().Format("2006-01-02 15:04")
			row.When = relativeDays(t, now, *w.PlannedStart)
		}
		data.Waves = append(data.Waves, row)
	}
	data.People, data.Total, err = svc.People(ctx, migration.PeopleQuery{Text: f.Text, Status: migration.LoginStatus(f.Status), Limit: maxPeopleShown})
	if err != nil {
		d.opts.Log.Error().Err(err).Msg("Dashboard could not read the people")
		data.Failed = true
	}
	data.InError, _, err = svc.People(ctx, migration.PeopleQuery{Status: migration.LoginError, Limit: errorsShown})
	if err != nil {
		d.opts.Log.Error().Err(err).Msg("Dashboard could not read the logins in error")
		data.Failed = true
	}
	events, err := svc.Audit(ctx, "", auditRead)
	if err != nil {
		d.opts.Log.Error().Err(err).Msg("Dashboard could not read the audit log")
		data.Failed = true
	}
	for _, e := range events {
		if errorActions[e.Action] && len(data.Errors) < errorsShown {
			data.Errors = append(data.Errors, e)
		}
	}
	data.Audit = events[:min(len(events), auditShown)]
	return data
}

func relativeDays(t translator, now, start time.Time) string {
	day := func(x time.Time) time.Time {
		y, m, d := x.UTC().Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	}
	days := int(day(start).Sub(day(now)).Hours() / 24)
	switch {
	case days > 0:
		return t.F("days.until", days)
	case days < 0:
		return t.F("days.since", -days)
	}
	return t.S("today")
}

func (d *Dashboard) setMode(w http.ResponseWriter, r *http.Request, req request) {
	t := tr(req.lang)
	svc, ok := d.writableService(w, r, req)
	if !ok {
		return
	}
	var mode migration.Mode
	var err error
	if s := r.PostFormValue("mode"); s != "" {
		mode, err = migration.ParseMode(s)
		err = wrapInvalid(err)
	}
	target, name := r.PostFormValue("target"), strings.TrimSpace(r.PostFormValue("name"))
	shown := string(mode)
	if mode == "" {
		shown = t.S("mode.inherit")
	}
	var notice string
	if err == nil {
		switch target {
		case "wave":
			err = svc.SetWaveMode(r.Context(), name, mode, req.actor)
			notice = t.F("done.wave.mode", name, shown)
		case "person":
			err = svc.SetPersonMode(r.Context(), name, mode, req.actor)
			notice = t.F("done.person", name, shown)
		default:
			err = fmt.Errorf("choose a wave or a person: %w", migration.ErrInvalid)
		}
	}
	if err != nil {
		d.afterWrite(w, r, req, d.failure(err), t.F("failed", err.Error()), nil)
		return
	}
	d.afterWrite(w, r, req, http.StatusOK, notice, nil)
}

// writableService returns the migration service, or shows the page saying
// the bridge is still starting.
func (d *Dashboard) writableService(w http.ResponseWriter, r *http.Request, req request) (*migration.Service, bool) {
	svc := d.opts.Service()
	if svc == nil {
		d.afterWrite(w, r, req, http.StatusServiceUnavailable, tr(req.lang).S("not.ready"), nil)
	}
	return svc, svc != nil
}

func wrapInvalid(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", err, migration.ErrInvalid)
}

// afterWrite shows the page with what a write did: a notice (a failure
// unless status is 200) or an import's report.
func (d *Dashboard) afterWrite(w http.ResponseWriter, r *http.Request, req request, status int, notice string, imp *importView) {
	p := d.pageData(r, req, filter{})
	p.Notice, p.Failed, p.Import = notice, status != http.StatusOK, imp
	if imp != nil {
		imp.T, imp.CSRF = p.T, p.CSRF
	}
	d.render(w, status, "page", p)
}

// importView is the result of a dry run or an import.
type importView struct {
	T       translator
	CSRF    string
	Report  *migration.ImportReport
	Summary string
	// Confirm carries the checked file back for the real run.
	Confirm string
}

func (d *Dashboard) importCSV(w http.ResponseWriter, r *http.Request, req request) {
	t := tr(req.lang)
	svc, ok := d.writableService(w, r, req)
	if !ok {
		return
	}
	data, dryRun, err := importFile(r)
	var report *migration.ImportReport
	if err == nil {
		report, err = svc.Import(r.Context(), data, dryRun, req.actor)
	}
	switch {
	case report != nil && dryRun:
		v := &importView{Report: report, Summary: t.F("import.checked", report.Rows, len(report.Errors), report.New, report.Changed, report.Unchanged,
			strings.Join(report.NewWaves, ", "))}
		if len(report.Errors) == 0 {
			v.Confirm = base64.StdEncoding.EncodeToString(data)
		}
		d.afterWrite(w, r, req, http.StatusOK, "", v)
	case report != nil && err == nil:
		d.afterWrite(w, r, req, http.StatusOK, t.F("import.done", report.New, report.Changed, report.Unchanged), nil)
	case report != nil:
		// A real run with bad rows (the file was changed after its dry
		// run): nothing was written.
		d.afterWrite(w, r, req, http.StatusUnprocessableEntity, t.S("import.bad"), &importView{Report: report})
	default:
		d.afterWrite(w, r, req, d.failure(err), t.F("failed", err.Error()), nil)
	}
}

// importFile reads the file of a dry run (an upload) or of its
// confirmation (the checked file, sent back).
func importFile(r *http.Request) ([]byte, bool, error) {
	if confirm := r.PostFormValue("confirm"); confirm != "" {
		data, err := base64.StdEncoding.DecodeString(confirm)
		if err != nil {
			return nil, false, fmt.Errorf("the confirmed file came back damaged; check it again: %w", migration.ErrInvalid)
		}
		return data, false, nil
	}
	file, _, err := r.FormFile("file")
	if err != nil {
		return nil, true, fmt.Errorf("choose a CSV file: %w", migration.ErrInvalid)
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, migration.MaxImportBytes+1))
	if err != nil {
		return nil, true, fmt.Errorf("read the uploaded file: %w", err)
	}
	if len(data) > migration.MaxImportBytes {
		return nil, true, fmt.Errorf("the file is larger than %d bytes; split it: %w", migration.MaxImportBytes, migration.ErrInvalid)
	}
	return data, true, nil
}

// failure is the status of a write that failed, logging what is not the
// caller's mistake.
func (d *Dashboard) failure(err error) int {
	switch {
	case errors.Is(err, migration.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, migration.ErrNotFound):
		return http.StatusNotFound
	}
	d.opts.Log.Error().Err(err).Msg("Dashboard change failed")
	return http.StatusInternalServerError
}

type messageData struct {
	T    translator
	Lang string
	Text string
}

func (d *Dashboard) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		d.opts.Log.Error().Err(err).Str("template", name).Msg("Dashboard could not render")
		http.Error(w, "the page could not be shown; see the bridge's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// translator gives the page's texts in one language.
type translator map[string]string

func tr(lang string) translator { return words[lang] }

// S is the text of key.
func (t translator) S(key string) string {
	if s, ok := t[key]; ok {
		return s
	}
	return key
}

// F is the text of key with args filled in.
func (t translator) F(key string, args ...any) string { return fmt.Sprintf(t.S(key), args...) }
