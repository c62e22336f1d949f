package migrationapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Eraser erases one person's bridge data (bridge.Connector).
type Eraser interface {
	PlanErasure(ctx context.Context, address string) (*bridge.ErasurePlan, error)
	ErasePerson(ctx context.Context, address string, by migration.Actor) (*bridge.ErasureReport, error)
}

// RegisterErasure adds erasure to mux, behind the same authentication:
//
//	GET    /people/{address}/erasure          what an erasure would remove
//	DELETE /people/{address}?confirm={address} erase it
//
// The confirmation repeats the address, so that a DELETE sent by mistake
// or to the wrong path erases nobody.
func (a *API) RegisterErasure(mux *http.ServeMux, eraser Eraser) {
	mux.Handle("GET "+Prefix+"/people/{address}/erasure", a.authenticated(func(w http.ResponseWriter, r *http.Request, _ migration.Actor) {
		plan, err := eraser.PlanErasure(r.Context(), r.PathValue("address"))
		a.replyErasure(w, plan, err)
	}))
	mux.Handle("DELETE "+Prefix+"/people/{address}", a.authenticated(func(w http.ResponseWriter, r *http.Request, by migration.Actor) {
		address := r.PathValue("address")
		plan, err := eraser.PlanErasure(r.Context(), address)
		if err != nil {
			a.replyErasure(w, nil, err)
			return
		}
		if !ConfirmsErasure(r.URL.Query().Get("confirm"), plan) {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM",
				"erasure cannot be undone: repeat the address as ?confirm="+plan.Address+" (GET .../erasure shows what would be removed)")
			return
		}
		if !plan.Known() {
			writeError(w, http.StatusNotFound, "M_NOT_FOUND", "the bridge knows nobody with the address "+plan.Address+"; check the spelling")
			return
		}
		report, err := eraser.ErasePerson(r.Context(), address, by)
		a.replyErasure(w, report, err)
	}))
}

// ConfirmsErasure reports whether confirm, as typed by the person erasing
// (with or without "sip:", in any case), is the address of plan.
func ConfirmsErasure(confirm string, plan *bridge.ErasurePlan) bool {
	uri, err := sfb.ParseURI(confirm)
	return err == nil && uri.Address() == plan.Address
}

func (a *API) replyErasure(w http.ResponseWriter, v any, err error) {
	if errors.Is(err, bridge.ErrNoPseudonymKey) {
		writeError(w, http.StatusServiceUnavailable, "M_NOT_CONFIGURED", err.Error())
		return
	}
	a.reply(w, v, err)
}
