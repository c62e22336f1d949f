package sim_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

const (
	alice = sfb.URI("sip:alice@contoso.com")
	bob   = sfb.URI("sip:bob@contoso.com")
	carol = sfb.URI("sip:carol@contoso.com")
)

func (c *client) people() string { return c.self + "/people" }

// subscribe creates a presence subscription and returns it.
func (c *client) subscribe(duration int, uris ...sfb.URI) (int, obj) {
	c.e.t.Helper()
	q := make([]string, len(uris))
	for i, u := range uris {
		q[i] = `"` + string(u) + `"`
	}
	r := c.do("POST", c.people()+"/presenceSubscriptions", "application/json",
		fmt.Sprintf(`{"duration":%d,"uris":[%s]}`, duration, strings.Join(q, ",")))
	if r.status != http.StatusCreated {
		return r.status, r.json(c.e.t)
	}
	return r.status, r.json(c.e.t)
}

func noValues(t *testing.T, evs []evt) {
	t.Helper()
	for _, e := range evs {
		if e.rel == "contactPresence" || e.rel == "contactNote" {
			assert.Nil(t, e.raw["_embedded"], "updated events carry no values")
			assert.Equal(t, "contact", get(t, e.raw, "in", "rel"))
		}
	}
}

func TestPresenceSubscriptionLifecycle(t *testing.T) {
	e := newEnv(t, sim.Options{ApplicationIdleTimeout: 24 * time.Hour})
	a := e.signIn("alice@contoso.com", "alice-pw")
	a.makeMeAvailable("Plain")

	for _, d := range []int{9, 31} {
		st, body := a.subscribe(d, bob)
		assert.Equal(t, http.StatusBadRequest, st, "duration %d", d)
		assert.Equal(t, "ParameterValidationFailure", body["subcode"])
	}
	st, sub := a.subscribe(15, bob)
	require.Equal(t, http.StatusCreated, st)
	assert.Equal(t, "presenceSubscription", sub["rel"])
	self := get(t, sub, "_links", "self", "href").(string)
	addTo := get(t, sub, "_links", "addToPresenceSubscription", "href").(string)
	assert.Equal(t, e.clock.Now().Add(15*time.Minute), e.sim.PresenceSubscriptionExpiry(alice))

	// SubscribeToThePresenceOfSelectedContacts.md: added, then an updated
	// contactPresence that the client must GET.
	evs := a.await("initial presence", is("contactPresence", "updated"))
	noValues(t, evs)
	assert.Contains(t, evs, evt{sender: "people", rel: "presenceSubscription", href: self, typ: "added",
		raw: obj{"link": obj{"rel": "presenceSubscription", "href": self}, "type": "added"}})
	pres := a.do("GET", evs[len(evs)-1].href, "", "").json(t)
	assert.Equal(t, "Online", pres["availability"])
	assert.Equal(t, "PC", pres["deviceType"])

	require.NoError(t, e.sim.SetPresence(bob, sim.Presence{Availability: "Busy", Activity: "in-a-meeting", Note: "Heads down"}))
	evs = a.await("note", is("contactNote", "updated"))
	noValues(t, evs)
	note := a.do("GET", evs[len(evs)-1].href, "", "").json(t)
	assert.Equal(t, "Heads down", note["message"])
	assert.Equal(t, "Personal", note["type"])
	require.NoError(t, e.sim.SetPresence(bob, sim.Presence{Availability: "Away", OutOfOffice: "On leave", Note: "Heads down"}))
	evs = a.await("note", is("contactNote", "updated"))
	note = a.do("GET", evs[len(evs)-1].href, "", "").json(t)
	assert.Equal(t, "On leave", note["message"])
	assert.Equal(t, "OutOfOffice", note["type"])

	// addToPresenceSubscription answers the new memberships.
	r := a.do("POST", addTo, "application/json", `{"contactUris":["sip:carol@contoso.com"]}`)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	ms := get(t, r.json(t), "_embedded", "presenceSubscriptionMembership").([]any)
	require.Len(t, ms, 1)
	assert.Equal(t, a.people()+"/carol@contoso.com", get(t, ms[0], "_links", "contact", "href"))
	assert.Equal(t, 1, e.sim.Subscribers(carol))
	r = a.do("GET", get(t, sub, "_links", "memberships", "href").(string), "", "")
	assert.Len(t, get(t, r.json(t), "_embedded", "presenceSubscriptionMembership"), 2)

	// Deleting carol's membership stops her events.
	require.Equal(t, http.StatusNoContent, a.do("DELETE", get(t, ms[0], "_links", "self", "href").(string), "", "").status)
	assert.Equal(t, 0, e.sim.Subscribers(carol))

	// Extension adds to what remains, at most 30 minutes.
	e.clock.Advance(10 * time.Minute)
	r = a.do("POST", self+"?duration=30", "", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	assert.Equal(t, e.clock.Now().Add(30*time.Minute), e.sim.PresenceSubscriptionExpiry(alice))

	// A minute before expiry: updated ("about to expire"); at expiry:
	// deleted, and extending is answered 404.
	e.clock.Advance(29 * time.Minute)
	e.sim.Sweep()
	a.await("about to expire", is("presenceSubscription", "updated"))
	e.clock.Advance(time.Minute)
	e.sim.Sweep()
	a.await("expired", is("presenceSubscription", "deleted"))
	assert.Equal(t, 0, e.sim.Subscribers(bob))
	assert.Equal(t, http.StatusNotFound, a.do("POST", self+"?duration=30", "", "").status)
}

func TestPresenceSubscriptionLimitExceeded(t *testing.T) {
	e := newEnv(t, sim.Options{MaxPresenceSubscriptions: 2, MaxSubscribedPeople: 2})
	a := e.signIn("alice@contoso.com", "alice-pw")
	st, sub := a.subscribe(10, bob)
	require.Equal(t, http.StatusCreated, st)
	r := a.do("POST", get(t, sub, "_links", "addToPresenceSubscription", "href").(string), "application/json", `{"contactUris":["sip:carol@contoso.com","sip:alice@contoso.com"]}`)
	assert.Equal(t, http.StatusForbidden, r.status)
	assert.Equal(t, "LimitExceeded", r.json(t)["subcode"])
	st, _ = a.subscribe(10, carol)
	require.Equal(t, http.StatusCreated, st)
	st, body := a.subscribe(10, alice)
	assert.Equal(t, http.StatusForbidden, st)
	assert.Equal(t, "LimitExceeded", body["subcode"])
	subs, people := e.sim.PresenceSubscriptions(alice)
	assert.Equal(t, 2, subs)
	assert.Equal(t, 2, people)

	// Server-side drop: a deleted event, nobody watched any more.
	e.sim.DropPresenceSubscriptions(alice)
	a.await("dropped", is("presenceSubscription", "deleted"))
	assert.Equal(t, 0, e.sim.Subscribers(bob))
}

func TestMyPresenceNoteAndIdleness(t *testing.T) {
	e := newEnv(t, sim.Options{ApplicationIdleTimeout: 24 * time.Hour})
	b := e.signIn("bob@contoso.com", "bob-pw")
	st, _ := b.subscribe(30, alice)
	require.Equal(t, http.StatusCreated, st)
	a := e.signIn("alice@contoso.com", "alice-pw")
	a.makeMeAvailable("Plain")
	me := a.self + "/me"

	r := a.do("POST", me+"/presence", "application/json", `{"availability":"Lurking"}`)
	assert.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, http.StatusNoContent, a.do("POST", me+"/presence", "application/json", `{"availability":"Busy"}`).status)
	assert.Equal(t, "Busy", a.do("GET", me+"/presence", "", "").json(t)["availability"])
	b.await("alice busy", is("contactPresence", "updated"))
	assert.Equal(t, 1, e.sim.Publications(alice), "the refused availability is no publication")

	require.Equal(t, http.StatusNoContent, a.do("POST", me+"/note", "application/json", `{"message":"In Element"}`).status)
	assert.Equal(t, "In Element", a.do("GET", me+"/note", "", "").json(t)["message"])
	b.await("alice's note", is("contactNote", "updated"))
	r = a.do("POST", me+"/note", "application/json", `{"message":"`+strings.Repeat("x", 513)+`"}`)
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.Equal(t, 2, e.sim.Publications(alice), "the note counts, the refused one does not")

	availability := func() string {
		e.sim.Sweep()
		p, err := e.sim.GetPresence(alice)
		require.NoError(t, err)
		return p.Availability
	}
	e.clock.Advance(4 * time.Minute)
	assert.Equal(t, "Busy", availability())
	e.clock.Advance(2 * time.Minute)
	assert.Equal(t, "IdleBusy", availability())
	require.Equal(t, http.StatusNoContent, a.do("POST", me+"/reportMyActivity", "", "").status)
	assert.Equal(t, "Busy", availability())
	assert.Equal(t, 2, e.sim.Publications(alice), "activity is no publication")
	e.clock.Advance(15 * time.Minute)
	assert.Equal(t, "Away", availability())

	// An empty body resets the presence; Offwork shows as Away, off work.
	require.Equal(t, http.StatusNoContent, a.do("POST", me+"/presence", "application/json", ``).status)
	assert.Equal(t, "Online", availability())
	require.Equal(t, http.StatusNoContent, a.do("POST", me+"/presence", "application/json", `{"availability":"Offwork"}`).status)
	p, err := e.sim.GetPresence(alice)
	require.NoError(t, err)
	assert.Equal(t, sim.Presence{Availability: "Away", Activity: "off-work", DeviceType: "PC", Note: "In Element", LastActive: e.clock.Now()}, p)

	// The last application gone, what it published goes with it.
	e.sim.DeleteApplications(alice)
	assert.Equal(t, "Offline", availability())

	// Presence set as the native client would: no idleness.
	require.NoError(t, e.sim.SetPresence(alice, sim.Presence{Availability: "Online"}))
	e.clock.Advance(time.Hour)
	assert.Equal(t, "Online", availability())
}

