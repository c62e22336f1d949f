package sim

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// addParticipantRequest is addParticipant's body (addParticipant_ref.md).
type addParticipantRequest struct {
	To          string `json:"to"`
	OperationID string `json:"operationId"`
}

// validate checks the body against addParticipant_ref.md: to is
// required, operationId at most 50 characters. The reference's own sample
// writes "sip : john@contoso.com", so spaces are dropped.
func (r addParticipantRequest) validate() (sfb.URI, error) {
	if len(r.OperationID) > 50 {
		return "", fmt.Errorf("operationId is limited to 50 characters")
	}
	to, err := sfb.ParseURI(strings.ReplaceAll(r.To, " ", ""))
	if err != nil {
		return "", fmt.Errorf("to: %w", err)
	}
	return canonical(to), nil
}

// addParticipant is POST on a conversation's addParticipant link; s.mu is
// held.
func (s *Server) addParticipant(w http.ResponseWriter, r *http.Request, a *app, v *convView) {
	var req addParticipantRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	to, err := req.validate()
	if err != nil {
		writeJSON(w, http.StatusBadRequest, obj{"code": "BadRequest", "subcode": "ParameterValidationFailure", "message": err.Error(), "parameters": obj{"to": req.To}})
		return
	}
	if to == a.user.uri {
		writeError(w, http.StatusConflict, "Conflict", "AlreadyExists", "The user is in the conversation already.")
		return
	}
	inv, err := s.addParticipantFromApp(v, to, req.OperationID)
	if err != nil {
		writeError(w, http.StatusConflict, "Conflict", "", "Messaging is not connected.")
		return
	}
	w.Header().Set("Location", a.base()+"/communication/participantInvitations/"+inv.id)
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) serveParticipantInvitation(w http.ResponseWriter, r *http.Request, a *app, segs []string) {
	if len(segs) != 1 {
		notFound(w)
		return
	}
	if r.Method != http.MethodGet {
		methodNotAllowed(w)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := a.invs[segs[0]]
	if inv == nil || !inv.participant {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, s.participantInvitation(inv))
}
