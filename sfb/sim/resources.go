package sim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// obj is a JSON object as UCWA writes it. The shapes below follow the
// reference's transcripts (CreateAnApplication, SendAnIM, ReceiveAnIM) and
// resource pages: same rels, property names and casing.
type obj = map[string]any

func link(href string) obj { return obj{"href": href} }

func titled(href, title string) obj { return obj{"href": href, "title": title} }

// msDate is a time in the ASP.NET AJAX form UCWA uses: "\/Date(ms)\/".
type msDate time.Time

func (d msDate) MarshalJSON() ([]byte, error) {
	return []byte(`"\/Date(` + strconv.FormatInt(time.Time(d).UnixMilli(), 10) + `)\/"`), nil
}

func mustJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("sim: render JSON: " + err.Error())
	}
	return bytes.TrimRight(b.Bytes(), "\n")
}

func setJSONHeaders(h http.Header) {
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	setJSONHeaders(w.Header())
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) { writeRaw(w, status, mustJSON(v)) }

// writeError writes the reference's error body: code (required), subcode
// and message.
func writeError(w http.ResponseWriter, status int, code, subcode, message string) {
	writeJSON(w, status, errorBody(code, subcode, message))
}

func errorBody(code, subcode, message string) obj {
	b := obj{"code": code}
	if subcode != "" {
		b["subcode"] = subcode
	}
	if message != "" {
		b["message"] = message
	}
	return b
}

// reason is the error block of a failed operation or a server-initiated
// change in the event channel.
type reason struct{ code, subcode, message string }

func (r reason) body() obj { return errorBody(r.code, r.subcode, r.message) }

func (a *app) base() string { return "/ucwa/oauth/v1/applications/" + a.id }

func (a *app) peopleHref(u sfb.URI) string { return a.base() + "/people/" + u.Address() }

func (a *app) application(s *Server) obj {
	return obj{
		"rel":        "application",
		"type":       "Browser",
		"culture":    a.culture,
		"userAgent":  a.userAgent,
		"endpointId": a.endpointID,
		"instanceId": a.instanceID,
		"id":         a.id,
		"_links": obj{
			"self":     link(a.base()),
			"policies": link(a.base() + "/policies"),
			"batch":    link(a.base() + "/batch"),
			"events":   link(a.eventsHref(a.ec.acked)),
		},
		"_embedded": obj{
			"me":             a.me(),
			"people":         a.people(),
			"onlineMeetings": a.onlineMeetings(),
			"communication":  a.communication(),
		},
	}
}

// me has makeMeAvailable until it was called, then the links of an
// available user (the reference's capability links).
func (a *app) me() obj {
	b := a.base()
	links := obj{
		"self":                   link(b + "/me"),
		"callForwardingSettings": link(b + "/me/callForwardingSettings"),
		"phones":                 link(b + "/me/phones"),
		"photo":                  link(b + "/photos/" + a.user.uri.Address()),
	}
	if a.available {
		links["note"] = link(b + "/me/note")
		links["presence"] = link(b + "/me/presence")
		links["location"] = link(b + "/me/location")
		links["reportMyActivity"] = link(b + "/me/reportMyActivity")
	} else {
		links["makeMeAvailable"] = link(b + "/me/makeMeAvailable")
	}
	return obj{
		"rel":            "me",
		"name":           a.user.name,
		"uri":            string(a.user.uri),
		"emailAddresses": []string{a.user.uri.Address()},
		"endpointUri":    string(a.user.uri) + ";opaque=user:epid:" + a.endpointID + ";gruu",
		"_links":         links,
	}
}

func (a *app) people() obj {
	b := a.base() + "/people"
	return obj{
		"rel": "people",
		"_links": obj{
			"self":                            link(b),
			"presenceSubscriptions":           link(b + "/presenceSubscriptions"),
			"subscribedContacts":              link(b + "/subscribedContacts"),
			"presenceSubscriptionMemberships": link(b + "/presenceSubscriptionMemberships"),
			"myGroups":                        link(b + "/groups"),
			"myGroupMemberships":              link(b + "/groupMemberships"),
			"myContacts":                      link(b + "/contacts"),
			"myPrivacyRelationships":          link(b + "/privacyRelationships"),
			"myContactsAndGroupsSubscription": link(b + "/contactsAndGroupsSubscription"),
			"search":                          link(b + "/search"),
		},
	}
}

