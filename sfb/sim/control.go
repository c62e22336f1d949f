package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// The control API under /sim/v1/ offers the Go API over HTTP (JSON) for
// the demo, load tests and manual tests. It has no authentication: the
// simulator listens on loopback.

type controlMessage struct {
	To   string `json:"to"`
	Text string `json:"text"`
	HTML string `json:"html"`
	// Sample names a message body of samples/ (files.go).
	Sample string `json:"sample"`
	// Image is a picture pasted after Text.
	Image *controlImage `json:"image"`
	// RTF is the sender's RTF form, which never reaches UCWA.
	RTF string `json:"rtf"`
}

type controlNativeClient struct {
	SignedIn *bool `json:"signed_in"`
}

type controlTyping struct {
	To     string `json:"to"`
	Typing bool   `json:"typing"`
}

type controlReceived struct {
	From     string    `json:"from"`
	Text     string    `json:"text"`
	HTML     string    `json:"html,omitempty"`
	Time     time.Time `json:"time"`
	ThreadID string    `json:"thread_id,omitempty"`
}

type controlUser struct {
	URI         string `json:"uri"`
	DisplayName string `json:"display_name"`
	Password    string `json:"password"`
}

type controlFault struct {
	User              string `json:"user"`
	Count             int    `json:"count"`
	Status            int    `json:"status"`
	RetryAfterSeconds int    `json:"retry_after_seconds"`
	LatencyMS         int    `json:"latency_ms"`
	Reject            *bool  `json:"reject"`
}

type controlPresence struct {
	Availability string    `json:"availability"`
	Activity     string    `json:"activity,omitempty"`
	DeviceType   string    `json:"device_type,omitempty"`
	Note         string    `json:"note,omitempty"`
	OutOfOffice  string    `json:"out_of_office,omitempty"`
	LastActive   time.Time `json:"last_active,omitzero"`
}

type controlContacts struct {
	Groups []struct {
		Name    string    `json:"name"`
		Members []sfb.URI `json:"members"`
	} `json:"groups"`
}

type controlStorm struct {
	Rate    int `json:"rate"`
	Users   int `json:"users"`
	Seconds int `json:"seconds"`
}

func ctlError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, obj{"error": err.Error()})
}

