package presence

import (
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// FuzzPresenceText holds the mapping to its promises for any text SfB or
// a Matrix client sends: a status_msg and a note are valid UTF-8, on one
// line, within their limits, and the presence is one of Matrix's three.
func FuzzPresenceText(f *testing.F) {
	f.Add("Busy", "in-a-meeting", "Deadline Friday", "Back Monday", int64(1796256000))
	f.Add("Lurking", "En réunion", "line\r\none\x00", "", int64(0))
	f.Add("", strings.Repeat("x", 300), strings.Repeat("mot ", 300), "\xff\xfe", int64(-1))
	f.Fuzz(func(t *testing.T, availability, activity, note, ooo string, until int64) {
		p := sfb.Presence{Availability: sfb.Availability(availability), Activity: activity, Note: note}
		if ooo != "" {
			p.OutOfOffice = &sfb.OutOfOffice{Message: ooo, Until: time.Unix(until, 0).UTC()}
		}
		got := ToMatrix(p, now)
		switch got.Presence {
		case event.PresenceOnline, event.PresenceUnavailable, event.PresenceOffline:
		default:
			t.Fatalf("presence %q", got.Presence)
		}
		checkLine(t, got.StatusMsg, MaxStatusRunes)
		if !Known(p.Availability) && got.Presence != event.PresenceOffline {
			t.Fatalf("unknown availability %q shown as %q", availability, got.Presence)
		}

		pub, ok := Publication(event.Presence(availability), note, sfb.AvailabilityAway)
		if ok {
			checkLine(t, *pub.Note, MaxNoteRunes)
		}
	})
}

func checkLine(t *testing.T, s string, max int) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("invalid UTF-8: %q", s)
	}
	if n := utf8.RuneCountInString(s); n > max {
		t.Fatalf("%d runes, limit %d", n, max)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\n' {
			t.Fatalf("control character in %q", s)
		}
	}
	if strings.TrimSpace(s) != s {
		t.Fatalf("untrimmed %q", s)
	}
}