func (a *app) onlineMeetings() obj {
	b := a.base() + "/onlineMeetings"
	return obj{
		"rel": "onlineMeetings",
		"_links": obj{
			"self":                                 link(b),
			"myOnlineMeetings":                     link(b + "/myOnlineMeetings"),
			"onlineMeetingDefaultValues":           link(b + "/defaultValues"),
			"onlineMeetingEligibleValues":          link(b + "/eligibleValues"),
			"onlineMeetingInvitationCustomization": link(b + "/customInvitation"),
			"onlineMeetingPolicies":                link(b + "/policies"),
			"phoneDialInInformation":               link(b + "/phoneDialInInformation"),
			"myAssignedOnlineMeeting":              link(b + "/myOnlineMeetings/" + a.meetingID),
		},
	}
}

func (a *app) communication() obj {
	b := a.base() + "/communication"
	modalities := []string{}
	if a.available {
		modalities = []string{"Messaging"}
	}
	return obj{
		"rel":                     "communication",
		a.putGUID:                 "please pass this in a PUT request",
		"supportedModalities":     modalities,
		"supportedMessageFormats": a.formats,
		"etag":                    a.etag(),
		"_links": obj{
			"self":               link(b),
			"conversations":      link(b + "/conversations?filter=active"),
			"startMessaging":     link(b + "/messagingInvitations"),
			"startOnlineMeeting": link(b + "/onlineMeetingInvitations?onlineMeetingUri=adhoc"),
			"joinOnlineMeeting":  link(b + "/onlineMeetingInvitations"),
		},
	}
}

func (a *app) etag() string {
	e := uint32(2166136261)
	for _, c := range a.id + strconv.FormatBool(a.available) {
		e = (e ^ uint32(c)) * 16777619
	}
	return strconv.FormatUint(uint64(e), 10)
}

func (a *app) contact(u *user) obj {
	h := a.peopleHref(u.uri)
	return obj{
		"rel":            "contact",
		"uri":            string(u.uri),
		"name":           u.name,
		"sourceNetwork":  "SameEnterprise",
		"type":           "User",
		"emailAddresses": []string{u.uri.Address()},
		"_links": obj{
			"self":                       link(h),
			"contactPhoto":               link(a.base() + "/photos/" + u.uri.Address()),
			"contactPresence":            link(h + "/presence"),
			"contactLocation":            link(h + "/location"),
			"contactNote":                link(h + "/note"),
			"contactSupportedModalities": link(h + "/supportedMedia"),
			"contactPrivacyRelationship": link(h + "/privacyRelationship"),
		},
	}
}

// Conversation-scoped resources.

func (v *convView) href() string { return v.app.base() + "/communication/conversations/" + v.id }

func (v *convView) messageHref(id int) string {
	return v.href() + "/messaging/messages/" + strconv.Itoa(id)
}

func (v *convView) participantHref(u sfb.URI) string {
	return v.href() + "/participants/" + u.Address()
}

// self is the user in the view; a conference's dialog is a placeholder
// without parties.
func (v *convView) self() party {
	if v.conf != nil {
		return party{uri: v.app.user.uri, name: v.app.user.name}
	}
	return v.d.parties[v.side]
}

func (v *convView) peer() party { return v.d.parties[1-v.side] }

// messagingConnected tells whether the user can send in the view: the
// application is in a dialog that is connected or a conference that goes on.
func (v *convView) messagingConnected() bool {
	if v.state != "Connected" {
		return false
	}
	if v.conf != nil {
		return !v.conf.ended
	}
	return v.d.state == dialogConnected
}

// others are the participants of the view other than the user: the peer of
// a dialog, the joined members of a conference.
func (v *convView) others() []party {
	var out []party
	if v.conf != nil {
		for _, m := range v.conf.members {
			if m.joined() && m.uri != v.app.user.uri {
				out = append(out, m.party())
			}
		}
		return out
	}
	for _, p := range v.d.parties {
		if p.uri != v.app.user.uri {
			out = append(out, p)
		}
	}
	return out
}

// participantAt is the participant of the view at uri, the user included.
func (v *convView) participantAt(uri sfb.URI) (party, bool) {
	if v.conf != nil {
		m := v.conf.member(uri)
		if m == nil || !m.joined() {
			return party{}, false
		}
		return m.party(), true
	}
	if uri != v.d.parties[0].uri && uri != v.d.parties[1].uri {
		return party{}, false
	}
	return v.d.parties[v.d.sideOf(uri)], true
}

