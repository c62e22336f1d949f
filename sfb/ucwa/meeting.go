package ucwa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// OnlineMeetingInvitation is an invitation to an online meeting
// (onlineMeetingInvitation_ref.md). It names the meeting
// (onlineMeetingUri) but carries neither its join URL nor its dial-in
// information: those are on the conversation's onlineMeeting.
type OnlineMeetingInvitation struct {
	Resource
	Direction        string `json:"direction"`
	Importance       string `json:"importance"`
	OnlineMeetingURI string `json:"onlineMeetingUri"`
	OperationID      string `json:"operationId"`
	State            string `json:"state"`
	Subject          string `json:"subject"`
	ThreadID         string `json:"threadId"`
	To               string `json:"to"`
}

// OnlineMeeting is a conversation's onlineMeeting (onlineMeeting_ref.md)
// or one the user created (myOnlineMeeting_ref.md). Its expirationTime is
// not read: it is when the server may delete the meeting, not when the
// meeting ends, and the samples elide its digits.
type OnlineMeeting struct {
	Resource
	OnlineMeetingID  string `json:"onlineMeetingId"`
	OnlineMeetingURI string `json:"onlineMeetingUri"`
	JoinURL          string `json:"joinUrl"`
	ConferenceID     string `json:"conferenceId"`
	Subject          string `json:"subject"`
	OrganizerURI     string `json:"organizerUri"`
	OrganizerName    string `json:"organizerName"`
}

// PhoneDialInInformation is how to join a meeting by phone
// (phoneDialInInformation_ref.md); the numbers are the embedded
// dialInRegions.
type PhoneDialInInformation struct {
	Resource
	ConferenceID  string `json:"conferenceId"`
	DefaultRegion string `json:"defaultRegion"`
}

// DialInRegion is one dial-in number (dialInRegion_ref.md).
type DialInRegion struct {
	Resource
	Name      string   `json:"name"`
	Number    string   `json:"number"`
	Languages []string `json:"languages"`
}

// Limits on what a meeting takes from the server; longer values are cut
// (text) or dropped (identifiers, links).
const (
	// maxMeetingSubject is the reference's limit
	// (onlineMeetingInvitation_ref.md: 250 characters).
	maxMeetingSubject = 250
	maxJoinURL        = 2048
	maxConferenceID   = 32
	maxDialInRegions  = 50
	maxRegionName     = 100
	maxDisplayName    = 200
	maxPhoneNumber    = 64
	maxThreadID       = 256
)

// decodeMeeting builds the meeting an invitation announces from the
// invitation and, when they could be read, the conversation's
// onlineMeeting and the dial-in information (either may be nil). Every
// field is checked: what is not valid is left out and named in the
// returned problems; only a meeting without a valid URI is an error.
func decodeMeeting(inv *OnlineMeetingInvitation, om *OnlineMeeting, dial *PhoneDialInInformation) (sfb.Meeting, []string, error) {
	var m sfb.Meeting
	var problems []string
	raw := ""
	if inv != nil {
		raw = inv.OnlineMeetingURI
	}
	if raw == "" && om != nil {
		raw = om.OnlineMeetingURI
	}
	uri, err := parseMeetingURI(raw)
	if err != nil {
		return sfb.Meeting{}, nil, err
	}
	m.URI = uri
	var subject string
	if om != nil {
		subject = om.Subject
	}
	if subject == "" && inv != nil {
		subject = inv.Subject
	}
	m.Subject = cleanLine(subject, maxMeetingSubject)
	if om != nil {
		if om.JoinURL != "" {
			if u, err := parseJoinURL(om.JoinURL); err != nil {
				problems = append(problems, err.Error())
			} else {
				m.JoinURL = u
			}
		}
		if om.OrganizerURI != "" {
			if o, err := sfb.ParseURI(om.OrganizerURI); err != nil {
				problems = append(problems, "organizer: "+err.Error())
			} else {
				m.Organizer = sfb.Person{URI: o, DisplayName: cleanLine(om.OrganizerName, maxDisplayName)}
				if m.Organizer.DisplayName == "" {
					m.Organizer.DisplayName = o.Address()
				}
			}
		}
		m.ConferenceID = conferenceIDOf(om.ConferenceID, &problems)
	}
	if dial != nil {
		if id := conferenceIDOf(dial.ConferenceID, &problems); id != "" {
			m.ConferenceID = id
		}
		m.DialIn = dialInNumbers(dial, &problems)
	}
	return m, problems, nil
}

