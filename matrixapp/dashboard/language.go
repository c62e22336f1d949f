package dashboard

import (
	"net/http"
	"strings"
	"time"
)

// languageCookie remembers the language chosen with the page's switch.
const languageCookie = "sfb_dashboard_lang"

// languages are the page's languages; the first is the default (the
// deployment is German).
var languages = []string{"de", "en"}

// language picks the page's language: the switch (?lang=), then the
// remembered choice, then the browser's Accept-Language, then German.
func language(r *http.Request) string {
	if l := r.URL.Query().Get("lang"); known(l) {
		return l
	}
	if c, err := r.Cookie(languageCookie); err == nil && known(c.Value) {
		return c.Value
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		base, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if known(base) {
			return base
		}
	}
	return languages[0]
}

func known(l string) bool {
	for _, k := range languages {
		if l == k {
			return true
		}
	}
	return false
}

func rememberLanguage(w http.ResponseWriter, r *http.Request) {
	if l := r.URL.Query().Get("lang"); known(l) {
		http.SetCookie(w, &http.Cookie{Name: languageCookie, Value: l, Path: Prefix + "/", MaxAge: int(365 * 24 * time.Hour / time.Second),
			HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode})
	}
}

// words are the page's texts by language.
var words = map[string]map[string]string{
	"de": {
		"title":             "Migration SfB → Matrix",
		"login.title":       "Anmelden",
		"login.help":        "Geben Sie das gemeinsame Provisioning-Geheimnis der Bridge oder das Matrix-Zugriffstoken eines Bridge-Administrators ein (Element: Einstellungen → Hilfe & Info → Zugriffstoken).",
		"login.field":       "Geheimnis oder Zugriffstoken",
		"login.submit":      "Anmelden",
		"login.refused":     "Anmeldung abgelehnt: Das Geheimnis ist falsch oder das Token gehört keinem Bridge-Administrator.",
		"login.expired":     "Bitte melden Sie sich an.",
		"logout":            "Abmelden",
		"signed.in.as":      "Angemeldet als",
		"language":          "Sprache",
		"live":              "Wird alle 5 Sekunden aktualisiert",
		"live.paused":       "Aktualisierung unterbrochen – Verbindung zur Bridge verloren",
		"updated":           "Stand",
		"not.ready":         "Die Bridge startet noch. Bitte in einer Minute neu laden.",
		"waves":             "Wellen",
		"wave":              "Welle",
		"planned":           "Geplanter Start",
		"progress":          "Fortschritt",
		"assigned":          "Zugeordnet",
		"signed.in":         "Angemeldet",
		"connected":         "Verbunden",
		"in.error":          "Mit Fehler",
		"mode":              "Modus",
		"no.wave":           "Ohne Welle",
		"default.mode":      "Standardmodus für Personen ohne Welle und ohne eigenen Modus",
		"none":              "–",
		"no.date":           "kein Datum",
		"days.until":        "in %d Tagen",
		"today":             "heute",
		"days.since":        "seit %d Tagen",
		"ready.of":          "%d von %d verbunden",
		"people":            "Personen",
		"search":            "Suche",
		"search.help":       "SIP-Adresse, Matrix-ID, Welle oder Fehlertext",
		"status":            "Status",
		"all":               "alle",
		"search.submit":     "Suchen",
		"shown.of":          "%d von %d Personen angezeigt",
		"address":           "SIP-Adresse",
		"matrix.id":         "Matrix-ID",
		"login.state":       "Anmeldung",
		"last.error":        "Letzter Fehler",
		"no.people":         "Keine Person gefunden.",
		"activity":          "Nachrichten und Präsenz pro Minute",
		"minute":            "Minute (UTC)",
		"messages":          "Nachrichten",
		"presence":          "Präsenz-Aktualisierungen",
		"no.activity":       "Noch keine volle Minute gemessen.",
		"errors":            "Letzte Fehler der Bridge",
		"no.errors":         "Keine Fehler.",
		"read.failed":       "Ein Teil der Daten konnte nicht gelesen werden; siehe das Log der Bridge.",
		"errors.now":        "Anmeldungen, die jetzt einen Fehler haben",
		"time":              "Zeit (UTC)",
		"audit":             "Audit-Log",
		"action":            "Aktion",
		"who":               "Wer",
		"from":              "Von wo",
		"person":            "Person",
		"detail":            "Details",
		"changes":           "Änderungen",
		"set.wave.mode":     "Modus einer Welle setzen",
		"set.person.mode":   "Modus einer Person setzen",
		"mode.inherit":      "(keiner – Welle oder Standard gilt)",
		"set":               "Setzen",
		"import":            "CSV-Import",
		"import.help":       "Spalten: SIP-Adresse, Matrix-ID, Welle, optional Modus. Erst wird geprüft, nichts wird geändert; danach bestätigen Sie den Import.",
		"import.file":       "CSV-Datei",
		"import.check":      "Prüfen (Probelauf)",
		"import.confirm":    "Import jetzt ausführen",
		"import.checked":    "Probelauf: %d Zeilen, %d fehlerhaft; %d neue, %d geänderte, %d unveränderte Personen; neue Wellen: %s",
		"import.done":       "Importiert: %d neue, %d geänderte, %d unveränderte Personen.",
		"import.bad":        "Nichts wurde geändert. Korrigieren Sie diese Zeilen und prüfen Sie erneut:",
		"line":              "Zeile",
		"reason":            "Grund",
		"done.wave.mode":    "Welle %s hat jetzt Modus %s.",
		"done.person":       "%s hat jetzt Modus %s.",
		"failed":            "Nicht ausgeführt: %s",
		"csrf":              "Das Formular ist abgelaufen. Bitte laden Sie die Seite neu und versuchen Sie es noch einmal.",
		"status.none":       "nicht angemeldet",
		"status.connecting": "verbindet",
		"status.connected":  "verbunden",
		"status.error":      "Fehler",
		"source.person":     "eigener",
		"source.wave":       "Welle",
		"source.default":    "Standard",
	},
	"en": {
		"title":             "Migration SfB → Matrix",
		"login.title":       "Sign in",
		"login.help":        "Enter the bridge's provisioning shared secret or the Matrix access token of a bridge admin (Element: Settings → Help & About → Access token).",
		"login.field":       "Secret or access token",
		"login.submit":      "Sign in",
		"login.refused":     "Sign-in refused: the secret is wrong or the token is not a bridge admin's.",
		"login.expired":     "Please sign in.",
		"logout":            "Sign out",
		"signed.in.as":      "Signed in as",
		"language":          "Language",
		"live":              "Refreshed every 5 seconds",
		"live.paused":       "Refresh paused – lost the connection to the bridge",
		"updated":           "As of",
		"not.ready":         "The bridge is still starting. Reload in a minute.",
		"waves":             "Waves",
		"wave":              "Wave",
		"planned":           "Planned start",
		"progress":          "Progress",
		"assigned":          "Assigned",
		"signed.in":         "Signed in",
		"connected":         "Connected",
		"in.error":          "In error",
		"mode":              "Mode",
		"no.wave":           "No wave",
		"default.mode":      "Default mode for people in no wave and without a mode of their own",
		"none":              "–",
		"no.date":           "no date",
		"days.until":        "in %d days",
		"today":             "today",
		"days.since":        "%d days ago",
		"ready.of":          "%d of %d connected",
		"people":            "People",
		"search":            "Search",
		"search.help":       "SIP address, Matrix ID, wave or error text",
		"status":            "Status",
		"all":               "all",
		"search.submit":     "Search",
		"shown.of":          "showing %d of %d people",
		"address":           "SIP address",
		"matrix.id":         "Matrix ID",
		"login.state":       "Login",
		"last.error":        "Last error",
		"no.people":         "Nobody found.",
		"activity":          "Messages and presence per minute",
		"minute":            "Minute (UTC)",
		"messages":          "Messages",
		"presence":          "Presence updates",
		"no.activity":       "No full minute measured yet.",
		"errors":            "Recent bridge errors",
		"no.errors":         "No errors.",
		"read.failed":       "Part of the data could not be read; see the bridge's log.",
		"errors.now":        "Logins in error now",
		"time":              "Time (UTC)",
		"audit":             "Audit log",
		"action":            "Action",
		"who":               "Who",
		"from":              "From",
		"person":            "Person",
		"detail":            "Detail",
		"changes":           "Changes",
		"set.wave.mode":     "Set a wave's mode",
		"set.person.mode":   "Set a person's mode",
		"mode.inherit":      "(none – the wave's or the default applies)",
		"set":               "Set",
		"import":            "CSV import",
		"import.help":       "Columns: SIP address, Matrix ID, wave, optional mode. The file is checked first and nothing changes; then you confirm the import.",
		"import.file":       "CSV file",
		"import.check":      "Check (dry run)",
		"import.confirm":    "Run the import now",
		"import.checked":    "Dry run: %d rows, %d bad; %d new, %d changed, %d unchanged people; new waves: %s",
		"import.done":       "Imported: %d new, %d changed, %d unchanged people.",
		"import.bad":        "Nothing was changed. Correct these rows and check again:",
		"line":              "Line",
		"reason":            "Reason",
		"done.wave.mode":    "Wave %s now has mode %s.",
		"done.person":       "%s now has mode %s.",
		"failed":            "Not done: %s",
		"csrf":              "The form has expired. Reload the page and try again.",
		"status.none":       "not signed in",
		"status.connecting": "connecting",
		"status.connected":  "connected",
		"status.error":      "error",
		"source.person":     "own",
		"source.wave":       "wave",
		"source.default":    "default",
	},
}