// typingOthers are the participants other than the user typing at now.
func (v *convView) typingOthers(now time.Time) []party {
	var out []party
	if v.conf != nil {
		for _, m := range v.conf.members {
			if m.uri != v.app.user.uri && m.typingUntil.After(now) {
				out = append(out, m.party())
			}
		}
		return out
	}
	if p := v.peer(); p.typingUntil.After(now) {
		out = append(out, p)
	}
	return out
}

func (v *convView) conversation(s *Server) obj {
	h := v.href()
	links := obj{
		"self":               link(h),
		"applicationSharing": link(h + "/applicationSharing"),
		"audioVideo":         link(h + "/audioVideo"),
		"dataCollaboration":  link(h + "/dataCollaboration"),
		"messaging":          link(h + "/messaging"),
		"phoneAudio":         link(h + "/phoneAudio"),
		"participants":       link(h + "/participants"),
	}
	modalities := []string{}
	count := 1
	switch v.state {
	case "Connected":
		links["localParticipant"] = titled(v.participantHref(v.self().uri), v.self().name)
		links["addParticipant"] = link(h + "/addParticipant")
		modalities = []string{"Messaging"}
		count = 2
	case "Incoming":
		modalities = []string{"Messaging"}
		count = 2
	}
	return obj{
		"rel":              "conversation",
		"state":            v.state,
		"threadId":         v.d.threadID,
		"subject":          v.d.subject,
		"activeModalities": modalities,
		"importance":       v.d.importance,
		"recording":        false,
		"readLocally":      false,
		"participantCount": count,
		"created":          msDate(v.d.created),
		"expirationTime":   msDate(v.d.lastActivity.Add(s.opts.ConversationIdleTimeout)),
		"_links":           links,
	}
}

func (v *convView) messaging() obj {
	h := v.href() + "/messaging"
	links := obj{
		"self":         link(h),
		"conversation": link(v.href()),
	}
	state := "Disconnected"
	switch v.state {
	case "Connected":
		state = "Connected"
		links["stopMessaging"] = link(h + "/terminate")
		links["sendMessage"] = link(h + "/messages")
		links["setIsTyping"] = link(h + "/typing")
		links["typingParticipants"] = link(h + "/typingParticipants")
	case "Connecting", "Incoming":
		state = "Connecting"
		links["stopMessaging"] = link(h + "/terminate")
	default:
		links["addMessaging"] = link(h + "/addMessaging")
	}
	return obj{
		"rel":                      "messaging",
		"state":                    state,
		"negotiatedMessageFormats": v.app.formats,
		"_links":                   links,
	}
}

// participant is a remote participant as ReceiveAnIM shows it.
func (v *convView) participant(p party) obj {
	h := v.participantHref(p.uri)
	links := obj{
		"self":            link(h),
		"conversation":    link(v.href()),
		"contact":         link(v.app.peopleHref(p.uri)),
		"contactPresence": link(v.app.peopleHref(p.uri) + "/presence"),
		"contactPhoto":    link(v.app.base() + "/photos/" + p.uri.Address()),
	}
	if v.state == "Connected" {
		links["participantMessaging"] = link(h + "/messaging")
	}
	return obj{
		"rel":           "participant",
		"sourceNetwork": "SameEnterprise",
		"anonymous":     false,
		"local":         false,
		"name":          p.name,
		"uri":           string(p.uri),
		"_links":        links,
	}
}

// participants is the participants collection (participants_ref.md): it
// links the remote participants; the simulator embeds them as well.
func (v *convView) participants() obj {
	list, links := []any{}, []any{}
	for _, p := range v.others() {
		list = append(list, v.participant(p))
		links = append(links, titled(v.participantHref(p.uri), p.name))
	}
	return obj{
		"rel":       "participants",
		"_links":    obj{"self": link(v.href() + "/participants"), "participant": links},
		"_embedded": obj{"participant": list, "localParticipant": v.localParticipant()},
	}
}

// localParticipant is the user in the conversation; the transcripts embed
// it with rel "participant" under the localParticipant link.
func (v *convView) localParticipant() obj {
	p := v.self()
	h := v.participantHref(p.uri)
	links := obj{
		"self":         link(h),
		"conversation": link(v.href()),
		"me":           link(v.app.base() + "/me"),
	}
	if v.state == "Connected" {
		links["participantMessaging"] = link(h + "/messaging")
	}
	return obj{
		"rel":           "participant",
		"sourceNetwork": "SameEnterprise",
		"anonymous":     false,
		"local":         true,
		"name":          p.name,
		"uri":           string(p.uri),
		"_links":        links,
	}
}

