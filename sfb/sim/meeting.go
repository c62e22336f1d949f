package sim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Online meetings and calls as a UCWA application sees them: invitations
// to meetings (onlineMeetingInvitation_ref.md) and to audio/video calls
// (audioVideoInvitation_ref.md) that native SfB users send, and meetings
// the application's user creates (myOnlineMeetings_ref.md). The
// simulator carries no media: an application can read, decline or
// accept an invitation, never take part in the call.

// MeetingKind is how an online-meeting invitation came about.
type MeetingKind int8

const (
	// MeetNow is an ad hoc meeting started with "Meet Now".
	MeetNow MeetingKind = iota
	// MeetingEscalation is a conversation escalated to a meeting: the
	// invitation continues the conversation's thread (Invite.ThreadID).
	MeetingEscalation
	// MeetingScheduled is an invitation to a scheduled meeting forwarded
	// in a conversation.
	MeetingScheduled
)

// DialInRegion is one dial-in number of a meeting (dialInRegion_ref.md).
type DialInRegion struct {
	Name string
	// Number is a tel: URI as the reference writes it (tel:+14255550001).
	Number    string
	Languages []string
}

// defaultDialIn is the dial-in information of meetings created through
// myOnlineMeetings, the reference's sample values.
func defaultDialIn() []DialInRegion {
	return []DialInRegion{{Name: "Redmond", Number: "tel:+14255550001", Languages: []string{"en-US", "fr-FR"}}}
}

// MeetingInvite is an online-meeting invitation a user sends from a
// native SfB client.
type MeetingInvite struct {
	Kind    MeetingKind
	Subject string
	// Organizer organises the meeting when the sender forwards someone
	// else's (MeetingScheduled); the sender when empty.
	Organizer sfb.URI
	// Others are further participants of the meeting besides organizer
	// and invitee; with any, the invitee sees a multi-party conversation.
	Others []sfb.URI
	// ThreadID is the thread of the conversation the meeting continues
	// (MeetingEscalation); a new one when empty.
	ThreadID string
	// Message is the text sent with the invitation (the forwarded
	// invitation of a scheduled meeting), empty for none.
	Message string
	// ConferenceID and DialIn are the meeting's dial-in information; the
	// meeting has none when both are empty.
	ConferenceID string
	DialIn       []DialInRegion
	// Expiration is when the meeting may be deleted; 8 hours from now
	// when zero (myOnlineMeetings_ref.md).
	Expiration time.Time
}

// MeetingInfo is what identifies a meeting to its participants.
type MeetingInfo struct {
	// ID is the onlineMeetingId, unique among the organizer's meetings.
	ID string
	// URI is the onlineMeetingUri.
	URI          string
	JoinURL      string
	ConferenceID string
}

// maxMeetingSubject is the longest subject the reference allows
// (onlineMeetingInvitation_ref.md: 250 characters).
const maxMeetingSubject = 250

// meeting is an online meeting organised by a user.
type meeting struct {
	id           string
	organizer    *user
	subject      string
	description  string
	kind         MeetingKind
	threadID     string
	message      string
	conferenceID string
	dialIn       []DialInRegion
	attendees    []sfb.URI
	others       []sfb.URI
	expiration   time.Time
	cancelled    bool
	// invited are the invitations to applications, declined the
	// invitees who declined (for tests).
	invited  []*mview
	declined []sfb.URI
}

func (m *meeting) uri() string {
	return string(m.organizer.uri) + ";gruu;opaque=app:conf:focus:id:" + m.id
}

// joinURL is https://meet.<domain>/<user>/<ID>, as the reference's
// samples and SfB's simple URLs write it.
func (m *meeting) joinURL() string {
	user, domain, _ := strings.Cut(m.organizer.uri.Address(), "@")
	return "https://meet." + domain + "/" + user + "/" + m.id
}

func (m *meeting) info() MeetingInfo {
	return MeetingInfo{ID: m.id, URI: m.uri(), JoinURL: m.joinURL(), ConferenceID: m.conferenceID}
}

// meetState holds the meetings and calls of the server.
type meetState struct {
	// meetings by organizer and onlineMeetingId.
	meetings map[meetingKey]*meeting
	calls    map[string]*call
	// views by invitation ID and by conversation ID.
	invs  map[string]*mview
	convs map[string]*mview
}

type meetingKey struct {
	organizer sfb.URI
	id        string
}

// mview is one application's view of a meeting invitation or a call: an
// invitation and its conversation.
type mview struct {
	app        *app
	invID      string
	convID     string
	meeting    *meeting
	call       *call
	from       *user
	state      string // the invitation's InvitationState
	convState  string
	declinedBy string // the reason this application declined with
}

