package bridge

import (
	"cmp"
	"context"
	"fmt"
	"html"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/msgconv"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// An SfB meeting invitation becomes one notice per meeting and room: its
// message ID is derived from the meeting's URI, so the first invitation
// posts the notice and every later invitation, update or cancellation of
// the same meeting edits it (bridgev2 remote edit). The SfB event IDs
// already applied to the notice are kept in its message row's metadata, so
// that an event SfB delivers again after a resume changes nothing.

// MeetingField is the key of the machine-readable meeting description in
// a meeting notice's content.
const MeetingField = "net.sfb_bridge.meeting"

// MessageMetadata is what the connector keeps in bridgev2's message rows:
// for a meeting notice, the meeting as last shown and the SfB events
// applied to it.
type MessageMetadata struct {
	Meeting   *sfb.Meeting `json:"meeting,omitempty"`
	Cancelled bool         `json:"cancelled,omitempty"`
	// SfBEvents are the IDs of the SfB events already applied, newest
	// last, at most maxSeenEvents.
	SfBEvents []string `json:"sfb_events,omitempty"`
}

// maxSeenEvents bounds the event IDs a notice remembers: redelivery after a
// resume repeats only the last few events.
const maxSeenEvents = 32

func (m *MessageMetadata) seen(id string) bool { return slices.Contains(m.SfBEvents, id) }

func (m *MessageMetadata) remember(id string) {
	m.SfBEvents = append(m.SfBEvents, id)
	if len(m.SfBEvents) > maxSeenEvents {
		m.SfBEvents = m.SfBEvents[len(m.SfBEvents)-maxSeenEvents:]
	}
}

// maxSubjectRunes bounds a subject shown in a notice.
const maxSubjectRunes = 300

// meetingMessageID names the notice of meeting uri in the room key.
func meetingMessageID(key networkid.PortalKey, uri sfb.URI) networkid.MessageID {
	return networkid.MessageID(stableID("meeting:", string(key.ID), strings.ToLower(string(uri))))
}

func (c *Client) handleMeetingInvited(ctx context.Context, evt sfb.MeetingInvited) {
	log := zerolog.Ctx(ctx)
	if evt.Meeting.URI == "" {
		log.Warn().Msg("Dropping SfB meeting invitation without meeting URI")
		return
	}
	// The notice is the sender's (the user's own when their SfB client
	// sent it); without one, the organiser's. The room is the one of
	// the conversation, found as for messages.
	from := evt.From
	if from.URI == "" {
		from = evt.Meeting.Organizer
	}
	what := fmt.Sprintf("%s\x00%t\x00%s", evt.Meeting.URI, evt.Cancelled, evt.Meeting.Subject)
	meta, evtMsgID, ok := c.incoming(ctx, "meeting invitation", evt.ID, evt.Conversation, from, evt.Time, what)
	if !ok {
		return
	}
	evtID := string(evtMsgID)
	key := meta.PortalKey
	msgID := meetingMessageID(key, evt.Meeting.URI)
	existing, err := c.conn.br.DB.Message.GetFirstPartByID(ctx, key.Receiver, msgID)
	if err != nil {
		log.Err(err).Msg("Failed to look up the notice of an SfB meeting; posting it anew")
	}
	render := c.meetingRenderer()
	if existing == nil {
		meta.Type = bridgev2.RemoteEventMessage
		c.queueReliably(ctx, &simplevent.Message[sfb.MeetingInvited]{
			EventMeta: meta,
			ID:        msgID,
			Data:      evt,
			ConvertMessageFunc: func(ctx context.Context, _ *bridgev2.Portal, _ bridgev2.MatrixAPI, evt sfb.MeetingInvited) (*bridgev2.ConvertedMessage, error) {
				// A meeting escalated from a conversation may carry
				// its subject on the conversation only.
				evt.Meeting.Subject = cmp.Or(evt.Meeting.Subject, evt.Conversation.Subject)
				m := &MessageMetadata{Meeting: &evt.Meeting, Cancelled: evt.Cancelled}
				m.remember(evtID)
				content, extra := render.meeting(evt.Meeting, evt.Cancelled, false)
				return &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{{
					Type: event.EventMessage, Content: content, Extra: extra, DBMetadata: m,
				}}}, nil
			},
		})
		return
	}
	// Updates may come from someone other than who sent the invitation;
	// the notice stays the first sender's.
	meta.Type = bridgev2.RemoteEventEdit
	meta.Sender.ForceEditOrigSender = true
	meta.CreatePortal = false
	c.queueReliably(ctx, &simplevent.Message[sfb.MeetingInvited]{
		EventMeta:     meta,
		TargetMessage: msgID,
		Data:          evt,
		ConvertEditFunc: func(ctx context.Context, _ *bridgev2.Portal, _ bridgev2.MatrixAPI, parts []*mxdb.Message, evt sfb.MeetingInvited) (*bridgev2.ConvertedEdit, error) {
			return render.edit(parts, evt, evtID)
		},
	})
}

