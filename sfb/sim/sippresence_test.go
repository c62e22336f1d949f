package sim

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/presence"
)

// fakePeer is the connection of a registered endpoint: it records what the
// server sends and answers NOTIFYs with status.
type fakePeer struct {
	mu     sync.Mutex
	sent   []*sip.Request
	status int
}

func (p *fakePeer) Do(_ context.Context, req *sip.Request) (*sip.Response, error) {
	p.mu.Lock()
	p.sent = append(p.sent, req)
	status := p.status
	p.mu.Unlock()
	if status == 0 {
		status = 200
	}
	return sip.NewResponseFromRequest(req, status, "", nil), nil
}

func (p *fakePeer) Send(msg sip.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent = append(p.sent, msg.(*sip.Request))
	return nil
}

func (p *fakePeer) Via() *sip.ViaHeader { return testVia() }

func testVia() *sip.ViaHeader {
	v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TLS", Host: "127.0.0.1", Port: 5061, Params: sip.NewParams()}
	v.Params.Add("branch", sip.GenerateBranch())
	return v
}

func (p *fakePeer) requests() []*sip.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*sip.Request(nil), p.sent...)
}

// waitFor returns the first request sent after the first skip that
// matches, waiting for it.
func (p *fakePeer) waitFor(t *testing.T, match func(*sip.Request) bool) *sip.Request {
	t.Helper()
	var found *sip.Request
	require.Eventually(t, func() bool {
		for _, r := range p.requests() {
			if match(r) {
				found = r
				return true
			}
		}
		return false
	}, 5*time.Second, time.Millisecond)
	return found
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testSubscribe is sipSubscribe followed by what the front end does once
// the answer is sent.
func (s *Server) testSubscribe(ep *sipPresenceEP, req *sip.Request) sipAnswer {
	a := s.sipSubscribe(ep, req)
	if a.after != nil {
		a.after()
	}
	return a
}

func newPresenceServer(t *testing.T, opts Options) (*Server, *testClock) {
	t.Helper()
	clk := &testClock{t: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)}
	if opts.Users == nil {
		opts.Users = []User{
			{URI: "sip:alice@contoso.com", DisplayName: "Alice Aaling", Password: "a"},
			{URI: "sip:bob@contoso.com", DisplayName: "Bob Meston", Password: "b"},
			{URI: "sip:carol@contoso.com", DisplayName: "Carol Giorgi", Password: "c"},
		}
	}
	opts.Now = clk.Now
	opts.SweepInterval = time.Hour
	opts.Logger = zerolog.Nop()
	s, err := New(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, clk
}

func (s *Server) testEndpoint(t *testing.T, uri sfb.URI) (*sipPresenceEP, *fakePeer) {
	t.Helper()
	peer := &fakePeer{}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[uri]
	require.NotNil(t, u)
	return s.sipEndpointUp(u, "0a1b2c3d4e", peer), peer
}

// parseSIP reads a message written as pidgin-sipe writes it, with "\n"
// line ends made "\r\n" and Content-Length computed.
func parseSIP(t *testing.T, head, body string) *sip.Request {
	t.Helper()
	raw := strings.ReplaceAll(strings.TrimLeft(head, "\n"), "\n", "\r\n") + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	msg, err := sip.ParseMessage([]byte(raw))
	require.NoError(t, err)
	return msg.(*sip.Request)
}

// pidginBatch is the body of pidgin-sipe's sipe_subscribe_presence_batched_to
// for OCS 2007 and later.
func pidginBatch(self string, resources ...string) string {
	var b strings.Builder
	for _, r := range resources {
		fmt.Fprintf(&b, "<resource uri=\"%s\"/>\n", r)
	}
	return "<batchSub xmlns=\"http://schemas.microsoft.com/2006/01/sip/batch-subscribe\" uri=\"" + self + "\" name=\"\">\n" +
		"<action name=\"subscribe\" id=\"63792024\">\n" +
		"<adhocList>\n" + b.String() + "</adhocList>\n" +
		"<categoryList xmlns=\"http://schemas.microsoft.com/2006/09/sip/categorylist\">\n" +
		"<category name=\"calendarData\"/>\n<category name=\"contactCard\"/>\n<category name=\"note\"/>\n<category name=\"state\"/>\n" +
		"</categoryList>\n</action>\n</batchSub>"
}

// pidginSubscribe is pidgin-sipe's batched presence SUBSCRIBE (headers of
// sipe_subscribe_presence_batched_to and sip_transport_request).
func pidginSubscribe(t *testing.T, callID, toTag string, extra string, body string) *sip.Request {
	to := "<sip:alice@contoso.com>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	return parseSIP(t, `
SUBSCRIBE sip:alice@contoso.com SIP/2.0
Via: SIP/2.0/TLS 192.0.2.10:50123;branch=z9hG4bK`+callID+`
From: <sip:alice@contoso.com>;tag=8f2c1e7a;epid=0a1b2c3d4e
To: `+to+`
Max-Forwards: 70
CSeq: 7 SUBSCRIBE
User-Agent: Purple/2.14.10 Sipe/1.25.0 (linux-gnu/x86_64)
Call-ID: `+callID+`
Require: adhoclist, categoryList
Supported: eventlist
Accept:  application/rlmi+xml, multipart/related, text/xml+msrtc.pidf, application/msrtc-event-categories+xml, application/xpidf+xml, application/pidf+xml
Supported: ms-piggyback-first-notify
Supported: ms-benotify
Proxy-Require: ms-benotify
Event: presence
Content-Type: application/msrtc-adrl-categorylist+xml
Contact: <sip:alice@contoso.com;opaque=user:epid:abcd;gruu>
`+extra, body)
}

func answerNotify(t *testing.T, a sipAnswer) presence.Notify {
	t.Helper()
	require.Equal(t, 200, a.status)
	ct := headerValue(a.headers, "Content-Type")
	n, err := presence.ParseNotify(ct, a.body)
	require.NoError(t, err)
	return n
}

func headerValue(hs []sip.Header, name string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name(), name) {
			return h.Value()
		}
	}
	return ""
}

func requestNotify(t *testing.T, r *sip.Request) presence.Notify {
	t.Helper()
	n, err := presence.ParseNotify(r.ContentType().Value(), r.Body())
	require.NoError(t, err)
	return n
}

func docOf(n presence.Notify, uri string) *presence.Categories {
	for i := range n.Documents {
		if n.Documents[i].URI == uri {
			return &n.Documents[i]
		}
	}
	return nil
}

func stateOf(t *testing.T, doc *presence.Categories) *presence.State {
	t.Helper()
	require.NotNil(t, doc)
	for _, c := range doc.Categories {
		if c.Name == "state" && c.State != nil {
			return c.State
		}
	}
	t.Fatalf("no state category for %s", doc.URI)
	return nil
}

func noteOf(doc *presence.Categories) (string, bool) {
	for _, c := range doc.Categories {
		if c.Name == "note" && c.Note != nil {
			return c.Note.Text, true
		}
	}
	return "", false
}

func TestSIPPresenceBatchSubscribePiggybacksFirstNotify(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	require.NoError(t, s.SetPresence("sip:bob@contoso.com", Presence{Availability: "Busy", Activity: sfb.ActivityInAMeeting, Note: "Budget review"}))
	ep, peer := s.testEndpoint(t, "sip:alice@contoso.com")

	req := pidginSubscribe(t, "call-1", "", "", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com", "sip:carol@contoso.com", "sip:nobody@contoso.com"))
	a := s.sipSubscribe(ep, req)
	require.Equal(t, 200, a.status)
	require.NotNil(t, a.after)
	a.after()
	assert.NotEmpty(t, headerValue(a.headers, "ms-piggyback-cseq"), "pidgin-sipe reads a 200 as a notification only with ms-piggyback-cseq")
	assert.Equal(t, "active;expires=21600", headerValue(a.headers, "subscription-state"))
	tag, _ := req.To().Params.Get("tag")
	assert.NotEmpty(t, tag, "the 200 carries the server's tag, the dialog's")

	n := answerNotify(t, a)
	require.NotNil(t, n.List)
	states := map[string]string{}
	for _, r := range n.List.Resources {
		states[r.URI] = r.State + "/" + r.Reason
	}
	assert.Equal(t, map[string]string{
		"sip:bob@contoso.com":    "active/",
		"sip:carol@contoso.com":  "active/",
		"sip:nobody@contoso.com": "terminated/noresource",
	}, states)
	bob := docOf(n, "sip:bob@contoso.com")
	st := stateOf(t, bob)
	assert.Equal(t, presence.AvailabilityBusy, st.Availability)
	assert.Equal(t, sfb.ActivityInAMeeting, st.Activity)
	note, _ := noteOf(bob)
	assert.Equal(t, "Budget review", note)
	assert.Equal(t, presence.AvailabilityOnline, stateOf(t, docOf(n, "sip:carol@contoso.com")).Availability)
	assert.Empty(t, peer.requests(), "the first notification rides on the 200: nothing else is sent")

	s.mu.Lock()
	assert.Len(t, s.sipPres.watchers["sip:bob@contoso.com"], 1)
	assert.Len(t, s.sipPres.watchers["sip:carol@contoso.com"], 1)
	s.mu.Unlock()
}

func TestSIPPresenceSubscribeWithoutPiggybackGetsNotifyAfter200(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	ep, peer := s.testEndpoint(t, "sip:alice@contoso.com")
	req := pidginSubscribe(t, "call-2", "", "", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com"))
	for req.RemoveHeader("Supported") {
	}
	req.AppendHeader(sip.NewHeader("Supported", "eventlist"))
	a := s.sipSubscribe(ep, req)
	require.Equal(t, 200, a.status)
	assert.Empty(t, a.body)
	require.NotNil(t, a.after)
	a.after()
	r := peer.waitFor(t, func(r *sip.Request) bool { return r.Method == sip.NOTIFY })
	n := requestNotify(t, r)
	assert.Equal(t, presence.AvailabilityOnline, stateOf(t, docOf(n, "sip:bob@contoso.com")).Availability)
	tag, _ := r.From().Params.Get("tag")
	localTag, _ := req.To().Params.Get("tag")
	assert.Equal(t, localTag, tag, "the NOTIFY is in the dialog the 200 made")
	toTag, _ := r.To().Params.Get("tag")
	assert.Equal(t, "8f2c1e7a", toTag)
	assert.Equal(t, "call-2", r.CallID().Value())
	assert.Equal(t, "sip:alice@contoso.com;opaque=user:epid:abcd;gruu", r.Recipient.String(), "sent to the subscriber's Contact")
}

// Every change of a watched person reaches the SIP watcher, whoever made
// it: the control API, a UCWA application publishing, a SIP endpoint
// publishing.
func TestSIPPresenceWatcherNotifiedOfEveryChange(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	ep, peer := s.testEndpoint(t, "sip:alice@contoso.com")
	require.Equal(t, 200, s.testSubscribe(ep, pidginSubscribe(t, "call-3", "", "", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com"))).status)

	lastBob := func(since int) *presence.Categories {
		var doc *presence.Categories
		require.Eventually(t, func() bool {
			reqs := peer.requests()
			for _, r := range reqs[min(since, len(reqs)):] {
				if r.Method == sipBENOTIFY {
					if d := docOf(requestNotify(t, r), "sip:bob@contoso.com"); d != nil {
						doc = d
					}
				}
			}
			return doc != nil
		}, 5*time.Second, time.Millisecond)
		return doc
	}

	// The control API.
	require.NoError(t, s.SetPresence("sip:bob@contoso.com", Presence{Availability: "DoNotDisturb"}))
	assert.Equal(t, presence.AvailabilityDoNotDisturb, stateOf(t, lastBob(0)).Availability)

	// A UCWA application publishing (me/presence, me/note).
	n := len(peer.requests())
	s.mu.Lock()
	s.publish(s.users["sip:bob@contoso.com"], "BeRightBack")
	s.mu.Unlock()
	assert.Equal(t, presence.AvailabilityBeRightBack, stateOf(t, lastBob(n)).Availability)

	// A SIP endpoint of Bob publishing.
	n = len(peer.requests())
	bobEP, _ := s.testEndpoint(t, "sip:bob@contoso.com")
	a := s.sipService(bobEP, pidginPublish(t, "sip:bob@contoso.com", userStatePub(6500, 0)+notePub("Back at 3", 0)))
	require.Equal(t, 200, a.status, string(a.body))
	doc := lastBob(n)
	assert.Equal(t, presence.AvailabilityBusy, stateOf(t, doc).Availability)
	note, ok := noteOf(doc)
	require.True(t, ok)
	assert.Equal(t, "Back at 3", note)
	r := peer.requests()[len(peer.requests())-1]
	assert.Equal(t, "BENOTIFY", string(r.CSeq().MethodName), "ms-benotify clients get BENOTIFY")
	require.NotNil(t, r.Via(), "a BENOTIFY, sent without a transaction, carries its Via")
}

// A change costs what its watchers cost: endpoints that do not watch the
// person are not touched.
func TestSIPPresenceChangeReachesOnlyWatchers(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	users := s.GenerateUsers(300, "contoso.com")
	peers := make([]*fakePeer, len(users))
	for i, u := range users {
		ep, peer := s.testEndpoint(t, u.URI)
		peers[i] = peer
		target := "sip:carol@contoso.com"
		if i%3 == 0 {
			target = "sip:bob@contoso.com"
		}
		req := pidginSubscribe(t, fmt.Sprintf("call-w%d", i), "", "", pidginBatch(string(u.URI), target))
		req.From().Address.User = strings.TrimPrefix(strings.Split(string(u.URI), "@")[0], "sip:")
		require.Equal(t, 200, s.testSubscribe(ep, req).status)
	}
	require.NoError(t, s.SetPresence("sip:bob@contoso.com", Presence{Availability: "Away"}))
	for i, p := range peers {
		if i%3 == 0 {
			p.waitFor(t, func(r *sip.Request) bool { return r.Method == sipBENOTIFY })
		}
	}
	s.mu.Lock()
	assert.Len(t, s.sipPres.watchers["sip:bob@contoso.com"], 100)
	s.mu.Unlock()
	for i, p := range peers {
		if i%3 != 0 {
			assert.Empty(t, p.requests(), "endpoint %d does not watch Bob", i)
		}
	}
}

func TestSIPPresenceSubscriptionQuota(t *testing.T) {
	s, _ := newPresenceServer(t, Options{MaxCategorySubscriptions: 8})
	ep, _ := s.testEndpoint(t, "sip:alice@contoso.com")
	extra := s.GenerateUsers(3, "contoso.com")
	a := s.testSubscribe(ep, pidginSubscribe(t, "call-q", "", "", pidginBatch("sip:alice@contoso.com",
		"sip:bob@contoso.com", "sip:carol@contoso.com", string(extra[0].URI), string(extra[1].URI))))
	n := answerNotify(t, a)
	var active, refused []string
	for _, r := range n.List.Resources {
		switch {
		case r.State == presence.InstanceActive:
			active = append(active, r.URI)
		case r.Reason == reasonQuotaExceeded:
			refused = append(refused, r.URI)
		}
	}
	assert.Equal(t, []string{"sip:bob@contoso.com", "sip:carol@contoso.com"}, active, "4 categories each: 2 people fill a quota of 8")
	assert.Equal(t, []string{string(extra[0].URI), string(extra[1].URI)}, refused)
	assert.Len(t, n.Documents, 2, "no categories of the people refused")

	// Unsubscribing frees the quota.
	unsub := strings.Replace(pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com"), `name="subscribe"`, `name="unsubscribe"`, 1)
	s.mu.Lock()
	var sub *sipSub
	for x := range ep.subs {
		sub = x
	}
	s.mu.Unlock()
	require.Equal(t, 200, s.testSubscribe(ep, pidginSubscribe(t, "call-q", sub.localTag, "", unsub)).status)
	n = answerNotify(t, s.testSubscribe(ep, pidginSubscribe(t, "call-q", sub.localTag, "", pidginBatch("sip:alice@contoso.com", string(extra[0].URI)))))
	require.Len(t, n.List.Resources, 1)
	assert.Equal(t, presence.InstanceActive, n.List.Resources[0].State)
}

// pidginPublish is pidgin-sipe's SERVICE with a category publication
// (send_presence_publish).
func pidginPublish(t *testing.T, self, publications string) *sip.Request {
	user := strings.TrimPrefix(self, "sip:")
	body := `<publish xmlns="http://schemas.microsoft.com/2006/09/sip/rich-presence"><publications uri="` + self + `">` + publications + `</publications></publish>`
	return parseSIP(t, `
SERVICE `+self+` SIP/2.0
Via: SIP/2.0/TLS 192.0.2.10:50123;branch=z9hG4bKpub
From: <`+self+`>;tag=77aa;epid=0a1b2c3d4e
To: <`+self+`>
Max-Forwards: 70
CSeq: 9 SERVICE
Call-ID: pub-`+user+`
Contact: <`+self+`;opaque=user:epid:abcd;gruu>
Content-Type: application/msrtc-category-publish+xml
`, body)
}

// userStatePub and machineStatePub are pidgin-sipe's
// SIPE_PUB_XML_STATE_USER and SIPE_PUB_XML_STATE_MACHINE.
func userStatePub(avail int, version uint32) string {
	return statePub(userStateInstance, "static", "userState", true, avail, version)
}

func machineStatePub(avail int, version uint32) string {
	return statePub(926460663, "endpoint", "machineState", false, avail, version)
}

func statePub(instance uint32, expireType, typ string, manual bool, avail int, version uint32) string {
	var b strings.Builder
	for _, container := range []int{2, 3} {
		fmt.Fprintf(&b, `<publication categoryName="state" instance="%d" container="%d" version="%d" expireType="%s">`+
			`<state xmlns="http://schemas.microsoft.com/2006/09/sip/state" manual="%t" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="%s">`+
			`<availability>%d</availability><endpointLocation/></state></publication>`, instance, container, version, expireType, manual, typ, avail)
	}
	return b.String()
}

// notePub is pidgin-sipe's SIPE_PUB_XML_NOTE for the personal note in
// container 200.
func notePub(text string, version uint32) string {
	return fmt.Sprintf(`<publication categoryName="note" instance="0" container="200" version="%d" expireType="static">`+
		`<note xmlns="http://schemas.microsoft.com/2006/09/sip/note"><body type="personal" uri="">%s</body></note></publication>`, version, text)
}

func TestSIPPresencePublishVersions(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	ep, _ := s.testEndpoint(t, "sip:alice@contoso.com")

	a := s.sipService(ep, pidginPublish(t, "sip:alice@contoso.com", userStatePub(6500, 0)))
	require.Equal(t, 200, a.status)
	assert.Equal(t, presence.ContentTypeRoamingSelf, headerValue(a.headers, "Content-Type"))
	self, err := presence.ParseRoamingSelf(a.body)
	require.NoError(t, err)
	versions := map[int]uint32{}
	for _, c := range self.Categories.Categories {
		if c.Name == "state" && c.Instance != nil && *c.Instance == userStateInstance {
			versions[c.Container] = c.Version
		}
	}
	assert.Equal(t, map[int]uint32{2: 1, 3: 1}, versions, "the 200 tells the new versions")
	p, err := s.GetPresence("sip:alice@contoso.com")
	require.NoError(t, err)
	assert.Equal(t, "Busy", p.Availability)

	// The same version again is stale: 409 with the current versions,
	// and nothing changes.
	a = s.sipService(ep, pidginPublish(t, "sip:alice@contoso.com", userStatePub(9500, 0)))
	require.Equal(t, 409, a.status)
	assert.Equal(t, presence.ContentTypeFault, headerValue(a.headers, "Content-Type"))
	f, err := presence.ParseFault(a.body)
	require.NoError(t, err)
	assert.Equal(t, presence.FaultWrongDelta, f.Code)
	assert.Equal(t, []presence.FaultOperation{{Index: 1, Version: 0, CurVersion: 1}, {Index: 2, Version: 0, CurVersion: 1}}, f.Operations)
	p, _ = s.GetPresence("sip:alice@contoso.com")
	assert.Equal(t, "Busy", p.Availability)

	// A UCWA application (or the control API) changing the state writes
	// the shared instance: the SIP client's version 1 is stale now.
	require.NoError(t, s.SetPresence("sip:alice@contoso.com", Presence{Availability: "Away"}))
	a = s.sipService(ep, pidginPublish(t, "sip:alice@contoso.com", userStatePub(3500, 1)))
	require.Equal(t, 409, a.status)
	f, err = presence.ParseFault(a.body)
	require.NoError(t, err)
	assert.Equal(t, uint32(2), f.Operations[0].CurVersion)

	// Republished with the versions the fault gave, as pidgin-sipe does.
	a = s.sipService(ep, pidginPublish(t, "sip:alice@contoso.com", userStatePub(3500, 2)))
	require.Equal(t, 200, a.status)
	p, _ = s.GetPresence("sip:alice@contoso.com")
	assert.Equal(t, "Online", p.Availability)
}

func TestSIPPresencePublishFollowsMachineStateAndEndpoint(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	ep, _ := s.testEndpoint(t, "sip:alice@contoso.com")
	require.Equal(t, 200, s.sipService(ep, pidginPublish(t, "sip:alice@contoso.com", machineStatePub(3500, 0)+userStatePub(3500, 0))).status)
	p, _ := s.GetPresence("sip:alice@contoso.com")
	assert.Equal(t, "Online", p.Availability)

	// The computer goes idle, then away.
	require.Equal(t, 200, s.sipService(ep, pidginPublish(t, "sip:alice@contoso.com", machineStatePub(5000, 1))).status)
	p, _ = s.GetPresence("sip:alice@contoso.com")
	assert.Equal(t, "IdleOnline", p.Availability)
	require.Equal(t, 200, s.sipService(ep, pidginPublish(t, "sip:alice@contoso.com", machineStatePub(15500, 2))).status)
	p, _ = s.GetPresence("sip:alice@contoso.com")
	assert.Equal(t, "Away", p.Availability)

	// The endpoint signs out: its states go with it and, with no other
	// endpoint, Alice is offline.
	s.mu.Lock()
	s.sipEndpointDown(ep)
	s.mu.Unlock()
	p, _ = s.GetPresence("sip:alice@contoso.com")
	assert.Equal(t, "Offline", p.Availability)
}

func TestSIPPresencePublishRefusesOtherUser(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	ep, _ := s.testEndpoint(t, "sip:alice@contoso.com")
	a := s.sipService(ep, pidginPublish(t, "sip:bob@contoso.com", userStatePub(6500, 0)))
	assert.Equal(t, 403, a.status)
	p, _ := s.GetPresence("sip:bob@contoso.com")
	assert.Equal(t, "Online", p.Availability)
}

func TestSIPPresenceSubscriptionLifecycle(t *testing.T) {
	s, clk := newPresenceServer(t, Options{})
	ep, peer := s.testEndpoint(t, "sip:alice@contoso.com")
	req := pidginSubscribe(t, "call-l", "", "Expires: 1200\n", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com"))
	a := s.testSubscribe(ep, req)
	require.Equal(t, 200, a.status)
	assert.Equal(t, "1200", headerValue(a.headers, "Expires"))
	tag, _ := req.To().Params.Get("tag")

	// Refreshed in its dialog before it ends.
	clk.Advance(1000 * time.Second)
	s.Sweep()
	a = s.testSubscribe(ep, pidginSubscribe(t, "call-l", tag, "Expires: 1200\n", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com")))
	require.Equal(t, 200, a.status)
	clk.Advance(1000 * time.Second)
	s.Sweep()
	assert.Equal(t, 1, s.SIPPresenceWatchers("sip:bob@contoso.com"), "the refresh moved the expiry")

	// Not refreshed: it ends with a NOTIFY saying so.
	clk.Advance(300 * time.Second)
	s.Sweep()
	assert.Equal(t, 0, s.SIPPresenceWatchers("sip:bob@contoso.com"))
	r := peer.waitFor(t, func(r *sip.Request) bool { return r.Method == sip.NOTIFY })
	assert.Equal(t, "terminated;reason=timeout", r.GetHeader("subscription-state").Value())

	// Its dialog is gone.
	a = s.testSubscribe(ep, pidginSubscribe(t, "call-l", tag, "", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com")))
	assert.Equal(t, 481, a.status)
}

func TestSIPPresenceUnsubscribeAndEndpointDown(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	ep, _ := s.testEndpoint(t, "sip:alice@contoso.com")
	req := pidginSubscribe(t, "call-u", "", "", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com"))
	require.Equal(t, 200, s.testSubscribe(ep, req).status)
	tag, _ := req.To().Params.Get("tag")
	a := s.testSubscribe(ep, pidginSubscribe(t, "call-u", tag, "Expires: 0\n", ""))
	require.Equal(t, 200, a.status)
	assert.Equal(t, "terminated;expires=0", headerValue(a.headers, "subscription-state"))
	assert.Equal(t, 0, s.SIPPresenceWatchers("sip:bob@contoso.com"))

	require.Equal(t, 200, s.testSubscribe(ep, pidginSubscribe(t, "call-u2", "", "", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com"))).status)
	assert.Equal(t, 1, s.SIPPresenceWatchers("sip:bob@contoso.com"))
	s.mu.Lock()
	s.sipEndpointDown(ep)
	s.mu.Unlock()
	assert.Equal(t, 0, s.SIPPresenceWatchers("sip:bob@contoso.com"), "an endpoint's subscriptions end with it")
	s.mu.Lock()
	assert.Zero(t, s.sipPres.users["sip:alice@contoso.com"].categorySubs)
	assert.Zero(t, s.sipPres.expiry.Len())
	s.mu.Unlock()
}

func TestSIPPresenceNotify481EndsSubscription(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	ep, peer := s.testEndpoint(t, "sip:alice@contoso.com")
	req := pidginSubscribe(t, "call-481", "", "", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com"))
	for req.RemoveHeader("Supported") {
	}
	a := s.sipSubscribe(ep, req)
	peer.mu.Lock()
	peer.status = 481
	peer.mu.Unlock()
	a.after()
	require.Eventually(t, func() bool { return s.SIPPresenceWatchers("sip:bob@contoso.com") == 0 }, 5*time.Second, time.Millisecond)
}

// pidginSelfSubscribe is pidgin-sipe's sipe_subscribe_self for event.
func pidginSelfSubscribe(t *testing.T, event, accept, extra, body string) *sip.Request {
	return parseSIP(t, `
SUBSCRIBE sip:alice@contoso.com SIP/2.0
Via: SIP/2.0/TLS 192.0.2.10:50123;branch=z9hG4bK`+event+`
From: <sip:alice@contoso.com>;tag=99ee;epid=0a1b2c3d4e
To: <sip:alice@contoso.com>
Max-Forwards: 70
CSeq: 4 SUBSCRIBE
Call-ID: self-`+event+`
Event: `+event+`
Accept: `+accept+`
Supported: com.microsoft.autoextend
Supported: ms-benotify
Proxy-Require: ms-benotify
Supported: ms-piggyback-first-notify
`+extra+`Contact: <sip:alice@contoso.com;opaque=user:epid:abcd;gruu>
`, body)
}

func TestSIPPresenceRoamingContacts(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	require.NoError(t, s.SetContacts("sip:alice@contoso.com", []ContactGroup{{Name: "Team", Members: []sfb.URI{"sip:bob@contoso.com"}}}))
	ep, peer := s.testEndpoint(t, "sip:alice@contoso.com")
	a := s.testSubscribe(ep, pidginSelfSubscribe(t, presence.EventRoamingContacts, presence.ContentTypeRoamingContacts, "Supported: ms-ucs\n", ""))
	require.Equal(t, 200, a.status)
	assert.Equal(t, presence.ContentTypeRoamingContacts, headerValue(a.headers, "Content-Type"))
	l, err := presence.ParseContactList(a.body)
	require.NoError(t, err)
	assert.Empty(t, l.UCSMode, "a contact list on the server, not migrated to the Unified Contact Store")
	assert.Equal(t, []presence.Group{{ID: "1", Name: "Team"}}, l.Groups)
	require.Len(t, l.Contacts, 1)
	assert.Equal(t, "bob@contoso.com", strings.TrimPrefix(l.Contacts[0].URI, "sip:"))
	assert.Equal(t, []string{"1"}, l.Contacts[0].Groups)

	require.NoError(t, s.SetContacts("sip:alice@contoso.com", []ContactGroup{{Name: "Team", Members: []sfb.URI{"sip:bob@contoso.com", "sip:carol@contoso.com"}}}))
	r := peer.waitFor(t, func(r *sip.Request) bool { return eventOf(r) == presence.EventRoamingContacts })
	l, err = presence.ParseContactList(r.Body())
	require.NoError(t, err)
	assert.Len(t, l.Contacts, 2)
}

func TestSIPPresenceRoamingSelf(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	ep, peer := s.testEndpoint(t, "sip:alice@contoso.com")
	// pidgin-sipe's sipe_subscribe_roaming_self.
	a := s.testSubscribe(ep, pidginSelfSubscribe(t, presence.EventRoamingSelf, presence.ContentTypeRoamingSelf,
		"Content-Type: application/vnd-microsoft-roaming-self+xml\n",
		`<roamingList xmlns="http://schemas.microsoft.com/2006/09/sip/roaming-self"><roaming type="categories"/><roaming type="containers"/><roaming type="subscribers"/></roamingList>`))
	require.Equal(t, 200, a.status)
	self, err := presence.ParseRoamingSelf(a.body)
	require.NoError(t, err)
	assert.Equal(t, presence.AvailabilityOnline, aggregateOf(t, self).Availability)

	// Alice's presence set elsewhere reaches her own SIP client: the
	// shared user state with its new version, and the aggregate.
	require.NoError(t, s.SetPresence("sip:alice@contoso.com", Presence{Availability: "Busy", Note: "On a train"}))
	r := peer.waitFor(t, func(r *sip.Request) bool { return eventOf(r) == presence.EventRoamingSelf })
	self, err = presence.ParseRoamingSelf(r.Body())
	require.NoError(t, err)
	assert.Equal(t, presence.AvailabilityBusy, aggregateOf(t, self).Availability)
	var userVersion uint32
	var note string
	for _, c := range self.Categories.Categories {
		if c.Name == "state" && c.State != nil && c.State.Type == "userState" && c.Container == 2 {
			userVersion = c.Version
		}
		if c.Name == "note" && c.Container == 200 && c.Note != nil {
			note = c.Note.Text
		}
	}
	assert.Equal(t, uint32(1), userVersion)
	assert.Equal(t, "On a train", note)
}

func aggregateOf(t *testing.T, self presence.RoamingSelf) *presence.State {
	t.Helper()
	for _, c := range self.Categories.Categories {
		if c.Name == "state" && c.State != nil && c.State.Type == "aggregateState" && c.Container == 2 {
			return c.State
		}
	}
	t.Fatal("no aggregate state in container 2")
	return nil
}

func TestSIPPresenceSubscribeRefusals(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	ep, _ := s.testEndpoint(t, "sip:alice@contoso.com")
	bad := pidginSubscribe(t, "call-b", "", "", "<batchSub")
	assert.Equal(t, 400, s.testSubscribe(ep, bad).status)
	other := pidginSubscribe(t, "call-o", "", "", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com"))
	other.From().Address.User = "bob"
	assert.Equal(t, 403, s.testSubscribe(ep, other).status)
	unknown := pidginSelfSubscribe(t, "vnd-microsoft-roaming-acl", "application/vnd-microsoft-roaming-acls+xml", "", "")
	a := s.testSubscribe(ep, unknown)
	assert.Equal(t, 489, a.status)
	assert.Equal(t, sipAllowEvents, headerValue(a.headers, "Allow-Events"))
	assert.Equal(t, 0, s.SIPPresenceWatchers("sip:bob@contoso.com"))
}

// A SUBSCRIBE with Expires: 0 outside a dialog is a one-off query: the
// state now, and nobody watched.
func TestSIPPresenceOneOffQuery(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	require.NoError(t, s.SetPresence("sip:bob@contoso.com", Presence{Availability: "Away"}))
	ep, _ := s.testEndpoint(t, "sip:alice@contoso.com")
	a := s.testSubscribe(ep, pidginSubscribe(t, "call-once", "", "Expires: 0\n", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com")))
	assert.Equal(t, "terminated;expires=0", headerValue(a.headers, "subscription-state"))
	n := answerNotify(t, a)
	assert.Equal(t, presence.AvailabilityAway, stateOf(t, docOf(n, "sip:bob@contoso.com")).Availability)
	assert.Equal(t, 0, s.SIPPresenceWatchers("sip:bob@contoso.com"))
	s.mu.Lock()
	assert.Empty(t, ep.subs)
	assert.Zero(t, s.sipPres.users["sip:alice@contoso.com"].categorySubs)
	s.mu.Unlock()
}

// A batch over the codec's limit is refused whole, for the client to
// split.
func TestSIPPresenceBatchTooLarge(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	ep, _ := s.testEndpoint(t, "sip:alice@contoso.com")
	many := make([]string, presence.MaxResources+1)
	for i := range many {
		many[i] = fmt.Sprintf("sip:user%05d@contoso.com", i)
	}
	req := pidginSubscribe(t, "call-big", "", "", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com"))
	req.SetBody([]byte(pidginBatch("sip:alice@contoso.com", many...)))
	a := s.testSubscribe(ep, req)
	assert.Equal(t, 413, a.status)
	s.mu.Lock()
	assert.Empty(t, ep.subs)
	s.mu.Unlock()
}

// What a roaming-self subscriber is told of a category lists all its
// instances: pidgin-sipe forgets those a notification leaves out, and
// would publish them next with version 0.
func TestSIPPresenceRoamingSelfListsWholeCategories(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	ep, peer := s.testEndpoint(t, "sip:alice@contoso.com")
	require.Equal(t, 200, s.testSubscribe(ep, pidginSelfSubscribe(t, presence.EventRoamingSelf, presence.ContentTypeRoamingSelf, "", "")).status)
	require.Equal(t, 200, s.sipService(ep, pidginPublish(t, "sip:alice@contoso.com", machineStatePub(3500, 0)+userStatePub(3500, 0))).status)
	n := len(peer.requests())
	require.NoError(t, s.SetPresence("sip:alice@contoso.com", Presence{Availability: "Busy"}))
	// The notification of the change is the one with the user state's new
	// version; an earlier one (of the publication) may still arrive first.
	versions := map[string]uint32{}
	require.Eventually(t, func() bool {
		reqs := peer.requests()
		if len(reqs) <= n {
			return false
		}
		self, err := presence.ParseRoamingSelf(reqs[len(reqs)-1].Body())
		if err != nil {
			return false
		}
		clear(versions)
		for _, c := range self.Categories.Categories {
			if c.State != nil && c.State.Type != "aggregateState" {
				versions[fmt.Sprintf("%s/%d", c.State.Type, c.Container)] = c.Version
			}
		}
		return versions["userState/2"] == 2 || versions["userState/3"] == 2
	}, 5*time.Second, time.Millisecond)
	assert.Equal(t, map[string]uint32{"machineState/2": 1, "machineState/3": 1, "userState/2": 2, "userState/3": 2}, versions)
}

// BenchmarkSIPPresenceChange measures a presence change of a person with
// 10 SIP watchers among many registered endpoints that watch others: the
// cost follows the watchers, not the endpoints (compare -bench with
// endpoints=1000 and 70000).
func BenchmarkSIPPresenceChange(b *testing.B) {
	for _, endpoints := range []int{1000, 70000} {
		b.Run(fmt.Sprintf("endpoints=%d", endpoints), func(b *testing.B) {
			s, err := New(Options{Logger: zerolog.Nop(), SweepInterval: time.Hour})
			require.NoError(b, err)
			defer s.Close()
			users := s.GenerateUsers(endpoints, "contoso.com")
			peer := &discardPeer{}
			s.mu.Lock()
			for i, u := range users {
				ep := s.sipEndpointUp(s.users[u.URI], "ep", peer)
				target := users[(i+1)%len(users)].URI
				if i < 10 {
					target = users[len(users)-1].URI
				}
				sub := &sipSub{ep: ep, event: presence.EventPresence, heapIndex: -1, members: map[sfb.URI]struct{}{}, benotify: true,
					expires: s.now().Add(time.Hour)}
				s.addSub(sub)
				s.watchSIP(sub, target)
			}
			s.mu.Unlock()
			watched := users[len(users)-1].URI
			avail := []string{"Busy", "Online"}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.SetPresence(watched, Presence{Availability: avail[i%2]}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// discardPeer sends nowhere.
type discardPeer struct{}

func (discardPeer) Do(_ context.Context, req *sip.Request) (*sip.Response, error) {
	return sip.NewResponseFromRequest(req, 200, "OK", nil), nil
}
func (discardPeer) Send(sip.Message) error { return nil }
func (discardPeer) Via() *sip.ViaHeader    { return testVia() }

// pidginSOAP is pidgin-sipe's sip_soap_request: a contact-list change in
// a SERVICE (bodies as recorded from pidgin-sipe 1.25).
func pidginSOAP(t *testing.T, operation, args string) *sip.Request {
	body := `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/winrtc/2002/11/sip"><s:Body><m:` +
		operation + `>` + args + `<m:deltaNum>1</m:deltaNum></m:` + operation + `></s:Body></s:Envelope>`
	return parseSIP(t, `
SERVICE sip:alice@contoso.com SIP/2.0
Via: SIP/2.0/tcp 127.0.0.1:44284;branch=z9hG4bKsoap`+operation+`
From: <sip:alice@contoso.com>;tag=3553128833;epid=c97532c1946f
To: <sip:alice@contoso.com>
Max-Forwards: 70
CSeq: 1 SERVICE
Call-ID: soap-`+operation+`
Contact: <sip:alice@contoso.com;opaque=user:epid:abcd;gruu>
Content-Type: application/SOAP+xml
`, body)
}

func TestSIPPresenceContactListChanges(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	require.NoError(t, s.SetContacts("sip:alice@contoso.com", []ContactGroup{{Name: "Team", Members: []sfb.URI{"sip:bob@contoso.com"}}}))
	ep, peer := s.testEndpoint(t, "sip:alice@contoso.com")
	require.Equal(t, 200, s.testSubscribe(ep, pidginSelfSubscribe(t, presence.EventRoamingContacts, presence.ContentTypeRoamingContacts, "", "")).status)

	a := s.sipService(ep, pidginSOAP(t, "addGroup", `<m:name>Colleagues</m:name><m:externalURI />`))
	require.Equal(t, 200, a.status)
	assert.Contains(t, string(a.body), "<m:groupID>2</m:groupID>", "pidgin-sipe reads Body/addGroup/groupID")
	a = s.sipService(ep, pidginSOAP(t, "setContact", `<m:displayName>sip:carol@contoso.com</m:displayName><m:groups>2</m:groups><m:subscribed>true</m:subscribed><m:URI>sip:carol@contoso.com</m:URI><m:externalURI />`))
	require.Equal(t, 200, a.status)
	r := peer.waitFor(t, func(r *sip.Request) bool {
		l, err := presence.ParseContactList(r.Body())
		return err == nil && len(l.Contacts) == 2
	})
	l, err := presence.ParseContactList(r.Body())
	require.NoError(t, err)
	assert.Equal(t, []presence.Group{{ID: "1", Name: "Team"}, {ID: "2", Name: "Colleagues"}}, l.Groups)
	assert.Equal(t, []string{"2"}, l.Contacts[1].Groups)

	a = s.sipService(ep, pidginSOAP(t, "deleteContact", `<m:URI>sip:bob@contoso.com</m:URI>`))
	require.Equal(t, 200, a.status)
	s.mu.Lock()
	groups := slices.Clone(s.users["sip:alice@contoso.com"].st.groups)
	s.mu.Unlock()
	assert.Equal(t, []ContactGroup{{Name: "Team"}, {Name: "Colleagues", Members: []sfb.URI{"sip:carol@contoso.com"}}}, groups)

	assert.Equal(t, 400, s.sipService(ep, pidginSOAP(t, "setContact", `<m:groups>9</m:groups><m:URI>sip:carol@contoso.com</m:URI>`)).status)
	assert.Equal(t, 400, s.sipService(ep, pidginSOAP(t, "setContact", `<m:groups>1</m:groups><m:URI>sip:nobody@contoso.com</m:URI>`)).status)
}

// A note removed with expires="0" (how the transport clears the note)
// clears it; a later state publication leaves it cleared.
func TestSIPPresenceNoteRemoved(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	ep, _ := s.testEndpoint(t, "sip:alice@contoso.com")
	require.Equal(t, 200, s.sipService(ep, pidginPublish(t, "sip:alice@contoso.com", notePub("Lunch", 0))).status)
	p, _ := s.GetPresence("sip:alice@contoso.com")
	require.Equal(t, "Lunch", p.Note)
	remove := `<publication categoryName="note" instance="0" container="200" version="1" expireType="static" expires="0"/>`
	require.Equal(t, 200, s.sipService(ep, pidginPublish(t, "sip:alice@contoso.com", remove)).status)
	p, _ = s.GetPresence("sip:alice@contoso.com")
	assert.Empty(t, p.Note)
	require.Equal(t, 200, s.sipService(ep, pidginPublish(t, "sip:alice@contoso.com", userStatePub(6500, 0))).status)
	p, _ = s.GetPresence("sip:alice@contoso.com")
	assert.Equal(t, "Busy", p.Availability)
	assert.Empty(t, p.Note)
}

// The control API's presence-subscription counts and faults cover SIP
// endpoints too.
func TestSIPPresenceControlFaults(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	ep, peer := s.testEndpoint(t, "sip:alice@contoso.com")
	req := pidginSubscribe(t, "call-f", "", "", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com", "sip:carol@contoso.com"))
	require.Equal(t, 200, s.testSubscribe(ep, req).status)
	subs, people := s.PresenceSubscriptions("sip:alice@contoso.com")
	assert.Equal(t, []int{1, 2}, []int{subs, people})
	assert.False(t, s.PresenceSubscriptionExpiry("sip:alice@contoso.com").IsZero())

	s.DropPresenceSubscriptions("sip:alice@contoso.com")
	r := peer.waitFor(t, func(r *sip.Request) bool { return r.Method == sip.NOTIFY })
	assert.Equal(t, "terminated;reason=deactivated", r.GetHeader("Subscription-State").Value())
	assert.Equal(t, 0, s.SIPPresenceWatchers("sip:bob@contoso.com"))

	req = pidginSubscribe(t, "call-g", "", "", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com"))
	require.Equal(t, 200, s.testSubscribe(ep, req).status)
	s.ExpirePresenceSubscriptions("sip:alice@contoso.com")
	tag, _ := req.To().Params.Get("tag")
	assert.Equal(t, 481, s.testSubscribe(ep, pidginSubscribe(t, "call-g", tag, "", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com"))).status)
	subs, _ = s.PresenceSubscriptions("sip:alice@contoso.com")
	assert.Zero(t, subs)
}

// A change made between a subscription's creation and its 200 going out
// is held back until the 200 is out: pidgin-sipe takes notifications in
// the order they come, and a BENOTIFY overtaking the 200 would be
// undone by the older state the 200 carries.
func TestSIPPresenceNothingOvertakesThe200(t *testing.T) {
	s, _ := newPresenceServer(t, Options{})
	ep, peer := s.testEndpoint(t, "sip:alice@contoso.com")
	a := s.sipSubscribe(ep, pidginSubscribe(t, "call-o", "", "", pidginBatch("sip:alice@contoso.com", "sip:bob@contoso.com")))
	require.Equal(t, 200, a.status)
	require.NoError(t, s.SetPresence("sip:bob@contoso.com", Presence{Availability: "Away"}))
	assert.Never(t, func() bool { return len(peer.requests()) > 0 }, 50*time.Millisecond, time.Millisecond)
	a.after()
	r := peer.waitFor(t, func(r *sip.Request) bool { return r.Method == sipBENOTIFY })
	assert.Equal(t, presence.AvailabilityAway, stateOf(t, docOf(requestNotify(t, r), "sip:bob@contoso.com")).Availability)
}
