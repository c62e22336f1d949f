package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/presence"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipconn"
)

// presPeer is a scripted SfB Front End for the presence tests: it takes
// the REGISTER of a trusted-mode endpoint and hands every other request to
// the test, which answers it (answer) and sends the endpoint NOTIFYs and
// BENOTIFYs in the dialogs the endpoint made (notify).
type presPeer struct {
	t    *testing.T
	ln   net.Listener
	reqs chan *sipmsg.Request

	mu   sync.Mutex
	conn *sipconn.Conn
	// tags are the To tags given to the endpoint's dialogs, by Call-ID.
	tags map[string]string
	cseq map[string]uint32
}

func newPresPeer(t *testing.T) *presPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &presPeer{t: t, ln: ln, reqs: make(chan *sipmsg.Request, 100), tags: map[string]string{}, cseq: map[string]uint32{}}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c := sipconn.New(context.Background(), nc, sipconn.Options{Logger: zerolog.Nop(), Handler: p.handle})
			p.mu.Lock()
			p.conn = c
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.conn != nil {
			p.conn.Close()
		}
	})
	return p
}

func (p *presPeer) handle(c *sipconn.Conn, req *sipmsg.Request) {
	// The connection may not be stored yet when its first request comes.
	p.mu.Lock()
	p.conn = c
	p.mu.Unlock()
	if req.Method == sipmsg.REGISTER {
		_ = c.Respond(req, 200, "OK", nil, sipmsg.NewHeader("Expires", "3600"))
		return
	}
	if req.Method == sipmsg.SUBSCRIBE {
		// The dialog's tag, kept across its requests.
		p.mu.Lock()
		id := req.CallID().Value()
		tag, ok := p.tags[id]
		if !ok {
			tag = newTag()
			p.tags[id] = tag
		}
		p.mu.Unlock()
		if _, has := req.To().Params.Get("tag"); !has {
			req.To().Params.Add("tag", tag)
		}
	}
	p.reqs <- req
}

// next is the endpoint's next request but REGISTER.
func (p *presPeer) next(t *testing.T) *sipmsg.Request {
	t.Helper()
	select {
	case req := <-p.reqs:
		return req
	case <-time.After(5 * time.Second):
		t.Fatal("no request from the endpoint")
		return nil
	}
}

// none asserts the endpoint sends nothing for a while.
func (p *presPeer) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case req := <-p.reqs:
		t.Fatalf("unexpected %s (%s)", req.Method, req.Body())
	case <-time.After(d):
	}
}

func (p *presPeer) answer(req *sipmsg.Request, status int, contentType string, body []byte, headers ...sipmsg.Header) {
	p.mu.Lock()
	c := p.conn
	p.mu.Unlock()
	if contentType != "" {
		headers = append(headers, sipmsg.NewHeader("Content-Type", contentType))
	}
	require.NoError(p.t, c.Respond(req, status, "Reason", body, headers...))
}

// accept answers a SUBSCRIBE 200 for expires seconds, with a piggybacked
// first notification when body is not nil.
func (p *presPeer) accept(req *sipmsg.Request, expires int, contentType string, body []byte) {
	h := []sipmsg.Header{sipmsg.NewHeader("Expires", strconv.Itoa(expires)),
		sipmsg.NewHeader("Contact", "<sip:fe01.contoso.com;transport=tcp>")}
	if body != nil {
		p.mu.Lock()
		p.cseq[req.CallID().Value()]++
		n := p.cseq[req.CallID().Value()]
		p.mu.Unlock()
		h = append(h, sipmsg.NewHeader("ms-piggyback-cseq", strconv.Itoa(int(n))))
	}
	p.answer(req, 200, contentType, body, h...)
}

// notify sends a NOTIFY (waiting for its answer, returned) or a BENOTIFY
// in the dialog of sub, the endpoint's SUBSCRIBE.
func (p *presPeer) notify(t *testing.T, sub *sipmsg.Request, method sipmsg.RequestMethod, state, contentType string, body []byte) *sipmsg.Response {
	t.Helper()
	p.mu.Lock()
	c := p.conn
	id := sub.CallID().Value()
	p.cseq[id]++
	cseq := p.cseq[id]
	tag := p.tags[id]
	p.mu.Unlock()
	target := sub.Contact().Address
	req := sipmsg.NewRequest(method, target)
	if method == "BENOTIFY" {
		via := &sipmsg.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TCP", Host: "127.0.0.1", Port: 5060, Params: sipmsg.NewParams()}
		via.Params.Add("branch", sipmsg.GenerateBranch())
		req.AppendHeader(via)
	}
	fromTag, _ := sub.From().Params.Get("tag")
	req.AppendHeader(sipmsg.NewHeader("From", "<"+sub.To().Address.String()+">;tag="+tag))
	req.AppendHeader(sipmsg.NewHeader("To", "<"+sub.From().Address.String()+">;tag="+fromTag))
	req.AppendHeader(sipmsg.NewHeader("Call-ID", id))
	req.AppendHeader(sipmsg.NewHeader("CSeq", fmt.Sprintf("%d %s", cseq, method)))
	req.AppendHeader(sipmsg.NewHeader("Max-Forwards", "70"))
	req.AppendHeader(sipmsg.NewHeader("Event", headerValue(sub, "Event")))
	req.AppendHeader(sipmsg.NewHeader("subscription-state", state))
	if contentType != "" {
		req.AppendHeader(sipmsg.NewHeader("Content-Type", contentType))
	}
	req.SetBody(body)
	if method == "BENOTIFY" {
		require.NoError(t, c.Send(req))
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.Do(ctx, req)
	require.NoError(t, err)
	return res
}

// presEvents collects a session's events.
type presEvents struct {
	mu     sync.Mutex
	events []sfb.Event
}

func (e *presEvents) handle(_ context.Context, evt sfb.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, evt)
}