// batch posts GETs of hrefs as one batch and returns the status and body
// of each part.
func (c *client) batch(hrefs ...string) (int, []int, [][]byte) {
	t := c.e.t
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, h := range hrefs {
		w, err := mw.CreatePart(map[string][]string{"Content-Type": {"application/http; msgtype=request"}})
		require.NoError(t, err)
		fmt.Fprintf(w, "GET %s HTTP/1.1\r\nHost: sim\r\nAccept: application/json\r\n\r\n", h)
	}
	require.NoError(t, mw.Close())
	r := c.do("POST", c.self+"/batch", "multipart/batching; boundary="+mw.Boundary(), body.String())
	if r.status != http.StatusOK {
		return r.status, nil, nil
	}
	mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/batching", mt)
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	var statuses []int
	var bodies [][]byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		assert.Equal(t, "application/http; msgtype=response", p.Header.Get("Content-Type"))
		res, err := http.ReadResponse(bufio.NewReader(p), nil)
		require.NoError(t, err)
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		statuses = append(statuses, res.StatusCode)
		bodies = append(bodies, b)
	}
	return r.status, statuses, bodies
}

func TestBatch(t *testing.T) {
	e := newEnv(t, sim.Options{MaxBatchRequests: 4})
	a := e.signIn("alice@contoso.com", "alice-pw")
	require.NoError(t, e.sim.SetPresence(bob, sim.Presence{Availability: "DoNotDisturb"}))
	require.NoError(t, e.sim.SetPresence(carol, sim.Presence{Availability: "Online", Note: "hello"}))
	p := a.people()
	st, statuses, bodies := a.batch(p+"/bob@contoso.com/presence", p+"/carol@contoso.com/note", p+"/nobody@contoso.com/presence", a.self+"/batch")
	require.Equal(t, http.StatusOK, st)
	assert.Equal(t, []int{200, 200, 404, 400}, statuses, "in order, each answered alone; a batch cannot hold a batch")
	assert.Contains(t, string(bodies[0]), `"availability":"DoNotDisturb"`)
	assert.Contains(t, string(bodies[1]), `"message":"hello"`)

	before := e.sim.BatchedRequests()
	st, _, _ = a.batch(p+"/bob@contoso.com/presence", p+"/bob@contoso.com/presence", p+"/bob@contoso.com/presence", p+"/bob@contoso.com/presence", p+"/bob@contoso.com/presence")
	assert.Equal(t, http.StatusTooManyRequests, st)
	assert.Equal(t, before, e.sim.BatchedRequests(), "none of a refused batch runs")
}