// parseMeetingURI checks a meeting's SIP URI (sip:alice@contoso.com;gruu;
// opaque=app:conf:focus:id:IB88RLLY): the address part as any SIP URI,
// the parameters kept as they are (their case is the conference ID's).
func parseMeetingURI(raw string) (sfb.URI, error) {
	if raw == "" {
		return "", errors.New("meeting without onlineMeetingUri")
	}
	if len(raw) > maxURILength || !utf8.ValidString(raw) {
		return "", fmt.Errorf("onlineMeetingUri of %d bytes is not a valid URI", len(raw))
	}
	addr, params, _ := strings.Cut(raw, ";")
	u, err := sfb.ParseURI(addr)
	if err != nil {
		return "", fmt.Errorf("onlineMeetingUri: %w", err)
	}
	if params == "" {
		return u, nil
	}
	if strings.IndexFunc(params, func(r rune) bool { return r <= ' ' || r == 0x7f || strings.ContainsRune(`<>"`, r) }) >= 0 {
		return "", fmt.Errorf("onlineMeetingUri %q: blanks or delimiters in its parameters", raw)
	}
	return sfb.URI(string(u) + ";" + params), nil
}

// maxURILength bounds a meeting URI as sfb bounds addresses (SfB limits
// SIP URIs to 454 characters).
const maxURILength = 454

// parseJoinURL accepts an absolute http(s) URL with a host, without
// credentials, blanks or control characters. Whether its scheme and host
// are acceptable to show is the caller's policy (an allow-list of
// meeting domains).
func parseJoinURL(raw string) (string, error) {
	if len(raw) > maxJoinURL {
		return "", fmt.Errorf("join URL of %d bytes is longer than %d", len(raw), maxJoinURL)
	}
	if !utf8.ValidString(raw) || strings.IndexFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "", fmt.Errorf("join URL %q contains blanks or control characters", truncate(raw, 80))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("join URL: %w", err)
	}
	if s := strings.ToLower(u.Scheme); (s != "https" && s != "http") || u.Host == "" || u.Hostname() == "" || u.User != nil {
		return "", fmt.Errorf("join URL %q is not an http(s) URL of a host", truncate(raw, 80))
	}
	return u.String(), nil
}

// conferenceIDOf is a conference ID (digits, in practice; letters are
// tolerated) or "" with a problem noted.
func conferenceIDOf(raw string, problems *[]string) string {
	id := strings.TrimSpace(raw)
	if id == "" {
		return ""
	}
	if len(id) > maxConferenceID || strings.IndexFunc(id, func(r rune) bool { return r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r)) }) >= 0 {
		*problems = append(*problems, fmt.Sprintf("conference ID %q is not one", truncate(id, 40)))
		return ""
	}
	return id
}