// presence is the PresenceChanged events so far.
func (e *presEvents) presence() []sfb.PresenceChanged {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []sfb.PresenceChanged
	for _, evt := range e.events {
		if pc, ok := evt.(sfb.PresenceChanged); ok {
			out = append(out, pc)
		}
	}
	return out
}

func (e *presEvents) count(kind func(sfb.Event) bool) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, evt := range e.events {
		if kind(evt) {
			n++
		}
	}
	return n
}

// waitPresence waits until n PresenceChanged events arrived and returns
// them.
func (e *presEvents) waitPresence(t *testing.T, n int) []sfb.PresenceChanged {
	t.Helper()
	require.Eventually(t, func() bool { return len(e.presence()) >= n }, 5*time.Second, 5*time.Millisecond, "want %d presence events", n)
	return e.presence()
}

func presTimings() Timings {
	return Timings{BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, RequestTimeout: 5 * time.Second,
		KeepAlive: time.Hour, RefreshFrom: 0.6, RefreshTo: 0.85, RefreshLead: time.Second, SALifetime: 8 * time.Hour,
		MachineIdle: 150 * time.Millisecond, MachineAway: 400 * time.Millisecond}
}

// presSignIn signs alice in, as a trusted application's endpoint, on a
// new transport towards p.
func presSignIn(t *testing.T, p *presPeer, edit func(*sfb.Config)) (*Session, *presEvents) {
	t.Helper()
	cfg := sfb.DefaultConfig()
	cfg.Transport = sfb.TransportSIP
	cfg.AllowInsecureLoopback = true
	cfg.SIP.Mode = sfb.SIPModeTrusted
	cfg.SIP.Server = "tcp://" + p.ln.Addr().String()
	cfg.SIP.Connections = 1
	if edit != nil {
		edit(&cfg)
	}
	tr, err := New(cfg, zerolog.Nop(), WithTimings(presTimings()), WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{{}}}))
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	e := &presEvents{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com"}}, e.handle)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s.(*Session), e
}

// watchAsync runs Watch in the background; its result comes on the
// channel.
func watchAsync(s *Session, people ...sfb.URI) chan watchResult {
	ch := make(chan watchResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		taken, err := s.Watch(ctx, people)
		ch <- watchResult{taken, err}
	}()
	return ch
}

type watchResult struct {
	taken []sfb.URI
	err   error
}

func batchOf(t *testing.T, req *sipmsg.Request) presence.BatchSubscribe {
	t.Helper()
	b, err := presence.ParseBatchSubscribe(req.Body())
	require.NoError(t, err, "%s", req.Body())
	return b
}

func resourcesOf(b presence.BatchSubscribe) []string {
	var out []string
	for _, r := range b.Resources {
		out = append(out, r.URI)
	}
	return out
}

// firstNotify is what a server piggybacks on the 200 to a batch
// subscription: every resource active, and the categories of those with
// a presence.
func firstNotify(self string, people map[string]sfb.Presence, order ...string) (string, []byte) {
	list := &presence.List{URI: self, Version: 1, FullState: true}
	var docs []presence.Categories
	for _, u := range order {
		list.Resources = append(list.Resources, presence.ListResource{URI: u, State: presence.InstanceActive, CID: strings.TrimPrefix(u, "sip:")})
		if p, ok := people[u]; ok {
			docs = append(docs, presence.Describe(u, p, 1))
		}
	}
	return presence.Notify{List: list, Documents: docs}.Marshal()
}

// bob is im_test.go's.
const (
	carol = sfb.URI("sip:carol@contoso.com")
	dave  = sfb.URI("sip:dave@contoso.com")
)

