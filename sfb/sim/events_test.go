package sim_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// background runs one request in the background.
func (c *client) background(href string) <-chan resp {
	ch := make(chan resp, 1)
	go func() {
		req, _ := http.NewRequest("GET", c.e.hs.URL+href, nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		// No keep-alive: net/http silently retries a GET that failed on a
		// reused connection, which would hide a dropped event channel.
		cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		res, err := cl.Do(req)
		if err != nil {
			ch <- resp{status: -1, body: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		// A dropped channel ends the body early: keep what arrived.
		body, _ := io.ReadAll(res.Body)
		ch <- resp{status: res.StatusCode, header: res.Header, body: body}
	}()
	return ch
}

func (e *env) waitPending(u sfb.URI, n int) {
	e.t.Helper()
	require.Eventually(e.t, func() bool { return e.sim.PendingGETs(u) == n }, 5*time.Second, time.Millisecond)
}

func recv(t *testing.T, ch <-chan resp) resp {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no response within 10s")
		return resp{}
	}
}

func TestAckSemantics(t *testing.T) {
	e := newEnv(t, sim.Options{})
	ctx := context.Background()
	alice := e.signIn("alice@contoso.com", "alice-pw")
	alice.makeMeAvailable()
	require.NoError(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{Text: "one"}))

	// Events accumulated while nobody polled come in one batch.
	first := alice.do("GET", alice.next, "", "")
	require.Equal(t, http.StatusOK, first.status)
	body := first.json(t)
	assert.Equal(t, alice.next, get(t, body, "_links", "self", "href"))
	next := get(t, body, "_links", "next", "href").(string)
	assert.True(t, strings.HasSuffix(next, "events?ack=2"), next)
	evs := flatten(t, body)
	find(t, evs, is("me", "updated"))
	find(t, evs, is("messagingInvitation", "started"))

	// The same ack again: the same batch (a lost response loses nothing).
	again := alice.do("GET", alice.next, "", "")
	assert.Equal(t, string(first.body), string(again.body))

	// Acknowledging it: an empty batch after EventWait, with only links.
	alice.next = next
	empty, evs := alice.poll()
	assert.Empty(t, evs)
	assert.NotContains(t, empty, "sender")
	assert.True(t, strings.HasSuffix(alice.next, "events?ack=3"), alice.next)

	// An acknowledged batch, and one from the future: resync to ack=2's
	// successor, the first unacknowledged.
	for _, ack := range []string{"1", "9", "x"} {
		stale := alice.do("GET", alice.self+"/events?ack="+ack, "", "")
		require.Equal(t, http.StatusOK, stale.status)
		links := stale.json(t)["_links"].(obj)
		assert.NotContains(t, links, "next")
		assert.Equal(t, alice.self+"/events?ack=2", get(t, links, "resync", "href"), "ack=%s", ack)
	}
}

func TestPGetReplaced(t *testing.T) {
	e := newEnv(t, sim.Options{EventWait: 5 * time.Second})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	firstGet := alice.background(alice.next)
	e.waitPending("sip:alice@contoso.com", 1)
	secondGet := alice.background(alice.next)

	r := recv(t, firstGet)
	require.Equal(t, http.StatusConflict, r.status)
	assert.Equal(t, "Conflict", r.json(t)["code"])
	assert.Equal(t, "PGetReplaced", r.json(t)["subcode"])

	// The second one is still the pending GET and gets the next event.
	e.waitPending("sip:alice@contoso.com", 1)
	start := time.Now()
	alice.makeMeAvailable()
	r = recv(t, secondGet)
	require.Equal(t, http.StatusOK, r.status)
	find(t, flatten(t, r.json(t)), is("communication", "updated"))
	assert.Less(t, time.Since(start), 4*time.Second, "released by the events, not by EventWait")
	assert.Equal(t, 0, e.sim.PendingGETs("sip:alice@contoso.com"))
}

func TestForceResyncAndResume(t *testing.T) {
	e := newEnv(t, sim.Options{})
	ctx := context.Background()
	alice := e.signIn("alice@contoso.com", "alice-pw")
	alice.makeMeAvailable()
	alice.await("communication", is("communication", "updated"))

	e.sim.ForceResync("sip:alice@contoso.com")
	r := alice.do("GET", alice.next, "", "")
	body := r.json(t)
	assert.Equal(t, obj{"self": obj{"href": alice.next}, "resync": obj{"href": alice.next}}, body["_links"])
	assert.NotContains(t, body, "sender")

	// A conversation, then a forced resume: the conversation is gone and
	// the next response carries resume instead of next.
	require.NoError(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{Text: "hi"}))
	evs := alice.await("conversation", is("conversation", "added"))
	conv := evs[len(evs)-1].href
	require.Equal(t, http.StatusOK, alice.do("GET", conv, "", "").status)
	e.sim.ForceResume("sip:alice@contoso.com")
	assert.Equal(t, http.StatusNotFound, alice.do("GET", conv, "", "").status)
	body, _ = alice.poll()
	links := body["_links"].(obj)
	assert.Contains(t, links, "resume")
	assert.NotContains(t, links, "next")
	// After the resume the channel goes on with next links.
	body, _ = alice.poll()
	assert.Contains(t, body["_links"], "next")
	// bob's next message starts a new conversation.
	require.NoError(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{Text: "again"}))
	evs = alice.await("conversation", is("conversation", "added"))
	assert.NotEqual(t, conv, evs[len(evs)-1].href)
}