// dialInNumbers are the dial-in information's numbers, "tel:" dropped.
func dialInNumbers(dial *PhoneDialInInformation, problems *[]string) []sfb.DialInNumber {
	var regions []DialInRegion
	raw, ok := dial.Embedded["dialInRegion"]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, &regions); err != nil {
		var one DialInRegion
		if err1 := json.Unmarshal(raw, &one); err1 != nil {
			*problems = append(*problems, "dial-in regions: "+err.Error())
			return nil
		}
		regions = []DialInRegion{one}
	}
	var out []sfb.DialInNumber
	for _, r := range regions {
		if len(out) == maxDialInRegions {
			*problems = append(*problems, fmt.Sprintf("more than %d dial-in regions, the rest left out", maxDialInRegions))
			break
		}
		n, ok := phoneNumber(r.Number)
		if !ok {
			*problems = append(*problems, fmt.Sprintf("dial-in number %q is not a phone number", truncate(r.Number, 40)))
			continue
		}
		out = append(out, sfb.DialInNumber{Region: cleanLine(r.Name, maxRegionName), Number: n})
	}
	return out
}

// phoneNumber accepts "tel:+14255550001" and the plain forms people write
// (+49 611 555-0, (425) 555 0001).
func phoneNumber(raw string) (string, bool) {
	n := strings.TrimSpace(raw)
	if len(n) >= 4 && strings.EqualFold(n[:4], "tel:") {
		n = n[4:]
	}
	if n == "" || len(n) > maxPhoneNumber {
		return "", false
	}
	digits := 0
	for i, r := range n {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == '+' && i == 0, r == ' ', r == '-', r == '(', r == ')', r == '.':
		default:
			return "", false
		}
	}
	return n, digits >= 3
}

// cleanLine makes a server's text safe to show on one line: valid UTF-8,
// no control characters or bidirectional overrides, blanks folded, at
// most max runes. Escaping for HTML is the receiver's business.
func cleanLine(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case unicode.IsControl(r), r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069', r == '\u200e', r == '\u200f':
			return -1
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max])
	}
	return s
}

// meetingState is what the session remembers about open meeting
// invitations and ringing calls, by invitation href.
type meetingState struct {
	mu       sync.Mutex
	meetings map[string]meetingSeen
	calls    map[string]*ringingCall
}

type meetingSeen struct {
	ev  sfb.MeetingInvited
	sum uint64
	// conv and inv are the invitation's conversation and the invitation,
	// to read the meeting again when it changes.
	conv string
	inv  OnlineMeetingInvitation
}

// maxOpenInvitations bounds what meetingState keeps: a server that opens
// invitations and never completes them must not grow it without end.
const maxOpenInvitations = 1024

func newMeetingState() meetingState {
	return meetingState{meetings: map[string]meetingSeen{}, calls: map[string]*ringingCall{}}
}

// evictOne drops one entry of a full map; which one does not matter much,
// every entry is an invitation nobody completed for long.
func evictOne[V any](m map[string]V) {
	if len(m) < maxOpenInvitations {
		return
	}
	for k := range m {
		delete(m, k)
		return
	}
}

// meetingSum is a digest of what a MeetingInvited says, for its ID: a
// redelivered event keeps its ID, an update gets a new one.
func meetingSum(ev sfb.MeetingInvited) uint64 {
	h := fnv.New64a()
	m := ev.Meeting
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%t\x00%s\x00%t\x00%s", m.URI, m.JoinURL, m.Subject, m.Organizer.URI, m.ConferenceID,
		ev.Cancelled, ev.Conversation.ThreadID, ev.Conversation.Group, ev.Conversation.Peer)
	for _, d := range m.DialIn {
		fmt.Fprintf(h, "\x00%s\x00%s", d.Region, d.Number)
	}
	return h.Sum64()
}

// onMeetingInvitation handles an onlineMeetingInvitation event: started
// and updated become MeetingInvited (after reading the conversation, its
// onlineMeeting and the dial-in information), a completion that says the
// meeting or invitation was cancelled becomes MeetingInvited with
// Cancelled. Other completions (declined, answered elsewhere, timed out)
// end the invitation without a word: the meeting still takes place.
func (s *session) onMeetingInvitation(e Event) error {
	href := s.abs(e.Link.Href)
	var inv OnlineMeetingInvitation
	ok, err := decodeEmbedded(e.Embedded, "onlineMeetingInvitation", &inv)
	if err != nil {
		return err
	}
	if e.Type == "completed" {
		return s.meetingCompleted(href, e, ok, &inv)
	}
	if !ok {
		if err := s.fetch(e.Link.Href, &inv); err != nil {
			return fmt.Errorf("fetch meeting invitation: %w", err)
		}
	}
	if !strings.EqualFold(inv.Direction, "Incoming") {
		return nil
	}
	return s.reportMeeting(href, &inv)
}

