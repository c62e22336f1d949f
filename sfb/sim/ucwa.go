package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// maxApplicationsPerUser is how many applications a user may hold; the
// oldest goes away with 410 TooManyApplications when one more is created.
const maxApplicationsPerUser = 8

// maxBodyBytes bounds JSON request bodies.
const maxBodyBytes = 64 << 10

func methodNotAllowed(w http.ResponseWriter) {
	writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "", "The requested HTTP method is not supported for this resource.")
}

func notFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "NotFound", "", "The resource does not exist.")
}

func badRequest(w http.ResponseWriter, subcode, message string) {
	writeError(w, http.StatusBadRequest, "BadRequest", subcode, message)
}

// decodeJSON reads an optional JSON body into v.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "EntityTooLarge", "", "The request is too large.")
		return false
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return true
	}
	if err := json.Unmarshal(data, v); err != nil {
		badRequest(w, "DeserializationFailure", "The request body could not be deserialized: "+err.Error())
		return false
	}
	return true
}

// serveUCWA routes /ucwa/oauth/v1/applications[/{id}[/...]].
func (s *Server) serveUCWA(w http.ResponseWriter, r *http.Request) {
	u := s.authenticate(w, r)
	if u == nil {
		return
	}
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, ucwaPrefix), "/")
	if rest == "" {
		if r.Method != http.MethodPost {
			methodNotAllowed(w)
			return
		}
		s.createApplication(w, r, u)
		return
	}
	segs := strings.Split(rest, "/")
	s.mu.Lock()
	a := s.apps[segs[0]]
	if a == nil || a.user != u {
		g, ok := s.gone[segs[0]]
		s.mu.Unlock()
		if ok && a == nil {
			writeError(w, g.status, g.code, g.subcode, goneMessage(g))
			return
		}
		writeError(w, http.StatusNotFound, "NotFound", "ApplicationNotFound", goneMessage(goneApp{subcode: "ApplicationNotFound"}))
		return
	}
	a.lastActive = s.now()
	s.mu.Unlock()
	segs = segs[1:]
	switch {
	case len(segs) == 0:
		switch r.Method {
		case http.MethodGet:
			s.locked(func() { writeJSON(w, http.StatusOK, a.application(s)) })
		case http.MethodDelete:
			s.locked(func() {
				s.removeApp(a, goneApp{status: http.StatusNotFound, code: "NotFound", subcode: "ApplicationNotFound"})
			})
			w.WriteHeader(http.StatusNoContent)
		default:
			methodNotAllowed(w)
		}
	case segs[0] == "events" && len(segs) == 1:
		if r.Method != http.MethodGet {
			methodNotAllowed(w)
			return
		}
		s.handleEvents(w, r, a)
	case segs[0] == "me":
		s.serveMe(w, r, a, segs[1:])
	case segs[0] == "people":
		s.servePeople(w, r, a, segs[1:])
	case segs[0] == "batch" && len(segs) == 1:
		s.serveBatch(w, r)
	case segs[0] == "communication":
		s.serveCommunication(w, r, a, segs[1:])
	case segs[0] == "onlineMeetings":
		s.serveOnlineMeetings(w, r, a, segs[1:])
	default:
		notFound(w)
	}
}