// getAll does a GET with cl and reads the whole body: err is what a client
// sees of a dropped connection, in the headers or in the body.
func (c *client) getAll(cl *http.Client, href string) (resp, error) {
	req, err := http.NewRequest("GET", c.e.hs.URL+href, nil)
	require.NoError(c.e.t, err)
	req.Header.Set("Authorization", "Bearer "+c.token)
	res, err := cl.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: data}, err
}

func TestDropEventChannel(t *testing.T) {
	// Aggregation holds makeMeAvailable's medium events, so the dropped
	// GET is waiting with events to deliver.
	e := newEnv(t, sim.Options{EventWait: 10 * time.Second, EventAggregation: 10 * time.Second})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	// A plain client with keep-alive, the case where a connection closed
	// before any response byte would be retried silently.
	cl := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(cl.CloseIdleConnections)
	warm, err := alice.getAll(cl, alice.self)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, warm.status)

	ack := alice.next
	type result struct {
		r   resp
		err error
	}
	pending := make(chan result, 1)
	go func() {
		r, err := alice.getAll(cl, ack)
		pending <- result{r, err}
	}()
	e.waitPending("sip:alice@contoso.com", 1)
	alice.makeMeAvailable()
	e.sim.DropEventChannel("sip:alice@contoso.com")
	var dropped result
	select {
	case dropped = <-pending:
	case <-time.After(5 * time.Second):
		t.Fatal("the dropped GET did not end within 5s")
	}
	require.Error(t, dropped.err, "the client must see the drop, got %d %s", dropped.r.status, dropped.r.body)
	assert.ErrorIs(t, dropped.err, io.ErrUnexpectedEOF, "cut in the middle of the body")

	// The batch was not acknowledged: the same ack gets it whole.
	again, err := alice.getAll(cl, ack)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, again.status, "%s", again.body)
	body := again.json(t)
	assert.Equal(t, ack, get(t, body, "_links", "self", "href"))
	assert.True(t, strings.HasPrefix(string(again.body), string(dropped.r.body)), "the cut answer is part of the same batch")
	var rels []string
	for _, ev := range flatten(t, body) {
		rels = append(rels, ev.rel+" "+ev.typ)
	}
	assert.Subset(t, rels, []string{"me updated", "presence added", "note added", "location added", "communication updated"})
	alice.next = get(t, body, "_links", "next", "href").(string)

	// Without a pending GET, the next one is dropped; its ack counts, the
	// batch it would have carried comes with the same ack again.
	require.NoError(t, e.sim.SendMessage(context.Background(), "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{Text: "hi"}))
	e.sim.DropEventChannel("sip:alice@contoso.com")
	_, err = alice.getAll(cl, alice.next)
	require.Error(t, err)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	again, err = alice.getAll(cl, alice.next)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, again.status, "%s", again.body)
	body = again.json(t)
	assert.Equal(t, alice.next, get(t, body, "_links", "self", "href"))
	var texts []any
	for _, ev := range flatten(t, body) {
		if ev.rel == "messagingInvitation" && ev.typ == "started" {
			texts = append(texts, get(t, ev.embedded(), "_links", "message", "href"))
		}
	}
	assert.Equal(t, []any{"data:text/plain;charset=utf-8,hi"}, texts)
	alice.next = get(t, body, "_links", "next", "href").(string)
	// Nothing is dropped any more.
	e.sim.ForceResync("sip:alice@contoso.com") // answers at once
	r, err := alice.getAll(cl, alice.next)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, r.status)
}