func (v *convView) participantMessaging(p party) obj {
	h := v.participantHref(p.uri)
	return obj{
		"rel": "participantMessaging",
		"_links": obj{
			"self":        link(h + "/messaging"),
			"participant": titled(h, p.name),
		},
	}
}

func (s *Server) messageDataLinks(links obj, m sfb.Message, formats []string) {
	links["plainMessage"] = link(s.dataURI("text/plain", m.Text))
	if m.HTML != "" && slices.Contains(formats, "Html") {
		links["htmlMessage"] = link(s.dataURI("text/html", m.HTML))
	}
}

// firstMessageLink is the invitation's "message" link: the HTML form when
// the application accepts HTML, else the plain one.
func (s *Server) firstMessageLink(m sfb.Message, formats []string) obj {
	if m.HTML != "" && slices.Contains(formats, "Html") {
		return link(s.dataURI("text/html", m.HTML))
	}
	return link(s.dataURI("text/plain", m.Text))
}

// dataURI encodes a message body base64 when Options.Base64Messages asks
// for it or the text needs it.
func (s *Server) dataURI(mediaType, text string) string {
	return encodeDataURI(mediaType, text, s.opts.Base64Messages || needsBase64(text))
}

func (s *Server) invitation(inv *invitation) obj {
	v := inv.view
	a := v.app
	h := a.base() + "/communication/messagingInvitations/" + inv.id
	from := v.d.parties[0]
	to := v.d.parties[1]
	links := obj{
		"self":         link(h),
		"to":           link(a.peopleHref(to.uri)),
		"from":         titled(v.participantHref(from.uri), from.name),
		"conversation": link(v.href()),
		"messaging":    link(v.href() + "/messaging"),
	}
	if inv.first != nil {
		links["message"] = s.firstMessageLink(*inv.first, a.formats)
	}
	if inv.state == "Connecting" {
		if inv.direction == "Incoming" {
			links["accept"] = link(h + "/accept")
			links["decline"] = link(h + "/decline")
		} else {
			links["cancel"] = link(v.href() + "/messaging/terminate")
		}
	}
	res := obj{
		"rel":        "messagingInvitation",
		"direction":  inv.direction,
		"importance": v.d.importance,
		"threadId":   v.d.threadID,
		"state":      inv.state,
		"subject":    v.d.subject,
		"to":         string(to.uri),
		"_links":     links,
	}
	if inv.operationID != "" {
		res["operationId"] = inv.operationID
	}
	if inv.direction == "Incoming" {
		res["_embedded"] = obj{"from": v.participant(from)}
	} else if inv.state == "Connected" {
		// Both, as messagingInvitation_ref.md shows: the contact who
		// accepted and, as in SendAnIM.md, the participant.
		links["acceptedByContact"] = link(a.peopleHref(to.uri))
		res["_embedded"] = obj{"acceptedByParticipant": []any{v.participant(to)}}
	}
	return res
}

func (v *convView) message(s *Server, m *msgRecord) obj {
	h := v.messageHref(m.id)
	links := obj{
		"self":      link(h),
		"messaging": link(v.href() + "/messaging"),
	}
	res := obj{
		"rel":       "message",
		"direction": m.direction,
		"status":    messageStatus(m.status),
		"timeStamp": msDate(m.at),
		"_links":    links,
	}
	if m.operationID != "" {
		res["operationId"] = m.operationID
	}
	if m.direction == "Incoming" {
		p := v.peer()
		if m.from != "" {
			// A conference has more than one peer.
			p = party{uri: m.from, name: m.fromName}
		}
		links["contact"] = link(v.app.peopleHref(p.uri))
		links["participant"] = titled(v.participantHref(p.uri), p.name)
		s.messageDataLinks(links, m.msg, v.app.formats)
	}
	return res
}

// messageStatus is a message resource's delivery status (message_ref.md,
// Status_ref.md: Pending, Succeeded, Failed), from the status of its
// completed event (Success, Failure); Pending before that.
func messageStatus(event string) string {
	switch event {
	case "Success":
		return "Succeeded"
	case "Failure":
		return "Failed"
	}
	return "Pending"
}

// ev builds one event entry.
func ev(rel, href, title string, typ string, embedded obj) obj {
	l := obj{"rel": rel, "href": href}
	if title != "" {
		l["title"] = title
	}
	e := obj{"link": l, "type": typ}
	if embedded != nil {
		e["_embedded"] = obj{rel: embedded}
	}
	return e
}