func (s *Server) locked(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

type createAppRequest struct {
	UserAgent  string `json:"userAgent"`
	EndpointID string `json:"endpointId"`
	Culture    string `json:"culture"`
	InstanceID string `json:"instanceId"`
}

func (s *Server) createApplication(w http.ResponseWriter, r *http.Request, u *user) {
	var req createAppRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.UserAgent) == "" || strings.TrimSpace(req.EndpointID) == "" {
		writeJSON(w, http.StatusBadRequest, obj{
			"code": "BadRequest", "subcode": "ParameterValidationFailure",
			"message":    "Please check what you entered and try again.",
			"parameters": obj{"userAgent": "required", "endpointId": "required"},
		})
		return
	}
	if req.Culture == "" {
		req.Culture = "en-US"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := u.state()
	for len(st.apps) >= maxApplicationsPerUser {
		s.removeApp(st.apps[0], goneApp{status: http.StatusGone, code: "Gone", subcode: "TooManyApplications"})
	}
	id := strconv.FormatUint(100000000000+s.seq*7919%899999999999, 10)
	for s.apps[id] != nil || s.gone[id].status != 0 {
		s.seq++
		id = strconv.FormatUint(100000000000+s.seq*7919%899999999999, 10)
	}
	s.seq++
	a := &app{
		id: id, user: u,
		endpointID: req.EndpointID, userAgent: req.UserAgent, culture: req.Culture, instanceID: req.InstanceID,
		putGUID: uuid(), meetingID: strings.ToUpper(randomHex(4)),
		lastActive: s.now(),
		formats:    []string{"Plain"},
		ec:         eventChannel{acked: 1},
		convs:      make(map[string]*convView),
		invs:       make(map[string]*invitation),
	}
	s.apps[id] = a
	st.apps = append(st.apps, a)
	s.log.Debug().Str("app", id).Stringer("user", u.uri).Msg("application created")
	w.Header().Set("Location", a.base())
	writeJSON(w, http.StatusCreated, a.application(s))
}

func uuid() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func (s *Server) serveMe(w http.ResponseWriter, r *http.Request, a *app, segs []string) {
	if len(segs) == 0 {
		if r.Method != http.MethodGet {
			methodNotAllowed(w)
			return
		}
		s.locked(func() { writeJSON(w, http.StatusOK, a.me()) })
		return
	}
	switch strings.Join(segs, "/") {
	case "makeMeAvailable":
		if r.Method != http.MethodPost {
			methodNotAllowed(w)
			return
		}
		s.makeMeAvailable(w, r, a)
	case "reportMyActivity":
		if r.Method != http.MethodPost {
			methodNotAllowed(w)
			return
		}
		s.mu.Lock()
		avail := a.available
		if avail {
			s.reportActivity(a.user)
		}
		s.mu.Unlock()
		if !avail {
			writeError(w, http.StatusConflict, "Conflict", "MakeMeAvailableRequired", "The application has not yet sent a request on the makeMeAvailable resource.")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case "presence":
		s.serveMyPresence(w, r, a)
	case "note":
		s.serveMyNote(w, r, a)
	default:
		notFound(w)
	}
}

type makeMeAvailableRequest struct {
	SupportedModalities     []string `json:"supportedModalities"`
	SupportedMessageFormats []string `json:"supportedMessageFormats"`
	SignInAs                string   `json:"signInAs"`
}

func (s *Server) makeMeAvailable(w http.ResponseWriter, r *http.Request, a *app) {
	var req makeMeAvailableRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	for _, m := range req.SupportedModalities {
		if !strings.EqualFold(m, "Messaging") && !strings.EqualFold(m, "PhoneAudio") {
			writeError(w, http.StatusForbidden, "Forbidden", "", "The application is attempting to use modalities other than Messaging and Phone Audio.")
			return
		}
	}
	formats := []string{"Plain"}
	for _, f := range req.SupportedMessageFormats {
		switch strings.ToLower(f) {
		case "html":
			formats = []string{"Plain", "Html"}
		case "plain":
		default:
			badRequest(w, "ParameterValidationFailure", fmt.Sprintf("Unknown message format %q.", f))
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.available {
		writeError(w, http.StatusConflict, "Conflict", "AlreadyExists", "Multiple invocations of this operation is not valid.")
		return
	}
	a.available = true
	a.formats = formats
	if i := slices.IndexFunc(preferredAvailabilities, func(v string) bool { return strings.EqualFold(v, req.SignInAs) }); i >= 0 {
		s.publish(a.user, preferredAvailabilities[i])
	}
	// The events of ReceiveAnIM step 7: me updated, presence, note and
	// location added, communication updated with its new modalities.
	me := a.base() + "/me"
	s.emit(a, "me", me, prioMedium, ev("me", me, "", "updated", nil))
	s.emit(a, "me", me, prioMedium, ev("presence", me+"/presence", "", "added", nil))
	s.emit(a, "me", me, prioMedium, ev("note", me+"/note", "", "added", nil))
	s.emit(a, "me", me, prioMedium, ev("location", me+"/location", "", "added", nil))
	comm := a.base() + "/communication"
	s.emit(a, "communication", comm, prioMedium, ev("communication", comm, "", "updated", a.communication()))
	w.WriteHeader(http.StatusNoContent)
	if c := s.opts.Colleague; c != "" && a.user.uri != c && !a.user.state().greeted {
		a.user.state().greeted = true
		s.colleagueGreet(a.user.uri)
	}
}

func (s *Server) servePeople(w http.ResponseWriter, r *http.Request, a *app, segs []string) {
	if len(segs) > 0 && (segs[0] == "presenceSubscriptions" || segs[0] == "presenceSubscriptionMemberships") {
		s.servePresenceSubscriptions(w, r, a, segs)
		return
	}
	if r.Method != http.MethodGet {
		methodNotAllowed(w)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(segs) == 0 {
		writeJSON(w, http.StatusOK, a.people())
		return
	}
	if segs[0] == "search" && len(segs) == 1 {
		s.search(w, r, a)
		return
	}
	if segs[0] == "contacts" || segs[0] == "groups" {
		s.serveContactList(w, a, segs)
		return
	}
	uri, err := sfb.ParseURI(segs[0])
	u := s.users[uri]
	if err != nil || u == nil {
		notFound(w)
		return
	}
	switch strings.Join(segs[1:], "/") {
	case "":
		writeJSON(w, http.StatusOK, a.contact(u))
	case "presence":
		writeJSON(w, http.StatusOK, a.contactPresence(u))
	case "note":
		writeJSON(w, http.StatusOK, a.contactNote(u))
	default:
		notFound(w)
	}
}

// search finds users by address or display name prefix.
func (s *Server) search(w http.ResponseWriter, r *http.Request, a *app) {
	q := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("query")))
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit <= 0 || limit > 100 {
		limit = 100
	}
	if q == "" {
		badRequest(w, "ParameterValidationFailure", "query is required.")
		return
	}
	// An address nobody has is no error: 200 with no contact, as the
	// reference's search answers (SearchForUsersContact.md).
	found := []any{}
	more := false
	if uri, err := sfb.ParseURI(q); err == nil {
		if u := s.users[uri]; u != nil {
			found = append(found, a.contact(u))
		}
	} else {
		for _, u := range s.users {
			if strings.HasPrefix(strings.ToLower(u.name), q) || strings.HasPrefix(u.uri.Address(), q) {
				if len(found) == limit {
					more = true
					break
				}
				found = append(found, a.contact(u))
			}
		}
	}
	writeJSON(w, http.StatusOK, obj{
		"rel":                  "search",
		"moreResultsAvailable": more,
		"_links":               obj{"self": link(a.base() + "/people/search?query=" + url.QueryEscape(q))},
		"_embedded":            obj{"contact": found},
	})
}

func (s *Server) serveCommunication(w http.ResponseWriter, r *http.Request, a *app, segs []string) {
	if len(segs) == 0 {
		if r.Method != http.MethodGet {
			methodNotAllowed(w)
			return
		}
		s.locked(func() { writeJSON(w, http.StatusOK, a.communication()) })
		return
	}
	switch segs[0] {
	case "messagingInvitations":
		s.serveInvitations(w, r, a, segs[1:])
	case "onlineMeetingInvitations", "audioVideoInvitations":
		s.serveMViewInvitation(w, r, a, segs[0], segs[1:])
	case "participantInvitations":
		s.serveParticipantInvitation(w, r, a, segs[1:])
	case "conversations":
		if len(segs) == 1 {
			if r.Method != http.MethodGet {
				methodNotAllowed(w)
				return
			}
			s.locked(func() {
				list := []any{}
				for _, v := range a.convs {
					list = append(list, link(v.href()))
				}
				writeJSON(w, http.StatusOK, obj{
					"rel":    "conversations",
					"_links": obj{"self": link(a.base() + "/communication/conversations"), "conversation": list},
				})
			})
			return
		}
		if s.serveMViewConversation(w, r, a, segs[1], segs[2:]) {
			return
		}
		s.serveConversation(w, r, a, segs[1], segs[2:])
	default:
		notFound(w)
	}
}

type startMessagingRequest struct {
	To          string `json:"to"`
	OperationID string `json:"operationId"`
	Subject     string `json:"subject"`
	Importance  string `json:"importance"`
	ThreadID    string `json:"threadId"`
	Links       struct {
		Message struct {
			Href string `json:"href"`
		} `json:"message"`
	} `json:"_links"`
}

func (s *Server) serveInvitations(w http.ResponseWriter, r *http.Request, a *app, segs []string) {
	if len(segs) == 0 {
		if r.Method != http.MethodPost {
			methodNotAllowed(w)
			return
		}
		s.startMessaging(w, r, a)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := a.invs[segs[0]]
	if inv == nil {
		notFound(w)
		return
	}
	switch strings.Join(segs[1:], "/") {
	case "":
		if r.Method != http.MethodGet {
			methodNotAllowed(w)
			return
		}
		if inv.view.conf != nil {
			writeJSON(w, http.StatusOK, s.confInvitation(inv))
			return
		}
		writeJSON(w, http.StatusOK, s.invitation(inv))
	case "accept":
		if r.Method != http.MethodPost {
			methodNotAllowed(w)
			return
		}
		v := inv.view
		if v.conf != nil {
			if inv.state != "Connecting" || v.conf.ended {
				writeError(w, http.StatusConflict, "Conflict", "", "The invitation can no longer be accepted.")
				return
			}
			s.acceptConference(v)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if inv.direction != "Incoming" || inv.state != "Connecting" || v.d.state != dialogOffering {
			writeError(w, http.StatusConflict, "Conflict", "", "The invitation can no longer be accepted.")
			return
		}
		s.connect(v.d, v)
		w.WriteHeader(http.StatusNoContent)
	case "decline":
		if r.Method != http.MethodPost {
			methodNotAllowed(w)
			return
		}
		v := inv.view
		if v.conf != nil && inv.state == "Connecting" {
			c, m := v.conf, v.conf.member(a.user.uri)
			m.offers = slices.DeleteFunc(m.offers, func(x *convView) bool { return x == v })
			s.closeView(v, "Failure", &reasonDeclined)
			if len(m.offers) == 0 && !m.joined() {
				s.declineMember(c, m, reasonDeclined)
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if v.conf != nil || inv.direction != "Incoming" || inv.state != "Connecting" || v.d.state != dialogOffering {
			writeError(w, http.StatusConflict, "Conflict", "", "The invitation can no longer be declined.")
			return
		}
		d := v.d
		p := &d.parties[1]
		p.dropOffer(v)
		s.closeView(v, "Failure", &reasonDeclined)
		if !p.offered() {
			s.failDialog(d, reasonDeclined)
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		notFound(w)
	}
}

func (s *Server) startMessaging(w http.ResponseWriter, r *http.Request, a *app) {
	var req startMessagingRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.To == "" {
		req.To = r.URL.Query().Get("to")
	}
	if req.OperationID == "" {
		req.OperationID = r.URL.Query().Get("operationId")
	}
	to, err := sfb.ParseURI(req.To)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, obj{"code": "BadRequest", "subcode": "ParameterValidationFailure", "message": err.Error(), "parameters": obj{"to": req.To}})
		return
	}
	if len(req.OperationID) > 50 || len(req.Subject) > 250 {
		badRequest(w, "ParameterValidationFailure", "operationId is limited to 50 and subject to 250 characters.")
		return
	}
	var first *sfb.Message
	if href := req.Links.Message.Href; href != "" {
		mt, text, err := decodeDataURI(href)
		if err != nil {
			badRequest(w, "ParameterValidationFailure", "message: "+err.Error())
			return
		}
		m := sfb.Message{Text: text}
		if mt == "text/html" {
			m = sfb.Message{Text: htmlToText(text), HTML: text}
		}
		first = &m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if to == a.user.uri {
		writeError(w, http.StatusForbidden, "Forbidden", "", "An invitation to oneself is not allowed.")
		return
	}
	target := s.users[to]
	var inv *invitation
	if c := s.liveConference(req.ThreadID); c != nil && req.ThreadID != "" && c.member(to) != nil && c.member(to).joined() {
		inv = s.rejoinConference(a, c, c.member(to), req.OperationID)
	} else if target == nil {
		// The invitation starts and fails in the event channel, as a real
		// server does for a target it cannot find.
		var d *dialog
		d, inv = s.invite(a, &user{uri: to}, first, req.OperationID, req.Subject, req.ThreadID)
		s.failDialog(d, reasonNotFound)
	} else {
		inv = s.startFromApp(a, target, first, req.OperationID, req.Subject, req.ThreadID)
	}
	w.Header().Set("Location", a.base()+"/communication/messagingInvitations/"+inv.id)
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) serveConversation(w http.ResponseWriter, r *http.Request, a *app, id string, segs []string) {
	if len(segs) >= 2 && segs[0] == "messaging" && segs[1] == "messages" && r.Method == http.MethodPost {
		s.sendMessage(w, r, a, id)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := a.convs[id]
	if v == nil {
		writeError(w, http.StatusNotFound, "NotFound", "ConversationNotFound", "The conversation does not exist.")
		return
	}
	path := strings.Join(segs, "/")
	get := r.Method == http.MethodGet
	post := r.Method == http.MethodPost
	if path == "addParticipant" && post {
		s.addParticipant(w, r, a, v)
		return
	}
	switch {
	case path == "":
		switch r.Method {
		case http.MethodGet:
			if v.conf != nil {
				writeJSON(w, http.StatusOK, s.confConversation(v))
			} else {
				writeJSON(w, http.StatusOK, v.conversation(s))
			}
		case http.MethodDelete:
			// conversation_ref.md: DELETE removes the user from the
			// communication.
			s.leaveConversation(v)
			w.WriteHeader(http.StatusNoContent)
		default:
			methodNotAllowed(w)
		}
	case path == "participants" && get:
		writeJSON(w, http.StatusOK, v.participants())
	case len(segs) >= 2 && segs[0] == "participants" && get:
		uri, err := sfb.ParseURI(segs[1])
		if err != nil {
			notFound(w)
			return
		}
		p, ok := v.participantAt(uri)
		if !ok {
			notFound(w)
			return
		}
		switch strings.Join(segs[2:], "/") {
		case "":
			if uri == a.user.uri {
				writeJSON(w, http.StatusOK, v.localParticipant())
			} else {
				writeJSON(w, http.StatusOK, v.participant(p))
			}
		case "messaging":
			writeJSON(w, http.StatusOK, v.participantMessaging(p))
		default:
			notFound(w)
		}
	case path == "messaging" && get:
		writeJSON(w, http.StatusOK, v.messaging())
	case path == "messaging/typingParticipants" && get:
		list := []any{}
		for _, p := range v.typingOthers(s.now()) {
			list = append(list, v.participant(p))
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
		if v.state != "Connected" || (v.conf != nil && v.conf.ended) {
			writeError(w, http.StatusConflict, "Conflict", "", "Messaging is not connected.")
			return
		}
		if v.conf != nil {
			s.setConfTyping(v.conf, v.conf.member(a.user.uri), true)
		} else {
			s.setTyping(v.d, v.side, true)
		}
		w.WriteHeader(http.StatusNoContent)
	case path == "messaging/terminate" && post:
		// stopMessaging_ref.md: messaging is the only modality, so the
		// user leaves the conversation.
		s.leaveConversation(v)
		w.WriteHeader(http.StatusNoContent)
	default:
		if get || post {
			notFound(w)
			return
		}
		methodNotAllowed(w)
	}
}

// leaveConversation takes the user out of the conversation of v: a dialog
// ends, a conference goes on without them.
func (s *Server) leaveConversation(v *convView) {
	if v.conf != nil {
		s.leaveView(v, &reasonEnded, false)
		return
	}
	s.endDialog(v.d, reasonEnded, nil)
}

// sendMessage is POST on messaging/messages with a text/plain or text/html
// body.
func (s *Server) sendMessage(w http.ResponseWriter, r *http.Request, a *app, id string) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "text/plain" && mt != "text/html") {
		writeError(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType", "", "The content-type is not supported.")
		return
	}
	if cs := strings.ToLower(params["charset"]); cs != "" && cs != "utf-8" && cs != "utf8" {
		writeError(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType", "", "Only UTF-8 is supported.")
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMessageBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "EntityTooLarge", "", "The message is too large.")
			return
		}
		badRequest(w, "", "The request body could not be read.")
		return
	}
	text := string(data)
	msg := sfb.Message{Text: text}
	if mt == "text/html" {
		msg = sfb.Message{Text: htmlToText(text), HTML: text}
	}
	if strings.TrimSpace(msg.Text) == "" {
		badRequest(w, "ParameterValidationFailure", "The message is empty.")
		return
	}
	if !utf8.Valid(data) {
		badRequest(w, "ParameterValidationFailure", "The message is not valid UTF-8.")
		return
	}
	q := r.URL.Query()
	opID := q.Get("operationId")
	if opID == "" {
		opID = q.Get("OperationContext")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := a.convs[id]
	if v == nil {
		writeError(w, http.StatusNotFound, "NotFound", "ConversationNotFound", "The conversation does not exist.")
		return
	}
	if !v.messagingConnected() {
		writeError(w, http.StatusConflict, "Conflict", "", "Messaging is not connected.")
		return
	}
	m := &msgRecord{direction: "Outgoing", operationID: opID, msg: msg, at: s.now()}
	href := v.addMessage(m)
	s.emitConv(v, ev("message", href, "", "started", v.message(s, m)))
	if v.conf != nil {
		err = s.confSend(v.conf, v.conf.member(v.app.user.uri), v, msg)
	} else {
		err = s.deliver(v.d, v.side, msg, nil)
	}
	done := ev("message", href, "", "completed", nil)
	var de deliveryError
	if errors.As(err, &de) {
		m.status = "Failure"
		done["status"] = "Failure"
		done["reason"] = de.r.body()
		l := v.message(s, m)
		if v.conf == nil {
			l["_links"].(obj)["failedDeliveryParticipant"] = []any{link(v.participantHref(v.peer().uri))}
		}
		done["_embedded"] = obj{"message": l}
	} else {
		m.status = "Success"
		done["status"] = "Success"
		done["_embedded"] = obj{"message": v.message(s, m)}
	}
	s.emitConv(v, done)
	w.Header().Set("Location", href)
	w.WriteHeader(http.StatusCreated)
}