// A watch is a batch category subscription as pidgin-sipe sends it; the
// first states ride on the 200, later ones come as BENOTIFY and NOTIFY,
// and only changes are delivered. A NOTIFY that cannot be read is
// answered 400 and changes nothing.
func TestWatchBatchSubscription(t *testing.T) {
	p := newPresPeer(t)
	s, e := presSignIn(t, p, nil)

	res := watchAsync(s, bob, carol, dave, bob)
	sub := p.next(t)
	assert.Equal(t, sipmsg.SUBSCRIBE, sub.Method)
	assert.Equal(t, "sip:alice@contoso.com", sub.Recipient.String(), "a batch subscription goes to the user's own URI")
	assert.Equal(t, "presence", headerValue(sub, "Event"))
	assert.Equal(t, presence.Accept, headerValue(sub, "Accept"))
	var supported []string
	for _, h := range sub.GetHeaders("Supported") {
		supported = append(supported, h.Value())
	}
	assert.Subset(t, supported, []string{"com.microsoft.autoextend", "ms-benotify", "ms-piggyback-first-notify", "eventlist"})
	assert.Equal(t, "ms-benotify", headerValue(sub, "Proxy-Require"))
	assert.Equal(t, "adhoclist, categoryList", headerValue(sub, "Require"))
	assert.Equal(t, presence.ContentTypeCategoryList, headerValue(sub, "Content-Type"))
	b := batchOf(t, sub)
	assert.Equal(t, "sip:alice@contoso.com", b.URI)
	assert.Equal(t, presence.ActionSubscribe, b.Action)
	assert.Equal(t, []string{string(bob), string(carol), string(dave)}, resourcesOf(b), "each person once")
	assert.Equal(t, presence.DefaultCategories, b.Categories)

	busy := sfb.Presence{Availability: sfb.AvailabilityBusy, Activity: sfb.ActivityInAMeeting, Note: "Planning"}
	away := sfb.Presence{Availability: sfb.AvailabilityAway, OutOfOffice: &sfb.OutOfOffice{Message: "On leave"}}
	ct, body := firstNotify("sip:alice@contoso.com", map[string]sfb.Presence{string(bob): busy, string(carol): away}, string(bob), string(carol), string(dave))
	p.accept(sub, 3600, ct, body)
	r := <-res
	require.NoError(t, r.err)
	assert.Equal(t, []sfb.URI{bob, carol, dave}, r.taken)
	got := e.waitPresence(t, 2)
	assert.Equal(t, bob, got[0].Person)
	assert.True(t, busy.Same(got[0].Presence), "%+v", got[0].Presence)
	assert.False(t, got[0].Presence.Changed.IsZero())
	assert.Equal(t, carol, got[1].Person)
	assert.True(t, away.Same(got[1].Presence), "%+v", got[1].Presence)

	// A BENOTIFY with bob's new state, then the same again: one event.
	online := sfb.Presence{Availability: sfb.AvailabilityOnline}
	ct, body = presence.Notify{Documents: []presence.Categories{presence.Describe(string(bob), online, 2)}}.Marshal()
	p.notify(t, sub, "BENOTIFY", "active;expires=3500", ct, body)
	p.notify(t, sub, "BENOTIFY", "active;expires=3500", ct, body)
	got = e.waitPresence(t, 3)
	assert.Equal(t, bob, got[2].Person)
	assert.Equal(t, sfb.AvailabilityOnline, got[2].Presence.Availability)

	// A NOTIFY is answered once its news was delivered; a broken one 400.
	ct, body = presence.Notify{Documents: []presence.Categories{presence.Describe(string(dave), away, 3)}}.Marshal()
	ans := p.notify(t, sub, sipmsg.NOTIFY, "active;expires=3500", ct, body)
	assert.Equal(t, 200, ans.StatusCode)
	assert.Len(t, e.presence(), 4, "delivered before the 200")
	ans = p.notify(t, sub, sipmsg.NOTIFY, "active;expires=3500", presence.ContentTypeEventCategories, []byte("<categories"))
	assert.Equal(t, 400, ans.StatusCode)

	// Somebody not watched is not told.
	ct, body = presence.Notify{Documents: []presence.Categories{presence.Describe("sip:eve@contoso.com", away, 1)}}.Marshal()
	p.notify(t, sub, sipmsg.NOTIFY, "active;expires=3500", ct, body)
	assert.Never(t, func() bool { return len(e.presence()) > 4 }, 100*time.Millisecond, 5*time.Millisecond)
}