func (v *mview) kind() string {
	if v.call != nil {
		return "audioVideoInvitation"
	}
	return "onlineMeetingInvitation"
}

func (v *mview) invHref() string {
	return v.app.base() + "/communication/" + v.kind() + "s/" + v.invID
}

func (v *mview) convHref() string { return v.app.base() + "/communication/conversations/" + v.convID }

func (v *mview) participantHref(u sfb.URI) string {
	return v.convHref() + "/participants/" + u.Address()
}

// newMView opens an invitation to a: its view, registered by both IDs.
// Conversation IDs start with "m", which randomHex never does: they
// never collide with those of messaging conversations.
func (s *Server) newMView(a *app, from *user, m *meeting, c *call) *mview {
	ms := &s.meetings
	v := &mview{app: a, invID: randomHex(16), convID: "m" + randomHex(6), meeting: m, call: c, from: from,
		state: "Connecting", convState: "Incoming"}
	ms.invs[v.invID] = v
	ms.convs[v.convID] = v
	return v
}

func (s *Server) dropMView(v *mview) {
	ms := &s.meetings
	delete(ms.invs, v.invID)
	delete(ms.convs, v.convID)
}

// availableApps are the applications of u that take invitations.
func availableApps(u *user) []*app {
	if u.st == nil {
		return nil
	}
	var out []*app
	for _, a := range u.st.apps {
		if a.available {
			out = append(out, a)
		}
	}
	return out
}

