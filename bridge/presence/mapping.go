// Package presence carries SfB presence to Matrix and back: the mapping
// between the two models, which login watches whom (Spread), and the
// coalescing, rate-limited, refreshing writer of ghost presence (Writer).
// It knows nothing of bridgev2: the connector feeds it and gives it the
// functions that reach SfB sessions and the homeserver.
package presence

import (
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// MatrixState is a ghost's presence as Matrix shows it.
type MatrixState struct {
	Presence  event.Presence
	StatusMsg string
}

// Limits of the texts the bridge writes. Matrix sets none for status_msg,
// but Element shows one line; SfB cuts personal notes longer than this.
const (
	MaxStatusRunes = 256
	MaxNoteRunes   = 500
	// maxActivityRunes bounds an activity the server sent as free text.
	maxActivityRunes = 64
)

// availabilityRow is one row of the SfB -> Matrix table.
type availabilityRow struct {
	presence event.Presence
	label    string
}

// toMatrix is the table of SfB availability to Matrix presence, and the
// label status_msg starts with. Matrix has three states; everything that
// means "not now" in SfB is unavailable, with the SfB word in the status so
// that an Element user reads what an SfB user would see. Unknown (and any
// value the bridge does not know) is offline without a label: the bridge
// never claims someone is there without SfB saying so.
var toMatrix = map[sfb.Availability]availabilityRow{
	sfb.AvailabilityOnline:       {event.PresenceOnline, ""},
	sfb.AvailabilityIdleOnline:   {event.PresenceUnavailable, "Inactive"},
	sfb.AvailabilityBusy:         {event.PresenceUnavailable, "Busy"},
	sfb.AvailabilityIdleBusy:     {event.PresenceUnavailable, "Busy"},
	sfb.AvailabilityDoNotDisturb: {event.PresenceUnavailable, "Do not disturb"},
	sfb.AvailabilityBeRightBack:  {event.PresenceUnavailable, "Be right back"},
	sfb.AvailabilityAway:         {event.PresenceUnavailable, "Away"},
	sfb.AvailabilityOffline:      {event.PresenceOffline, ""},
	sfb.AvailabilityUnknown:      {event.PresenceOffline, ""},
}

// activityLabels replace the availability's label for the well-known
// activity tokens, as SfB clients show them ("In a meeting" rather than
// "Busy").
var activityLabels = map[string]string{
	sfb.ActivityInAMeeting:              "In a meeting",
	sfb.ActivityInAConference:           "In a conference call",
	sfb.ActivityOnThePhone:              "In a call",
	sfb.ActivityPresenting:              "Presenting",
	sfb.ActivityUrgentInterruptionsOnly: "Urgent interruptions only",
	sfb.ActivityOffWork:                 "Off work",
}

// activityToken matches what looks like a protocol token rather than text
// a server localized for people: an unknown token is not shown.
var activityToken = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// Known reports whether the table has a row for a. An unknown value maps
// like AvailabilityUnknown; the caller logs it.
func Known(a sfb.Availability) bool {
	_, ok := toMatrix[a]
	return ok
}

// ActivityLabel is what status_msg says for an activity: the label of a
// well-known token, the server's own text when it sent free text, and
// empty for an unknown token (ok is false then).
func ActivityLabel(activity string) (label string, ok bool) {
	activity = strings.TrimSpace(activity)
	if activity == "" {
		return "", true
	}
	if l, known := activityLabels[activity]; known {
		return l, true
	}
	if activityToken.MatchString(activity) {
		return "", false
	}
	return truncate(cleanText(activity), maxActivityRunes), true
}

// ToMatrix maps an SfB presence to the ghost's Matrix presence:
//
//	availability    activity / note                presence     status_msg
//	Online          -                              online       (note)
//	IdleOnline      -                              unavailable  Inactive
//	Busy, IdleBusy  -                              unavailable  Busy
//	Busy            in-a-meeting                   unavailable  In a meeting
//	Busy            in-a-conference                unavailable  In a conference call
//	Busy            on-the-phone                   unavailable  In a call
//	Busy            presenting (or DND)            unavailable  Presenting
//	DoNotDisturb    -                              unavailable  Do not disturb
//	DoNotDisturb    urgent-interruptions-only      unavailable  Urgent interruptions only
//	BeRightBack     -                              unavailable  Be right back
//	Away            -                              unavailable  Away
//	Away, Offline   off-work                       (as avail.)  Off work
//	Offline         -                              offline      (note)
//	unknown value   -                              offline      (note)
//	any             out-of-office note             (as avail.)  <label> · Out of office until 3 Dec: <message>
//	any             personal note                  (as avail.)  <label> · <note>
//
// The out-of-office note replaces the personal note, as in SfB clients.
// An activity the server sent as free text replaces the label; an unknown
// token does not. Notes are put on one line and cut at MaxStatusRunes in
// all. now decides whether the out-of-office end shows its year.
func ToMatrix(p sfb.Presence, now time.Time) MatrixState {
	row, ok := toMatrix[p.Availability]
	if !ok {
		row = toMatrix[sfb.AvailabilityUnknown]
	}
	label := row.label
	if activity, _ := ActivityLabel(p.Activity); activity != "" {
		label = activity
	}
	note := cleanText(p.Note)
	if p.OutOfOffice != nil {
		note = outOfOffice(*p.OutOfOffice, now)
	}
	status := label
	switch {
	case status == "":
		status = note
	case note != "":
		status += " · " + note
	}
	return MatrixState{Presence: row.presence, StatusMsg: truncate(status, MaxStatusRunes)}
}

func outOfOffice(ooo sfb.OutOfOffice, now time.Time) string {
	s := "Out of office"
	if !ooo.Until.IsZero() {
		layout := "2 Jan"
		if ooo.Until.Year() != now.In(ooo.Until.Location()).Year() {
			layout = "2 Jan 2006"
		}
		s += " until " + ooo.Until.Format(layout)
	}
	if msg := cleanText(ooo.Message); msg != "" {
		s += ": " + msg
	}
	return s
}

// Publication maps a Matrix user's presence to what the bridge publishes
// as their SfB presence:
//
//	Matrix presence  SfB availability
//	online           Online
//	unavailable      Away (Element's idle; SfB shows the user as away)
//	offline          offlineAs: Away (default) or Offline
//	other values     nothing published (ok is false)
//
// status_msg becomes the personal note (one line, cut at MaxNoteRunes);
// an empty status_msg clears the note.
func Publication(presence event.Presence, statusMsg string, offlineAs sfb.Availability) (pub sfb.Publication, ok bool) {
	var avail sfb.Availability
	switch presence {
	case event.PresenceOnline:
		avail = sfb.AvailabilityOnline
	case event.PresenceUnavailable:
		avail = sfb.AvailabilityAway
	case event.PresenceOffline:
		avail = offlineAs
	default:
		return sfb.Publication{}, false
	}
	note := truncate(cleanText(statusMsg), MaxNoteRunes)
	return sfb.Publication{Availability: &avail, Note: &note}, true
}

// cleanText puts text on one line: control characters and runs of white
// space become one space, invalid UTF-8 is dropped.
func cleanText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "")
	}
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// truncate cuts s to at most max runes, at a word boundary when one is
// near, and marks the cut with an ellipsis.
func truncate(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	runes := []rune(s)[:max-1]
	cut := len(runes)
	for i := len(runes) - 1; i > len(runes)*3/4; i-- {
		if runes[i] == ' ' {
			cut = i
			break
		}
	}
	return strings.TrimRight(string(runes[:cut]), " ") + "…"
}
