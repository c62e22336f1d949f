package sim

import (
	"errors"
	"net/http"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

type controlGroupStart struct {
	From         string   `json:"from"`
	Participants []string `json:"participants"`
	Subject      string   `json:"subject"`
	ThreadID     string   `json:"threadId"`
}

type controlGroupParticipant struct {
	By  string `json:"by"`
	URI string `json:"uri"`
}

// controlGroupMessage is a message as POST /sim/v1/users/{address}/messages
// takes it (text, html, sample, image, rtf), from a participant.
type controlGroupMessage struct {
	From string `json:"from"`
	controlMessage
}

type controlGroupTyping struct {
	From   string `json:"from"`
	Typing bool   `json:"typing"`
}

type controlGroupSubject struct {
	Subject *string `json:"subject"`
}

// groupRoutes adds the control API of multi-party conversations; the
// thread ID is one path segment, escaped.
func (s *Server) groupRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /sim/v1/groups", func(w http.ResponseWriter, r *http.Request) {
		var g controlGroupStart
		if !ctlDecode(w, r, &g) {
			return
		}
		from, ok := s.ctlUser(w, g.From)
		if !ok {
			return
		}
		var parts []sfb.URI
		for _, p := range g.Participants {
			u, ok := ctlURI(w, "participants", p)
			if !ok {
				return
			}
			parts = append(parts, u)
		}
		thread, err := s.StartGroup(r.Context(), from, parts, g.Subject, g.ThreadID)
		if err != nil {
			ctlError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusCreated, obj{"threadId": thread})
	})
	mux.HandleFunc("GET /sim/v1/groups/{thread}", func(w http.ResponseWriter, r *http.Request) {
		g, ok := s.GroupInfo(r.PathValue("thread"))
		if !ok {
			ctlError(w, http.StatusNotFound, errors.New("no live conversation with that thread ID"))
			return
		}
		writeJSON(w, http.StatusOK, g)
	})
	mux.HandleFunc("DELETE /sim/v1/groups/{thread}", func(w http.ResponseWriter, r *http.Request) {
		ctlNoContent(w, s.EndGroup(r.PathValue("thread")))
	})
	mux.HandleFunc("POST /sim/v1/groups/{thread}/participants", func(w http.ResponseWriter, r *http.Request) {
		var p controlGroupParticipant
		if !ctlDecode(w, r, &p) {
			return
		}
		by, ok := ctlURI(w, "by", p.By)
		if !ok {
			return
		}
		uri, ok := ctlURI(w, "uri", p.URI)
		if !ok {
			return
		}
		ctlNoContent(w, s.AddGroupParticipant(r.Context(), r.PathValue("thread"), by, uri))
	})
	mux.HandleFunc("POST /sim/v1/groups/{thread}/leave", func(w http.ResponseWriter, r *http.Request) {
		var p controlGroupParticipant
		if !ctlDecode(w, r, &p) {
			return
		}
		uri, ok := ctlURI(w, "uri", p.URI)
		if !ok {
			return
		}
		ctlNoContent(w, s.LeaveGroup(r.Context(), r.PathValue("thread"), uri))
	})
	mux.HandleFunc("POST /sim/v1/groups/{thread}/messages", func(w http.ResponseWriter, r *http.Request) {
		var m controlGroupMessage
		if !ctlDecode(w, r, &m) {
			return
		}
		from, ok := ctlURI(w, "from", m.From)
		if !ok {
			return
		}
		msg, err := m.message()
		if err != nil {
			ctlError(w, statusOf(err), err)
			return
		}
		ctlNoContent(w, s.SendGroupMessage(r.Context(), r.PathValue("thread"), from, msg))
	})
	mux.HandleFunc("POST /sim/v1/groups/{thread}/typing", func(w http.ResponseWriter, r *http.Request) {
		var t controlGroupTyping
		if !ctlDecode(w, r, &t) {
			return
		}
		from, ok := ctlURI(w, "from", t.From)
		if !ok {
			return
		}
		ctlNoContent(w, s.SetGroupTyping(r.Context(), r.PathValue("thread"), from, t.Typing))
	})
	mux.HandleFunc("PUT /sim/v1/groups/{thread}/subject", func(w http.ResponseWriter, r *http.Request) {
		var sub controlGroupSubject
		if !ctlDecode(w, r, &sub) {
			return
		}
		if sub.Subject == nil {
			ctlError(w, http.StatusBadRequest, errors.New("subject: missing"))
			return
		}
		ctlNoContent(w, s.SetGroupSubject(r.Context(), r.PathValue("thread"), *sub.Subject))
	})
}