func TestFailRequestsAndLatency(t *testing.T) {
	e := newEnv(t, sim.Options{})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	e.sim.FailRequests(2, http.StatusServiceUnavailable)
	for range 2 {
		r := alice.do("GET", alice.self, "", "")
		require.Equal(t, http.StatusServiceUnavailable, r.status)
		assert.Equal(t, "1", r.header.Get("Retry-After"))
		assert.Equal(t, "ServiceUnavailable", r.json(t)["code"])
	}
	assert.Equal(t, http.StatusOK, alice.do("GET", alice.self, "", "").status)

	e.sim.FailRequestsRetryAfter(1, http.StatusServiceUnavailable, 30*time.Second)
	// The control API is not affected by faults.
	assert.Equal(t, http.StatusOK, e.do("GET", "/sim/v1/info", "", "", "").status)
	r := e.do("GET", e.sim.DiscoveryURL(), "", "", "")
	assert.Equal(t, http.StatusServiceUnavailable, r.status)
	assert.Equal(t, "30", r.header.Get("Retry-After"))

	e.sim.SetLatency(60 * time.Millisecond)
	start := time.Now()
	assert.Equal(t, http.StatusOK, alice.do("GET", alice.self, "", "").status)
	assert.GreaterOrEqual(t, time.Since(start), 60*time.Millisecond)
	e.sim.SetLatency(0)
}

func TestIdleExpiry(t *testing.T) {
	opts := sim.Options{
		ConversationIdleTimeout: 10 * time.Minute,
		ApplicationIdleTimeout:  15 * time.Minute,
		InvitationTimeout:       30 * time.Second,
		TypingTimeout:           10 * time.Second,
		EventWait:               5 * time.Second,
	}
	ctx := context.Background()
	alice, bob := sfb.URI("sip:alice@contoso.com"), sfb.URI("sip:bob@contoso.com")

	t.Run("conversation and typing", func(t *testing.T) {
		e := newEnv(t, opts)
		c := e.signIn("alice@contoso.com", "alice-pw")
		c.makeMeAvailable()
		require.NoError(t, e.sim.SendMessage(ctx, bob, alice, sfb.Message{Text: "hi"}))
		evs := c.await("invitation", is("messagingInvitation", "started"))
		inv := evs[len(evs)-1].embedded()
		require.Equal(t, http.StatusNoContent, c.do("POST", get(t, inv, "_links", "accept", "href").(string), "", "").status)
		c.await("connected", is("messagingInvitation", "completed"))

		require.NoError(t, e.sim.SetTyping(ctx, bob, alice, true))
		c.await("typing", is("participant", "added"))
		e.clock.Advance(opts.TypingTimeout)
		e.sim.Sweep()
		assert.False(t, e.sim.Typing(alice, bob))
		c.await("typing expired", is("participant", "deleted"))

		e.clock.Advance(opts.ConversationIdleTimeout - opts.TypingTimeout - time.Second)
		e.sim.Sweep()
		require.NoError(t, e.sim.SendMessage(ctx, bob, alice, sfb.Message{Text: "still here"}))
		c.await("message", is("message", "completed"))
		e.clock.Advance(opts.ConversationIdleTimeout)
		e.sim.Sweep()
		evs = c.await("conversation deleted", is("conversation", "deleted"))
		msg := find(t, evs, func(ev evt) bool { return ev.rel == "messaging" && ev.typ == "updated" })
		assert.Equal(t, "Disconnected", msg.embedded()["state"])
	})

	t.Run("unanswered invitation", func(t *testing.T) {
		e := newEnv(t, opts)
		c := e.signIn("alice@contoso.com", "alice-pw")
		c.makeMeAvailable()
		require.NoError(t, e.sim.SendMessage(ctx, bob, alice, sfb.Message{Text: "anyone?"}))
		require.NoError(t, e.sim.SendMessage(ctx, bob, alice, sfb.Message{Text: "queued"}))
		c.await("invitation", is("messagingInvitation", "started"))
		e.clock.Advance(opts.InvitationTimeout)
		e.sim.Sweep()
		evs := c.await("invitation failed", is("messagingInvitation", "completed"))
		assert.Equal(t, "Failure", evs[len(evs)-1].status)
		c.await("conversation deleted", is("conversation", "deleted"))
		assert.Empty(t, e.sim.Received(alice))
	})

	t.Run("application", func(t *testing.T) {
		e := newEnv(t, opts)
		c := e.signIn("alice@contoso.com", "alice-pw")
		// A parked P-GET keeps the application alive.
		pending := c.background(c.next)
		e.waitPending(alice, 1)
		e.clock.Advance(opts.ApplicationIdleTimeout * 2)
		e.sim.Sweep()
		assert.Equal(t, 1, e.sim.Applications(alice))
		// Once it returns and nothing else comes, the application expires.
		e.sim.ForceResync(alice)
		require.Equal(t, http.StatusOK, recv(t, pending).status)
		e.clock.Advance(opts.ApplicationIdleTimeout)
		e.sim.Sweep()
		assert.Equal(t, 0, e.sim.Applications(alice))
		r := c.do("GET", c.self, "", "")
		assert.Equal(t, http.StatusGone, r.status)
		assert.Equal(t, obj{"code": "Gone", "subcode": "InactiveApplicationExpired", "message": "The application expired because it was inactive."}, r.json(t))
	})

	t.Run("deleted while polling", func(t *testing.T) {
		e := newEnv(t, opts)
		c := e.signIn("alice@contoso.com", "alice-pw")
		pending := c.background(c.next)
		e.waitPending(alice, 1)
		e.sim.DeleteApplications(alice)
		r := recv(t, pending)
		assert.Equal(t, http.StatusNotFound, r.status)
		assert.Equal(t, "ApplicationNotFound", r.json(t)["subcode"])
	})

	t.Run("expire conversations", func(t *testing.T) {
		e := newEnv(t, opts)
		c := e.signIn("alice@contoso.com", "alice-pw")
		start := get(t, c.app, "_embedded", "communication", "_links", "startMessaging", "href").(string)
		require.Equal(t, http.StatusCreated, c.do("POST", start, "application/json", `{"to":"sip:bob@contoso.com"}`).status)
		c.await("connected", is("messagingInvitation", "completed"))
		e.sim.ExpireConversations(bob)
		c.await("conversation deleted", is("conversation", "deleted"))
	})
}

