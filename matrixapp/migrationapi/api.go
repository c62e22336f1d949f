// Package migrationapi is the migration team's JSON API (docs/migration.md):
// waves with their counts, people, CSV import, mode changes and the audit
// log, under a versioned path on the appservice listener. Every request
// needs the provisioning shared secret or a bridge admin's access token;
// anything else is answered 401 with no data.
package migrationapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
)

// Prefix is where the API lives; a new version gets a new prefix.
const Prefix = "/_sfb/migration/v1"

// maxJSONBody bounds the JSON bodies of write requests.
const maxJSONBody = 64 << 10

// API serves the migration team's requests.
type API struct {
	// svc returns nil until the connector started.
	svc  func() *migration.Service
	auth *Auth
	log  zerolog.Logger
}

// New returns the API on the service behind auth.
func New(service func() *migration.Service, auth *Auth, log zerolog.Logger) *API {
	return &API{svc: service, auth: auth, log: log}
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	for pattern, h := range map[string]func(http.ResponseWriter, *http.Request, migration.Actor){
		"GET " + Prefix + "/waves":                 a.listWaves,
		"GET " + Prefix + "/waves/{name}":          a.showWave,
		"PUT " + Prefix + "/waves/{name}":          a.putWave,
		"PUT " + Prefix + "/waves/{name}/mode":     a.setWaveMode,
		"GET " + Prefix + "/people/{address}":      a.showPerson,
		"PUT " + Prefix + "/people/{address}/mode": a.setPersonMode,
		"PUT " + Prefix + "/default-mode":          a.setDefaultMode,
		"POST " + Prefix + "/import":               a.importCSV,
		"GET " + Prefix + "/audit":                 a.listAudit,
	} {
		mux.Handle(pattern, a.authenticated(h))
	}
	// Anything else under the prefix: 401 before authentication, 404 after.
	mux.Handle(Prefix+"/", a.authenticated(func(w http.ResponseWriter, r *http.Request, _ migration.Actor) {
		writeError(w, http.StatusNotFound, "M_UNRECOGNIZED", "no such endpoint; see docs/migration.md")
	}))
}

func (a *API) authenticated(h func(http.ResponseWriter, *http.Request, migration.Actor)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		actor, ok := a.auth.authenticate(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", Challenge)
			writeError(w, http.StatusUnauthorized, "M_UNKNOWN_TOKEN",
				"send the provisioning shared secret or the access token of a bridge admin as Authorization: Bearer")
			return
		}
		if a.svc() == nil {
			writeError(w, http.StatusServiceUnavailable, "M_NOT_READY", "the bridge is still starting; try again in a minute")
			return
		}
		h(w, r, actor)
	})
}

func (a *API) listWaves(w http.ResponseWriter, r *http.Request, _ migration.Actor) {
	o, err := a.svc().Overview(r.Context())
	a.reply(w, o, err)
}

func (a *API) showWave(w http.ResponseWriter, r *http.Request, _ migration.Actor) {
	d, err := a.svc().Wave(r.Context(), r.PathValue("name"))
	a.reply(w, d, err)
}

type putWaveRequest struct {
	PlannedStart *time.Time `json:"planned_start"`
}

func (a *API) putWave(w http.ResponseWriter, r *http.Request, by migration.Actor) {
	var req putWaveRequest
	if !readJSON(w, r, &req) {
		return
	}
	var start time.Time
	if req.PlannedStart != nil {
		start = *req.PlannedStart
	}
	name := r.PathValue("name")
	if err := a.svc().PutWave(r.Context(), name, start, by); err != nil {
		a.reply(w, nil, err)
		return
	}
	d, err := a.svc().Wave(r.Context(), name)
	a.reply(w, d, err)
}

type modeRequest struct {
	// Mode is a mode's name; "" or null clears a wave's or person's mode.
	Mode *string `json:"mode"`
}

func (req modeRequest) parse(clearable bool) (migration.Mode, error) {
	if req.Mode == nil || *req.Mode == "" {
		if !clearable {
			return "", errors.New(`"mode" is required: sfb_only, coexistence or matrix_only`)
		}
		return "", nil
	}
	return migration.ParseMode(*req.Mode)
}

func (a *API) readMode(w http.ResponseWriter, r *http.Request, clearable bool) (migration.Mode, bool) {
	var req modeRequest
	if !readJSON(w, r, &req) {
		return "", false
	}
	mode, err := req.parse(clearable)
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", err.Error())
		return "", false
	}
	return mode, true
}