// More people join the subscription that has room (the subscribe action in
// its dialog); leaving uses the unsubscribe action, and the last one out
// ends the dialog.
func TestWatchJoinsAndLeavesTheDialog(t *testing.T) {
	p := newPresPeer(t)
	s, _ := presSignIn(t, p, nil)

	res := watchAsync(s, bob)
	first := p.next(t)
	p.accept(first, 3600, "", nil)
	require.NoError(t, (<-res).err)

	res = watchAsync(s, carol)
	second := p.next(t)
	assert.Equal(t, first.CallID().Value(), second.CallID().Value(), "same dialog")
	toTag, _ := second.To().Params.Get("tag")
	assert.Equal(t, p.tags[first.CallID().Value()], toTag, "in the dialog: the server's tag")
	assert.Greater(t, second.CSeq().SeqNo, first.CSeq().SeqNo)
	b := batchOf(t, second)
	assert.Equal(t, presence.ActionSubscribe, b.Action)
	assert.Equal(t, []string{string(carol)}, resourcesOf(b))
	p.accept(second, 3600, "", nil)
	require.NoError(t, (<-res).err)

	done := make(chan error, 1)
	go func() { done <- s.Unwatch(context.Background(), []sfb.URI{bob, dave}) }()
	third := p.next(t)
	assert.Equal(t, first.CallID().Value(), third.CallID().Value())
	b = batchOf(t, third)
	assert.Equal(t, presence.ActionUnsubscribe, b.Action)
	assert.Equal(t, []string{string(bob)}, resourcesOf(b))
	p.accept(third, 3600, "", nil)
	require.NoError(t, <-done)

	go func() { done <- s.Unwatch(context.Background(), []sfb.URI{carol}) }()
	last := p.next(t)
	assert.Equal(t, first.CallID().Value(), last.CallID().Value())
	assert.Equal(t, "0", headerValue(last, "Expires"))
	assert.Empty(t, last.Body())
	p.answer(last, 200, "", nil)
	require.NoError(t, <-done)

	// A notification in the ended dialog is answered 481, so that the
	// server ends its side too.
	ct, body := presence.Notify{Documents: []presence.Categories{presence.Describe(string(carol), sfb.Presence{Availability: sfb.AvailabilityAway}, 9)}}.Marshal()
	ans := p.notify(t, first, sipmsg.NOTIFY, "active;expires=3000", ct, body)
	assert.Equal(t, 481, ans.StatusCode)
}

// The watch limit of the configuration, and the server's quota told per
// resource in the rlmi list, both end a Watch with ErrWatchLimit and what
// was taken; the capacity shrinks to what the server took.
func TestWatchLimits(t *testing.T) {
	p := newPresPeer(t)
	s, e := presSignIn(t, p, func(c *sfb.Config) { c.PresenceWatchLimit = 3 })
	assert.Equal(t, 3, s.WatchCapacity())

	res := watchAsync(s, bob, carol, dave, "sip:eve@contoso.com")
	sub := p.next(t)
	assert.Equal(t, []string{string(bob), string(carol), string(dave)}, resourcesOf(batchOf(t, sub)))
	list := &presence.List{URI: "sip:alice@contoso.com", Version: 1, FullState: true, Resources: []presence.ListResource{
		{URI: string(bob), State: presence.InstanceActive},
		{URI: string(carol), State: presence.InstanceTerminated, Reason: "quotaExceeded"},
		{URI: string(dave), State: presence.InstanceTerminated, Reason: "quotaExceeded"},
	}}
	ct, body := presence.Notify{List: list, Documents: []presence.Categories{presence.Describe(string(bob), sfb.Presence{Availability: sfb.AvailabilityOnline}, 1)}}.Marshal()
	p.accept(sub, 3600, ct, body)
	r := <-res
	assert.ErrorIs(t, r.err, sfb.ErrWatchLimit)
	assert.Equal(t, []sfb.URI{bob}, r.taken)
	assert.Equal(t, 1, s.WatchCapacity())
	e.waitPresence(t, 1)

	// Full: refused without asking the server.
	taken, err := s.Watch(context.Background(), []sfb.URI{carol})
	assert.ErrorIs(t, err, sfb.ErrWatchLimit)
	assert.Empty(t, taken)
	p.none(t, 50*time.Millisecond)
}

// Subscriptions are refreshed in their dialog before they expire, with
// everyone in them; one the server ends is created anew (a new dialog).
func TestSubscriptionRefreshAndRecreation(t *testing.T) {
	p := newPresPeer(t)
	s, e := presSignIn(t, p, nil)

	res := watchAsync(s, bob, carol)
	first := p.next(t)
	p.accept(first, 2, "", nil)
	require.NoError(t, (<-res).err)
	// Notifications in the first dialog take its CSeq up.
	for i, a := range []sfb.Availability{sfb.AvailabilityOnline, sfb.AvailabilityAway, sfb.AvailabilityOnline} {
		ct, body := presence.Notify{Documents: []presence.Categories{presence.Describe(string(bob), sfb.Presence{Availability: a}, uint32(i+1))}}.Marshal()
		p.notify(t, first, "BENOTIFY", "active;expires=2", ct, body)
	}
	e.waitPresence(t, 3)

	refresh := p.next(t)
	assert.Equal(t, first.CallID().Value(), refresh.CallID().Value())
	assert.ElementsMatch(t, []string{string(bob), string(carol)}, resourcesOf(batchOf(t, refresh)))
	p.accept(refresh, 3600, "", nil)

	ans := p.notify(t, first, sipmsg.NOTIFY, "terminated;reason=deactivated", "", nil)
	assert.Equal(t, 200, ans.StatusCode)
	again := p.next(t)
	assert.NotEqual(t, first.CallID().Value(), again.CallID().Value(), "a new dialog")
	assert.Equal(t, uint32(1), again.CSeq().SeqNo)
	assert.ElementsMatch(t, []string{string(bob), string(carol)}, resourcesOf(batchOf(t, again)))
	ct, body := firstNotify("sip:alice@contoso.com", map[string]sfb.Presence{string(bob): {Availability: sfb.AvailabilityBusy}}, string(bob), string(carol))
	p.accept(again, 3600, ct, body)
	got := e.waitPresence(t, 4)
	assert.Equal(t, sfb.AvailabilityBusy, got[3].Presence.Availability, "the new dialog's first CSeq is not older than the old one's")

	// A refresh the server no longer knows (481) makes a new dialog too.
	p.none(t, 50*time.Millisecond)
}