// onOnlineMeeting handles a conversation's onlineMeeting "updated": the
// meeting of an open invitation changed (its subject, its dial-in), which
// a server may say without updating the invitation.
func (s *session) onOnlineMeeting(snd EventSender, e Event) error {
	if e.Type != "updated" {
		return nil
	}
	conv := snd.Href
	if e.In != nil && e.In.Href != "" {
		conv = e.In.Href
	}
	conv = s.abs(conv)
	s.meetings.mu.Lock()
	var href string
	var inv OnlineMeetingInvitation
	for h, m := range s.meetings.meetings {
		if m.conv == conv {
			href, inv = h, m.inv
		}
	}
	s.meetings.mu.Unlock()
	if href == "" {
		return nil
	}
	return s.reportMeeting(href, &inv)
}

// reportMeeting reads what an incoming invitation's meeting is and
// reports it.
func (s *session) reportMeeting(href string, inv *OnlineMeetingInvitation) error {
	from, err := s.invitationSender(&MessagingInvitation{Resource: inv.Resource})
	if err != nil {
		return fmt.Errorf("meeting invitation %s: %w", href, err)
	}
	var om *OnlineMeeting
	var dial *PhoneDialInInformation
	conv := sfb.Conversation{ThreadID: cleanThreadID(inv.ThreadID), Peer: from.URI}
	if ch := inv.Links.Href("conversation"); ch != "" {
		var c Conversation
		if err := s.fetch(ch, &c); err != nil {
			s.log.Warn().Err(err).Str("invitation", redact(href)).Msg("Could not read the meeting's conversation; the meeting is reported without its join URL")
		} else {
			if c.ParticipantCount > 2 && conv.ThreadID != "" {
				conv = sfb.Conversation{ThreadID: conv.ThreadID, Group: true}
			}
			conv.Subject = cleanLine(c.Subject, maxMeetingSubject)
			if mh := c.Links.Href("onlineMeeting"); mh != "" {
				om = &OnlineMeeting{}
				if err := s.fetch(mh, om); err != nil {
					s.log.Warn().Err(err).Str("invitation", redact(href)).Msg("Could not read the online meeting; the meeting is reported without its join URL")
					om = nil
				}
			}
		}
	}
	if om != nil {
		if dh := om.Links.Href("phoneDialInInformation"); dh != "" {
			dial = &PhoneDialInInformation{}
			if err := s.fetch(dh, dial); err != nil {
				s.log.Warn().Err(err).Str("invitation", redact(href)).Msg("Could not read the meeting's dial-in information")
				dial = nil
			}
		}
	}
	m, problems, err := decodeMeeting(inv, om, dial)
	if err != nil {
		return fmt.Errorf("meeting invitation %s: %w", href, err)
	}
	if len(problems) > 0 {
		s.log.Warn().Strs("problems", problems).Str("invitation", redact(href)).Msg("Meeting invitation with fields left out")
	}
	if m.Organizer.URI == "" && organizerFlag(inv.Embedded) {
		m.Organizer = from
	}
	if om == nil {
		// The meeting could not be read (the conversation may be gone
		// already, a cancellation on its way): what was known of it
		// stays rather than an update that loses the join URL.
		s.meetings.mu.Lock()
		prev, known := s.meetings.meetings[href]
		s.meetings.mu.Unlock()
		if known {
			subject := m.Subject
			m, conv = prev.ev.Meeting, prev.ev.Conversation
			if inv.Subject != prev.inv.Subject && subject != "" {
				// The invitation itself says the subject changed.
				m.Subject = subject
			}
		}
	}
	s.emitMeeting(href, s.abs(inv.Links.Href("conversation")), *inv, sfb.MeetingInvited{Conversation: conv, From: from, Meeting: m, Time: s.t.now()})
	return nil
}