// withQuery adds query parameters to an events link the way the reference
// asks: the link already has some, so it is parsed, not concatenated.
func withQuery(t *testing.T, href string, kv ...string) string {
	t.Helper()
	u, err := url.Parse(href)
	require.NoError(t, err)
	q := u.Query()
	for i := 0; i < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func TestEventChannelSettingsValidated(t *testing.T) {
	e := newEnv(t, sim.Options{})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	for _, kv := range [][2]string{
		{"medium", "4"}, {"medium", "1801"}, {"medium", "x"}, {"medium", "1.5"}, {"medium", ""},
		{"low", "4"}, {"low", "1801"}, {"timeout", "179"}, {"timeout", "1801"}, {"timeout", "-1"},
	} {
		r := alice.do("GET", withQuery(t, alice.next, kv[0], kv[1]), "", "")
		require.Equal(t, http.StatusBadRequest, r.status, "%s=%s", kv[0], kv[1])
		body := r.json(t)
		assert.Equal(t, "BadRequest", body["code"])
		assert.Equal(t, "ParameterValidationFailure", body["subcode"])
		assert.Contains(t, body["message"], kv[0]+" must be a whole number of seconds")
	}
	// A refused request acknowledged nothing: the channel goes on.
	alice.makeMeAvailable()
	alice.await("communication", is("communication", "updated"))
}

func TestEventChannelMediumRememberedUntilResume(t *testing.T) {
	// EventAggregation (the default) is 10ms here: medium=5 is what holds.
	e := newEnv(t, sim.Options{EventWait: time.Minute})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	emitted := time.Now()
	alice.makeMeAvailable() // medium-priority events: me, communication

	held := alice.background(withQuery(t, alice.next, "medium", "5"))
	assert.Never(t, func() bool { return len(held) > 0 }, time.Second, 10*time.Millisecond, "medium=5 holds the events")

	// A replacing P-GET without the parameter: the server remembers it.
	e.waitPending("sip:alice@contoso.com", 1)
	stillHeld := alice.background(alice.next)
	assert.Equal(t, http.StatusConflict, recv(t, held).status)
	assert.Never(t, func() bool { return len(stillHeld) > 0 }, 500*time.Millisecond, 10*time.Millisecond, "medium=5 is remembered")

	// The channel is re-created: the setting is lost, the default holds
	// again and the next P-GET gets the events at once, with resume.
	e.waitPending("sip:alice@contoso.com", 1)
	e.sim.ForceResume("sip:alice@contoso.com")
	r := recv(t, alice.background(alice.next))
	assert.Less(t, time.Since(emitted), 4*time.Second, "released before medium=5 would")
	assert.Equal(t, http.StatusConflict, recv(t, stillHeld).status)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	body := r.json(t)
	assert.Contains(t, body["_links"], "resume")
	find(t, flatten(t, body), is("communication", "updated"))
}
