package sim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/ucwa/ucwaref"
)

// notModelled lists what the reference shows for a resource and the
// simulator leaves out, each with the reason. Keys are "prop:name",
// "link:rel" or "embedded:rel". A field missing from the simulator and not
// listed here fails the test.
var notModelled = map[string]map[string]string{
	"application": {
		"prop:etag":            "only MultiTabSupport.md shows an application etag; not simulated",
		"link:reportMyNetwork": "network reporting is not simulated (the transcripts of a real server omit it too)",
	},
	"me": {
		"prop:company": "directory attributes beyond name and address are not simulated", "prop:department": "directory attributes",
		"prop:homePhoneNumber": "no phones", "prop:mobilePhoneNumber": "no phones", "prop:otherPhoneNumber": "no phones",
		"prop:workPhoneNumber": "no phones", "prop:officeLocation": "directory attributes", "prop:title": "directory attributes",
	},
	"communication": {
		"prop:audioPreference": "no audio", "prop:conversationHistory": "no conversation history",
		"prop:lisLocation": "no location service", "prop:lisQueryResult": "no location service",
		"prop:phoneNumber": "no phones", "prop:publishEndpointLocation": "no location service",
		"prop:simultaneousRingNumberMatch": "no phones", "prop:videoBasedScreenSharing": "no screen sharing",
		"link:conversationLogs": "no conversation history", "link:mediaPolicies": "no audio/video",
		"link:mediaRelayAccessToken": "no audio/video", "link:missedItems": "no voicemail or missed items",
		"link:replayMessage": "not simulated", "link:startAudio": "no audio/video", "link:startAudioVideo": "no audio/video",
		"link:startAudioOnBehalfOfDelegator": "no delegation", "link:startAudioVideoOnBehalfOfDelegator": "no delegation",
		"link:startEmergencyCall": "no audio", "link:startPhoneAudio": "no phones", "link:startPhoneAudioOnBehalfOfDelegator": "no delegation",
		"link:startVideo": "no audio/video",
	},
	"conversation": {
		"prop:audienceMessaging": "online meetings only", "prop:audienceMute": "online meetings only",
		"link:attendees": "online meetings only", "link:leaders": "online meetings only", "link:lobby": "online meetings only",
		"link:disableAudienceMessaging": "online meetings only",
		"link:enableAudienceMessaging":  "online meetings only", "link:disableAudienceMuteLock": "online meetings only",
		"link:enableAudienceMuteLock": "online meetings only", "link:userAcknowledged": "not simulated",
	},
	"messagingInvitation": {
		"prop:customContent": "no custom content", "link:customContent": "no custom content",
		"link:derivedMessaging": "no derived conversations", "link:onBehalfOf": "no delegation",
		"embedded:startEmergencyCallInput": "no emergency calls",
	},
	"participantInvitation": {
		"link:message":                     "addParticipant (addParticipant_ref.md) takes no message",
		"embedded:from":                    "the sample is of an incoming one, which participantInvitation_ref.md says does not exist; the from link names the user",
		"embedded:startEmergencyCallInput": "no emergency calls",
	},
	"participant": {
		"prop:inLobby": "online meetings only", "prop:organizer": "online meetings only", "prop:role": "online meetings only",
		"prop:otherPhoneNumber": "no phones", "prop:workPhoneNumber": "no phones",
		"link:admit": "online meetings only", "link:demote": "online meetings only", "link:eject": "online meetings only",
		"link:promote": "online meetings only", "link:reject": "online meetings only",
		"link:participantApplicationSharing": "no application sharing", "link:participantAudio": "no audio",
		"link:participantDataCollaboration": "no data collaboration", "link:participantPanoramicVideo": "no video",
		"link:participantVideo": "no video",
	},
	"contact": {
		"prop:company": "directory attributes", "prop:department": "directory attributes", "prop:title": "directory attributes",
		"prop:homePhoneNumber": "no phones", "prop:mobilePhoneNumber": "no phones", "prop:otherPhoneNumber": "no phones",
		"prop:workPhoneNumber": "no phones", "prop:office": "directory attributes", "prop:sourceNetworkIconUrl": "same enterprise only",
		"prop:etag": "contacts are not cached by etag",
	},
	"myGroups": {
		"embedded:defaultGroup": "only roaming groups (group) are simulated", "embedded:distributionGroup": "no distribution groups",
		"embedded:pinnedGroup": "only roaming groups", "link:defaultGroup": "only roaming groups",
		"link:delegatesGroup": "no delegation", "link:delegatorsGroup": "no delegation",
		"link:distributionGroup": "no distribution groups", "link:myOrganizationGroup": "no organisation group",
		"link:pinnedGroup": "only roaming groups",
	},
	"group": {
		"link:subscribeToGroupPresence": "presence is subscribed per person (presenceSubscriptions), not per group",
	},
}

