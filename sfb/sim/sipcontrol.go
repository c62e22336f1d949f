package sim

import (
	"errors"
	"net/http"
	"time"
)

// The control API of the SIP front end, beside control.go's.

type controlSIPHome struct {
	Pool string `json:"pool"`
}

func (s *Server) sipControl(mux *http.ServeMux) {
	mux.HandleFunc("GET /sim/v1/sip-registrations", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, obj{"count": s.SIPRegistrations("")})
	})
	mux.HandleFunc("GET /sim/v1/users/{address}/sip-registrations", func(w http.ResponseWriter, r *http.Request) {
		uri, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, obj{"count": s.SIPRegistrations(uri)})
	})
	mux.HandleFunc("PUT /sim/v1/users/{address}/sip-home-pool", func(w http.ResponseWriter, r *http.Request) {
		uri, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		var h controlSIPHome
		if !ctlDecode(w, r, &h) {
			return
		}
		ctlNoContent(w, s.SetSIPHomePool(uri, h.Pool))
	})
	// Faults of the SIP front end that act on one user: {"user": "sip:..."}.
	for name, f := range map[string]func(w http.ResponseWriter, req controlFault){
		"sip-drop-connections": func(w http.ResponseWriter, req controlFault) {
			if uri, ok := s.ctlUser(w, req.User); ok {
				writeJSON(w, http.StatusOK, obj{"connections": s.DropSIPConnections(uri)})
			}
		},
		"sip-deregister": func(w http.ResponseWriter, req controlFault) {
			if uri, ok := s.ctlUser(w, req.User); ok {
				writeJSON(w, http.StatusOK, obj{"registrations": s.DeregisterSIP(uri)})
			}
		},
		"sip-fail-requests": func(w http.ResponseWriter, req controlFault) {
			if req.Status < 300 || req.Status > 699 || req.Count < 0 {
				ctlError(w, http.StatusBadRequest, errors.New("want count >= 0 and a SIP failure status (300-699)"))
				return
			}
			s.FailSIPRequests(req.Count, req.Status, time.Duration(max(1, req.RetryAfterSeconds))*time.Second)
			w.WriteHeader(http.StatusNoContent)
		},
		"sip-latency": func(w http.ResponseWriter, req controlFault) {
			if req.LatencyMS < 0 {
				ctlError(w, http.StatusBadRequest, errors.New("latency_ms must not be negative"))
				return
			}
			s.SetSIPLatency(time.Duration(req.LatencyMS) * time.Millisecond)
			w.WriteHeader(http.StatusNoContent)
		},
	} {
		mux.HandleFunc("POST /sim/v1/faults/"+name, func(w http.ResponseWriter, r *http.Request) {
			var req controlFault
			if !ctlDecode(w, r, &req) {
				return
			}
			f(w, req)
		})
	}
}