func (a *API) setWaveMode(w http.ResponseWriter, r *http.Request, by migration.Actor) {
	mode, ok := a.readMode(w, r, true)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if err := a.svc().SetWaveMode(r.Context(), name, mode, by); err != nil {
		a.reply(w, nil, err)
		return
	}
	d, err := a.svc().Wave(r.Context(), name)
	a.reply(w, d, err)
}

func (a *API) showPerson(w http.ResponseWriter, r *http.Request, _ migration.Actor) {
	p, err := a.svc().Person(r.Context(), r.PathValue("address"))
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	a.reply(w, personWithAudit(r, a.svc(), p), nil)
}

// personReply adds the person's newest audit entries: their login's last
// errors and the team's changes to them.
type personReply struct {
	*migration.PersonView
	Audit []auditEntry `json:"audit"`
}

func personWithAudit(r *http.Request, svc *migration.Service, p *migration.PersonView) personReply {
	events, err := svc.Audit(r.Context(), p.Address, 20)
	reply := personReply{PersonView: p, Audit: []auditEntry{}}
	if err == nil {
		reply.Audit = auditEntries(events)
	}
	return reply
}

func (a *API) setPersonMode(w http.ResponseWriter, r *http.Request, by migration.Actor) {
	mode, ok := a.readMode(w, r, true)
	if !ok {
		return
	}
	address := r.PathValue("address")
	if err := a.svc().SetPersonMode(r.Context(), address, mode, by); err != nil {
		a.reply(w, nil, err)
		return
	}
	p, err := a.svc().Person(r.Context(), address)
	a.reply(w, p, err)
}

func (a *API) setDefaultMode(w http.ResponseWriter, r *http.Request, by migration.Actor) {
	mode, ok := a.readMode(w, r, false)
	if !ok {
		return
	}
	if err := a.svc().SetDefaultMode(r.Context(), mode, by); err != nil {
		a.reply(w, nil, err)
		return
	}
	o, err := a.svc().Overview(r.Context())
	a.reply(w, o, err)
}

func (a *API) importCSV(w http.ResponseWriter, r *http.Request, by migration.Actor) {
	dryRun, err := strconv.ParseBool(r.URL.Query().Get("dry_run"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "dry_run must be true or false: a real import must say dry_run=false")
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, migration.MaxImportBytes+1))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "M_TOO_LARGE", fmt.Sprintf("the file is larger than %d bytes: split it", migration.MaxImportBytes))
		return
	}
	report, err := a.svc().Import(r.Context(), data, dryRun, by)
	if errors.Is(err, migration.ErrInvalidImport) {
		writeJSON(w, http.StatusUnprocessableEntity, report)
		return
	}
	a.reply(w, report, err)
}

type auditEntry struct {
	ID         int64     `json:"id"`
	Time       time.Time `json:"time"`
	Action     string    `json:"action"`
	Actor      string    `json:"actor,omitempty"`
	Origin     string    `json:"origin,omitempty"`
	SIPAddress string    `json:"sip_address,omitempty"`
	MatrixUser string    `json:"matrix_id,omitempty"`
	Detail     string    `json:"detail,omitempty"`
}

func auditEntries(events []database.AuditEvent) []auditEntry {
	out := make([]auditEntry, 0, len(events))
	for _, e := range events {
		out = append(out, auditEntry{ID: e.ID, Time: e.Time.UTC(), Action: e.Action, Actor: e.Actor, Origin: e.Origin,
			SIPAddress: e.LoginID, MatrixUser: e.MatrixUser, Detail: e.Detail})
	}
	return out
}

func (a *API) listAudit(w http.ResponseWriter, r *http.Request, _ migration.Actor) {
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > database.MaxAuditList {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", fmt.Sprintf("limit must be a number from 1 to %d", database.MaxAuditList))
			return
		}
		limit = n
	}
	events, err := a.svc().Audit(r.Context(), r.URL.Query().Get("sip_address"), limit)
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": auditEntries(events)})
}

func (a *API) reply(w http.ResponseWriter, v any, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, v)
	case errors.Is(err, migration.ErrNotFound):
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", err.Error())
	case errors.Is(err, migration.ErrInvalid):
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", err.Error())
	default:
		a.log.Error().Err(err).Msg("Migration API request failed")
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "the bridge could not do that now; see its log")
	}
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "the body is not the JSON this endpoint takes: "+err.Error())
		return false
	}
	return true
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"errcode": code, "error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
