package presence

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

var now = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func TestToMatrixTable(t *testing.T) {
	tests := []struct {
		name     string
		in       sfb.Presence
		presence event.Presence
		status   string
	}{
		{"online", sfb.Presence{Availability: sfb.AvailabilityOnline}, event.PresenceOnline, ""},
		{"online with note", sfb.Presence{Availability: sfb.AvailabilityOnline, Note: "Working from Lyon"}, event.PresenceOnline, "Working from Lyon"},
		{"idle online", sfb.Presence{Availability: sfb.AvailabilityIdleOnline}, event.PresenceUnavailable, "Inactive"},
		{"busy", sfb.Presence{Availability: sfb.AvailabilityBusy}, event.PresenceUnavailable, "Busy"},
		{"idle busy", sfb.Presence{Availability: sfb.AvailabilityIdleBusy}, event.PresenceUnavailable, "Busy"},
		{"in a meeting", sfb.Presence{Availability: sfb.AvailabilityBusy, Activity: sfb.ActivityInAMeeting}, event.PresenceUnavailable, "In a meeting"},
		{"in a conference", sfb.Presence{Availability: sfb.AvailabilityBusy, Activity: sfb.ActivityInAConference}, event.PresenceUnavailable, "In a conference call"},
		{"on the phone", sfb.Presence{Availability: sfb.AvailabilityBusy, Activity: sfb.ActivityOnThePhone}, event.PresenceUnavailable, "In a call"},
		{"presenting", sfb.Presence{Availability: sfb.AvailabilityDoNotDisturb, Activity: sfb.ActivityPresenting}, event.PresenceUnavailable, "Presenting"},
		{"do not disturb", sfb.Presence{Availability: sfb.AvailabilityDoNotDisturb}, event.PresenceUnavailable, "Do not disturb"},
		{"urgent interruptions only", sfb.Presence{Availability: sfb.AvailabilityDoNotDisturb, Activity: sfb.ActivityUrgentInterruptionsOnly}, event.PresenceUnavailable, "Urgent interruptions only"},
		{"be right back", sfb.Presence{Availability: sfb.AvailabilityBeRightBack}, event.PresenceUnavailable, "Be right back"},
		{"away", sfb.Presence{Availability: sfb.AvailabilityAway}, event.PresenceUnavailable, "Away"},
		{"off work", sfb.Presence{Availability: sfb.AvailabilityAway, Activity: sfb.ActivityOffWork}, event.PresenceUnavailable, "Off work"},
		{"offline", sfb.Presence{Availability: sfb.AvailabilityOffline}, event.PresenceOffline, ""},
		{"offline off work", sfb.Presence{Availability: sfb.AvailabilityOffline, Activity: sfb.ActivityOffWork}, event.PresenceOffline, "Off work"},
		{"unknown", sfb.Presence{}, event.PresenceOffline, ""},
		{"unknown value", sfb.Presence{Availability: "Lurking", Note: "hi"}, event.PresenceOffline, "hi"},
		{"busy with note", sfb.Presence{Availability: sfb.AvailabilityBusy, Note: "Deadline Friday"}, event.PresenceUnavailable, "Busy · Deadline Friday"},
		{"out of office with end", sfb.Presence{Availability: sfb.AvailabilityAway, Note: "ignored", OutOfOffice: &sfb.OutOfOffice{Message: "Back Monday, ask Bob", Until: time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)}},
			event.PresenceUnavailable, "Away · Out of office until 3 Dec: Back Monday, ask Bob"},
		{"out of office next year", sfb.Presence{Availability: sfb.AvailabilityOffline, OutOfOffice: &sfb.OutOfOffice{Message: "Parental leave", Until: time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)}},
			event.PresenceOffline, "Out of office until 1 Mar 2027: Parental leave"},
		{"out of office without end or message", sfb.Presence{Availability: sfb.AvailabilityOnline, OutOfOffice: &sfb.OutOfOffice{}}, event.PresenceOnline, "Out of office"},
		{"localized activity text", sfb.Presence{Availability: sfb.AvailabilityBusy, Activity: "En réunion"}, event.PresenceUnavailable, "En réunion"},
		{"unknown activity token", sfb.Presence{Availability: sfb.AvailabilityBusy, Activity: "in-a-spaceship"}, event.PresenceUnavailable, "Busy"},
		{"multi-line note", sfb.Presence{Availability: sfb.AvailabilityOnline, Note: "line one\r\n\tline\x00 two  "}, event.PresenceOnline, "line one line two"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ToMatrix(tt.in, now)
			assert.Equal(t, MatrixState{Presence: tt.presence, StatusMsg: tt.status}, got)
		})
	}
}