// organizerFlag reports whether the embedded from participant says it is
// the meeting's organizer.
func organizerFlag(e Embedded) bool {
	var p struct {
		Organizer bool `json:"organizer"`
	}
	ok, err := decodeEmbedded(e, "from", &p)
	return ok && err == nil && p.Organizer
}

// cleanThreadID is a server's thread ID when it is one: printable ASCII,
// bounded.
func cleanThreadID(t string) string {
	if len(t) > maxThreadID || strings.IndexFunc(t, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		return ""
	}
	return t
}

// meetingCompleted ends an invitation; a cancelled one is reported with
// what was known of the meeting, or what the completion carries.
func (s *session) meetingCompleted(href string, e Event, embedded bool, inv *OnlineMeetingInvitation) error {
	s.meetings.mu.Lock()
	seen, known := s.meetings.meetings[href]
	delete(s.meetings.meetings, href)
	s.meetings.mu.Unlock()
	if !isCancellation(e) {
		return nil
	}
	ev := seen.ev
	if !known {
		if !embedded {
			return fmt.Errorf("meeting invitation %s cancelled, but neither it nor its meeting are known", href)
		}
		m, _, err := decodeMeeting(inv, nil, nil)
		if err != nil {
			return fmt.Errorf("cancelled meeting invitation %s: %w", href, err)
		}
		from, err := s.invitationSender(&MessagingInvitation{Resource: inv.Resource})
		if err != nil {
			return fmt.Errorf("cancelled meeting invitation %s: %w", href, err)
		}
		ev = sfb.MeetingInvited{Conversation: sfb.Conversation{ThreadID: cleanThreadID(inv.ThreadID), Peer: from.URI}, From: from, Meeting: m}
	}
	ev.Cancelled = true
	ev.Time = s.t.now()
	ev.ID = href + "#" + strconv.FormatUint(meetingSum(ev), 16)
	s.emit(ev)
	return nil
}

// isCancellation: the invitation completed because the inviter withdrew
// it or the organizer cancelled the meeting (ErrorSubcode_ref.md:
// Canceled).
func isCancellation(e Event) bool {
	if strings.EqualFold(e.Status, "Success") || e.Reason == nil {
		return false
	}
	return strings.EqualFold(e.Reason.Subcode, "Canceled") || strings.EqualFold(e.Reason.Subcode, "Cancelled")
}

// emitMeeting reports ev unless the same was reported for the invitation
// already (an update that changed nothing the bridge shows, a redelivery).
func (s *session) emitMeeting(href, conv string, inv OnlineMeetingInvitation, ev sfb.MeetingInvited) {
	sum := meetingSum(ev)
	ev.ID = href + "#" + strconv.FormatUint(sum, 16)
	s.meetings.mu.Lock()
	prev, ok := s.meetings.meetings[href]
	if ok && prev.sum == sum {
		s.meetings.mu.Unlock()
		return
	}
	if !ok {
		evictOne(s.meetings.meetings)
	}
	s.meetings.meetings[href] = meetingSeen{ev: ev, sum: sum, conv: conv, inv: inv}
	s.meetings.mu.Unlock()
	s.emit(ev)
}

