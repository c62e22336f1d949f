package ucwa

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/ucwa/ucwaref"
)

func loadReference(t *testing.T) *ucwaref.Corpus {
	t.Helper()
	return ucwaref.ForTest(t)
}

// TestConformance decodes every sample of the resources the client uses
// with the client's own types and checks the fields the bridge relies on.
func TestConformance(t *testing.T) {
	corpus := loadReference(t)
	type stats struct{ decoded, repaired, failed int }
	report := map[string]*stats{}
	count := func(rel string, r ucwaref.Resource, err error) {
		st := report[rel]
		if st == nil {
			st = &stats{}
			report[rel] = st
		}
		if err != nil {
			st.failed++
			t.Errorf("%s:%d %s (%s): %v", r.File, r.Line, rel, r.Path, err)
			return
		}
		st.decoded++
		if r.Repaired() {
			st.repaired++
		}
	}
	checks := []struct {
		rel   string
		min   int
		check func(r ucwaref.Resource) error
	}{
		{"application", 5, func(r ucwaref.Resource) error {
			var a Application
			if err := json.Unmarshal(r.JSON, &a); err != nil {
				return err
			}
			if a.Links.Href("self") == "" {
				return fmt.Errorf("no self link")
			}
			// Elided samples may leave out events; the full ones have it.
			if a.Links.Href("events") == "" && !r.Body.Elided {
				return fmt.Errorf("no events link")
			}
			return nil
		}},
		{"me", 5, func(r ucwaref.Resource) error {
			var m Me
			if err := json.Unmarshal(r.JSON, &m); err != nil {
				return err
			}
			if m.URI != "" {
				if _, err := sfb.ParseURI(m.URI); err != nil {
					return err
				}
			}
			return nil
		}},
		{"communication", 5, func(r ucwaref.Resource) error {
			var c Communication
			if err := json.Unmarshal(r.JSON, &c); err != nil {
				return err
			}
			if c.Links.Href("startMessaging") == "" && len(c.Links) > 2 {
				return fmt.Errorf("no startMessaging link among %d links", len(c.Links))
			}
			return nil
		}},
		{"conversation", 5, func(r ucwaref.Resource) error {
			var c Conversation
			if err := json.Unmarshal(r.JSON, &c); err != nil {
				return err
			}
			if c.Self() == "" {
				return fmt.Errorf("no self link")
			}
			return nil
		}},
		{"messaging", 4, func(r ucwaref.Resource) error {
			var m Messaging
			if err := json.Unmarshal(r.JSON, &m); err != nil {
				return err
			}
			if m.State == "Connected" && m.Links.Href("sendMessage") == "" {
				return fmt.Errorf("connected messaging without sendMessage")
			}
			return nil
		}},
		{"messagingInvitation", 5, func(r ucwaref.Resource) error {
			var inv MessagingInvitation
			if err := json.Unmarshal(r.JSON, &inv); err != nil {
				return err
			}
			if inv.Direction != "Incoming" && inv.Direction != "Outgoing" {
				return fmt.Errorf("direction %q", inv.Direction)
			}
			if inv.Direction == "Incoming" {
				// The sender: embedded participant or a from link.
				var p Participant
				ok, err := decodeEmbedded(inv.Embedded, "from", &p)
				if err != nil {
					return err
				}
				if !ok && inv.Links.Href("from") == "" {
					return fmt.Errorf("incoming invitation without from")
				}
				if ok {
					if _, err := sfb.ParseURI(p.URI); err != nil {
						return fmt.Errorf("from: %w", err)
					}
				}
				if m := inv.Links.Href("message"); strings.HasPrefix(m, "data:") && !strings.Contains(m, "encoded") {
					if _, err := ParseDataURI(m); err != nil {
						return fmt.Errorf("first message: %w", err)
					}
				}
			}
			return nil
		}},
		{"message", 3, func(r ucwaref.Resource) error {
			var m Message
			if err := json.Unmarshal(r.JSON, &m); err != nil {
				return err
			}
			if m.Direction != "Incoming" && m.Direction != "Outgoing" {
				return fmt.Errorf("direction %q", m.Direction)
			}
			if m.Self() == "" {
				return fmt.Errorf("no self link (the message ID)")
			}
			if m.Direction == "Incoming" {
				plain, html := m.Links.Href("plainMessage"), m.Links.Href("htmlMessage")
				if plain == "" && html == "" {
					return fmt.Errorf("incoming message without text")
				}
				if !strings.Contains(plain+html, "ncoded") {
					if _, _, err := decodeMessageText(plain, html); err != nil {
						return err
					}
				}
			}
			return nil
		}},
		{"participant", 10, func(r ucwaref.Resource) error {
			var p Participant
			if err := json.Unmarshal(r.JSON, &p); err != nil {
				return err
			}
			if p.URI == "" {
				return fmt.Errorf("no uri")
			}
			if _, err := sfb.ParseURI(p.URI); err != nil {
				return err
			}
			return nil
		}},
		{"contact", 10, func(r ucwaref.Resource) error {
			var c Contact
			if err := json.Unmarshal(r.JSON, &c); err != nil {
				return err
			}
			if c.URI != "" {
				_, err := sfb.ParseURI(c.URI)
				// GetAContactData.md shows "sip:lenea@contoso.com@contoso.com",
				// a typo the client rightly rejects.
				if err != nil && !(r.File == "GetAContactData.md" && strings.Count(c.URI, "@") == 2) {
					return err
				}
			}
			return nil
		}},
		{"people", 5, func(r ucwaref.Resource) error {
			var p Resource
			return json.Unmarshal(r.JSON, &p)
		}},
		{"search", 1, func(r ucwaref.Resource) error {
			var s Search
			return json.Unmarshal(r.JSON, &s)
		}},
		{"presenceSubscription", 3, func(r ucwaref.Resource) error {
			var ps PresenceSubscription
			if err := json.Unmarshal(r.JSON, &ps); err != nil {
				return err
			}
			if ps.Self() == "" || ps.ID == "" {
				return fmt.Errorf("no self link or id")
			}
			// A group's subscription (SubscribeToThePresenceOfAGroupOfContacts.md)
			// has no addToPresenceSubscription: Watch then creates another.
			if ps.Links.Href("memberships") == "" {
				return fmt.Errorf("no memberships link")
			}
			return nil
		}},
		{"presenceSubscriptionMemberships", 1, func(r ucwaref.Resource) error {
			var list Resource
			if err := json.Unmarshal(r.JSON, &list); err != nil {
				return err
			}
			var ms []Resource
			if _, err := decodeEmbedded(list.Embedded, "presenceSubscriptionMembership", &ms); err != nil {
				return err
			}
			for _, m := range ms {
				if m.Links.Href("contact") == "" || m.Self() == "" {
					return fmt.Errorf("membership without contact or self link")
				}
			}
			return nil
		}},
		{"contactPresence", 1, func(r ucwaref.Resource) error {
			var cp ContactPresence
			if err := json.Unmarshal(r.JSON, &cp); err != nil {
				return err
			}
			p, err := applyPresenceBody(sfb.Presence{}, "contactPresence", r.JSON)
			if err != nil {
				return err
			}
			if p.Availability == sfb.AvailabilityUnknown || len(p.warnings) > 0 {
				return fmt.Errorf("availability %q mapped with warnings %v", cp.Availability, p.warnings)
			}
			return nil
		}},
		{"presence", 1, func(r ucwaref.Resource) error {
			var cp ContactPresence
			if err := json.Unmarshal(r.JSON, &cp); err != nil {
				return err
			}
			if availabilityOf(cp.Availability) == sfb.AvailabilityUnknown {
				return fmt.Errorf("availability %q", cp.Availability)
			}
			return nil
		}},
		{"contactNote", 1, func(r ucwaref.Resource) error {
			p, err := applyPresenceBody(sfb.Presence{}, "contactNote", r.JSON)
			if err != nil {
				return err
			}
			if p.Note == "" && p.OutOfOffice == nil || len(p.warnings) > 0 {
				return fmt.Errorf("note lost or mapped with warnings %v", p.warnings)
			}
			return nil
		}},
		{"note", 1, func(r ucwaref.Resource) error {
			var n ContactNote
			if err := json.Unmarshal(r.JSON, &n); err != nil {
				return err
			}
			if n.Type != "Personal" && n.Type != "OutOfOffice" {
				return fmt.Errorf("note type %q", n.Type)
			}
			return nil
		}},
		{"myContacts", 1, func(r ucwaref.Resource) error {
			var list Resource
			if err := json.Unmarshal(r.JSON, &list); err != nil {
				return err
			}
			var cs []Contact
			if _, err := decodeEmbedded(list.Embedded, "contact", &cs); err != nil {
				return err
			}
			for _, c := range cs {
				if _, err := sfb.ParseURI(c.URI); err != nil {
					return err
				}
			}
			return nil
		}},
		{ucwaref.EventsRel, 40, func(r ucwaref.Resource) error {
			var e Events
			if err := json.Unmarshal(r.JSON, &e); err != nil {
				return err
			}
			if e.Links.Href("next") == "" && e.Links.Href("resync") == "" && e.Links.Href("resume") == "" {
				return fmt.Errorf("events without next, resync or resume link")
			}
			for _, s := range e.Sender {
				if s.Rel == "" {
					return fmt.Errorf("sender without rel")
				}
				for _, ev := range s.Events {
					if r.Body.Elided && ev.Link.Rel == "" && ev.Type == "" {
						continue // an event the sample elided ("{ ... }")
					}
					if ev.Link.Rel == "" || ev.Type == "" {
						return fmt.Errorf("event without link rel or type")
					}
				}
			}
			return nil
		}},
	}
	for _, c := range checks {
		res := corpus.Resources(c.rel)
		for _, r := range res {
			count(c.rel, r, c.check(r))
		}
		st := report[c.rel]
		require.NotNil(t, st, "no %s samples at all", c.rel)
		assert.GreaterOrEqual(t, st.decoded, c.min, "decoded %s samples", c.rel)
	}

	// Every event entry decodes, and the ones the session acts on carry
	// what it needs.
	var typing, inviteEvents, presenceEvents int
	for _, e := range corpus.Events() {
		var ev Event
		if err := json.Unmarshal(e.JSON, &ev); err != nil {
			t.Errorf("%s:%d event: %v", e.File, e.Line, err)
			continue
		}
		if ev.In != nil && ev.In.Rel == "typingParticipants" {
			typing++
			assert.Contains(t, []string{"added", "deleted"}, ev.Type, "%s:%d typing event", e.File, e.Line)
			assert.Equal(t, "participant", ev.Link.Rel)
		}
		if (ev.Link.Rel == "contactPresence" || ev.Link.Rel == "contactNote") && ev.Type == "updated" {
			// Updated events carry no values: the session fetches the
			// link, and learns whose it is from the contact it is in.
			presenceEvents++
			assert.NotEmpty(t, ev.Link.Href, "%s:%d presence event link", e.File, e.Line)
			if assert.NotNil(t, ev.In, "%s:%d presence event without in", e.File, e.Line) {
				assert.Equal(t, "contact", ev.In.Rel)
			}
			assert.Empty(t, ev.Embedded, "%s:%d presence event with values", e.File, e.Line)
		}
		if ev.Link.Rel == "messagingInvitation" {
			inviteEvents++
			assert.Equal(t, "communication", e.SenderRel, "%s:%d invitation sender", e.File, e.Line)
		}
	}
	assert.GreaterOrEqual(t, typing, 2)
	assert.GreaterOrEqual(t, inviteEvents, 5)
	assert.GreaterOrEqual(t, presenceEvents, 3)

	rels := make([]string, 0, len(report))
	for rel := range report {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	for _, rel := range rels {
		st := report[rel]
		t.Logf("%-20s decoded %3d (after quirk repairs %3d), failed %d", rel, st.decoded, st.repaired, st.failed)
	}
	t.Logf("reference quirks: %v", corpus.Quirks.Map())
	for _, f := range corpus.Failures {
		t.Logf("not parseable: %s", f)
	}
}

// TestReferenceIncomingIMFlow replays ReceiveAnIM.md's event bodies through
// the session's decoders: the first message comes from the invitation.
func TestReferenceIncomingIMFlow(t *testing.T) {
	corpus := loadReference(t)
	var found bool
	for _, r := range corpus.Resources("messagingInvitation") {
		if r.File != "ReceiveAnIM.md" {
			continue
		}
		var inv MessagingInvitation
		require.NoError(t, json.Unmarshal(r.JSON, &inv))
		msg, _, err := decodeMessageText(inv.Links.Href("message"), "")
		require.NoError(t, err)
		assert.Equal(t, "Hi Tosh", msg.Text)
		var from Participant
		ok, err := decodeEmbedded(inv.Embedded, "from", &from)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, "sip:lenea@contoso.com", from.URI)
		found = true
	}
	assert.True(t, found)
}