// The contact list comes from the roaming contacts self-subscription,
// subscribed to on the first call; a change is told as ContactsChanged.
func TestContactsFromRoamingContacts(t *testing.T) {
	p := newPresPeer(t)
	s, e := presSignIn(t, p, nil)

	type result struct {
		people []sfb.Person
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		people, err := s.Contacts(context.Background())
		ch <- result{people, err}
	}()
	sub := p.next(t)
	assert.Equal(t, presence.EventRoamingContacts, headerValue(sub, "Event"))
	assert.Equal(t, presence.ContentTypeRoamingContacts, headerValue(sub, "Accept"))
	assert.Equal(t, "sip:alice@contoso.com", sub.Recipient.String())
	list := presence.ContactList{DeltaNum: 3, Groups: []presence.Group{{ID: "1", Name: "~"}},
		Contacts: []presence.Contact{{URI: "bob@contoso.com", Groups: []string{"1"}}, {URI: "sip:Carol@contoso.com", Name: "Caro", Groups: []string{"1"}}, {URI: "not an address"}}}
	p.accept(sub, 3600, presence.ContentTypeRoamingContacts, list.Marshal())
	r := <-ch
	require.NoError(t, r.err)
	assert.ElementsMatch(t, []sfb.Person{{URI: bob, DisplayName: "bob@contoso.com"}, {URI: carol, DisplayName: "Caro"}}, r.people)

	delta := presence.ContactList{Delta: true, DeltaNum: 4, PrevDeltaNum: 3,
		AddedContacts: []presence.Contact{{URI: "dave@contoso.com"}}, DeletedContacts: []presence.Contact{{URI: "bob@contoso.com"}}}
	p.notify(t, sub, "BENOTIFY", "active;expires=3500", presence.ContentTypeRoamingContacts, delta.Marshal())
	require.Eventually(t, func() bool {
		return e.count(func(evt sfb.Event) bool { _, ok := evt.(sfb.ContactsChanged); return ok }) == 1
	}, 5*time.Second, 5*time.Millisecond)
	people, err := s.Contacts(context.Background())
	require.NoError(t, err)
	assert.ElementsMatch(t, []sfb.Person{{URI: carol, DisplayName: "Caro"}, {URI: dave, DisplayName: "dave@contoso.com"}}, people)
	p.none(t, 50*time.Millisecond)

	// The same list again is no change.
	full := presence.ContactList{DeltaNum: 5, Contacts: []presence.Contact{{URI: "carol@contoso.com", Name: "Caro"}, {URI: "dave@contoso.com"}}}
	p.notify(t, sub, sipmsg.NOTIFY, "active;expires=3500", presence.ContentTypeRoamingContacts, full.Marshal())
	assert.Equal(t, 1, e.count(func(evt sfb.Event) bool { _, ok := evt.(sfb.ContactsChanged); return ok }))
}

// A server that keeps the list in the Unified Contact Store refuses the
// subscription (488, as pidgin-sipe learns it): no contact list over SIP.
func TestContactsUnifiedContactStore(t *testing.T) {
	p := newPresPeer(t)
	s, _ := presSignIn(t, p, nil)
	ch := make(chan error, 1)
	go func() {
		_, err := s.Contacts(context.Background())
		ch <- err
	}()
	p.answer(p.next(t), 488, "", nil)
	err := <-ch
	assert.ErrorIs(t, err, errors.ErrUnsupported)
	_, err = s.Contacts(context.Background())
	assert.ErrorIs(t, err, errors.ErrUnsupported)
	p.none(t, 50*time.Millisecond)

	// Lync 2013 and later may instead answer with an empty list marked
	// migrated.
	p2 := newPresPeer(t)
	s, _ = presSignIn(t, p2, nil)
	p = p2
	go func() {
		_, err := s.Contacts(context.Background())
		ch <- err
	}()
	p.accept(p.next(t), 3600, presence.ContentTypeRoamingContacts, presence.ContactList{DeltaNum: 1, UCSMode: "migrated"}.Marshal())
	err = <-ch
	assert.ErrorIs(t, err, errors.ErrUnsupported)
}

