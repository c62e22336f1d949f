package ucwa

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

const groupConvHref = "https://lyncweb.contoso.com/ucwa/oauth/v1/applications/1/communication/conversations/g1"

// groupBatch is an event batch of the conference conversation g1, in the
// simulator's shapes.
func groupBatch(events string) string {
	return `{"_links":{"next":{"href":"/e?ack=2"}},"sender":[{"rel":"conversation","href":"` + groupConvHref + `","events":[` + events + `]}]}`
}

var groupSeeds = []string{
	`{"link":{"rel":"participant","href":"` + groupConvHref + `/participants/dave@contoso.com","title":"Dave"},"type":"added"}`,
	`{"link":{"rel":"participant","href":"` + groupConvHref + `/participants/bob@contoso.com","title":"Bob"},"type":"deleted"}`,
	`{"link":{"rel":"conversation","href":"` + groupConvHref + `"},"type":"updated","_embedded":{"conversation":{"threadId":"t1","subject":"New","_links":{"onlineMeeting":{"href":"` + groupConvHref + `/onlineMeeting"}}}}}`,
	`{"link":{"rel":"participantInvitation","href":"/ucwa/oauth/v1/applications/1/communication/participantInvitations/p1"},"type":"completed","status":"Failure","reason":{"code":"RemoteFailure","subcode":"Declined"},"_embedded":{"participantInvitation":{"direction":"Outgoing","state":"Failed","to":"sip:dave@contoso.com","_links":{"conversation":{"href":"` + groupConvHref + `"}}}}}`,
	`{"link":{"rel":"participantInvitation","href":"/p2"},"type":"completed","status":"Failure","_embedded":{"participantInvitation":{"to":"not a uri","_links":{"conversation":{"href":"` + groupConvHref + `"}}}}}`,
	`{"link":{"rel":"message","href":"` + groupConvHref + `/messaging/messages/1"},"type":"completed","status":"Success","_embedded":{"message":{"direction":"Incoming","_links":{"participant":{"href":"` + groupConvHref + `/participants/me@contoso.com"},"plainMessage":{"href":"data:,mine"}}}}}`,
	`{"link":{"rel":"participant","href":"` + groupConvHref + `/participants/bob@contoso.com"},"in":{"rel":"typingParticipants","href":"` + groupConvHref + `/messaging/typingParticipants"},"type":"added"}`,
}

// newGroupSession is an offline session in the conference g1 (thread t1)
// with bob, recording what it reports.
func newGroupSession(t *testing.T) (*session, func() []sfb.Event) {
	s := newOfflineSession(t)
	var mu sync.Mutex
	var got []sfb.Event
	s.handler = func(_ context.Context, e sfb.Event) {
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}
	s.convs[groupConvHref] = &conv{href: groupConvHref, threadID: "t1", group: true, joined: true, state: "Connected",
		members: map[sfb.URI]bool{s.self: true, "sip:bob@contoso.com": true}}
	return s, func() []sfb.Event {
		mu.Lock()
		defer mu.Unlock()
		return append([]sfb.Event(nil), got...)
	}
}

// TestGroupEventsReported: each group event of the batch becomes what the
// bridge expects, and the bad one (an invitation to no valid address)
// drops nothing else.
func TestGroupEventsReported(t *testing.T) {
	s, got := newGroupSession(t)
	var evs Events
	require.NoError(t, json.Unmarshal([]byte(groupBatch(strings.Join(groupSeeds, ","))), &evs))
	s.processBatch(evs, "test")
	conv := sfb.Conversation{ThreadID: "t1", Group: true}
	renamed := sfb.Conversation{ThreadID: "t1", Group: true, Subject: "New"}
	want := []sfb.Event{
		sfb.ParticipantJoined{Conversation: conv, Person: sfb.Person{URI: "sip:dave@contoso.com", DisplayName: "Dave"}},
		sfb.ParticipantLeft{Conversation: conv, URI: "sip:bob@contoso.com"},
		sfb.SubjectChanged{Conversation: renamed, Subject: "New"},
		// dave joined already: the failed invitation is not a decline.
	}
	all := got()
	require.GreaterOrEqual(t, len(all), 5, "%+v", all)
	assert.Equal(t, want, all[:3])
	m, ok := all[3].(sfb.MessageReceived)
	require.True(t, ok, "%T", all[3])
	assert.Equal(t, s.self, m.From.URI, "a message of the local participant is the user's own, sent elsewhere")
	assert.Equal(t, renamed, m.Conversation)
	tc, ok := all[4].(sfb.TypingChanged)
	require.True(t, ok, "%T", all[4])
	assert.Equal(t, sfb.TypingChanged{Conversation: renamed, From: "sip:bob@contoso.com", Typing: true}, tc)
}

// FuzzGroupEvents: events of a multi-party conversation, whatever the
// server sends, never panic, and what they report names the conversation
// and valid addresses.
func FuzzGroupEvents(f *testing.F) {
	for _, seed := range groupSeeds {
		f.Add([]byte(groupBatch(seed)))
	}
	f.Add([]byte(groupBatch(strings.Join(groupSeeds, ","))))
	f.Fuzz(func(t *testing.T, data []byte) {
		var evs Events
		if err := json.Unmarshal(data, &evs); err != nil {
			return
		}
		s, got := newGroupSession(t)
		s.processBatch(evs, "fuzz")
		for _, e := range got() {
			switch e := e.(type) {
			case sfb.ParticipantJoined:
				assert.True(t, e.Conversation.Group && e.Conversation.ThreadID != "", "%+v", e)
				_, err := sfb.ParseURI(string(e.Person.URI))
				assert.NoError(t, err)
			case sfb.ParticipantLeft:
				assert.True(t, e.Conversation.Group && e.Conversation.ThreadID != "", "%+v", e)
				_, err := sfb.ParseURI(string(e.URI))
				assert.NoError(t, err)
			}
		}
	})
}
