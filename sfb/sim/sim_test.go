package sim_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

func TestSignInFlow(t *testing.T) {
	e := newEnv(t, sim.Options{TokenLifetime: 2 * time.Hour})

	root := e.do("GET", e.sim.DiscoveryURL(), "", "", "")
	require.Equal(t, http.StatusOK, root.status)
	links := root.json(t)["_links"].(obj)
	for _, rel := range []string{"self", "user", "xframe"} {
		assert.True(t, strings.HasPrefix(get(t, links, rel, "href").(string), e.hs.URL+"/"), rel)
	}

	ch := e.do("GET", get(t, links, "user", "href").(string), "", "", "")
	require.Equal(t, http.StatusUnauthorized, ch.status)
	auth := ch.header.Values("WWW-Authenticate")
	require.Len(t, auth, 2)
	assert.True(t, strings.HasPrefix(auth[0], `Bearer trusted_issuers="`))
	assert.Equal(t, `MsRtcOAuth href="`+e.hs.URL+`/WebTicket/oauthtoken",grant_type="urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password"`, auth[1])

	tokenURL := e.hs.URL + "/WebTicket/oauthtoken"
	for _, tc := range []struct {
		name, body, want string
	}{
		{"wrong password", "grant_type=password&username=alice@contoso.com&password=nope", "invalid_grant"},
		{"unknown user", "grant_type=password&username=nobody@contoso.com&password=x", "invalid_grant"},
		{"windows grant", "grant_type=urn:microsoft.rtc:windows", "invalid_grant"},
		{"unknown grant", "grant_type=client_credentials", "unsupported_grant_type"},
		{"missing password", "grant_type=password&username=alice@contoso.com", "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", tokenURL, "", "application/x-www-form-urlencoded", tc.body)
			assert.Equal(t, http.StatusBadRequest, r.status)
			assert.Equal(t, obj{"error": tc.want}, r.json(t))
		})
	}

	r := e.do("POST", tokenURL, "", "application/x-www-form-urlencoded;charset=UTF-8",
		url.Values{"grant_type": {"password"}, "username": {"Alice@Contoso.com"}, "password": {"alice-pw"}}.Encode())
	require.Equal(t, http.StatusOK, r.status)
	tok := r.json(t)
	assert.True(t, strings.HasPrefix(tok["access_token"].(string), "cwt="))
	assert.Equal(t, float64(7200), tok["expires_in"])
	assert.Equal(t, "local", tok["ms_rtc_identityscope"])
	assert.Equal(t, "Bearer", tok["token_type"])
	assert.Equal(t, "no-store", r.header.Get("Cache-Control"))

	u := e.do("GET", get(t, links, "user", "href").(string), tok["access_token"].(string), "", "")
	require.Equal(t, http.StatusOK, u.status)
	apps := get(t, u.json(t), "_links", "applications", "href").(string)
	assert.Equal(t, e.hs.URL+"/ucwa/oauth/v1/applications", apps)

	bad := e.do("POST", apps, tok["access_token"].(string), "application/json", `{"Culture":"en-US"}`)
	assert.Equal(t, http.StatusBadRequest, bad.status)
	assert.Equal(t, "ParameterValidationFailure", bad.json(t)["subcode"])

	c := e.signIn("alice@contoso.com", "alice-pw")
	assert.Equal(t, "application", c.app["rel"])
	assert.Regexp(t, `^/ucwa/oauth/v1/applications/\d+/events\?ack=1$`, c.next)
	for _, rel := range []string{"me", "people", "onlineMeetings", "communication"} {
		assert.Equal(t, rel, get(t, c.app, "_embedded", rel, "rel"), rel)
	}
	assert.Equal(t, "Alice Aaling", get(t, c.app, "_embedded", "me", "name"))
	assert.Equal(t, "sip:alice@contoso.com", get(t, c.app, "_embedded", "me", "uri"))
	assert.Equal(t, 1, e.sim.Applications("sip:alice@contoso.com"))

	got := c.do("GET", c.self, "", "")
	require.Equal(t, http.StatusOK, got.status)
	assert.Equal(t, c.self, get(t, got.json(t), "_links", "self", "href"))
	me := c.do("GET", c.self+"/me", "", "")
	assert.Equal(t, "me", me.json(t)["rel"])
	contact := c.do("GET", c.self+"/people/bob@contoso.com", "", "")
	require.Equal(t, http.StatusOK, contact.status)
	assert.Equal(t, "Bob Meston", contact.json(t)["name"])
	assert.Equal(t, http.StatusNotFound, c.do("GET", c.self+"/people/nobody@contoso.com", "", "").status)

	// reportMyActivity needs makeMeAvailable first; makeMeAvailable once.
	rma := c.do("POST", c.self+"/me/reportMyActivity", "", "")
	assert.Equal(t, http.StatusConflict, rma.status)
	assert.Equal(t, "MakeMeAvailableRequired", rma.json(t)["subcode"])
	c.makeMeAvailable("Plain")
	again := c.do("POST", c.self+"/me/makeMeAvailable", "application/json", `{}`)
	assert.Equal(t, http.StatusConflict, again.status)
	assert.Equal(t, obj{"code": "Conflict", "subcode": "AlreadyExists", "message": "Multiple invocations of this operation is not valid."}, again.json(t))
	assert.Equal(t, http.StatusNoContent, c.do("POST", c.self+"/me/reportMyActivity", "", "").status)
	// The me and communication updates of ReceiveAnIM step 7.
	evs := c.await("communication updated", is("communication", "updated"))
	var rels []string
	for _, ev := range evs {
		rels = append(rels, ev.sender+"/"+ev.rel+"/"+ev.typ)
	}
	assert.Equal(t, []string{"me/me/updated", "me/presence/added", "me/note/added", "me/location/added", "communication/communication/updated"}, rels)
	assert.Equal(t, []any{"Messaging"}, evs[4].embedded()["supportedModalities"])

	del := c.do("DELETE", c.self, "", "")
	assert.Equal(t, http.StatusNoContent, del.status)
	gone := c.do("GET", c.self, "", "")
	assert.Equal(t, http.StatusNotFound, gone.status)
	assert.Equal(t, "ApplicationNotFound", gone.json(t)["subcode"])
}