// Publish sends the user state (the availability's number) and the note
// through SERVICE, with the versions roaming self told; a 409 gives the
// server's versions, and the publication goes again with them.
func TestPublishWithVersions(t *testing.T) {
	p := newPresPeer(t)
	s, _ := presSignIn(t, p, nil)

	busy, note := sfb.AvailabilityBusy, "In a workshop"
	done := make(chan error, 1)
	go func() { done <- s.Publish(context.Background(), sfb.Publication{Availability: &busy, Note: &note}) }()

	self := p.next(t)
	assert.Equal(t, presence.EventRoamingSelf, headerValue(self, "Event"))
	assert.Equal(t, presence.ContentTypeRoamingSelf, headerValue(self, "Content-Type"))
	assert.Contains(t, string(self.Body()), `<roaming type="categories"/>`)
	user := uint32(presence.InstanceUserState)
	zero := uint32(0)
	mine := presence.RoamingSelf{Categories: presence.Categories{URI: "sip:alice@contoso.com", Categories: []presence.Category{
		{Name: "state", Instance: &user, Container: 2, Version: 7, State: &presence.State{Type: "userState", Availability: 3500}},
		{Name: "state", Instance: &user, Container: 3, Version: 7, State: &presence.State{Type: "userState", Availability: 3500}},
		{Name: "note", Instance: &zero, Container: 200, Version: 2, Note: &presence.Note{Type: "personal", Text: "old"}},
	}}}
	p.accept(self, 3600, presence.ContentTypeRoamingSelf, mine.Marshal())

	svc := p.next(t)
	assert.Equal(t, sipmsg.RequestMethod("SERVICE"), svc.Method)
	assert.Equal(t, "sip:alice@contoso.com", svc.Recipient.String())
	assert.Equal(t, presence.ContentTypePublish, headerValue(svc, "Content-Type"))
	pub, err := presence.ParsePublish(svc.Body())
	require.NoError(t, err)
	require.Len(t, pub.Publications, 5)
	assert.Equal(t, 6500, pub.Publications[0].State.Availability)
	assert.Equal(t, "userState", pub.Publications[0].State.Type)
	assert.Equal(t, uint32(7), pub.Publications[0].Version)
	assert.Equal(t, uint32(7), pub.Publications[1].Version)
	assert.Equal(t, "In a workshop", pub.Publications[2].Note.Text)
	assert.Equal(t, uint32(2), pub.Publications[2].Version)
	assert.Equal(t, uint32(0), pub.Publications[3].Version, "container 300 was never published")

	fault := presence.Fault{Code: presence.FaultWrongDelta, Operations: []presence.FaultOperation{{Index: 4, Version: 0, CurVersion: 5}}}
	p.answer(svc, 409, presence.ContentTypeFault, fault.Marshal())
	svc = p.next(t)
	pub, err = presence.ParsePublish(svc.Body())
	require.NoError(t, err)
	assert.Equal(t, uint32(5), pub.Publications[3].Version, "the server's version")
	assert.Equal(t, uint32(7), pub.Publications[0].Version)
	p.answer(svc, 200, "", nil)
	require.NoError(t, <-done)

	// The next publication carries the versions one up; the roaming self
	// subscription is not made again.
	online := sfb.AvailabilityIdleOnline
	go func() { done <- s.Publish(context.Background(), sfb.Publication{Availability: &online}) }()
	svc = p.next(t)
	pub, err = presence.ParsePublish(svc.Body())
	require.NoError(t, err)
	require.Len(t, pub.Publications, 2)
	assert.Equal(t, 3500, pub.Publications[0].State.Availability, "the active form of IdleOnline")
	assert.Equal(t, uint32(8), pub.Publications[0].Version)
	p.answer(svc, 200, "", nil)
	require.NoError(t, <-done)

	// A conflict that repeats ends in an error, after a bounded number
	// of attempts.
	go func() { done <- s.Publish(context.Background(), sfb.Publication{Availability: &online}) }()
	for range publishAttempts {
		svc = p.next(t)
		p.answer(svc, 409, presence.ContentTypeFault, presence.Fault{Code: presence.FaultWrongDelta, Operations: []presence.FaultOperation{{Index: 1, CurVersion: 40}}}.Marshal())
	}
	err = <-done
	var se *Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 409, se.Status)
	p.none(t, 50*time.Millisecond)

	// Another fault is not retried.
	go func() { done <- s.Publish(context.Background(), sfb.Publication{Availability: &online}) }()
	p.answer(p.next(t), 409, presence.ContentTypeFault, presence.Fault{Code: "Client.BadCall.Forbidden"}.Marshal())
	err = <-done
	assert.ErrorContains(t, err, `fault "Client.BadCall.Forbidden"`)
	p.none(t, 50*time.Millisecond)

	bad := sfb.Availability("Lunch")
	assert.ErrorIs(t, s.Publish(context.Background(), sfb.Publication{Availability: &bad}), sfb.ErrUnsupported)
}