// resourceShape is the union of the fields of every sample of a resource.
type resourceShape struct {
	fields map[string]map[string]bool // "prop:x", "link:x", "embedded:x" -> JSON kinds
	where  map[string]string
}

func kind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64, json.Number:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

func (s *resourceShape) add(o map[string]any, where string) {
	if s.fields == nil {
		s.fields, s.where = map[string]map[string]bool{}, map[string]string{}
	}
	put := func(k string, v any) {
		if s.fields[k] == nil {
			s.fields[k] = map[string]bool{}
			s.where[k] = where
		}
		s.fields[k][kind(v)] = true
	}
	for k, v := range o {
		switch k {
		case "_links":
			links, _ := v.(map[string]any)
			for rel, l := range links {
				put("link:"+rel, l)
			}
		case "_embedded":
			em, _ := v.(map[string]any)
			for rel, e := range em {
				put("embedded:"+rel, e)
			}
		case "rel":
		default:
			// Property names that are random GUIDs (the PUT marker) vary.
			if len(k) == 36 && strings.Count(k, "-") == 4 {
				k = "<put-marker>"
			}
			put("prop:"+k, v)
		}
	}
}

// collect walks bodies like ucwaref does: resources anywhere, links and
// senders skipped.
func collect(v any, into map[string]*resourceShape, where string, linkPos bool) {
	switch x := v.(type) {
	case map[string]any:
		if rel, ok := x["rel"].(string); ok && !linkPos {
			if into[rel] == nil {
				into[rel] = &resourceShape{}
			}
			into[rel].add(x, where)
		}
		for k, c := range x {
			collect(c, into, where, k == "link" || k == "in" || k == "_links" || k == "sender" || (linkPos && !strings.HasPrefix(k, "_")))
		}
	case []any:
		for _, c := range x {
			collect(c, into, where, linkPos)
		}
	}
}