func TestTokenExpiry(t *testing.T) {
	e := newEnv(t, sim.Options{TokenLifetime: time.Hour})
	c := e.signIn("alice@contoso.com", "alice-pw")
	require.Equal(t, http.StatusOK, c.do("GET", c.self+"/me", "", "").status)

	e.clock.Advance(time.Hour)
	r := c.do("GET", c.self+"/me", "", "")
	assert.Equal(t, http.StatusUnauthorized, r.status)
	assert.Len(t, r.header.Values("WWW-Authenticate"), 2)

	// A new token works for the same application; ExpireTokens kills it.
	tok, _ := e.token("alice@contoso.com", "alice-pw")
	c.token = tok
	require.Equal(t, http.StatusOK, c.do("GET", c.self+"/me", "", "").status)
	e.sim.ExpireTokens("sip:alice@contoso.com")
	assert.Equal(t, http.StatusUnauthorized, c.do("GET", c.self+"/me", "", "").status)
	assert.Equal(t, http.StatusUnauthorized, e.do("GET", c.self, "", "", "").status, "no token")
	assert.Equal(t, http.StatusUnauthorized, e.do("GET", c.self, "cwt=forged", "", "").status)

	// Another user's token does not reach alice's application.
	bob := e.signIn("bob@contoso.com", "bob-pw")
	r = bob.do("GET", c.self, "", "")
	assert.Equal(t, http.StatusNotFound, r.status)
}