// Activity publishes the endpoint's machine state Active once; more
// activity while Active sends nothing.
func TestReportActivityPublishesMachineState(t *testing.T) {
	p := newPresPeer(t)
	s, _ := presSignIn(t, p, nil)
	done := make(chan error, 1)
	go func() { done <- s.ReportActivity(context.Background()) }()
	svc := p.next(t)
	pub, err := presence.ParsePublish(svc.Body())
	require.NoError(t, err)
	require.Len(t, pub.Publications, 2)
	for i, c := range []int{2, 3} {
		assert.Equal(t, "machineState", pub.Publications[i].State.Type)
		assert.Equal(t, presence.MachineActive, pub.Publications[i].State.Availability)
		assert.Equal(t, c, pub.Publications[i].Container)
		assert.Equal(t, presence.MachineStateInstance(s.epid), *pub.Publications[i].Instance)
		assert.Equal(t, presence.ExpireEndpoint, pub.Publications[i].ExpireType)
	}
	p.answer(svc, 200, "", nil)
	require.NoError(t, <-done)
	require.NoError(t, s.ReportActivity(context.Background()))
	p.none(t, 50*time.Millisecond)

	// Without activity: Inactive, then Away, each once; activity makes
	// it Active again.
	for i, want := range []int{presence.MachineInactive, presence.MachineAway} {
		svc = p.next(t)
		pub, err = presence.ParsePublish(svc.Body())
		require.NoError(t, err)
		assert.Equal(t, want, pub.Publications[0].State.Availability)
		assert.Equal(t, uint32(i+1), pub.Publications[0].Version, "one up from the one before")
		p.answer(svc, 200, "", nil)
	}
	p.none(t, 500*time.Millisecond)
	go func() { done <- s.ReportActivity(context.Background()) }()
	svc = p.next(t)
	pub, err = presence.ParsePublish(svc.Body())
	require.NoError(t, err)
	assert.Equal(t, presence.MachineActive, pub.Publications[0].State.Availability)
	p.answer(svc, 200, "", nil)
	require.NoError(t, <-done)
}

// When the endpoint registers anew (here the shared connection dropped),
// the server has forgotten its subscriptions: they are made again, in new
// dialogs, with the same people.
func TestSubscriptionsAfterRegisteringAgain(t *testing.T) {
	p := newPresPeer(t)
	s, _ := presSignIn(t, p, nil)

	res := watchAsync(s, bob, carol)
	first := p.next(t)
	p.accept(first, 3600, "", nil)
	require.NoError(t, (<-res).err)

	p.mu.Lock()
	old := p.conn
	p.mu.Unlock()
	old.Close()
	again := p.next(t)
	assert.Equal(t, sipmsg.SUBSCRIBE, again.Method)
	assert.NotEqual(t, first.CallID().Value(), again.CallID().Value())
	assert.ElementsMatch(t, []string{string(bob), string(carol)}, resourcesOf(batchOf(t, again)))
	p.accept(again, 3600, "", nil)
	p.none(t, 50*time.Millisecond)
}

// A server may notify before it answers the SUBSCRIBE (RFC 6665's race):
// the first state is delivered all the same. A piggybacked notification
// read after a later BENOTIFY (by CSeq) does not overwrite it.
func TestNotificationsBeforeTheAnswer(t *testing.T) {
	p := newPresPeer(t)
	s, e := presSignIn(t, p, nil)

	res := watchAsync(s, bob)
	sub := p.next(t)
	p.mu.Lock()
	p.cseq[sub.CallID().Value()] = 1
	p.mu.Unlock()
	ct, body := presence.Notify{Documents: []presence.Categories{presence.Describe(string(bob), sfb.Presence{Availability: sfb.AvailabilityBusy}, 2)}}.Marshal()
	p.notify(t, sub, "BENOTIFY", "active;expires=3600", ct, body)
	got := e.waitPresence(t, 1)
	assert.Equal(t, sfb.AvailabilityBusy, got[0].Presence.Availability)

	ct, body = firstNotify("sip:alice@contoso.com", map[string]sfb.Presence{string(bob): {Availability: sfb.AvailabilityOnline}}, string(bob))
	p.answer(sub, 200, ct, body, sipmsg.NewHeader("Expires", "3600"), sipmsg.NewHeader("ms-piggyback-cseq", "1"))
	require.NoError(t, (<-res).err)
	assert.Never(t, func() bool { return len(e.presence()) > 1 }, 100*time.Millisecond, 5*time.Millisecond, "the older state is not delivered")
}