func TestConformanceWithReference(t *testing.T) {
	corpus := ucwaref.ForTest(t)

	e := newEnv(t, sim.Options{})
	runScenario(t, e)

	simShapes := map[string]*resourceShape{}
	var simEvents, simErrors resourceShape
	eventEntries := resourceShape{}
	for _, b := range e.bodies {
		var v any
		require.NoError(t, json.Unmarshal(b, &v))
		collect(v, simShapes, "simulator", false)
		o, _ := v.(map[string]any)
		if _, ok := o["code"]; ok {
			simErrors.add(o, "simulator")
		}
		if links, ok := o["_links"].(map[string]any); ok && (links["next"] != nil || links["resync"] != nil || links["resume"] != nil) {
			simEvents.add(o, "simulator")
			for _, ev := range flatten(t, o) {
				eventEntries.add(ev.raw, "simulator")
			}
		}
	}

	for _, rel := range []string{"application", "me", "people", "onlineMeetings", "communication", "conversation", "conversations",
		"messaging", "messagingInvitation", "message", "participant", "participantMessaging", "contact",
		"presenceSubscriptions", "presenceSubscription", "presenceSubscriptionMemberships", "presenceSubscriptionMembership",
		"contactPresence", "contactNote", "presence", "note", "myContacts", "myGroups", "group",
		"participantInvitation"} {
		t.Run(rel, func(t *testing.T) {
			var ref resourceShape
			for _, r := range corpus.Resources(rel) {
				ref.add(r.Object, fmt.Sprintf("%s:%d", r.File, r.Line))
			}
			require.NotEmpty(t, ref.fields, "reference has no %s", rel)
			got := simShapes[rel]
			require.NotNil(t, got, "simulator served no %s", rel)
			compareShapes(t, rel, ref, *got, notModelled[rel])
		})
	}

	t.Run("events", func(t *testing.T) {
		var ref, refEntries resourceShape
		for _, r := range corpus.Resources(ucwaref.EventsRel) {
			ref.add(r.Object, fmt.Sprintf("%s:%d", r.File, r.Line))
		}
		for _, ev := range corpus.Events() {
			refEntries.add(ev.Event, fmt.Sprintf("%s:%d", ev.File, ev.Line))
		}
		compareShapes(t, "events", ref, simEvents, map[string]string{
			"extra:link:resync": "EventChannelDetails.md describes the resync link in prose only",
			"extra:link:resume": "EventsInUCWA.md describes the resume link in prose only",
		})
		// The reference shows no resync or resume body; the simulator's
		// follow the prose of EventsInUCWA.md.
		assert.Subset(t, keys(ref.fields), []string{"link:self", "link:next", "prop:sender"})
		compareShapes(t, "event entry", refEntries, eventEntries, map[string]string{
			"embedded:*":        "embedded resources are compared per resource above",
			"extra:prop:reason": "EventChannelDetails.md: failed operations carry a reason block (prose only)",
		})
	})

	t.Run("error body", func(t *testing.T) {
		var ref resourceShape
		for _, tr := range corpus.Transcripts {
			for _, b := range tr.Bodies() {
				if o, ok := b.JSON.(map[string]any); ok && b.IsJSON() && o["code"] != nil && o["rel"] == nil {
					ref.add(o, tr.File)
				}
			}
		}
		require.NotEmpty(t, ref.fields)
		compareShapes(t, "error", ref, simErrors, map[string]string{
			"prop:debugInfo":  "optional; the simulator has nothing to debug",
			"prop:parameters": "only sent for 400 with invalid parameters",
		})
	})
}