// InviteToMeeting sends an online-meeting invitation from a native SfB
// user to another user: every available UCWA application of the invitee
// gets an incoming onlineMeetingInvitation (started), the conversation
// (added) and its onlineMeeting (added). The invitee's native client
// gets it too; with neither, it fails as undeliverable.
func (s *Server) InviteToMeeting(ctx context.Context, from, to sfb.URI, inv MeetingInvite) (MeetingInfo, error) {
	if err := ctx.Err(); err != nil {
		return MeetingInfo{}, err
	}
	from, to = canonical(from), canonical(to)
	if err := validateMeetingInvite(inv); err != nil {
		return MeetingInfo{}, fmt.Errorf("invite %s to a meeting: %w", to, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fu, tu := s.users[from], s.users[to]
	if fu == nil || tu == nil {
		return MeetingInfo{}, fmt.Errorf("invite %s to a meeting of %s: %w", to, from, sfb.ErrNotFound)
	}
	if from == to {
		return MeetingInfo{}, fmt.Errorf("invite %s to its own meeting: %w", to, sfb.ErrUnsupported)
	}
	org := fu
	if inv.Organizer != "" {
		if org = s.users[canonical(inv.Organizer)]; org == nil {
			return MeetingInfo{}, fmt.Errorf("invite %s to a meeting of %s: %w", to, inv.Organizer, sfb.ErrNotFound)
		}
	}
	apps := availableApps(tu)
	if len(apps) == 0 && tu.st != nil && tu.st.nativeSignedOut {
		return MeetingInfo{}, fmt.Errorf("invite %s to a meeting: %w", to, deliveryError{reasonUnreachable})
	}
	m := s.newMeeting(org, inv.Subject, inv.Expiration)
	m.kind, m.message, m.others = inv.Kind, inv.Message, inv.Others
	m.conferenceID, m.dialIn = inv.ConferenceID, inv.DialIn
	if inv.ThreadID != "" {
		m.threadID = inv.ThreadID
	}
	m.attendees = append([]sfb.URI{to}, inv.Others...)
	for _, a := range apps {
		v := s.newMView(a, fu, m, nil)
		m.invited = append(m.invited, v)
		s.emit(a, "communication", a.base()+"/communication", prioHigh, meetingEvent(v, "started", s.meetingInvitation(v)))
		s.emit(a, "communication", a.base()+"/communication", prioHigh, ev("conversation", v.convHref(), "", "added", s.mviewConversation(v)))
		s.emitOnlineMeeting(v, "added")
	}
	s.log.Debug().Stringer("from", from).Stringer("to", to).Str("meeting", m.id).Int("applications", len(apps)).Msg("meeting invitation sent")
	return m.info(), nil
}

func validateMeetingInvite(inv MeetingInvite) error {
	switch {
	case inv.Kind < MeetNow || inv.Kind > MeetingScheduled:
		return fmt.Errorf("unknown meeting kind %d", inv.Kind)
	case len([]rune(inv.Subject)) > maxMeetingSubject:
		return fmt.Errorf("subject of %d characters, at most %d", len([]rune(inv.Subject)), maxMeetingSubject)
	case inv.Kind == MeetingEscalation && inv.ThreadID == "":
		return errors.New("an escalated conversation needs the thread ID of the conversation")
	}
	for _, r := range inv.DialIn {
		if r.Number == "" {
			return fmt.Errorf("dial-in region %q without a number", r.Name)
		}
	}
	return nil
}

// newMeeting creates a meeting organised by u with a fresh ID.
func (s *Server) newMeeting(u *user, subject string, expiration time.Time) *meeting {
	ms := &s.meetings
	if expiration.IsZero() {
		expiration = s.now().Add(8 * time.Hour)
	}
	m := &meeting{organizer: u, subject: subject, expiration: expiration, threadID: newThreadID()}
	for {
		m.id = meetingID()
		if ms.meetings[meetingKey{u.uri, m.id}] == nil {
			break
		}
	}
	ms.meetings[meetingKey{u.uri, m.id}] = m
	return m
}

// meetingID is an onlineMeetingId like the reference's "IB88RLLY".
func meetingID() string {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := []byte(randomHex(4))
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// conferenceID is a dial-in conference ID like the reference's "12983487".
func conferenceID() string {
	b := []byte(randomHex(4))
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	if b[0] == '0' {
		b[0] = '1'
	}
	return string(b)
}

// MeetingUpdate changes a meeting; nil fields stay.
type MeetingUpdate struct {
	Subject      *string
	ConferenceID *string
	DialIn       []DialInRegion
}

// UpdateMeeting changes a meeting organizer organised: every invitation
// still open sees onlineMeeting and onlineMeetingInvitation "updated".
func (s *Server) UpdateMeeting(ctx context.Context, organizer sfb.URI, id string, up MeetingUpdate) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if up.Subject != nil && len([]rune(*up.Subject)) > maxMeetingSubject {
		return fmt.Errorf("update meeting %s: subject longer than %d characters", id, maxMeetingSubject)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.meetings.meetings[meetingKey{canonical(organizer), id}]
	if m == nil || m.cancelled {
		return fmt.Errorf("update meeting %s of %s: %w", id, organizer, sfb.ErrNotFound)
	}
	if up.Subject != nil {
		m.subject = *up.Subject
	}
	if up.ConferenceID != nil {
		m.conferenceID = *up.ConferenceID
	}
	if up.DialIn != nil {
		m.dialIn = up.DialIn
	}
	for _, v := range m.invited {
		if v.state != "Connecting" {
			continue
		}
		s.emitOnlineMeeting(v, "updated")
		s.emit(v.app, "communication", v.app.base()+"/communication", prioHigh, meetingEvent(v, "updated", s.meetingInvitation(v)))
	}
	return nil
}

// reasonMeetingCanceled is how an invitation to a cancelled meeting
// completes (ErrorSubcode_ref.md: Canceled).
var reasonMeetingCanceled = reason{"RemoteFailure", "Canceled", "The meeting was canceled by its organizer."}

// CancelMeeting cancels a meeting organizer organised: every invitation
// still open completes with Failure (Canceled) and its conversation is
// deleted.
func (s *Server) CancelMeeting(ctx context.Context, organizer sfb.URI, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.meetings.meetings[meetingKey{canonical(organizer), id}]
	if m == nil || m.cancelled {
		return fmt.Errorf("cancel meeting %s of %s: %w", id, organizer, sfb.ErrNotFound)
	}
	m.cancelled = true
	for _, v := range m.invited {
		if v.state == "Connecting" {
			s.completeMView(v, "Cancelled", "Failure", &reasonMeetingCanceled)
		}
	}
	return nil
}

// MeetingDeclines lists who declined an invitation to the meeting.
func (s *Server) MeetingDeclines(organizer sfb.URI, id string) []sfb.URI {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.meetings.meetings[meetingKey{canonical(organizer), id}]; m != nil {
		return append([]sfb.URI(nil), m.declined...)
	}
	return nil
}

// completeMView ends an open invitation: its completed event with status
// and r, and the conversation deleted.
func (s *Server) completeMView(v *mview, state, status string, r *reason) {
	v.state = state
	v.convState = "Disconnected"
	e := meetingEvent(v, "completed", s.invitationOf(v))
	e["status"] = status
	if r != nil {
		e["reason"] = r.body()
	}
	comm := v.app.base() + "/communication"
	s.emit(v.app, "communication", comm, prioHigh, e)
	if v.call != nil {
		s.emit(v.app, "conversation", v.convHref(), prioHigh, ev("audioVideo", v.convHref()+"/audioVideo", "", "updated", s.audioVideo(v)))
	}
	s.emit(v.app, "communication", comm, prioHigh, ev("conversation", v.convHref(), "", "deleted", nil))
	s.dropMView(v)
}

func (s *Server) invitationOf(v *mview) obj {
	if v.call != nil {
		return s.callInvitation(v)
	}
	return s.meetingInvitation(v)
}

// meetingEvent is the event of an invitation, with the resource embedded
// as the event channel does for real-time events (EventsInUCWA.md).
func meetingEvent(v *mview, typ string, res obj) obj {
	return ev(v.kind(), v.invHref(), "", typ, res)
}

func (s *Server) emitOnlineMeeting(v *mview, typ string) {
	e := ev("onlineMeeting", v.convHref()+"/onlineMeeting", "", typ, nil)
	e["in"] = obj{"rel": "conversation", "href": v.convHref()}
	s.emit(v.app, "conversation", v.convHref(), prioHigh, e)
}

// fromParticipant is the inviter as the invitation embeds it
// (onlineMeetingInvitation_ref.md: _embedded.from).
func (v *mview) fromParticipant() obj {
	u := v.from
	h := v.participantHref(u.uri)
	p := obj{
		"rel":           "participant",
		"anonymous":     false,
		"local":         false,
		"inLobby":       false,
		"name":          u.name,
		"uri":           string(u.uri),
		"sourceNetwork": "SameEnterprise",
		"_links": obj{
			"self":            link(h),
			"contact":         link(v.app.peopleHref(u.uri)),
			"contactPresence": link(v.app.peopleHref(u.uri) + "/presence"),
			"conversation":    link(v.convHref()),
		},
	}
	if v.meeting != nil {
		p["organizer"] = v.meeting.organizer == u
		p["role"] = "Attendee"
		if v.meeting.organizer == u {
			p["role"] = "Leader"
		}
	}
	return p
}

func (s *Server) meetingInvitation(v *mview) obj {
	m := v.meeting
	h := v.invHref()
	links := obj{
		"self":         link(h),
		"from":         titled(v.participantHref(v.from.uri), v.from.name),
		"conversation": link(v.convHref()),
		"to":           link(v.app.peopleHref(v.app.user.uri)),
	}
	if v.state == "Connecting" {
		links["accept"] = link(h + "/accept")
		links["decline"] = link(h + "/decline")
	}
	if m.message != "" {
		links["message"] = link(s.dataURI("text/plain", m.message))
	}
	return obj{
		"rel":                 "onlineMeetingInvitation",
		"availableModalities": []string{"Messaging", "Audio", "Video", "ApplicationSharing"},
		"direction":           "Incoming",
		"importance":          "Normal",
		"onlineMeetingUri":    m.uri(),
		"state":               v.state,
		"subject":             m.subject,
		"threadId":            m.threadID,
		"to":                  string(v.app.user.uri),
		"_links":              links,
		"_embedded":           obj{"from": v.fromParticipant()},
	}
}

// mviewConversation is the conversation of an invitation
// (conversation_ref.md), with the onlineMeeting link for a meeting and
// the audioVideo link for a call.
func (s *Server) mviewConversation(v *mview) obj {
	h := v.convHref()
	links := obj{
		"self":         link(h),
		"participants": link(h + "/participants"),
		"messaging":    link(h + "/messaging"),
		"audioVideo":   link(h + "/audioVideo"),
	}
	var subject, thread string
	var modalities []string
	count := 2
	if m := v.meeting; m != nil {
		links["onlineMeeting"] = link(h + "/onlineMeeting")
		links["leaders"] = link(h + "/leaders")
		links["attendees"] = link(h + "/attendees")
		links["lobby"] = link(h + "/lobby")
		subject, thread = m.subject, m.threadID
		modalities = []string{"Messaging"}
		count = 2 + len(m.others)
	} else {
		subject, thread = v.call.subject, v.call.threadID
		modalities = []string{"Audio"}
		if v.call.video {
			modalities = append(modalities, "Video")
		}
	}
	if v.convState == "Disconnected" {
		modalities = []string{}
	}
	return obj{
		"rel":              "conversation",
		"state":            v.convState,
		"threadId":         thread,
		"subject":          subject,
		"activeModalities": modalities,
		"importance":       "Normal",
		"participantCount": count,
		"readLocally":      false,
		"recording":        false,
		"_links":           links,
	}
}

// onlineMeeting is the read-only meeting of an invitation's conversation
// (onlineMeeting_ref.md).
func (s *Server) onlineMeeting(v *mview) obj {
	m := v.meeting
	h := v.convHref() + "/onlineMeeting"
	links := obj{
		"self":         link(h),
		"conversation": link(v.convHref()),
		"organizer":    link(h + "/organizer"),
	}
	res := meetingProperties(m, "onlineMeeting")
	_, domain, _ := strings.Cut(m.organizer.uri.Address(), "@")
	res["organizerName"] = m.organizer.name
	res["hostingNetwork"] = "https://meet." + domain
	res["largeMeeting"] = "Disabled"
	if m.conferenceID != "" || len(m.dialIn) > 0 {
		links["phoneDialInInformation"] = link(h + "/phoneDialInInformation")
	}
	res["_links"] = links
	return res
}

// meetingProperties are the properties onlineMeeting and myOnlineMeeting
// share (onlineMeeting_ref.md, myOnlineMeeting_ref.md).
func meetingProperties(m *meeting, rel string) obj {
	attendees := make([]string, 0, len(m.attendees))
	for _, a := range m.attendees {
		attendees = append(attendees, string(a))
	}
	admission := "Disabled"
	if m.conferenceID != "" {
		admission = "Enabled"
	}
	res := obj{
		"rel":                       rel,
		"accessLevel":               "SameEnterprise",
		"attendees":                 attendees,
		"automaticLeaderAssignment": "Disabled",
		"description":               m.description,
		"entryExitAnnouncement":     "Disabled",
		"expirationTime":            msDate(m.expiration),
		"joinUrl":                   m.joinURL(),
		"leaders":                   []string{},
		"lobbyBypassForPhoneUsers":  "Disabled",
		"onlineMeetingId":           m.id,
		"onlineMeetingRel":          "myOnlineMeetings",
		"onlineMeetingUri":          m.uri(),
		"organizerUri":              string(m.organizer.uri),
		"phoneUserAdmission":        admission,
		"subject":                   m.subject,
	}
	if m.conferenceID != "" {
		res["conferenceId"] = m.conferenceID
	}
	return res
}

// phoneDialInInformation is a meeting's dial-in information
// (phoneDialInInformation_ref.md, dialInRegion_ref.md).
func phoneDialInInformation(m *meeting, self string) obj {
	regions := make([]any, 0, len(m.dialIn))
	def := ""
	for i, r := range m.dialIn {
		if i == 0 {
			def = r.Name
		}
		langs := r.Languages
		if langs == nil {
			langs = []string{}
		}
		regions = append(regions, obj{
			"rel": "dialInRegion", "name": r.Name, "number": r.Number, "languages": langs,
			"_links": obj{"self": link(fmt.Sprintf("%s/%d", self, i+1))},
		})
	}
	_, domain, _ := strings.Cut(m.organizer.uri.Address(), "@")
	res := obj{
		"rel":                              "phoneDialInInformation",
		"defaultRegion":                    def,
		"externalDirectoryUri":             "https://dialin." + domain,
		"internalDirectoryUri":             "https://dialin." + domain,
		"isAudioConferenceProviderEnabled": false,
		"tollFreeNumbers":                  []string{},
		"_links":                           obj{"self": link(self)},
		"_embedded":                        obj{"dialInRegion": regions},
	}
	if m.conferenceID != "" {
		res["conferenceId"] = m.conferenceID
	}
	return res
}

// serveMViewInvitation serves an invitation to a meeting or a call:
// GET, accept, decline and, for a call, the caller's cancel.
func (s *Server) serveMViewInvitation(w http.ResponseWriter, r *http.Request, a *app, kind string, segs []string) {
	if len(segs) == 0 {
		// Outgoing meeting invitations and calls are not simulated.
		if r.Method == http.MethodPost {
			writeError(w, http.StatusForbidden, "Forbidden", "", "Starting online meetings and calls is not supported by this server.")
			return
		}
		methodNotAllowed(w)
		return
	}
	op := strings.Join(segs[1:], "/")
	var decline struct {
		Reason string `json:"reason"`
	}
	if op == "decline" && r.Method == http.MethodPost {
		if !decodeJSON(w, r, &decline) {
			return
		}
		if decline.Reason == "" {
			decline.Reason = "Unknown"
		}
		if !validDeclineReason(decline.Reason) {
			writeJSON(w, http.StatusBadRequest, obj{"code": "BadRequest", "subcode": "ParameterValidationFailure",
				"message": "reason is not a CallDeclineReason", "parameters": obj{"reason": decline.Reason}})
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.meetings.invs[segs[0]]
	if v == nil || v.app != a || v.kind()+"s" != kind {
		notFound(w)
		return
	}
	if op == "" {
		if r.Method != http.MethodGet {
			methodNotAllowed(w)
			return
		}
		writeJSON(w, http.StatusOK, s.invitationOf(v))
		return
	}
	if r.Method != http.MethodPost {
		methodNotAllowed(w)
		return
	}
	if v.state != "Connecting" {
		writeError(w, http.StatusConflict, "Conflict", "", "The invitation is no longer open.")
		return
	}
	switch op {
	case "accept", "acceptWithAnswer":
		if (v.call != nil) != (op == "acceptWithAnswer") {
			notFound(w)
			return
		}
		s.acceptMView(v)
		w.WriteHeader(http.StatusNoContent)
	case "decline":
		s.declineMView(v, decline.Reason)
		w.WriteHeader(http.StatusNoContent)
	default:
		notFound(w)
	}
}

// validDeclineReason: the members of CallDeclineReason_ref.md.
func validDeclineReason(r string) bool {
	switch r {
	case "Unknown", "Local", "Global", "MediaAllocationFailure", "EncryptionMismatch", "IPv6NotSupported",
		"MediaConnectivityFailure", "CodecMismatch", "UnsupportedMedia", "InvalidMediaOffer",
		"InsufficientBandwidth", "InsufficientBandwidthRerouteOverPstn":
		return true
	}
	return false
}

// acceptMView connects the application: the invitation completes with
// Success. For a call the other endpoints stop ringing.
func (s *Server) acceptMView(v *mview) {
	v.state = "Connected"
	v.convState = "Connected"
	e := meetingEvent(v, "completed", s.invitationOf(v))
	e["status"] = "Success"
	s.emit(v.app, "communication", v.app.base()+"/communication", prioHigh, e)
	s.emit(v.app, "communication", v.app.base()+"/communication", prioHigh, ev("conversation", v.convHref(), "", "updated", s.mviewConversation(v)))
	if c := v.call; c != nil {
		s.answerCall(c, v)
	}
}

// declineMView is the application's decline (decline_ref.md): its
// invitation fails; for a call, Global declines on every endpoint.
func (s *Server) declineMView(v *mview, why string) {
	v.declinedBy = why
	declined := reasonDeclined
	s.completeMView(v, "Declined", "Failure", &declined)
	if m := v.meeting; m != nil {
		m.declined = append(m.declined, v.app.user.uri)
		return
	}
	s.callDeclined(v.call, why)
}

// serveMViewConversation serves the conversation of a meeting invitation
// or call and what hangs off it; false when id is not one.
func (s *Server) serveMViewConversation(w http.ResponseWriter, r *http.Request, a *app, id string, segs []string) bool {
	if !strings.HasPrefix(id, "m") {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.meetings.convs[id]
	if v == nil || v.app != a {
		writeError(w, http.StatusNotFound, "NotFound", "ConversationNotFound", "The conversation does not exist.")
		return true
	}
	if r.Method != http.MethodGet {
		methodNotAllowed(w)
		return true
	}
	switch path := strings.Join(segs, "/"); {
	case path == "":
		writeJSON(w, http.StatusOK, s.mviewConversation(v))
	case path == "onlineMeeting" && v.meeting != nil:
		writeJSON(w, http.StatusOK, s.onlineMeeting(v))
	case path == "onlineMeeting/phoneDialInInformation" && v.meeting != nil:
		writeJSON(w, http.StatusOK, phoneDialInInformation(v.meeting, v.convHref()+"/onlineMeeting/phoneDialInInformation"))
	case path == "audioVideo" && v.call != nil:
		writeJSON(w, http.StatusOK, s.audioVideo(v))
	case path == "participants/"+v.from.uri.Address():
		writeJSON(w, http.StatusOK, v.fromParticipant())
	default:
		notFound(w)
	}
	return true
}

type createMeetingRequest struct {
	Subject        string    `json:"subject"`
	Description    string    `json:"description"`
	Attendees      []string  `json:"attendees"`
	ExpirationTime *jsonTime `json:"expirationTime"`
}

// jsonTime reads the reference's "\/Date(ms)\/" and RFC 3339.
type jsonTime struct{ time.Time }

func (t *jsonTime) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if v, ok := strings.CutPrefix(strings.ReplaceAll(s, `\/`, "/"), "/Date("); ok {
		var ms int64
		if _, err := fmt.Sscanf(v, "%d)/", &ms); err != nil {
			return fmt.Errorf("expirationTime %q: %w", s, err)
		}
		t.Time = time.UnixMilli(ms)
		return nil
	}
	p, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return fmt.Errorf("expirationTime %q: %w", s, err)
	}
	t.Time = p
	return nil
}

// serveOnlineMeetings serves the onlineMeetings resource, myOnlineMeetings
// (GET, POST), each myOnlineMeeting (GET, DELETE) and the user's
// phoneDialInInformation.
func (s *Server) serveOnlineMeetings(w http.ResponseWriter, r *http.Request, a *app, segs []string) {
	path := strings.Join(segs, "/")
	switch {
	case path == "" && r.Method == http.MethodGet:
		s.locked(func() { writeJSON(w, http.StatusOK, a.onlineMeetings()) })
	case path == "myOnlineMeetings" && r.Method == http.MethodPost:
		s.createMyOnlineMeeting(w, r, a)
	case path == "myOnlineMeetings" && r.Method == http.MethodGet:
		s.locked(func() {
			list := []any{}
			for k, m := range s.meetings.meetings {
				if k.organizer == a.user.uri && !m.cancelled {
					list = append(list, s.myOnlineMeeting(a, m))
				}
			}
			writeJSON(w, http.StatusOK, obj{
				"rel":       "myOnlineMeetings",
				"_links":    obj{"self": link(a.base() + "/onlineMeetings/myOnlineMeetings")},
				"_embedded": obj{"myOnlineMeeting": list},
			})
		})
	case len(segs) == 2 && segs[0] == "myOnlineMeetings":
		s.mu.Lock()
		defer s.mu.Unlock()
		m := s.meetings.meetings[meetingKey{a.user.uri, segs[1]}]
		if m == nil || m.cancelled {
			notFound(w)
			return
		}
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, s.myOnlineMeeting(a, m))
		case http.MethodDelete:
			m.cancelled = true
			w.WriteHeader(http.StatusNoContent)
		default:
			methodNotAllowed(w)
		}
	case path == "phoneDialInInformation" && r.Method == http.MethodGet:
		s.locked(func() {
			// The user's own dial-in information: that of the meetings
			// they create.
			m := &meeting{organizer: a.user, conferenceID: "", dialIn: defaultDialIn()}
			writeJSON(w, http.StatusOK, phoneDialInInformation(m, a.base()+"/onlineMeetings/phoneDialInInformation"))
		})
	case path == "" || path == "myOnlineMeetings" || path == "phoneDialInInformation":
		methodNotAllowed(w)
	default:
		notFound(w)
	}
}

func (s *Server) myOnlineMeeting(a *app, m *meeting) obj {
	res := meetingProperties(m, "myOnlineMeeting")
	h := a.base() + "/onlineMeetings/myOnlineMeetings/" + m.id
	res["_links"] = obj{"self": link(h), "onlineMeetingExtensions": link(h + "/extensions")}
	return res
}

// createMyOnlineMeeting is POST myOnlineMeetings: 201 with the
// myOnlineMeeting, its join URL and a conference ID for dial-in.
func (s *Server) createMyOnlineMeeting(w http.ResponseWriter, r *http.Request, a *app) {
	var req createMeetingRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if len([]rune(req.Subject)) > maxMeetingSubject {
		writeJSON(w, http.StatusBadRequest, obj{"code": "BadRequest", "subcode": "ParameterValidationFailure",
			"message": "The subject is too long.", "parameters": obj{"subject": "at most 250 characters"}})
		return
	}
	var attendees []sfb.URI
	for _, raw := range req.Attendees {
		u, err := sfb.ParseURI(raw)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, obj{"code": "BadRequest", "subcode": "ParameterValidationFailure",
				"message": err.Error(), "parameters": obj{"attendees": raw}})
			return
		}
		attendees = append(attendees, u)
	}
	var expiration time.Time
	if req.ExpirationTime != nil {
		expiration = req.ExpirationTime.Time
		now := s.now()
		if expiration.Before(now.AddDate(-1, 0, 0)) || expiration.After(now.AddDate(10, 0, 0)) {
			writeJSON(w, http.StatusBadRequest, obj{"code": "BadRequest", "subcode": "ParameterValidationFailure",
				"message": "expirationTime must be between one year before and ten years after now.", "parameters": obj{"expirationTime": "out of range"}})
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.newMeeting(a.user, req.Subject, expiration)
	m.description = req.Description
	m.attendees = attendees
	m.conferenceID = conferenceID()
	m.dialIn = defaultDialIn()
	h := a.base() + "/onlineMeetings/myOnlineMeetings/" + m.id
	w.Header().Set("Location", h)
	w.Header().Set("ETag", randomHex(8))
	writeJSON(w, http.StatusCreated, s.myOnlineMeeting(a, m))
}

// dropAppMeetings forgets the invitations of an application removed or
// reset (resume), without events: the application is not there to see
// them. A call that rang only there stops ringing.
func (s *Server) dropAppMeetings(a *app) {
	ms := &s.meetings
	for _, v := range ms.invs {
		if v.app != a {
			continue
		}
		s.dropMView(v)
		if v.call != nil && v.state == "Connecting" {
			v.state = "Failed"
			s.callForkGone(v.call)
		}
	}
}

type controlDialIn struct {
	Name      string   `json:"name"`
	Number    string   `json:"number"`
	Languages []string `json:"languages,omitempty"`
}

type controlMeeting struct {
	To           string          `json:"to"`
	Kind         string          `json:"kind"`
	Organizer    sfb.URI         `json:"organizer"`
	Subject      *string         `json:"subject"`
	Others       []sfb.URI       `json:"others"`
	ThreadID     string          `json:"thread_id"`
	Message      string          `json:"message"`
	ConferenceID *string         `json:"conference_id"`
	DialIn       []controlDialIn `json:"dial_in"`
}

type controlCall struct {
	To    string `json:"to"`
	Video bool   `json:"video"`
}

// meetingKindNamed is the kind the control API names; none is meet now.
func meetingKindNamed(name string) (MeetingKind, bool) {
	switch name {
	case "", "meet_now":
		return MeetNow, true
	case "escalation":
		return MeetingEscalation, true
	case "scheduled":
		return MeetingScheduled, true
	}
	return 0, false
}

func dialInOf(c []controlDialIn) []DialInRegion {
	var out []DialInRegion
	for _, r := range c {
		out = append(out, DialInRegion(r))
	}
	return out
}

// meetingControl adds the control API of meetings and calls.
func (s *Server) meetingControl(mux *http.ServeMux) {
	mux.HandleFunc("POST /sim/v1/users/{address}/meetings", func(w http.ResponseWriter, r *http.Request) {
		from, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		var c controlMeeting
		if !ctlDecode(w, r, &c) {
			return
		}
		to, ok := ctlURI(w, "to", c.To)
		if !ok {
			return
		}
		kind, ok := meetingKindNamed(c.Kind)
		if !ok {
			ctlError(w, http.StatusBadRequest, fmt.Errorf("kind %q: want meet_now, escalation or scheduled", c.Kind))
			return
		}
		inv := MeetingInvite{Kind: kind, Organizer: c.Organizer, Others: c.Others, ThreadID: c.ThreadID, Message: c.Message, DialIn: dialInOf(c.DialIn)}
		if c.Subject != nil {
			inv.Subject = *c.Subject
		}
		if c.ConferenceID != nil {
			inv.ConferenceID = *c.ConferenceID
		}
		info, err := s.InviteToMeeting(r.Context(), from, to, inv)
		if err != nil {
			ctlError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusCreated, obj{"id": info.ID, "uri": info.URI, "join_url": info.JoinURL, "conference_id": info.ConferenceID})
	})
	mux.HandleFunc("PATCH /sim/v1/users/{address}/meetings/{id}", func(w http.ResponseWriter, r *http.Request) {
		org, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		var c controlMeeting
		if !ctlDecode(w, r, &c) {
			return
		}
		ctlNoContent(w, s.UpdateMeeting(r.Context(), org, r.PathValue("id"), MeetingUpdate{Subject: c.Subject, ConferenceID: c.ConferenceID, DialIn: dialInOf(c.DialIn)}))
	})
	mux.HandleFunc("DELETE /sim/v1/users/{address}/meetings/{id}", func(w http.ResponseWriter, r *http.Request) {
		org, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		ctlNoContent(w, s.CancelMeeting(r.Context(), org, r.PathValue("id")))
	})
	mux.HandleFunc("POST /sim/v1/users/{address}/calls", func(w http.ResponseWriter, r *http.Request) {
		from, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		var c controlCall
		if !ctlDecode(w, r, &c) {
			return
		}
		to, ok := ctlURI(w, "to", c.To)
		if !ok {
			return
		}
		id, err := s.Call(r.Context(), from, to, c.Video)
		if err != nil {
			ctlError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusCreated, obj{"id": id})
	})
	mux.HandleFunc("GET /sim/v1/calls/{id}", func(w http.ResponseWriter, r *http.Request) {
		res, err := s.CallResult(r.PathValue("id"))
		if err != nil {
			ctlError(w, statusOf(err), err)
			return
		}
		reasons := res.DeclineReasons
		if reasons == nil {
			reasons = []string{}
		}
		writeJSON(w, http.StatusOK, obj{"from": res.From, "to": res.To, "video": res.Video, "state": res.State, "decline_reasons": reasons})
	})
	for name, f := range map[string]func(context.Context, string) error{"cancel": s.CancelCall, "answer": s.AnswerCall, "decline": s.DeclineCallNative} {
		mux.HandleFunc("POST /sim/v1/calls/{id}/"+name, func(w http.ResponseWriter, r *http.Request) {
			if err := f(r.Context(), r.PathValue("id")); err != nil {
				status := statusOf(err)
				if errors.Is(err, sfb.ErrUnsupported) {
					status = http.StatusConflict
				}
				ctlError(w, status, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
	}
}

// OnlineMeetings lists the meetings organizer organises and has not
// cancelled, those created through myOnlineMeetings included.
func (s *Server) OnlineMeetings(organizer sfb.URI) []MeetingInfo {
	organizer = canonical(organizer)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []MeetingInfo
	for k, m := range s.meetings.meetings {
		if k.organizer == organizer && !m.cancelled {
			out = append(out, m.info())
		}
	}
	return out
}