// CreateMeeting implements sfb.MeetingSession: POST on myOnlineMeetings
// (ScheduleAnOnlineMeeting.md), then the dial-in information when the
// server offers it.
func (s *session) CreateMeeting(ctx context.Context, req sfb.MeetingRequest) (sfb.Meeting, error) {
	if utf8.RuneCountInString(req.Subject) > maxMeetingSubject {
		return sfb.Meeting{}, fmt.Errorf("create meeting: subject longer than %d characters: %w", maxMeetingSubject, sfb.ErrUnsupported)
	}
	body := map[string]any{"subject": cleanLine(req.Subject, maxMeetingSubject)}
	attendees := []string{}
	for _, a := range req.Attendees {
		u, err := sfb.ParseURI(string(a))
		if err != nil {
			return sfb.Meeting{}, fmt.Errorf("create meeting: attendee: %w", err)
		}
		attendees = append(attendees, string(u))
	}
	body["attendees"] = attendees
	if !req.Expires.IsZero() {
		body["expirationTime"] = "/Date(" + strconv.FormatInt(req.Expires.UnixMilli(), 10) + ")/"
	}
	data, err := json.Marshal(body)
	if err != nil {
		return sfb.Meeting{}, fmt.Errorf("create meeting: %w", err)
	}
	// An application the server lost is created again and the meeting
	// asked of the new one, as SendMessage does.
	for attempt := 0; ; attempt++ {
		st, gen := s.appSnapshot()
		m, err := s.createMeeting(ctx, st, data, req.Subject)
		if err == nil || attempt > 0 || !applicationGone(err) {
			return m, err
		}
		if rerr := s.recreate(ctx, gen, false); rerr != nil {
			return sfb.Meeting{}, fmt.Errorf("create meeting: %w", rerr)
		}
	}
}

// createMeeting creates a meeting on the application st.
func (s *session) createMeeting(ctx context.Context, st appState, data []byte, subject string) (sfb.Meeting, error) {
	var app Application
	if err := s.get(ctx, st.self, "read application", &app); err != nil {
		return sfb.Meeting{}, fmt.Errorf("create meeting: %w", err)
	}
	var oms Resource
	if ok, err := decodeEmbedded(app.Embedded, "onlineMeetings", &oms); err != nil || !ok {
		return sfb.Meeting{}, fmt.Errorf("create meeting: the application offers no onlineMeetings: %w", errors.ErrUnsupported)
	}
	mine := resolveHref(st.base, oms.Links.Href("myOnlineMeetings"))
	if mine == "" {
		return sfb.Meeting{}, fmt.Errorf("create meeting: no myOnlineMeetings link: %w", errors.ErrUnsupported)
	}
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	defer cancel()
	var om OnlineMeeting
	if _, err := s.c.doJSON(rctx, request{op: "create meeting", method: http.MethodPost, url: mine, body: data, contentType: "application/json"}, &om); err != nil {
		return sfb.Meeting{}, fmt.Errorf("create meeting: %w", err)
	}
	// The meeting's own dial-in information, else the organiser's
	// (onlineMeetings_ref.md), which is what a new meeting has.
	dh := om.Links.Href("phoneDialInInformation")
	if dh == "" {
		dh = oms.Links.Href("phoneDialInInformation")
	}
	var dial *PhoneDialInInformation
	if dh != "" {
		dial = &PhoneDialInInformation{}
		if err := s.get(ctx, resolveHref(st.base, dh), "read dial-in information", dial); err != nil {
			s.log.Warn().Err(err).Msg("Could not read the dial-in information of a new meeting")
			dial = nil
		}
	}
	m, problems, err := decodeMeeting(nil, &om, dial)
	if err != nil {
		return sfb.Meeting{}, fmt.Errorf("create meeting: the server's answer: %w", err)
	}
	if len(problems) > 0 {
		s.log.Warn().Strs("problems", problems).Msg("New meeting with fields left out")
	}
	if m.JoinURL == "" {
		return sfb.Meeting{}, fmt.Errorf("create meeting %s: the server gave no usable join URL: %w", m.URI, sfb.ErrServerUnavailable)
	}
	if m.Organizer.URI == "" {
		m.Organizer = s.Self()
	}
	if m.Subject == "" {
		m.Subject = cleanLine(subject, maxMeetingSubject)
	}
	return m, nil
}