func keys(m map[string]map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// compareShapes fails for fields of the reference the simulator omits
// (unless allowed), fields the simulator adds that the reference never
// shows, and fields whose JSON type differs.
func compareShapes(t *testing.T, rel string, ref, got resourceShape, allowed map[string]string) {
	t.Helper()
	for _, k := range keys(ref.fields) {
		if strings.HasPrefix(k, "embedded:") && allowed["embedded:*"] != "" {
			continue
		}
		kinds, ok := got.fields[k]
		if !ok {
			if allowed[k] == "" {
				t.Errorf("%s: the reference has %s (%s), the simulator does not", rel, k, ref.where[k])
			}
			continue
		}
		for kd := range kinds {
			assert.True(t, ref.fields[k][kd], "%s %s: simulator writes %s, reference %v (%s)", rel, k, kd, ref.fields[k], ref.where[k])
		}
	}
	for _, k := range keys(got.fields) {
		if _, ok := ref.fields[k]; !ok && allowed["extra:"+k] == "" && !(strings.HasPrefix(k, "embedded:") && allowed["embedded:*"] != "") {
			t.Errorf("%s: the simulator writes %s, which the reference never shows", rel, k)
		}
	}
	for k := range allowed {
		if _, ok := got.fields[k]; ok && !strings.HasPrefix(k, "extra:") {
			t.Errorf("%s: %s is allow-listed as not modelled but the simulator writes it", rel, k)
		}
	}
}

// runScenario makes the simulator produce every resource it serves.
func runScenario(t *testing.T, e *env) {
	ctx := context.Background()
	alice := e.signIn("alice@contoso.com", "alice-pw")
	alice.do("GET", alice.self, "", "")
	alice.do("GET", alice.self+"/me", "", "")
	alice.do("GET", alice.self+"/people", "", "")
	alice.do("GET", alice.self+"/communication", "", "")
	alice.do("GET", alice.self+"/people/bob@contoso.com", "", "")
	alice.makeMeAvailable("Plain", "Html")
	alice.do("POST", alice.self+"/me/makeMeAvailable", "application/json", "{}") // 409 error body
	alice.do("GET", alice.self+"/me", "", "")                                    // the links of an available user

	require.NoError(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{Text: "hi", HTML: "<b>hi</b>"}))
	evs := alice.await("invitation", is("messagingInvitation", "started"))
	inv := evs[len(evs)-1]
	alice.do("GET", inv.href, "", "")
	alice.do("GET", get(t, inv.embedded(), "_links", "from", "href").(string), "", "")
	require.Equal(t, http.StatusNoContent, alice.do("POST", get(t, inv.embedded(), "_links", "accept", "href").(string), "", "").status)
	alice.await("connected", is("messagingInvitation", "completed"))
	conv := get(t, inv.embedded(), "_links", "conversation", "href").(string)
	alice.do("GET", conv, "", "")
	alice.do("GET", conv+"/messaging", "", "")
	alice.do("GET", conv+"/participants", "", "")
	alice.do("GET", conv+"/participants/bob@contoso.com/messaging", "", "")
	alice.do("GET", alice.self+"/communication/conversations", "", "")
	require.NoError(t, e.sim.SetTyping(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", true))
	require.NoError(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{Text: "second", HTML: "<i>second</i>"}))
	evs = alice.await("message", is("message", "completed"))
	// message_ref.md: the resource's delivery status (Status_ref.md).
	assert.Equal(t, "Succeeded", evs[len(evs)-1].embedded()["status"], "incoming message")
	alice.do("GET", evs[len(evs)-1].href, "", "")
	r := alice.do("POST", conv+"/messaging/messages?operationId=op", "text/plain", "answer")
	evs = alice.await("sent", is("message", "completed"))
	assert.Equal(t, "Succeeded", evs[len(evs)-1].embedded()["status"], "delivered message")
	alice.do("GET", r.header.Get("Location"), "", "")
	require.NoError(t, e.sim.RejectMessages("sip:bob@contoso.com", true))
	alice.do("POST", conv+"/messaging/messages?operationId=op", "text/plain", "lost")
	evs = alice.await("failed", func(ev evt) bool { return ev.rel == "message" && ev.status == "Failure" })
	assert.Equal(t, "Failed", evs[len(evs)-1].embedded()["status"], "undelivered message")
	require.NoError(t, e.sim.RejectMessages("sip:bob@contoso.com", false))

	r = alice.do("POST", alice.self+"/communication/messagingInvitations", "application/json",
		`{"to":"sip:carol@contoso.com","operationId":"op2","_links":{"message":{"href":"data:text/plain,hello"}}}`)
	alice.await("outgoing", is("messagingInvitation", "completed"))
	alice.do("GET", r.header.Get("Location"), "", "")
	alice.do("POST", alice.self+"/communication/messagingInvitations", "application/json", `{"to":"sip:nobody@contoso.com"}`)
	alice.await("failed", is("messagingInvitation", "completed"))
	runConferenceScenario(t, e, alice, conv)
	runPresenceScenario(t, e, alice)
	e.sim.ExpireConversations("sip:alice@contoso.com")
	alice.await("deleted", is("conversation", "deleted"))
	alice.do("GET", alice.self+"/events?ack=1", "", "") // resync
	e.sim.DeleteApplications("sip:alice@contoso.com")
	alice.do("GET", alice.self, "", "") // 404 ApplicationNotFound
}

// runConferenceScenario makes the simulator produce the resources of
// multi-party conversations: alice's 1:1 with bob escalates, bob starts a
// conference with alice and carol.
func runConferenceScenario(t *testing.T, e *env, alice *client, conv string) {
	ctx := context.Background()
	r := alice.do("POST", conv+"/addParticipant", "application/json", `{"to":"sip:carol@contoso.com","operationId":"add"}`)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	alice.await("added", is("participantInvitation", "completed"))
	alice.do("GET", r.header.Get("Location"), "", "")
	alice.do("GET", conv, "", "")
	alice.do("GET", conv+"/participants", "", "")
	thread, err := e.sim.StartGroup(ctx, "sip:bob@contoso.com", []sfb.URI{"sip:alice@contoso.com", "sip:carol@contoso.com"}, "Plan", "")
	require.NoError(t, err)
	evs := alice.await("invitation", is("messagingInvitation", "started"))
	inv := evs[len(evs)-1]
	alice.do("GET", inv.href, "", "")
	require.Equal(t, http.StatusNoContent, alice.do("POST", get(t, inv.embedded(), "_links", "accept", "href").(string), "", "").status)
	alice.await("joined", is("messagingInvitation", "completed"))
	gconv := get(t, inv.embedded(), "_links", "conversation", "href").(string)
	alice.do("GET", gconv+"/participants", "", "")
	alice.do("GET", gconv+"/participants/carol@contoso.com", "", "")
	require.NoError(t, e.sim.SendGroupMessage(ctx, thread, "sip:bob@contoso.com", sfb.Message{Text: "all", HTML: "<b>all</b>"}))
	evs = alice.await("message", is("message", "completed"))
	alice.do("GET", evs[len(evs)-1].href, "", "")
	require.NoError(t, e.sim.LeaveGroup(ctx, thread, "sip:carol@contoso.com"))
	alice.await("left", is("participant", "deleted"))
}

// runPresenceScenario makes the simulator produce its presence resources.
func runPresenceScenario(t *testing.T, e *env, alice *client) {
	require.NoError(t, e.sim.SetContacts("sip:alice@contoso.com", []sim.ContactGroup{{Name: "Team", Members: []sfb.URI{"sip:bob@contoso.com"}}}))
	require.NoError(t, e.sim.SetPresence("sip:bob@contoso.com", sim.Presence{Availability: "Busy", Activity: "in-a-meeting", Note: "Heads down"}))
	st, sub := alice.subscribe(15, "sip:bob@contoso.com")
	require.Equal(t, http.StatusCreated, st)
	alice.do("GET", alice.people()+"/presenceSubscriptions", "", "")
	alice.do("GET", get(t, sub, "_links", "self", "href").(string), "", "")
	alice.do("POST", get(t, sub, "_links", "self", "href").(string)+"?duration=15", "", "")
	alice.do("POST", get(t, sub, "_links", "addToPresenceSubscription", "href").(string), "application/json", `{"contactUris":["sip:carol@contoso.com"]}`)
	alice.do("GET", get(t, sub, "_links", "memberships", "href").(string), "", "")
	alice.await("presence", is("contactNote", "updated"))
	alice.do("GET", alice.people()+"/bob@contoso.com/presence", "", "")
	alice.do("GET", alice.people()+"/bob@contoso.com/note", "", "")
	alice.do("POST", alice.self+"/me/presence", "application/json", `{"availability":"Away"}`)
	alice.do("POST", alice.self+"/me/note", "application/json", `{"message":"In Element"}`)
	alice.do("GET", alice.self+"/me/presence", "", "")
	alice.do("GET", alice.self+"/me/note", "", "")
	alice.do("GET", alice.people()+"/contacts", "", "")
	alice.do("GET", alice.people()+"/groups", "", "")
	alice.do("GET", alice.people()+"/groups/1", "", "")
	alice.do("GET", alice.people()+"/groups/1/contacts", "", "")
	alice.do("POST", alice.people()+"/presenceSubscriptions", "application/json", `{"duration":5,"uris":["sip:bob@contoso.com"]}`) // 400
	e.sim.DropPresenceSubscriptions("sip:alice@contoso.com")
	alice.await("dropped", is("presenceSubscription", "deleted"))
}