// meetingRenderer holds what rendering a meeting needs from the client.
type meetingRenderer struct {
	zone    *time.Location
	domains []string
}

func (c *Client) meetingRenderer() meetingRenderer {
	cfg := &c.conn.Config.Meetings
	domains := append([]string{c.selfURI().Domain()}, cfg.MeetingDomains...)
	return meetingRenderer{zone: cfg.zone(), domains: domains}
}

// edit is the edit of a meeting notice for evt: the meeting merged with
// what the notice showed (a cancellation may carry only the URI).
func (r meetingRenderer) edit(parts []*mxdb.Message, evt sfb.MeetingInvited, evtID string) (*bridgev2.ConvertedEdit, error) {
	part := parts[0]
	meta, ok := part.Metadata.(*MessageMetadata)
	if !ok || meta == nil {
		meta = &MessageMetadata{}
	}
	if meta.seen(evtID) {
		return nil, fmt.Errorf("%w: SfB meeting event %s already shown", bridgev2.ErrIgnoringRemoteEvent, evtID)
	}
	merged := evt.Meeting
	if meta.Meeting != nil {
		merged = mergeMeeting(*meta.Meeting, evt.Meeting)
		if sameMeeting(*meta.Meeting, merged) && meta.Cancelled == evt.Cancelled {
			// The same invitation sent again (forwarded once more):
			// nothing to change, and no "Updated" for it.
			return nil, fmt.Errorf("%w: SfB meeting event %s changes nothing", bridgev2.ErrIgnoringRemoteEvent, evtID)
		}
	}
	meta.Meeting, meta.Cancelled = &merged, evt.Cancelled
	meta.remember(evtID)
	part.Metadata = meta
	content, extra := r.meeting(merged, evt.Cancelled, !evt.Cancelled)
	return &bridgev2.ConvertedEdit{ModifiedParts: []*bridgev2.ConvertedEditPart{{
		Part: part, Type: event.EventMessage, Content: content, Extra: extra,
		// Clients that read only the top level see the new state too.
		TopLevelExtra: map[string]any{MeetingField: extra[MeetingField]},
	}}}, nil
}

// mergeMeeting is next with what it leaves out taken from prev.
func mergeMeeting(prev, next sfb.Meeting) sfb.Meeting {
	if next.JoinURL == "" {
		next.JoinURL = prev.JoinURL
	}
	if next.Subject == "" {
		next.Subject = prev.Subject
	}
	if next.Organizer.URI == "" && next.Organizer.DisplayName == "" {
		next.Organizer = prev.Organizer
	}
	if next.Start.IsZero() && next.End.IsZero() {
		next.Start, next.End = prev.Start, prev.End
	}
	if next.ConferenceID == "" {
		next.ConferenceID = prev.ConferenceID
	}
	if len(next.DialIn) == 0 {
		next.DialIn = prev.DialIn
	}
	return next
}

// sameMeeting reports whether a and b show the same.
func sameMeeting(a, b sfb.Meeting) bool {
	return a.URI == b.URI && a.JoinURL == b.JoinURL && a.Subject == b.Subject && a.Organizer == b.Organizer &&
		a.Start.Equal(b.Start) && a.End.Equal(b.End) && a.ConferenceID == b.ConferenceID && slices.Equal(a.DialIn, b.DialIn)
}