// ctlNoContent answers a control request that returns nothing: 204, or
// err with the status statusOf gives it.
func ctlNoContent(w http.ResponseWriter, err error) {
	if err != nil {
		ctlError(w, statusOf(err), err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func ctlDecode(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err == nil {
		err = json.Unmarshal(data, v)
	}
	if err != nil {
		ctlError(w, http.StatusBadRequest, fmt.Errorf("decode request body: %w", err))
		return false
	}
	return true
}

// ctlUser parses a user address from the path or body and checks it exists.
func (s *Server) ctlUser(w http.ResponseWriter, raw string) (sfb.URI, bool) {
	uri, ok := ctlURI(w, "user", raw)
	if !ok {
		return "", false
	}
	s.mu.Lock()
	ok = s.users[uri] != nil
	s.mu.Unlock()
	if !ok {
		ctlError(w, http.StatusNotFound, fmt.Errorf("user %s: %w", uri, sfb.ErrNotFound))
		return "", false
	}
	return uri, true
}

// ctlURI parses the address in a request field, answering 400 naming the
// field when it is not one.
func ctlURI(w http.ResponseWriter, field, raw string) (sfb.URI, bool) {
	uri, err := sfb.ParseURI(raw)
	if err != nil {
		ctlError(w, http.StatusBadRequest, fmt.Errorf("%s: %w", field, err))
		return "", false
	}
	return uri, true
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, sfb.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, sfb.ErrDeliveryFailed), errors.Is(err, errNativeSignedOut):
		// The request was fine; SfB could not carry it out.
		return http.StatusConflict
	}
	return http.StatusBadRequest
}

func (s *Server) controlHandler() http.Handler {
	mux := http.NewServeMux()
	s.fileRoutes(mux)
	s.groupRoutes(mux)
	mux.HandleFunc("GET /sim/v1/info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, obj{"discovery_url": s.DiscoveryURL(), "users": s.Users()})
	})
	mux.HandleFunc("POST /sim/v1/users", func(w http.ResponseWriter, r *http.Request) {
		var u controlUser
		if !ctlDecode(w, r, &u) {
			return
		}
		if err := s.AddUser(User{URI: sfb.URI(u.URI), DisplayName: u.DisplayName, Password: u.Password}); err != nil {
			ctlError(w, http.StatusBadRequest, err)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("POST /sim/v1/users/{address}/messages", func(w http.ResponseWriter, r *http.Request) {
		from, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		var m controlMessage
		if !ctlDecode(w, r, &m) {
			return
		}
		to, ok := ctlURI(w, "to", m.To)
		if !ok {
			return
		}
		msg, err := m.message()
		if err != nil {
			ctlError(w, statusOf(err), err)
			return
		}
		ctlNoContent(w, s.SendMessage(r.Context(), from, to, msg))
	})
	mux.HandleFunc("PUT /sim/v1/users/{address}/native-client", func(w http.ResponseWriter, r *http.Request) {
		uri, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		var nc controlNativeClient
		if !ctlDecode(w, r, &nc) {
			return
		}
		if nc.SignedIn == nil {
			ctlError(w, http.StatusBadRequest, errors.New(`signed_in: want true or false`))
			return
		}
		ctlNoContent(w, s.SetNativeClient(uri, *nc.SignedIn))
	})
	mux.HandleFunc("POST /sim/v1/users/{address}/typing", func(w http.ResponseWriter, r *http.Request) {
		from, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		var t controlTyping
		if !ctlDecode(w, r, &t) {
			return
		}
		to, ok := ctlURI(w, "to", t.To)
		if !ok {
			return
		}
		ctlNoContent(w, s.SetTyping(r.Context(), from, to, t.Typing))
	})
	mux.HandleFunc("GET /sim/v1/users/{address}/typing", func(w http.ResponseWriter, r *http.Request) {
		uri, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		from, ok := ctlURI(w, "from", r.URL.Query().Get("from"))
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, obj{"typing": s.Typing(uri, from)})
	})
	mux.HandleFunc("GET /sim/v1/users/{address}/received", func(w http.ResponseWriter, r *http.Request) {
		uri, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		out := []controlReceived{}
		for _, m := range s.Received(uri) {
			out = append(out, controlReceived{From: string(m.From), Text: m.Message.Text, HTML: m.Message.HTML, Time: m.Time, ThreadID: m.ThreadID})
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /sim/v1/users/{address}/applications", func(w http.ResponseWriter, r *http.Request) {
		uri, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, obj{"count": s.Applications(uri)})
	})
	mux.HandleFunc("DELETE /sim/v1/users/{address}/applications", func(w http.ResponseWriter, r *http.Request) {
		uri, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		s.DeleteApplications(uri)
		w.WriteHeader(http.StatusNoContent)
	})

	mux.HandleFunc("PUT /sim/v1/users/{address}/presence", func(w http.ResponseWriter, r *http.Request) {
		uri, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		var p controlPresence
		if !ctlDecode(w, r, &p) {
			return
		}
		ctlNoContent(w, s.SetPresence(uri, Presence(p)))
	})
	mux.HandleFunc("GET /sim/v1/users/{address}/presence", func(w http.ResponseWriter, r *http.Request) {
		uri, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		p, err := s.GetPresence(uri)
		if err != nil {
			ctlError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, controlPresence(p))
	})
	mux.HandleFunc("PUT /sim/v1/users/{address}/contacts", func(w http.ResponseWriter, r *http.Request) {
		uri, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		var c controlContacts
		if !ctlDecode(w, r, &c) {
			return
		}
		groups := make([]ContactGroup, 0, len(c.Groups))
		for _, g := range c.Groups {
			groups = append(groups, ContactGroup{Name: g.Name, Members: g.Members})
		}
		ctlNoContent(w, s.SetContacts(uri, groups))
	})
	mux.HandleFunc("GET /sim/v1/users/{address}/presence-subscriptions", func(w http.ResponseWriter, r *http.Request) {
		uri, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		subs, people := s.PresenceSubscriptions(uri)
		writeJSON(w, http.StatusOK, obj{"subscriptions": subs, "people": people})
	})
	// A storm over the first users of the directory (GenerateUsers'
	// order), in the background for the given time.
	mux.HandleFunc("POST /sim/v1/presence-storm", func(w http.ResponseWriter, r *http.Request) {
		var req controlStorm
		if !ctlDecode(w, r, &req) {
			return
		}
		if req.Rate <= 0 || req.Users <= 0 || req.Seconds <= 0 || req.Seconds > 3600 {
			ctlError(w, http.StatusBadRequest, errors.New("want rate > 0, users > 0 and 0 < seconds <= 3600"))
			return
		}
		users := s.firstUsers(req.Users)
		ctx, cancel := context.WithTimeout(s.ctx, time.Duration(req.Seconds)*time.Second)
		go func() {
			defer cancel()
			if _, err := s.PresenceStorm(ctx, req.Rate, users, nil); err != nil {
				s.log.Warn().Err(err).Msg("Presence storm stopped")
			}
		}()
		writeJSON(w, http.StatusAccepted, obj{"users": len(users)})
	})

	// Faults that act on one user: {"user": "sip:..."}.
	perUser := map[string]func(sfb.URI){
		"drop-event-channel":   s.DropEventChannel,
		"expire-tokens":        s.ExpireTokens,
		"resume":               s.ForceResume,
		"resync":               s.ForceResync,
		"expire-conversations": s.ExpireConversations,
		"delete-applications":  s.DeleteApplications,
		// The server ends the user's presence subscriptions (deleted
		// event) or lets them lapse without a word.
		"drop-presence-subscriptions":   s.DropPresenceSubscriptions,
		"expire-presence-subscriptions": s.ExpirePresenceSubscriptions,
	}
	for name, f := range perUser {
		mux.HandleFunc("POST /sim/v1/faults/"+name, func(w http.ResponseWriter, r *http.Request) {
			var req controlFault
			if !ctlDecode(w, r, &req) {
				return
			}
			uri, ok := s.ctlUser(w, req.User)
			if !ok {
				return
			}
			f(uri)
			w.WriteHeader(http.StatusNoContent)
		})
	}
	mux.HandleFunc("POST /sim/v1/faults/reject-messages", func(w http.ResponseWriter, r *http.Request) {
		var req controlFault
		if !ctlDecode(w, r, &req) {
			return
		}
		uri, ok := s.ctlUser(w, req.User)
		if !ok {
			return
		}
		_ = s.RejectMessages(uri, req.Reject == nil || *req.Reject)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /sim/v1/faults/fail-requests", func(w http.ResponseWriter, r *http.Request) {
		var req controlFault
		if !ctlDecode(w, r, &req) {
			return
		}
		if req.Status < 400 || req.Status > 599 || req.Count < 0 {
			ctlError(w, http.StatusBadRequest, errors.New("want count >= 0 and an HTTP error status (400-599)"))
			return
		}
		s.FailRequestsRetryAfter(req.Count, req.Status, time.Duration(max(1, req.RetryAfterSeconds))*time.Second)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /sim/v1/faults/latency", func(w http.ResponseWriter, r *http.Request) {
		var req controlFault
		if !ctlDecode(w, r, &req) {
			return
		}
		if req.LatencyMS < 0 {
			ctlError(w, http.StatusBadRequest, errors.New("latency_ms must not be negative"))
			return
		}
		s.SetLatency(time.Duration(req.LatencyMS) * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /sim/v1/sweep", func(w http.ResponseWriter, r *http.Request) {
		s.Sweep()
		w.WriteHeader(http.StatusNoContent)
	})
	s.meetingControl(mux)
	s.sipControl(mux)
	return mux
}