func TestReceiveIMFromNativeUser(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	alice.makeMeAvailable("Plain", "Html")

	require.NoError(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{Text: "Hi Alice\r\n"}))
	evs := alice.await("invitation", is("messagingInvitation", "started"))
	inv := evs[len(evs)-1]
	assert.Equal(t, "communication", inv.sender)
	res := inv.embedded()
	assert.Equal(t, "Incoming", res["direction"])
	assert.Equal(t, "Connecting", res["state"])
	assert.Equal(t, "data:text/plain;charset=utf-8,Hi+Alice%0D%0A", get(t, res, "_links", "message", "href"))
	assert.Equal(t, "Bob Meston", get(t, res, "_links", "from", "title"))
	assert.Equal(t, "sip:bob@contoso.com", get(t, res, "_embedded", "from", "uri"))
	accept := get(t, res, "_links", "accept", "href").(string)
	assert.NotEmpty(t, get(t, res, "_links", "decline", "href"))
	// The message is not delivered before the invitation is accepted.
	assert.Empty(t, e.sim.Received("sip:alice@contoso.com"))

	// The participant resource of the sender, as in ReceiveAnIM step 11.
	from := e.do("GET", get(t, res, "_links", "from", "href").(string), alice.token, "", "")
	require.Equal(t, http.StatusOK, from.status)
	assert.Equal(t, "Bob Meston", from.json(t)["name"])

	require.Equal(t, http.StatusNoContent, alice.do("POST", accept, "", "").status)
	evs = alice.await("invitation completed", is("messagingInvitation", "completed"))
	var messaging, conv obj
	for _, ev := range evs {
		switch {
		case ev.rel == "messaging" && ev.typ == "updated":
			messaging = ev.embedded()
		case ev.rel == "conversation" && ev.typ == "updated":
			conv = ev.embedded()
		}
	}
	require.NotNil(t, messaging)
	assert.Equal(t, "Connected", messaging["state"])
	sendHref := get(t, messaging, "_links", "sendMessage", "href").(string)
	assert.Equal(t, "Connected", conv["state"])
	assert.Equal(t, "Success", evs[len(evs)-1].status)
	rec := e.sim.Received("sip:alice@contoso.com")
	require.Len(t, rec, 1)
	assert.Equal(t, sfb.URI("sip:bob@contoso.com"), rec[0].From)
	assert.Equal(t, "Hi Alice\r\n", rec[0].Message.Text)
	assert.Equal(t, conv["threadId"], rec[0].ThreadID)

	// ReceiveAnIM step 16: the invitation's message comes again as the
	// conversation's first message event.
	evs = alice.await("repeated first message", is("message", "completed"))
	first := evs[len(evs)-1]
	assert.Equal(t, "conversation", first.sender)
	assert.Equal(t, "Success", first.status)
	assert.True(t, strings.HasSuffix(first.href, "/messaging/messages/1"), first.href)
	assert.Equal(t, "Incoming", first.embedded()["direction"])
	assert.Equal(t, get(t, res, "_links", "message", "href"), get(t, first.embedded(), "_links", "plainMessage", "href"))
	assert.Len(t, e.sim.Received("sip:alice@contoso.com"), 1, "the repeat is not a second delivery")

	// Later messages are message events: plain, non-ASCII (base64), HTML.
	for i, tc := range []struct {
		msg        sfb.Message
		plain      string
		html       string
		wantBase64 bool
	}{
		{msg: sfb.Message{Text: "second one"}, plain: "data:text/plain;charset=utf-8,second+one"},
		{msg: sfb.Message{Text: "Grüße"}, plain: "data:text/plain;charset=utf-8;base64," + base64.StdEncoding.EncodeToString([]byte("Grüße"))},
		{msg: sfb.Message{Text: "bold", HTML: "<b>bold</b>"}, plain: "data:text/plain;charset=utf-8,bold", html: "data:text/html;charset=utf-8,%3Cb%3Ebold%3C%2Fb%3E"},
	} {
		require.NoError(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", tc.msg))
		evs := alice.await("message", is("message", "completed"))
		m := evs[len(evs)-1]
		assert.True(t, strings.HasSuffix(m.href, "/messaging/messages/"+strconv.Itoa(i+2)), m.href)
		assert.Equal(t, "conversation", m.sender)
		assert.Equal(t, "Success", m.status)
		em := m.embedded()
		assert.Equal(t, "Incoming", em["direction"])
		assert.Regexp(t, `^/Date\(\d+\)/$`, em["timeStamp"])
		assert.Equal(t, tc.plain, get(t, em, "_links", "plainMessage", "href"))
		assert.Equal(t, "Bob Meston", get(t, em, "_links", "participant", "title"))
		if tc.html != "" {
			assert.Equal(t, tc.html, get(t, em, "_links", "htmlMessage", "href"))
		}
	}
	assert.Len(t, e.sim.Received("sip:alice@contoso.com"), 4)

	// Native typing shows in typingParticipants; a message clears it.
	require.NoError(t, e.sim.SetTyping(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", true))
	evs = alice.await("typing", is("participant", "added"))
	ty := evs[len(evs)-1]
	assert.Equal(t, "typingParticipants", get(t, ty.raw, "in", "rel"))
	assert.Equal(t, "Bob Meston", ty.title)
	assert.True(t, e.sim.Typing("sip:alice@contoso.com", "sip:bob@contoso.com"))
	require.NoError(t, e.sim.SetTyping(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", false))
	alice.await("typing stopped", is("participant", "deleted"))
	assert.False(t, e.sim.Typing("sip:alice@contoso.com", "sip:bob@contoso.com"))

	// alice answers through sendMessage.
	r := alice.do("POST", sendHref+"?operationId=op-1", "text/plain; charset=utf-8", "Thanks Bob")
	require.Equal(t, http.StatusCreated, r.status)
	assert.Contains(t, r.header.Get("Location"), "/messaging/messages/")
	bob := e.sim.Received("sip:bob@contoso.com")
	require.Len(t, bob, 1)
	assert.Equal(t, "Thanks Bob", bob[0].Message.Text)
}

// TestAcceptRepeatsFirstMessage follows ReceiveAnIM.md steps 8 and 16: the
// invitation carries the first message as a data link, and once accepted
// the same message comes again, once, as the conversation's first message
// event. Messages queued before the accept and sent after it are not
// repeated, even when their text equals the first one.
func TestAcceptRepeatsFirstMessage(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	alice.makeMeAvailable("Plain", "Html")
	other := e.signIn("alice@contoso.com", "alice-pw") // a second endpoint of alice
	other.makeMeAvailable("Plain", "Html")
	bob, to := uri("sip:bob@contoso.com"), uri("sip:alice@contoso.com")

	require.NoError(t, e.sim.SendMessage(ctx, bob, to, sfb.Message{Text: "Hi Alice"}))
	evs := alice.await("invitation", is("messagingInvitation", "started"))
	inv := evs[len(evs)-1].embedded()
	invText := get(t, inv, "_links", "message", "href")
	assert.Equal(t, "data:text/plain;charset=utf-8,Hi+Alice", invText)
	for _, ev := range evs {
		assert.NotEqual(t, "message", ev.rel, "no message event before the accept")
	}
	other.await("invitation on the second endpoint", is("messagingInvitation", "started"))
	// Sent while the invitation is pending: queued, delivered after the accept.
	require.NoError(t, e.sim.SendMessage(ctx, bob, to, sfb.Message{Text: "queued"}))

	require.Equal(t, http.StatusNoContent, alice.do("POST", get(t, inv, "_links", "accept", "href").(string), "", "").status)
	seen := alice.await("queued message", func(ev evt) bool {
		return ev.rel == "message" && get(t, ev.embedded(), "_links", "plainMessage", "href") == "data:text/plain;charset=utf-8,queued"
	})
	for _, txt := range []string{"later", "Hi Alice", "last"} {
		require.NoError(t, e.sim.SendMessage(ctx, bob, to, sfb.Message{Text: txt}))
	}
	seen = append(seen, alice.await("last message", func(ev evt) bool {
		return ev.rel == "message" && get(t, ev.embedded(), "_links", "plainMessage", "href") == "data:text/plain;charset=utf-8,last"
	})...)

	var msgs []evt
	completedAt, firstAt := -1, -1
	for i, ev := range seen {
		switch {
		case ev.rel == "messagingInvitation" && ev.typ == "completed":
			completedAt = i
		case ev.rel == "message":
			if firstAt < 0 {
				firstAt = i
			}
			msgs = append(msgs, ev)
		}
	}
	require.GreaterOrEqual(t, completedAt, 0, "invitation completed")
	assert.Less(t, completedAt, firstAt, "the repeat follows the accepted invitation")
	want := []string{invText.(string), "data:text/plain;charset=utf-8,queued", "data:text/plain;charset=utf-8,later",
		"data:text/plain;charset=utf-8,Hi+Alice", "data:text/plain;charset=utf-8,last"}
	require.Len(t, msgs, len(want), "one event per message, the first one repeated exactly once: %+v", msgs)
	for i, m := range msgs {
		em := m.embedded()
		assert.Equal(t, want[i], get(t, em, "_links", "plainMessage", "href"), "message %d", i+1)
		assert.True(t, strings.HasSuffix(m.href, "/messaging/messages/"+strconv.Itoa(i+1)), m.href)
		assert.Equal(t, "conversation", m.sender)
		assert.Equal(t, "completed", m.typ)
		assert.Equal(t, "Success", m.status)
		assert.Equal(t, "Incoming", em["direction"])
		assert.Equal(t, "Bob Meston", get(t, em, "_links", "participant", "title"))
	}
	// The repeat is what the application sees; the native side delivered
	// the first message once.
	var got []string
	for _, r := range e.sim.Received(to) {
		got = append(got, r.Message.Text)
	}
	assert.Equal(t, []string{"Hi Alice", "queued", "later", "Hi Alice", "last"}, got)

	// The endpoint that did not accept gets no message at all.
	evs = other.await("invitation taken elsewhere", is("messagingInvitation", "completed"))
	_, more := other.poll()
	for _, ev := range append(evs, more...) {
		assert.NotEqual(t, "message", ev.rel, "%+v", ev)
	}
}

func TestStartMessagingToNativeUser(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	alice.makeMeAvailable("Plain", "Html")
	start := get(t, alice.app, "_embedded", "communication", "_links", "startMessaging", "href").(string)

	body := `{"importance":"Normal","subject":"Task Sample","to":"sip:bob@contoso.com","operationId":"op-start",` +
		`"_links":{"message":{"href":"data:text/plain;charset=utf-8,Hello+Bob%21"}}}`
	r := alice.do("POST", start, "application/json", body)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	loc := r.header.Get("Location")
	assert.Contains(t, loc, "/communication/messagingInvitations/")

	evs := alice.await("invitation completed", is("messagingInvitation", "completed"))
	started := find(t, evs, is("messagingInvitation", "started"))
	assert.Equal(t, "Outgoing", started.embedded()["direction"])
	assert.Equal(t, "op-start", started.embedded()["operationId"])
	assert.Equal(t, "Connecting", started.embedded()["state"])
	done := evs[len(evs)-1]
	assert.Equal(t, "Success", done.status)
	assert.Equal(t, loc, done.href)
	assert.Equal(t, "sip:bob@contoso.com", get(t, done.embedded(), "_embedded", "acceptedByParticipant").([]any)[0].(obj)["uri"])
	var messaging obj
	for _, ev := range evs {
		if ev.rel == "messaging" && ev.typ == "updated" {
			messaging = ev.embedded()
		}
	}
	require.Equal(t, "Connected", messaging["state"])
	got := e.sim.Received("sip:bob@contoso.com")
	require.Len(t, got, 1)
	assert.Equal(t, "Hello Bob!", got[0].Message.Text)
	assert.Equal(t, sfb.URI("sip:alice@contoso.com"), got[0].From)

	send := get(t, messaging, "_links", "sendMessage", "href").(string)
	r = alice.do("POST", send+"?operationId=m1", "text/html", "<p>Hi <b>there</b></p>")
	require.Equal(t, http.StatusCreated, r.status)
	evs = alice.await("message completed", is("message", "completed"))
	assert.Equal(t, "started", evs[0].typ)
	assert.Equal(t, "Outgoing", evs[0].embedded()["direction"])
	assert.Equal(t, "m1", evs[0].embedded()["operationId"])
	assert.Equal(t, "Success", evs[len(evs)-1].status)
	assert.Equal(t, r.header.Get("Location"), evs[len(evs)-1].href)
	got = e.sim.Received("sip:bob@contoso.com")
	require.Len(t, got, 2)
	assert.Equal(t, sfb.Message{Text: "Hi there", HTML: "<p>Hi <b>there</b></p>"}, got[1].Message)

	// setIsTyping shows alice typing to bob until she sends.
	typing := get(t, messaging, "_links", "setIsTyping", "href").(string)
	require.Equal(t, http.StatusNoContent, alice.do("POST", typing, "", "").status)
	assert.True(t, e.sim.Typing("sip:bob@contoso.com", "sip:alice@contoso.com"))
	require.Equal(t, http.StatusCreated, alice.do("POST", send, "text/plain", "done").status)
	assert.False(t, e.sim.Typing("sip:bob@contoso.com", "sip:alice@contoso.com"))

	// Unsupported bodies are refused.
	assert.Equal(t, http.StatusUnsupportedMediaType, alice.do("POST", send, "application/octet-stream", "x").status)
	assert.Equal(t, http.StatusBadRequest, alice.do("POST", send, "text/plain", "  ").status)

	// Delivery failure: the message completes with Failure.
	require.NoError(t, e.sim.RejectMessages("sip:bob@contoso.com", true))
	r = alice.do("POST", send, "text/plain", "lost")
	require.Equal(t, http.StatusCreated, r.status)
	lost := r.header.Get("Location")
	evs = alice.await("message completed", func(ev evt) bool { return ev.href == lost && ev.typ == "completed" })
	assert.Equal(t, "Failure", evs[len(evs)-1].status)
	assert.Equal(t, "RemoteFailure", get(t, evs[len(evs)-1].raw, "reason", "code"))
	require.NoError(t, e.sim.RejectMessages("sip:bob@contoso.com", false))

	// stopMessaging ends the conversation; bob's next message invites anew.
	stop := get(t, messaging, "_links", "stopMessaging", "href").(string)
	require.Equal(t, http.StatusNoContent, alice.do("POST", stop, "", "").status)
	alice.await("conversation deleted", is("conversation", "deleted"))
	require.NoError(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{Text: "again"}))
	evs = alice.await("new invitation", is("messagingInvitation", "started"))
	assert.Equal(t, "Incoming", evs[len(evs)-1].embedded()["direction"])
}

func TestStartMessagingFailures(t *testing.T) {
	e := newEnv(t, sim.Options{})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	start := get(t, alice.app, "_embedded", "communication", "_links", "startMessaging", "href").(string)

	r := alice.do("POST", start, "application/json", `{"to":"sip:nobody@contoso.com","operationId":"op-x"}`)
	require.Equal(t, http.StatusCreated, r.status)
	evs := alice.await("invitation completed", is("messagingInvitation", "completed"))
	done := evs[len(evs)-1]
	assert.Equal(t, "Failure", done.status)
	assert.Equal(t, "NotFound", get(t, done.raw, "reason", "code"))
	assert.Equal(t, "DestinationNotFound", get(t, done.raw, "reason", "subcode"))

	r = alice.do("POST", start, "application/json", `{"to":"not a uri"}`)
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.Equal(t, "ParameterValidationFailure", r.json(t)["subcode"])
	r = alice.do("POST", start, "application/json", `{"to":`)
	assert.Equal(t, http.StatusBadRequest, r.status)
	r = alice.do("POST", start, "application/json", `{"to":"sip:bob@contoso.com","_links":{"message":{"href":"http://example.com/"}}}`)
	assert.Equal(t, http.StatusBadRequest, r.status)

	// A declined invitation between two UCWA users fails the inviter's.
	bob := e.signIn("bob@contoso.com", "bob-pw")
	bob.makeMeAvailable()
	require.Equal(t, http.StatusCreated, alice.do("POST", start, "application/json", `{"to":"sip:bob@contoso.com","operationId":"op-d"}`).status)
	evs = bob.await("invitation", is("messagingInvitation", "started"))
	decline := get(t, evs[len(evs)-1].embedded(), "_links", "decline", "href").(string)
	require.Equal(t, http.StatusNoContent, bob.do("POST", decline, "application/json", `{"reason":"Local"}`).status)
	evs = alice.await("invitation completed", is("messagingInvitation", "completed"))
	assert.Equal(t, "Failure", evs[len(evs)-1].status)
	assert.Equal(t, "Declined", get(t, evs[len(evs)-1].raw, "reason", "subcode"))
}

func TestUCWAToUCWA(t *testing.T) {
	e := newEnv(t, sim.Options{})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	bob := e.signIn("bob@contoso.com", "bob-pw")
	alice.makeMeAvailable()
	bob.makeMeAvailable()
	start := get(t, alice.app, "_embedded", "communication", "_links", "startMessaging", "href").(string)
	require.Equal(t, http.StatusCreated, alice.do("POST", start, "application/json",
		`{"to":"sip:bob@contoso.com","operationId":"o","_links":{"message":{"href":"data:text/plain;base64,`+base64.StdEncoding.EncodeToString([]byte("hello bob"))+`"}}}`).status)

	evs := bob.await("invitation", is("messagingInvitation", "started"))
	inv := evs[len(evs)-1].embedded()
	assert.Equal(t, "data:text/plain;charset=utf-8,hello+bob", get(t, inv, "_links", "message", "href"))
	assert.Equal(t, "Alice Aaling", get(t, inv, "_links", "from", "title"))
	require.Equal(t, http.StatusNoContent, bob.do("POST", get(t, inv, "_links", "accept", "href").(string), "", "").status)

	evs = alice.await("invitation completed", is("messagingInvitation", "completed"))
	assert.Equal(t, "Success", evs[len(evs)-1].status)
	var send, typing string
	for _, ev := range evs {
		if ev.rel == "messaging" && ev.typ == "updated" && ev.embedded()["state"] == "Connected" {
			send = get(t, ev.embedded(), "_links", "sendMessage", "href").(string)
			typing = get(t, ev.embedded(), "_links", "setIsTyping", "href").(string)
		}
	}
	require.NotEmpty(t, send)
	bob.await("bob connected", is("messagingInvitation", "completed"))

	require.Equal(t, http.StatusNoContent, alice.do("POST", typing, "", "").status)
	bob.await("typing", is("participant", "added"))
	require.Equal(t, http.StatusCreated, alice.do("POST", send, "text/plain", "how are you?").status)
	evs = bob.await("message", func(ev evt) bool { return ev.rel == "message" && ev.typ == "completed" })
	var sawTypingEnd bool
	for _, ev := range evs {
		sawTypingEnd = sawTypingEnd || (ev.rel == "participant" && ev.typ == "deleted")
	}
	assert.True(t, sawTypingEnd, "sending ends typing: %+v", evs)
	assert.Equal(t, "data:text/plain;charset=utf-8,how+are+you%3F", get(t, evs[len(evs)-1].embedded(), "_links", "plainMessage", "href"))
	rec := e.sim.Received("sip:bob@contoso.com")
	require.Len(t, rec, 2)
	assert.Equal(t, "hello bob", rec[0].Message.Text)
	assert.Equal(t, "how are you?", rec[1].Message.Text)
}

func TestBase64Option(t *testing.T) {
	e := newEnv(t, sim.Options{Base64Messages: true})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	alice.makeMeAvailable()
	require.NoError(t, e.sim.SendMessage(context.Background(), "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{Text: "plain ascii"}))
	evs := alice.await("invitation", is("messagingInvitation", "started"))
	assert.Equal(t, "data:text/plain;charset=utf-8;base64,"+base64.StdEncoding.EncodeToString([]byte("plain ascii")),
		get(t, evs[len(evs)-1].embedded(), "_links", "message", "href"))
}

func TestSendMessageValidation(t *testing.T) {
	e := newEnv(t, sim.Options{})
	ctx := context.Background()
	assert.ErrorIs(t, e.sim.SendMessage(ctx, "sip:nobody@contoso.com", "sip:bob@contoso.com", sfb.Message{Text: "x"}), sfb.ErrNotFound)
	assert.ErrorIs(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:nobody@contoso.com", sfb.Message{Text: "x"}), sfb.ErrNotFound)
	assert.Error(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{}))
	assert.ErrorIs(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:bob@contoso.com", sfb.Message{Text: "x"}), sfb.ErrUnsupported)
	// Between two native users the message is delivered at once.
	require.NoError(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:carol@contoso.com", sfb.Message{HTML: "<i>hi</i>"}))
	got := e.sim.Received("sip:carol@contoso.com")
	require.Len(t, got, 1)
	assert.Equal(t, sfb.Message{Text: "hi", HTML: "<i>hi</i>"}, got[0].Message)
}

func find(t *testing.T, evs []evt, pred func(evt) bool) evt {
	t.Helper()
	for _, e := range evs {
		if pred(e) {
			return e
		}
	}
	t.Fatalf("no matching event in %+v", evs)
	return evt{}
}

// TestParticipantsCollectionLinks: participants_ref.md gives the
// collection "participant" links to the remote participants, which a
// client reading its conversations again (after resync) relies on.
func TestParticipantsCollectionLinks(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	alice.makeMeAvailable("Plain", "Html")
	require.NoError(t, e.sim.SendMessage(ctx, uri("sip:bob@contoso.com"), uri("sip:alice@contoso.com"), sfb.Message{Text: "hi"}))
	evs := alice.await("invitation", is("messagingInvitation", "started"))
	inv := evs[len(evs)-1].embedded()
	conv := get(t, inv, "_links", "conversation", "href").(string)
	r := alice.do("GET", conv+"/participants", "", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	links := get(t, r.json(t), "_links", "participant").([]any)
	require.Len(t, links, 1)
	assert.Equal(t, conv+"/participants/bob@contoso.com", get(t, links[0], "href"))
	assert.NotEmpty(t, get(t, links[0], "title"))
}

func TestPeopleSearch(t *testing.T) {
	e := newEnv(t, sim.Options{})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	search := get(t, alice.app, "_embedded", "people", "_links", "search", "href").(string)
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"Bob M", []string{"sip:bob@contoso.com"}},
		{"sip:carol@contoso.com", []string{"sip:carol@contoso.com"}},
		{"bob&x=1", nil},
		{"nobody", nil},
		{"nobody@contoso.com", nil},
	} {
		t.Run(tc.query, func(t *testing.T) {
			r := alice.do("GET", search+"?query="+url.QueryEscape(tc.query), "", "")
			require.Equal(t, http.StatusOK, r.status, "%s", r.body)
			body := r.json(t)
			var got []string
			for _, c := range get(t, body, "_embedded", "contact").([]any) {
				got = append(got, get(t, c, "uri").(string))
			}
			assert.Equal(t, tc.want, got)
			assert.Equal(t, false, get(t, body, "moreResultsAvailable"), "the reference's search always says whether more results exist")
			self, err := url.Parse(get(t, body, "_links", "self", "href").(string))
			require.NoError(t, err)
			assert.Equal(t, strings.ToLower(tc.query), self.Query().Get("query"), "self link carries the query")
		})
	}
}