// A subscription the server took nobody into ends at once.
func TestWatchAllRefused(t *testing.T) {
	p := newPresPeer(t)
	s, _ := presSignIn(t, p, nil)
	res := watchAsync(s, bob)
	sub := p.next(t)
	list := &presence.List{URI: "sip:alice@contoso.com", Version: 1, FullState: true, Resources: []presence.ListResource{
		{URI: string(bob), State: presence.InstanceTerminated, Reason: "quotaExceeded"}}}
	ct, body := presence.Notify{List: list}.Marshal()
	p.accept(sub, 3600, ct, body)
	end := p.next(t)
	assert.Equal(t, sub.CallID().Value(), end.CallID().Value())
	assert.Equal(t, "0", headerValue(end, "Expires"))
	p.answer(end, 200, "", nil)
	r := <-res
	assert.ErrorIs(t, r.err, sfb.ErrWatchLimit)
	assert.Empty(t, r.taken)
}

// In trusted mode one process holds 70,000 endpoints: one that uses no
// presence holds no map, subscription or timer for it, and the state
// itself stays small.
func TestIdleEndpointPresenceState(t *testing.T) {
	p := newPresPeer(t)
	s, _ := presSignIn(t, p, nil)
	assert.LessOrEqual(t, unsafe.Sizeof(s.pres), uintptr(160))
	s.pres.mu.Lock()
	defer s.pres.mu.Unlock()
	assert.Nil(t, s.pres.people)
	assert.Nil(t, s.pres.subs)
	assert.Nil(t, s.pres.contacts)
	assert.Nil(t, s.pres.self)
	assert.Nil(t, s.pres.versions)
	assert.Nil(t, s.pres.idle)
}

// A resource the server answers with "resubscribe" moves (MS-PRES
// 3.4.5.1.3, as pidgin-sipe does it): without a pool, into a single
// category subscription sent to the contact itself; with a poolFqdn, into
// a batch sent to that pool. Each is a dialog of its own that delivers,
// and that Unwatch ends.
func TestResubscribeWhereTheServerSends(t *testing.T) {
	p := newPresPeer(t)
	s, e := presSignIn(t, p, nil)

	res := watchAsync(s, bob, carol, dave)
	sub := p.next(t)
	list := &presence.List{URI: "sip:alice@contoso.com", Version: 1, FullState: true, Resources: []presence.ListResource{
		{URI: string(bob), State: presence.InstanceActive},
		{URI: string(carol), State: presence.InstanceResubscribe},
		{URI: string(dave), State: presence.InstanceResubscribe, PoolFQDN: "pool2.contoso.com"},
	}}
	ct, body := presence.Notify{List: list}.Marshal()
	p.accept(sub, 3600, ct, body)
	r := <-res
	require.NoError(t, r.err)
	assert.Equal(t, []sfb.URI{bob, carol, dave}, r.taken)

	// One after the other, in the list's order.
	single := p.next(t)
	assert.Equal(t, sipmsg.SUBSCRIBE, single.Method)
	assert.NotEqual(t, sub.CallID().Value(), single.CallID().Value(), "a dialog of its own")
	assert.Equal(t, string(carol), single.Recipient.String(), "sent to the contact")
	assert.Equal(t, string(carol), single.To().Address.String(), "To is the contact")
	assert.Empty(t, headerValue(single, "Require"), "a single category subscription is no ad hoc list")
	assert.Equal(t, []string{string(carol)}, resourcesOf(batchOf(t, single)))
	ct, body = presence.Notify{Documents: []presence.Categories{presence.Describe(string(carol), sfb.Presence{Availability: sfb.AvailabilityBeRightBack}, 1)}}.Marshal()
	p.accept(single, 3600, ct, body)

	pool := p.next(t)
	assert.Equal(t, "sip:pool2.contoso.com", pool.Recipient.String(), "sent to the pool")
	assert.NotEqual(t, sub.CallID().Value(), pool.CallID().Value(), "a dialog of its own")
	assert.Equal(t, "adhoclist, categoryList", headerValue(pool, "Require"))
	assert.Equal(t, []string{string(dave)}, resourcesOf(batchOf(t, pool)))
	p.accept(pool, 3600, "", nil)
	got := e.waitPresence(t, 1)
	assert.Equal(t, carol, got[0].Person)
	assert.Equal(t, sfb.AvailabilityBeRightBack, got[0].Presence.Availability)

	done := make(chan error, 1)
	go func() { done <- s.Unwatch(context.Background(), []sfb.URI{carol}) }()
	end := p.next(t)
	assert.Equal(t, single.CallID().Value(), end.CallID().Value())
	assert.Equal(t, "0", headerValue(end, "Expires"))
	p.answer(end, 200, "", nil)
	require.NoError(t, <-done)

	// A new person joins the batch to the user's URI, not the others.
	res = watchAsync(s, "sip:eve@contoso.com")
	join := p.next(t)
	assert.Equal(t, sub.CallID().Value(), join.CallID().Value())
	p.accept(join, 3600, "", nil)
	require.NoError(t, (<-res).err)
}