func TestContactListAndGroups(t *testing.T) {
	e := newEnv(t, sim.Options{})
	a := e.signIn("alice@contoso.com", "alice-pw")
	require.Error(t, e.sim.SetContacts(alice, []sim.ContactGroup{{Name: "Team", Members: []sfb.URI{"sip:nobody@contoso.com"}}}))
	require.NoError(t, e.sim.SetContacts(alice, []sim.ContactGroup{{Name: "Team", Members: []sfb.URI{bob, carol}}, {Name: "Lunch", Members: []sfb.URI{bob}}}))
	evs := a.await("contact added", func(ev evt) bool { return ev.rel == "contact" && ev.typ == "added" })
	assert.Equal(t, "myContacts", get(t, evs[len(evs)-1].raw, "in", "rel"))

	contacts := a.do("GET", a.people()+"/contacts", "", "").json(t)
	assert.Equal(t, "myContacts", contacts["rel"])
	assert.Len(t, get(t, contacts, "_embedded", "contact"), 2, "each person once")
	groups := a.do("GET", a.people()+"/groups", "", "").json(t)
	gs := get(t, groups, "_embedded", "group").([]any)
	require.Len(t, gs, 2)
	assert.Equal(t, "Lunch", get(t, gs[1], "name"))
	members := a.do("GET", get(t, gs[1], "_links", "groupContacts", "href").(string), "", "").json(t)
	assert.Equal(t, "sip:bob@contoso.com", get(t, members, "_embedded", "contact").([]any)[0].(obj)["uri"])

	require.NoError(t, e.sim.SetContacts(alice, []sim.ContactGroup{{Name: "Team", Members: []sfb.URI{carol}}}))
	evs = a.await("contact deleted", func(ev evt) bool { return ev.rel == "contact" && ev.typ == "deleted" })
	assert.Equal(t, a.people()+"/bob@contoso.com", evs[len(evs)-1].href)
}