// meeting renders the notice of m: plain body, Element-friendly HTML and
// the machine-readable MeetingField. updated marks a changed meeting.
func (r meetingRenderer) meeting(m sfb.Meeting, cancelled, updated bool) (*event.MessageEventContent, map[string]any) {
	subject := cleanSubject(m.Subject)
	shownSubject := subject
	if shownSubject == "" {
		shownSubject = "(no subject)"
	}
	heading := "Skype for Business meeting"
	switch {
	case cancelled:
		heading = "Cancelled: Skype for Business meeting"
	case updated:
		heading = "Updated: Skype for Business meeting"
	}
	var text, htm strings.Builder
	fmt.Fprintf(&text, "%s: %s\n", heading, shownSubject)
	if cancelled {
		fmt.Fprintf(&htm, "<p><strong>%s:</strong> <del>%s</del></p>", html.EscapeString(heading), html.EscapeString(shownSubject))
	} else {
		fmt.Fprintf(&htm, "<p><strong>%s:</strong> %s</p>", html.EscapeString(heading), html.EscapeString(shownSubject))
	}
	var details []string
	if org := personName(m.Organizer); org != "" {
		details = append(details, "Organiser: "+org)
	}
	if when := r.when(m.Start, m.End); when != "" {
		details = append(details, "When: "+when)
	}
	field := map[string]any{
		"uri":       string(m.URI),
		"cancelled": cancelled,
	}
	if subject != "" {
		field["subject"] = subject
	}
	if m.Organizer.URI != "" || m.Organizer.DisplayName != "" {
		field["organizer"] = map[string]any{"uri": string(m.Organizer.URI), "name": msgconv.CleanName(m.Organizer.DisplayName)}
	}
	if !m.Start.IsZero() {
		field["start"] = m.Start.UTC().Format(time.RFC3339)
	}
	if !m.End.IsZero() {
		field["end"] = m.End.UTC().Format(time.RFC3339)
	}
	var joinLine, joinHTML string
	if m.JoinURL != "" && !cancelled {
		if link, problem := r.safeJoinURL(m.JoinURL); problem == "" {
			field["join_url"] = link
			joinLine = "Join the Skype for Business meeting: " + link
			joinHTML = fmt.Sprintf(`<p><a href="%s">Join the Skype for Business meeting</a></p>`, html.EscapeString(link))
		} else {
			field["join_url_refused"] = problem
			shown := defang(m.JoinURL)
			joinLine = fmt.Sprintf("⚠️ The join address is not shown as a link: %s. Address as sent: %s", problem, shown)
			joinHTML = fmt.Sprintf("<p>⚠️ The join address is not shown as a link: %s.<br>Address as sent: <code>%s</code></p>",
				html.EscapeString(problem), html.EscapeString(shown))
		}
	}
	var dial []string
	var dialField []map[string]string
	for _, d := range m.DialIn {
		number := msgconv.CleanName(d.Number)
		if number == "" {
			continue
		}
		region := msgconv.CleanName(d.Region)
		dialField = append(dialField, map[string]string{"region": region, "number": number})
		if region != "" {
			number = region + ": " + number
		}
		dial = append(dial, number)
	}
	if len(dialField) > 0 {
		field["dial_in"] = dialField
	}
	if id := msgconv.CleanName(m.ConferenceID); id != "" {
		field["conference_id"] = id
		if !cancelled {
			dial = append(dial, "Conference ID: "+id)
		}
	}
	if cancelled {
		dial = nil
	}
	for _, d := range details {
		text.WriteString(d + "\n")
	}
	if len(details) > 0 {
		htm.WriteString("<p>" + escapeLines(details) + "</p>")
	}
	if joinLine != "" {
		text.WriteString(joinLine + "\n")
		htm.WriteString(joinHTML)
	}
	if len(dial) > 0 {
		text.WriteString("Dial in: " + strings.Join(dial, "; ") + "\n")
		htm.WriteString("<p>Dial in:<br>" + escapeLines(dial) + "</p>")
	}
	if cancelled {
		text.WriteString("The meeting was cancelled.\n")
		htm.WriteString("<p>The meeting was cancelled.</p>")
	}
	content := &event.MessageEventContent{
		MsgType:       event.MsgNotice,
		Body:          strings.TrimRight(text.String(), "\n"),
		Format:        event.FormatHTML,
		FormattedBody: htm.String(),
	}
	return content, map[string]any{MeetingField: field}
}

func escapeLines(lines []string) string {
	escaped := make([]string, len(lines))
	for i, l := range lines {
		escaped[i] = html.EscapeString(l)
	}
	return strings.Join(escaped, "<br>")
}

// when formats a meeting's time span in the configured zone; empty when
// unknown (ad hoc meetings).
func (r meetingRenderer) when(start, end time.Time) string {
	if start.IsZero() {
		return ""
	}
	start = start.In(r.zone)
	out := start.Format("Mon 2 Jan 2006, 15:04")
	if !end.IsZero() && end.After(start) {
		end = end.In(r.zone)
		if end.YearDay() == start.YearDay() && end.Year() == start.Year() {
			out += "–" + end.Format("15:04")
		} else {
			out += " – " + end.Format("Mon 2 Jan 2006, 15:04")
		}
	}
	return out + " (" + r.zone.String() + ")"
}

// cleanSubject is a subject fit to show: control characters and runs of
// white space gone, at most maxSubjectRunes.
func cleanSubject(s string) string {
	s = msgconv.CleanName(s)
	if utf8.RuneCountInString(s) > maxSubjectRunes {
		s = string([]rune(s)[:maxSubjectRunes]) + "…"
	}
	return s
}

// safeJoinURL returns the join URL to link to, or why it must not be a
// link: it must be https, without user info, on a host that is one of the
// meeting domains or below one.
func (r meetingRenderer) safeJoinURL(raw string) (link, problem string) {
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case err != nil || u.Host == "":
		return "", "it is not a valid web address"
	case u.Scheme != "https":
		return "", "it is not an https address"
	case u.User != nil:
		return "", "it carries a user name, a common disguise"
	}
	host := strings.ToLower(u.Hostname())
	for _, d := range r.domains {
		if d != "" && (host == d || strings.HasSuffix(host, "."+d)) {
			return u.String(), ""
		}
	}
	return "", fmt.Sprintf("it points to %s, which is not one of the organisation's meeting servers", host)
}

// defang makes an address unclickable in clients that link bare
// addresses, keeping it readable.
func defang(raw string) string {
	s := msgconv.CleanName(raw)
	if utf8.RuneCountInString(s) > 500 {
		s = string([]rune(s)[:500]) + "…"
	}
	return strings.NewReplacer(":", "[:]", ".", "[.]", "@", "[at]").Replace(s)
}
