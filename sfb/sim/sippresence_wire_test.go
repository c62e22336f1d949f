package sim_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/presence"
)

// subscribeHeaders are sipe_subscribe's, with the GRUU the registrar gave
// as the Contact (get_contact).
func subscribeHeaders(event, accept, gruu, extra string) string {
	return "Event: " + event + "\r\n" +
		"Accept: " + accept + "\r\n" +
		"Supported: com.microsoft.autoextend\r\n" +
		"Supported: ms-benotify\r\n" +
		"Proxy-Require: ms-benotify\r\n" +
		"Supported: ms-piggyback-first-notify\r\n" +
		extra +
		"Contact: <" + gruu + ">\r\n"
}

// A pidgin-sipe client over the wire, next to a UCWA user: it signs in,
// takes its contact list and its own categories, publishes its state as
// pidgin-sipe does after roaming-self, and watches a colleague, whose
// UCWA publication it then hears of in a BENOTIFY signed like every
// message of the server; what it publishes, the UCWA user sees.
func TestSIPPresencePidginAndUCWA(t *testing.T) {
	e := newSIPEnv(t, sim.Options{}, false)
	require.NoError(t, e.sim.SetContacts(alice, []sim.ContactGroup{{Name: "Team", Members: []sfb.URI{bob}}}))
	b := e.signIn("bob@contoso.com", "bob-pw")
	b.makeMeAvailable("Plain")
	st, _ := b.subscribe(30, alice)
	require.Equal(t, http.StatusCreated, st)

	c := e.dial(t, alice, "alice-pw")
	res, raw := c.signIn("alice", "CONTOSO")
	require.Equal(t, 200, res.StatusCode, raw)
	gruu := gruuOf(t, raw, c.uuid)

	// sipe_subscribe_roaming_contacts.
	c.cseq++
	c.send("SUBSCRIBE", string(alice), string(alice), "rc-"+c.regCall, c.cseq, "rc1", "",
		subscribeHeaders(presence.EventRoamingContacts, presence.ContentTypeRoamingContacts, gruu, "Supported: ms-ucs\r\n"), "")
	res, raw = c.response(c.cseq, "SUBSCRIBE")
	require.Equal(t, 200, res.StatusCode, raw)
	require.NotEmpty(t, hdr(res)("ms-piggyback-cseq"), raw)
	contacts, err := presence.ParseContactList(res.Body())
	require.NoError(t, err, raw)
	require.Len(t, contacts.Contacts, 1)
	assert.Equal(t, "bob@contoso.com", contacts.Contacts[0].URI)

	// sipe_subscribe_roaming_self.
	c.cseq++
	c.send("SUBSCRIBE", string(alice), string(alice), "rs-"+c.regCall, c.cseq, "rs1", "",
		subscribeHeaders(presence.EventRoamingSelf, presence.ContentTypeRoamingSelf, gruu, "Content-Type: application/vnd-microsoft-roaming-self+xml\r\n"),
		`<roamingList xmlns="http://schemas.microsoft.com/2006/09/sip/roaming-self"><roaming type="categories"/><roaming type="containers"/><roaming type="subscribers"/></roamingList>`)
	res, raw = c.response(c.cseq, "SUBSCRIBE")
	require.Equal(t, 200, res.StatusCode, raw)
	_, err = presence.ParseRoamingSelf(res.Body())
	require.NoError(t, err, raw)

	// send_publish_category_initial: machine and user state Busy.
	pub := func(avail int, version uint32) string {
		var b strings.Builder
		for _, typ := range []struct {
			instance   uint32
			expire, xt string
			manual     bool
		}{{926460663, "endpoint", "machineState", false}, {536870912, "static", "userState", true}} {
			for _, container := range []int{2, 3} {
				fmt.Fprintf(&b, `<publication categoryName="state" instance="%d" container="%d" version="%d" expireType="%s">`+
					`<state xmlns="http://schemas.microsoft.com/2006/09/sip/state" manual="%t" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="%s">`+
					`<availability>%d</availability><endpointLocation/></state></publication>`, typ.instance, container, version, typ.expire, typ.manual, typ.xt, avail)
			}
		}
		return `<publish xmlns="http://schemas.microsoft.com/2006/09/sip/rich-presence"><publications uri="` + string(alice) + `">` + b.String() + `</publications></publish>`
	}
	c.cseq++
	c.send("SERVICE", string(alice), string(alice), "pub-"+c.regCall, c.cseq, "pub1", "",
		"Contact: <"+gruu+">\r\nContent-Type: application/msrtc-category-publish+xml\r\n", pub(6500, 0))
	res, raw = c.response(c.cseq, "SERVICE")
	require.Equal(t, 200, res.StatusCode, raw)
	assert.Equal(t, presence.ContentTypeRoamingSelf, hdr(res)("Content-Type"))
	p, err := e.sim.GetPresence(alice)
	require.NoError(t, err)
	assert.Equal(t, "Busy", p.Availability)
	b.await("alice busy", is("contactPresence", "updated"))

	// Republishing with the stale version 0 is refused with the current
	// versions.
	c.cseq++
	c.send("SERVICE", string(alice), string(alice), "pub-"+c.regCall, c.cseq, "pub1", "",
		"Contact: <"+gruu+">\r\nContent-Type: application/msrtc-category-publish+xml\r\n", pub(3500, 0))
	res, raw = c.response(c.cseq, "SERVICE")
	require.Equal(t, 409, res.StatusCode, raw)
	fault, err := presence.ParseFault(res.Body())
	require.NoError(t, err, raw)
	assert.Len(t, fault.Operations, 4)

	// sipe_subscribe_presence_batched_to, to the self URI.
	c.cseq++
	batch := presence.BatchSubscribe{URI: string(alice), Resources: []presence.Resource{{URI: string(bob)}}, Categories: presence.DefaultCategories}
	c.send("SUBSCRIBE", string(alice), string(alice), "ps-"+c.regCall, c.cseq, "ps1", "",
		"Require: adhoclist, categoryList\r\nSupported: eventlist\r\n"+
			"Accept:  application/rlmi+xml, multipart/related, text/xml+msrtc.pidf, application/msrtc-event-categories+xml, application/xpidf+xml, application/pidf+xml\r\n"+
			"Supported: ms-piggyback-first-notify\r\nSupported: ms-benotify\r\nProxy-Require: ms-benotify\r\nEvent: presence\r\n"+
			"Content-Type: application/msrtc-adrl-categorylist+xml\r\nContact: <"+gruu+">\r\n", string(batch.Marshal()))
	res, raw = c.response(c.cseq, "SUBSCRIBE")
	require.Equal(t, 200, res.StatusCode, raw)
	first, err := presence.ParseNotify(hdr(res)("Content-Type"), res.Body())
	require.NoError(t, err, raw)
	require.Len(t, first.Documents, 1, raw)
	assert.Equal(t, string(bob), first.Documents[0].URI)
	assert.Equal(t, 1, e.sim.SIPPresenceWatchers(bob))

	// Bob publishes through UCWA: alice's client hears of it.
	me := b.self + "/me"
	require.Equal(t, http.StatusNoContent, b.do("POST", me+"/presence", "application/json", `{"availability":"DoNotDisturb"}`).status)
	r := c.next("BENOTIFY of bob's presence", func(m sip.Message) bool {
		req, ok := m.(*sip.Request)
		return ok && req.Method == "BENOTIFY" && hdr(req)("Event") == presence.EventPresence
	})
	req, raw := r.msg.(*sip.Request), r.raw
	n, err := presence.ParseNotify(hdr(req)("Content-Type"), req.Body())
	require.NoError(t, err, raw)
	require.Len(t, n.Documents, 1, raw)
	var state *presence.State
	for _, cat := range n.Documents[0].Categories {
		if cat.State != nil {
			state = cat.State
		}
	}
	require.NotNil(t, state, raw)
	assert.Equal(t, presence.AvailabilityDoNotDisturb, state.Availability)
	assert.Equal(t, "ps1", toTag(req), "in the subscription's dialog")

	// Alice's UCWA application publishes too, then goes: her SIP
	// endpoint is still signed in, so she does not go offline with it.
	a := e.signIn("alice@contoso.com", "alice-pw")
	a.makeMeAvailable("Plain")
	require.Equal(t, http.StatusNoContent, a.do("POST", a.self+"/me/presence", "application/json", `{"availability":"BeRightBack"}`).status)
	e.sim.DeleteApplications(alice)
	p, err = e.sim.GetPresence(alice)
	require.NoError(t, err)
	assert.Equal(t, "BeRightBack", p.Availability)

	// Signing out ends alice's subscriptions and what her endpoint
	// published: she is offline for bob.
	c.cseq++
	c.send("REGISTER", "sip:contoso.com", string(alice), c.regCall, c.cseq, c.regTag, "", c.registerHeaders("0"), "")
	res, raw = c.response(c.cseq, "REGISTER")
	require.Equal(t, 200, res.StatusCode, raw)
	assert.Equal(t, 0, e.sim.SIPPresenceWatchers(bob))
	p, err = e.sim.GetPresence(alice)
	require.NoError(t, err)
	assert.Equal(t, "Offline", p.Availability)
}

func toTag(req *sip.Request) string {
	tag, _ := req.To().Params.Get("tag")
	return tag
}
