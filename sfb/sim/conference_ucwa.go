package sim

import (
	"fmt"
	"net/http"
	"strconv"
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
	if v.conf != nil && (v.conf.ended || v.state != "Connected") {
		writeError(w, http.StatusConflict, "Conflict", "", "Messaging is not connected.")
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

// serveConfConversation serves the resources of a conference view; s.mu
// is held.
func (s *Server) serveConfConversation(w http.ResponseWriter, r *http.Request, v *convView, segs []string) {
	c := v.conf
	path := strings.Join(segs, "/")
	get := r.Method == http.MethodGet
	post := r.Method == http.MethodPost
	switch {
	case path == "":
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, s.confConversation(v))
		case http.MethodDelete:
			// conversation_ref.md: DELETE removes the user from the
			// communication.
			s.leaveView(v, &reasonEnded, false)
			w.WriteHeader(http.StatusNoContent)
		default:
			methodNotAllowed(w)
		}
	case path == "participants" && get:
		writeJSON(w, http.StatusOK, s.confParticipants(v))
	case len(segs) >= 2 && segs[0] == "participants" && get:
		uri, err := sfb.ParseURI(segs[1])
		m := c.member(uri)
		if err != nil || m == nil || !m.joined() {
			notFound(w)
			return
		}
		switch strings.Join(segs[2:], "/") {
		case "":
			if uri == v.app.user.uri {
				writeJSON(w, http.StatusOK, s.confLocalParticipant(v))
			} else {
				writeJSON(w, http.StatusOK, v.participant(m.party()))
			}
		case "messaging":
			writeJSON(w, http.StatusOK, v.participantMessaging(m.party()))
		default:
			notFound(w)
		}
	case path == "messaging" && get:
		writeJSON(w, http.StatusOK, v.messaging())
	case path == "messaging/typingParticipants" && get:
		list := []any{}
		for _, m := range c.members {
			if m.uri != v.app.user.uri && m.typingUntil.After(s.now()) {
				list = append(list, v.participant(m.party()))
			}
		}
		writeJSON(w, http.StatusOK, obj{
			"rel":       "typingParticipants",
			"_links":    obj{"self": link(v.href() + "/messaging/typingParticipants")},
			"_embedded": obj{"participant": list},
		})
	case len(segs) == 3 && segs[0] == "messaging" && segs[1] == "messages" && get:
		n, _ := strconv.Atoi(segs[2])
		m := v.msgs[n]
		if m == nil {
			notFound(w)
			return
		}
		writeJSON(w, http.StatusOK, v.message(s, m))
	case path == "messaging/typing" && post:
		if v.state != "Connected" || c.ended {
			writeError(w, http.StatusConflict, "Conflict", "", "Messaging is not connected.")
			return
		}
		s.setConfTyping(c, c.member(v.app.user.uri), true)
		w.WriteHeader(http.StatusNoContent)
	case path == "messaging/terminate" && post:
		// stopMessaging_ref.md: messaging is the only modality, so the
		// user leaves the conversation.
		s.leaveView(v, &reasonEnded, false)
		w.WriteHeader(http.StatusNoContent)
	default:
		if get || post {
			notFound(w)
			return
		}
		methodNotAllowed(w)
	}
}
