package sim

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pidginsipe/recorded"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/presence"
)

// pidginFixture is the request pidgin-sipe 1.25 sent as recorded message
// prefix (internal/pidginsipe/recorded).
func pidginFixture(t *testing.T, prefix string) *sip.Request {
	t.Helper()
	msgs := recorded.Messages(t, prefix+"-client-*.sip")
	require.Len(t, msgs, 1, prefix)
	msg, err := sip.ParseMessage(msgs[0].Raw)
	require.NoError(t, err, msgs[0].Name)
	return msg.(*sip.Request)
}

// The presence requests of a recorded pidgin-sipe session, in order, as
// the simulator answers them. In-dialog requests carry the tags of the
// recording's server, which the dialogs take here.
func TestSIPPresencePidginFixtures(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	require.NoError(t, s.SetContacts("sip:alice@contoso.com", []ContactGroup{{Name: "~", Members: []sfb.URI{"sip:bob@contoso.com"}}}))
	require.NoError(t, s.SetPresence("sip:bob@contoso.com", Presence{Availability: "Busy", Note: "In the lab"}))
	ep, _ := s.testEndpoint(t, "sip:alice@contoso.com")
	// recordedTag gives the dialog a new request made the tag the
	// recording's server gave it.
	recordedTag := func(req *sip.Request, tag string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for sub := range ep.subs {
			if sub.callID == req.CallID().Value() {
				sub.localTag = tag
			}
		}
	}
	subscribe := func(prefix string) (*sip.Request, sipAnswer) {
		req := pidginFixture(t, prefix)
		a := s.testSubscribe(ep, req)
		require.Equal(t, 200, a.status, prefix)
		return req, a
	}

	// 007: roaming contacts.
	req, a := subscribe("007")
	recordedTag(req, "83F62AAF")
	l, err := presence.ParseContactList(a.body)
	require.NoError(t, err)
	require.Len(t, l.Contacts, 1)
	assert.Equal(t, "bob@contoso.com", l.Contacts[0].URI)

	// 009: the one-off provisioning query.
	_, a = subscribe("009")
	assert.Equal(t, "terminated;expires=0", headerValue(a.headers, "Subscription-State"))

	// 011: roaming self.
	req, a = subscribe("011")
	recordedTag(req, "34CC74EF")
	_, err = presence.ParseRoamingSelf(a.body)
	require.NoError(t, err)

	// 013: the batched presence subscription to bob, piggybacked.
	req, a = subscribe("013")
	recordedTag(req, "B56F3F4B")
	n := answerNotify(t, a)
	bob := docOf(n, "sip:bob@contoso.com")
	assert.Equal(t, presence.AvailabilityBusy, stateOf(t, bob).Availability)
	note, _ := noteOf(bob)
	assert.Equal(t, "In the lab", note)

	// 017: carol added in the same dialog, with <context/>.
	_, a = subscribe("017")
	n = answerNotify(t, a)
	assert.NotNil(t, docOf(n, "sip:carol@contoso.com"))
	assert.Equal(t, 1, s.SIPPresenceWatchers("sip:carol@contoso.com"))
	assert.Equal(t, 1, s.SIPPresenceWatchers("sip:bob@contoso.com"), "the dialog keeps bob")

	// 019, 021: a group and carol in it.
	a = s.sipService(ep, pidginFixture(t, "019"))
	require.Equal(t, 200, a.status)
	assert.Contains(t, string(a.body), "<m:groupID>2</m:groupID>")
	require.Equal(t, 200, s.sipService(ep, pidginFixture(t, "021")).status)
	s.mu.Lock()
	groups := s.users["sip:alice@contoso.com"].st.groups
	s.mu.Unlock()
	require.Len(t, groups, 2)
	assert.Equal(t, []sfb.URI{"sip:carol@contoso.com"}, groups[1].Members)

	// 024: carol again, without the sip: scheme.
	_, a = subscribe("024")
	assert.NotNil(t, docOf(answerNotify(t, a), "sip:carol@contoso.com"))

	// 045: the initial publication (user and machine state, Away).
	a = s.sipService(ep, pidginFixture(t, "045"))
	require.Equal(t, 200, a.status, string(a.body))
	p, err := s.GetPresence("sip:alice@contoso.com")
	require.NoError(t, err)
	assert.Equal(t, "Away", p.Availability)

	// 047, 049, 051: signing out ends the subscriptions.
	for _, prefix := range []string{"047", "049", "051"} {
		_, a = subscribe(prefix)
		assert.True(t, strings.HasPrefix(headerValue(a.headers, "Subscription-State"), "terminated"), prefix)
	}
	assert.Equal(t, 0, s.SIPPresenceWatchers("sip:bob@contoso.com"))
	s.mu.Lock()
	assert.Empty(t, ep.subs)
	s.mu.Unlock()
}