func TestToMatrixKnowsEveryAvailability(t *testing.T) {
	for _, a := range []sfb.Availability{sfb.AvailabilityOnline, sfb.AvailabilityIdleOnline, sfb.AvailabilityBusy, sfb.AvailabilityIdleBusy,
		sfb.AvailabilityDoNotDisturb, sfb.AvailabilityBeRightBack, sfb.AvailabilityAway, sfb.AvailabilityOffline, sfb.AvailabilityUnknown} {
		assert.True(t, Known(a), "%q has a row", a)
	}
	assert.False(t, Known("Lurking"))
}

func TestToMatrixCutsLongNotes(t *testing.T) {
	note := strings.Repeat("word ", 200)
	got := ToMatrix(sfb.Presence{Availability: sfb.AvailabilityBusy, Note: note}, now)
	n := utf8.RuneCountInString(got.StatusMsg)
	assert.LessOrEqual(t, n, MaxStatusRunes, "cut to the limit")
	assert.Greater(t, n, MaxStatusRunes-10, "cut near the limit")
	assert.True(t, strings.HasPrefix(got.StatusMsg, "Busy · word word"))
	assert.True(t, strings.HasSuffix(got.StatusMsg, "word…"), "cut at a word boundary: %q", got.StatusMsg[len(got.StatusMsg)-20:])

	// One long word has no boundary: cut inside it, still valid UTF-8.
	long := strings.Repeat("é", 1000)
	got = ToMatrix(sfb.Presence{Availability: sfb.AvailabilityOnline, Note: long}, now)
	assert.Equal(t, MaxStatusRunes, utf8.RuneCountInString(got.StatusMsg))
	assert.True(t, utf8.ValidString(got.StatusMsg))

	got = ToMatrix(sfb.Presence{Availability: sfb.AvailabilityOnline, Note: "ok\xff\xfe"}, now)
	assert.Equal(t, "ok", got.StatusMsg, "invalid UTF-8 dropped")
}

func TestActivityLabelBoundsFreeText(t *testing.T) {
	label, ok := ActivityLabel(strings.Repeat("Sehr beschäftigt ", 20))
	require.True(t, ok)
	assert.LessOrEqual(t, utf8.RuneCountInString(label), maxActivityRunes)
	_, ok = ActivityLabel("in-a-spaceship")
	assert.False(t, ok, "an unknown token is reported")
}

func TestPublicationTable(t *testing.T) {
	tests := []struct {
		name      string
		presence  event.Presence
		status    string
		offlineAs sfb.Availability
		avail     sfb.Availability
		note      string
	}{
		{"online", event.PresenceOnline, "", sfb.AvailabilityAway, sfb.AvailabilityOnline, ""},
		{"unavailable", event.PresenceUnavailable, "", sfb.AvailabilityAway, sfb.AvailabilityAway, ""},
		{"offline as away", event.PresenceOffline, "", sfb.AvailabilityAway, sfb.AvailabilityAway, ""},
		{"offline as offline", event.PresenceOffline, "", sfb.AvailabilityOffline, sfb.AvailabilityOffline, ""},
		{"status becomes the note", event.PresenceOnline, "In Lyon\ntoday", sfb.AvailabilityAway, sfb.AvailabilityOnline, "In Lyon today"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, ok := Publication(tt.presence, tt.status, tt.offlineAs)
			require.True(t, ok)
			require.NotNil(t, pub.Availability)
			require.NotNil(t, pub.Note)
			assert.Equal(t, tt.avail, *pub.Availability)
			assert.Equal(t, tt.note, *pub.Note)
		})
	}
	_, ok := Publication("busy", "", sfb.AvailabilityAway)
	assert.False(t, ok, "an unknown Matrix presence publishes nothing")

	pub, _ := Publication(event.PresenceOnline, strings.Repeat("x", 2000), sfb.AvailabilityAway)
	assert.Equal(t, MaxNoteRunes, utf8.RuneCountInString(*pub.Note))
}