func TestPresenceStorm(t *testing.T) {
	e := newEnv(t, sim.Options{})
	users := e.sim.GenerateUsers(50, "storm.example")
	uris := make([]sfb.URI, len(users))
	for i, u := range users {
		uris[i] = u.URI
	}
	before := e.sim.PresenceChanges()
	var seen atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	n, err := e.sim.PresenceStorm(ctx, 2000, uris, func(sfb.URI, sim.Presence) { seen.Add(1) })
	require.NoError(t, err)
	assert.Greater(t, n, len(uris), "every user changed at least once")
	assert.Equal(t, int64(n), seen.Load())
	assert.Equal(t, int64(n), e.sim.PresenceChanges()-before)
	p, err := e.sim.GetPresence(uris[0])
	require.NoError(t, err)
	assert.NotEqual(t, sim.Presence{Availability: "Online", DeviceType: "PC"}, p)
	_, err = e.sim.PresenceStorm(ctx, 0, uris, nil)
	assert.Error(t, err)
}

func TestPresenceControlAPI(t *testing.T) {
	e := newEnv(t, sim.Options{ApplicationIdleTimeout: 24 * time.Hour})
	a := e.signIn("alice@contoso.com", "alice-pw")
	st, _ := a.subscribe(30, bob)
	require.Equal(t, http.StatusCreated, st)

	r := e.do("PUT", "/sim/v1/users/bob@contoso.com/presence", "", "application/json",
		`{"availability":"Away","activity":"off-work","out_of_office":"Back on 3 Dec","device_type":"Mobile"}`)
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	got := e.do("GET", "/sim/v1/users/bob@contoso.com/presence", "", "", "").json(t)
	assert.Equal(t, "Away", got["availability"])
	assert.Equal(t, "Back on 3 Dec", got["out_of_office"])
	assert.Equal(t, "Mobile", got["device_type"])
	for _, bad := range []string{`{"availability":"Lurking"}`, `{"device_type":"Toaster"}`, `{"note":"` + strings.Repeat("n", 600) + `"}`, `{`} {
		r = e.do("PUT", "/sim/v1/users/bob@contoso.com/presence", "", "application/json", bad)
		assert.Equal(t, http.StatusBadRequest, r.status, "%s: %s", bad, r.body)
	}
	assert.Equal(t, http.StatusNotFound, e.do("PUT", "/sim/v1/users/nobody@contoso.com/presence", "", "application/json", `{}`).status)

	r = e.do("PUT", "/sim/v1/users/alice@contoso.com/contacts", "", "application/json", `{"groups":[{"name":"Team","members":["sip:bob@contoso.com"]}]}`)
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	assert.Len(t, get(t, a.do("GET", a.people()+"/contacts", "", "").json(t), "_embedded", "contact"), 1)

	subs := e.do("GET", "/sim/v1/users/alice@contoso.com/presence-subscriptions", "", "", "").json(t)
	assert.Equal(t, obj{"subscriptions": 1.0, "people": 1.0}, subs)
	r = e.do("POST", "/sim/v1/faults/drop-presence-subscriptions", "", "application/json", `{"user":"sip:alice@contoso.com"}`)
	require.Equal(t, http.StatusNoContent, r.status)
	assert.Equal(t, 0, e.sim.Subscribers(bob))

	before := e.sim.PresenceChanges()
	r = e.do("POST", "/sim/v1/presence-storm", "", "application/json", `{"rate":500,"users":3,"seconds":1}`)
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	assert.Equal(t, 3.0, r.json(t)["users"])
	require.Eventually(t, func() bool { return e.sim.PresenceChanges()-before >= 10 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, http.StatusBadRequest, e.do("POST", "/sim/v1/presence-storm", "", "application/json", `{"rate":0,"users":3,"seconds":1}`).status)
}

// BenchmarkPresenceChange is the cost of one presence change with the
// directory of the bench (70,000 users) and 35,000 of them watched by 35
// applications of 1,000 each (a change finds its subscribers through the
// index, not by scanning applications).
func BenchmarkPresenceChange(b *testing.B) {
	e := newEnv(b, sim.Options{ApplicationIdleTimeout: 24 * time.Hour})
	users := e.sim.GenerateUsers(70000, "contoso.com")
	for i := range 35 {
		c := e.signIn(users[i].URI.Address(), sim.GeneratedPassword)
		for j := 0; j < 1000; j += 100 {
			q := make([]string, 0, 100)
			for _, u := range users[35000+i*1000+j : 35000+i*1000+j+100] {
				q = append(q, `"`+string(u.URI)+`"`)
			}
			r := c.do("POST", c.people()+"/presenceSubscriptions", "application/json", `{"duration":30,"uris":[`+strings.Join(q, ",")+`]}`)
			if r.status != http.StatusCreated {
				b.Fatalf("subscribe: %d %s", r.status, r.body)
			}
		}
	}
	states := []sim.Presence{{Availability: "Busy"}, {Availability: "Online"}}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := e.sim.SetPresence(users[35000+i%35000].URI, states[i/35000%2]); err != nil {
			b.Fatal(err)
		}
	}
}
