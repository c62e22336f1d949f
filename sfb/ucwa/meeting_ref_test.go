package ucwa

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/ucwa/ucwaref"
)

// TestMeetingReferenceBodies decodes every meeting and call body of the
// reference with the client's types and decodeMeeting, and checks what
// the bridge would show.
func TestMeetingReferenceBodies(t *testing.T) {
	corpus := loadReference(t)
	each := func(rel string, min int, check func(t *testing.T, r ucwaref.Resource)) {
		t.Run(rel, func(t *testing.T) {
			rs := corpus.Resources(rel)
			require.GreaterOrEqual(t, len(rs), min, "samples of %s", rel)
			for _, r := range rs {
				check(t, r)
			}
		})
	}
	where := func(r ucwaref.Resource) string { return fmt.Sprintf("%s:%d %s", r.File, r.Line, r.Path) }

	each("onlineMeetingInvitation", 1, func(t *testing.T, r ucwaref.Resource) {
		var inv OnlineMeetingInvitation
		require.NoError(t, json.Unmarshal(r.JSON, &inv), where(r))
		m, problems, err := decodeMeeting(&inv, nil, nil)
		require.NoError(t, err, where(r))
		assert.Empty(t, problems, where(r))
		// The URI as the sample writes it: only the address's case may
		// change, never the parameters (the conference ID).
		assert.True(t, strings.EqualFold(string(m.URI), inv.OnlineMeetingURI), "%s: %s", where(r), m.URI)
		_, params, _ := strings.Cut(inv.OnlineMeetingURI, ";")
		assert.True(t, strings.HasSuffix(string(m.URI), params), where(r))
		assert.Equal(t, inv.Subject, m.Subject, where(r))
		assert.Equal(t, inv.ThreadID, cleanThreadID(inv.ThreadID), where(r))
		if inv.Direction == "Incoming" {
			assert.True(t, organizerFlag(inv.Embedded), "the sample's from participant is the organizer: %s", where(r))
			var from Participant
			ok, err := decodeEmbedded(inv.Embedded, "from", &from)
			require.NoError(t, err)
			assert.True(t, ok, where(r))
			assert.NotEmpty(t, inv.Links.Href("decline"), where(r))
		}
	})

	joinURLs := 0
	meeting := func(t *testing.T, r ucwaref.Resource) {
		var om OnlineMeeting
		require.NoError(t, json.Unmarshal(r.JSON, &om), where(r))
		m, problems, err := decodeMeeting(nil, &om, nil)
		if strings.Contains(om.OnlineMeetingURI, " : ") {
			// onlineMeeting_ref.md's JSON sample has blanks inside the
			// URI ("opaque=app : conf : focus"), a typo the client
			// rightly refuses: a meeting is known by its URI.
			assert.Error(t, err, where(r))
			return
		}
		require.NoError(t, err, where(r))
		assert.Contains(t, string(m.URI), ";gruu;opaque=app:conf:focus:id:", where(r))
		assert.NotEmpty(t, m.Subject, where(r))
		if m.JoinURL != "" {
			joinURLs++
			assert.True(t, strings.HasPrefix(m.JoinURL, "https://meet.contoso.com/"), "%s: %s", where(r), m.JoinURL)
		} else {
			// Only a join URL the sample itself mangled is left out.
			assert.NotEmpty(t, problems, where(r))
		}
		if om.ConferenceID != "" {
			assert.Equal(t, "12983487", m.ConferenceID, where(r))
		}
		if om.OrganizerURI != "" {
			assert.NotEmpty(t, m.Organizer.URI, where(r))
		}
	}
	each("onlineMeeting", 1, meeting)
	each("myOnlineMeeting", 3, meeting)
	each("myAssignedOnlineMeeting", 1, meeting)
	assert.GreaterOrEqual(t, joinURLs, 4, "join URLs read from the samples")

	each("phoneDialInInformation", 1, func(t *testing.T, r ucwaref.Resource) {
		var d PhoneDialInInformation
		require.NoError(t, json.Unmarshal(r.JSON, &d), where(r))
		m, _, err := decodeMeeting(&OnlineMeetingInvitation{OnlineMeetingURI: "sip:bmauldin@contoso.com;gruu;opaque=app:conf:focus:id:IB88RLLY"}, nil, &d)
		require.NoError(t, err, where(r))
		assert.Equal(t, "12983487", m.ConferenceID, where(r))
		assert.Equal(t, []sfb.DialInNumber{{Region: "Redmond", Number: "+14255550001"}}, m.DialIn, where(r))
	})
	each("dialInRegion", 1, func(t *testing.T, r ucwaref.Resource) {
		var d DialInRegion
		require.NoError(t, json.Unmarshal(r.JSON, &d), where(r))
		n, ok := phoneNumber(d.Number)
		assert.True(t, ok, "%s: %q", where(r), d.Number)
		assert.Equal(t, "+14255550001", n, where(r))
	})
	each("audioVideoInvitation", 1, func(t *testing.T, r ucwaref.Resource) {
		var inv AudioVideoInvitation
		require.NoError(t, json.Unmarshal(r.JSON, &inv), where(r))
		assert.Equal(t, "Incoming", inv.Direction, where(r))
		assert.NotEmpty(t, inv.Links.Href("decline"), where(r))
		assert.NotEmpty(t, inv.Links.Href("from"), where(r))
		assert.False(t, offersVideo(inv.Links.Href("mediaOffer")), "the sample's offer is a placeholder: %s", where(r))
	})

	t.Run("events", func(t *testing.T) {
		seen := map[string]int{}
		for _, e := range corpus.Events() {
			var ev Event
			require.NoError(t, json.Unmarshal(e.JSON, &ev), "%s:%d", e.File, e.Line)
			switch ev.Link.Rel {
			case "onlineMeetingInvitation", "audioVideoInvitation":
				seen[ev.Link.Rel+" "+ev.Type]++
				assert.Equal(t, "communication", e.SenderRel, "%s:%d", e.File, e.Line)
			case "onlineMeeting":
				seen[ev.Link.Rel+" "+ev.Type]++
				assert.Equal(t, "conversation", e.SenderRel, "%s:%d", e.File, e.Line)
			}
		}
		for _, k := range []string{"onlineMeetingInvitation started", "onlineMeetingInvitation updated",
			"audioVideoInvitation started", "audioVideoInvitation updated", "onlineMeeting added", "onlineMeeting updated"} {
			assert.Positive(t, seen[k], "the reference's %s event", k)
		}
	})
}
