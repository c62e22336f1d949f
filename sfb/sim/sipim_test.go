package sim_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// sipeDialog is pidgin-sipe's struct sip_dialog, as far as the tests need.
type sipeDialog struct {
	callID, ourTag, theirTag, with, request string
	cseq                                    int
}

// sdpAcceptTypes is pidgin-sipe's SDP_ACCEPT_TYPES (sipe-im.h).
const sdpAcceptTypes = "text/plain text/html image/gif multipart/alternative application/im-iscomposing+xml application/ms-imdn+xml text/x-msmsgsinvite"

// sipeSDP is the SDP of sipe_im_invite (format null) and of
// send_invite_response (format the user's address).
func (c *sipeClient) sipeSDP(format string) string {
	return fmt.Sprintf("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=session\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message %d sip %s\r\na=accept-types:%s\r\n", c.port, format, sdpAcceptTypes)
}

// msgr is the msgr parameter pidgin-sipe adds: the X-MMS-IM-Format in
// UTF-16LE, base64 without padding.
func msgr(format string) string {
	u := utf16.Encode([]rune("X-MMS-IM-Format: " + format + "\r\n\r\n"))
	b := make([]byte, 0, 2*len(u))
	for _, r := range u {
		b = append(b, byte(r), byte(r>>8))
	}
	return strings.TrimRight(base64.StdEncoding.EncodeToString(b), "=")
}

// invite sends sipe_im_invite's INVITE to who with the first message text
// (none when empty).
func (c *sipeClient) invite(who sfb.URI, text string) *sipeDialog {
	c.t.Helper()
	dlg := &sipeDialog{callID: randHex(16), ourTag: randHex(5), with: string(who), cseq: 1}
	extra := "Supported: ms-sender\r\n" +
		fmt.Sprintf("Contact: <%s;opaque=user:epid:%s;gruu>\r\n", c.uri, "AAAA")
	if text != "" {
		extra += fmt.Sprintf("ms-text-format: text/plain; charset=UTF-8;msgr=%s;ms-body=%s\r\n",
			msgr("FN=Segoe%20UI; EF=; CO=0; CS=0; PF=0"), base64.StdEncoding.EncodeToString([]byte(text)))
		extra += fmt.Sprintf("Ms-Conversation-ID: %d\r\n", 123456789)
	}
	extra += "Content-Type: application/sdp\r\n"
	c.mu.Lock()
	sa := c.sa
	c.mu.Unlock()
	c.write(sa, false, "INVITE", string(who), string(who), dlg.callID, dlg.cseq, dlg.ourTag, "", extra, c.sipeSDP("null"))
	return dlg
}

// established takes the 200 to the INVITE of dlg and ACKs it, as
// process_invite_response does.
func (c *sipeClient) established(dlg *sipeDialog, res *sip.Response) {
	c.t.Helper()
	dlg.theirTag, _ = res.To().Params.Get("tag")
	require.NotEmpty(c.t, dlg.theirTag)
	if contact := res.GetHeaders("Contact"); len(contact) > 0 {
		dlg.request = strings.Trim(strings.SplitN(contact[0].Value(), ";", 2)[0], "<>")
	}
	c.inDialog(dlg, "ACK", "", "")
}

// inDialog sends a request in dlg (sip_transport_request with a dialog: no
// Via branch, the peer's tag, CSeq counting up; an ACK repeats the
// INVITE's CSeq) and returns its CSeq.
func (c *sipeClient) inDialog(dlg *sipeDialog, method, extra, body string) int {
	c.t.Helper()
	if method != "ACK" {
		dlg.cseq++
	}
	url := dlg.request
	if url == "" {
		url = dlg.with
	}
	c.mu.Lock()
	sa := c.sa
	c.mu.Unlock()
	c.write(sa, false, method, url, dlg.with, dlg.callID, dlg.cseq, dlg.ourTag, dlg.theirTag, extra, body)
	return dlg.cseq
}

// message sends sipe_im_send_message's MESSAGE and returns the response.
func (c *sipeClient) message(dlg *sipeDialog, text string) *sip.Response {
	c.t.Helper()
	cseq := c.inDialog(dlg, "MESSAGE", fmt.Sprintf("Contact: <%s>\r\nContent-Type: text/plain; charset=UTF-8;msgr=%s\r\n", c.uri, msgr("FN=Segoe%20UI; EF=; CO=0; CS=0; PF=0")), text)
	res, _ := c.response(cseq, "MESSAGE")
	return res
}

// typing sends sipe_core_user_feedback_typing's INFO.
func (c *sipeClient) typing(dlg *sipeDialog, typing bool) *sip.Response {
	c.t.Helper()
	status := "idle"
	if typing {
		status = "type"
	}
	cseq := c.inDialog(dlg, "INFO", "Content-Type: application/xml\r\n",
		`<?xml version="1.0"?><KeyboardActivity> <status status="`+status+`" /></KeyboardActivity>`)
	res, _ := c.response(cseq, "INFO")
	return res
}

// signedIn is a pidgin-sipe-like client of user signed in over SIP.
func (e *sipEnv) signedIn(t *testing.T, user sfb.URI, password string) *sipeClient {
	t.Helper()
	c := e.dial(t, user, password)
	local, _, _ := strings.Cut(user.Address(), "@")
	res, raw := c.signIn(local, "CONTOSO")
	require.Equal(t, 200, res.StatusCode, raw)
	return c
}

func deliveredTo(e *sipEnv, uri sfb.URI) []string {
	var out []string
	for _, r := range e.sim.Received(uri) {
		out = append(out, r.From.Address()+": "+r.Message.Text)
	}
	return out
}

// TestSIPIMWithNativeUser: a pidgin-sipe user chats with a user on the
// simulated native client, both ways, through the control API.
func TestSIPIMWithNativeUser(t *testing.T) {
	ctx := context.Background()
	e := newSIPEnv(t, sim.Options{}, false)
	c := e.signedIn(t, alice, "alice-pw")

	// The INVITE carries the first message; the native client takes it
	// at once, the 200 says so (Supported: ms-text-format) and is signed.
	dlg := c.invite(bob, "Hello Bob")
	res, raw := c.response(1, "INVITE")
	require.Equal(t, 200, res.StatusCode, raw)
	assert.Contains(t, raw, "Supported: ms-text-format\r\n")
	assert.Equal(t, "application/sdp", hdr(res)("Content-Type"))
	assert.Contains(t, string(res.Body()), "m=message ")
	assert.Contains(t, string(res.Body()), " sip sip:bob@contoso.com\r\n")
	c.established(dlg, res)
	assert.Equal(t, []string{"alice@contoso.com: Hello Bob"}, deliveredTo(e, bob))

	res = c.message(dlg, "second")
	require.Equal(t, 200, res.StatusCode)
	assert.Equal(t, []string{"alice@contoso.com: Hello Bob", "alice@contoso.com: second"}, deliveredTo(e, bob))

	require.Equal(t, 200, c.typing(dlg, true).StatusCode)
	assert.True(t, e.sim.Typing(bob, alice))
	require.Equal(t, 200, c.typing(dlg, false).StatusCode)
	assert.False(t, e.sim.Typing(bob, alice))

	// bob answers from his native client: a MESSAGE in alice's dialog,
	// from bob with the tag of the 200, signed.
	require.NoError(t, e.sim.SendMessage(ctx, bob, alice, sfb.Message{Text: "Hi Alice", HTML: "<b>Hi</b> Alice"}))
	req, raw := c.request("MESSAGE")
	assert.Equal(t, dlg.callID, req.CallID().Value(), raw)
	fromTag, _ := req.From().Params.Get("tag")
	assert.Equal(t, dlg.theirTag, fromTag)
	toTag, _ := req.To().Params.Get("tag")
	assert.Equal(t, dlg.ourTag, toTag)
	assert.Equal(t, "sip:bob@contoso.com", req.From().Address.String())
	// pidgin-sipe accepts multipart/alternative (its SDP says so).
	assert.True(t, strings.HasPrefix(hdr(req)("Content-Type"), "multipart/alternative;"), raw)
	assert.Contains(t, string(req.Body()), "<b>Hi</b> Alice")
	// alice's own MESSAGE is answered while the server's waits for her
	// answer: the two directions do not queue behind each other.
	require.Equal(t, 200, c.message(dlg, "crossing").StatusCode)
	c.respond(req, 200, "OK", "", "", "")

	require.NoError(t, e.sim.SetTyping(ctx, bob, alice, true))
	req, raw = c.request("INFO")
	assert.Equal(t, "application/xml", hdr(req)("Content-Type"), raw)
	assert.Contains(t, string(req.Body()), `status="type"`)
	c.respond(req, 200, "OK", "", "", "")

	// alice closes the window: BYE. bob's next message invites her
	// endpoint anew, the message in Ms-Text-Format; pidgin-sipe does not
	// read it from a 1:1 INVITE (no Supported: ms-text-format in its
	// 200), so it comes again as a MESSAGE.
	cseq := c.inDialog(dlg, "BYE", "", "")
	res, raw = c.response(cseq, "BYE")
	require.Equal(t, 200, res.StatusCode, raw)
	require.NoError(t, e.sim.SendMessage(ctx, bob, alice, sfb.Message{Text: "Are you there?"}))
	inv, raw := c.request("INVITE")
	assert.Contains(t, hdr(inv)("Ms-Text-Format"), "ms-body="+base64.StdEncoding.EncodeToString([]byte("Are you there?")), raw)
	assert.Contains(t, string(inv.Body()), "m=message ")
	assert.Contains(t, hdr(inv)("EndPoints"), "sip:bob@contoso.com")
	assert.NotEmpty(t, hdr(inv)("Ms-Conversation-ID"))
	ourTag := randHex(5)
	c.respond(inv, 200, "OK", ourTag, "Supported: com.microsoft.rtc-multiparty\r\nContent-Type: application/sdp\r\n", c.sipeSDP(string(alice)))
	ack, raw := c.request("ACK")
	assert.Equal(t, inv.CallID().Value(), ack.CallID().Value(), raw)
	msg, raw := c.request("MESSAGE")
	assert.Equal(t, "Are you there?", string(msg.Body()), raw)
	tag, _ := msg.To().Params.Get("tag")
	assert.Equal(t, ourTag, tag)
	c.respond(msg, 200, "OK", "", "", "")
	// Received once the endpoint answered.
	require.Eventually(t, func() bool {
		got := deliveredTo(e, alice)
		return len(got) == 2 && got[1] == "bob@contoso.com: Are you there?"
	}, 5*time.Second, 5*time.Millisecond, "%q", deliveredTo(e, alice))
}

// TestSIPIMWithUCWAUser: a pidgin-sipe user and a UCWA application chat.
func TestSIPIMWithUCWAUser(t *testing.T) {
	e := newSIPEnv(t, sim.Options{}, false)
	c := e.signedIn(t, alice, "alice-pw")
	b := e.signIn("bob@contoso.com", "bob-pw")
	b.makeMeAvailable("Plain", "Html")

	dlg := c.invite(bob, "Hi from SIP")
	evs := b.await("invitation", is("messagingInvitation", "started"))
	inv := evs[len(evs)-1].embedded()
	assert.Equal(t, "sip:alice@contoso.com", get(t, inv, "_embedded", "from", "uri"))
	assert.Equal(t, "data:text/plain;charset=utf-8,Hi+from+SIP", get(t, inv, "_links", "message", "href"))
	accept := get(t, inv, "_links", "accept", "href").(string)
	require.Equal(t, 204, b.do("POST", accept, "", "").status)
	var messaging obj
	for _, ev := range b.await("invitation completed", is("messagingInvitation", "completed")) {
		if ev.rel == "messaging" && ev.typ == "updated" {
			messaging = ev.embedded()
		}
	}
	require.Equal(t, "Connected", messaging["state"])
	res, raw := c.response(1, "INVITE")
	require.Equal(t, 200, res.StatusCode, raw)
	c.established(dlg, res)
	evs = b.await("first message", is("message", "completed"))
	assert.Equal(t, "data:text/plain;charset=utf-8,Hi+from+SIP", get(t, evs[len(evs)-1].embedded(), "_links", "plainMessage", "href"))

	require.Equal(t, 200, c.message(dlg, "and more").StatusCode)
	evs = b.await("message", is("message", "completed"))
	assert.Equal(t, "data:text/plain;charset=utf-8,and+more", get(t, evs[len(evs)-1].embedded(), "_links", "plainMessage", "href"))
	assert.Equal(t, []string{"alice@contoso.com: Hi from SIP", "alice@contoso.com: and more"}, deliveredTo(e, bob))

	require.Equal(t, 200, c.typing(dlg, true).StatusCode)
	b.await("typing", is("participant", "added"))

	// bob answers through UCWA: alice gets a MESSAGE (HTML accepted).
	send := get(t, messaging, "_links", "sendMessage", "href").(string)
	require.Equal(t, 201, b.do("POST", send, "text/html", "<p>Hi <b>SIP</b></p>").status)
	req, raw := c.request("MESSAGE")
	assert.Contains(t, string(req.Body()), "<p>Hi <b>SIP</b></p>", raw)
	c.respond(req, 200, "OK", "", "", "")
	require.Eventually(t, func() bool { return len(deliveredTo(e, alice)) == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, "bob@contoso.com: Hi SIP", deliveredTo(e, alice)[0])

	// bob ends the conversation: BYE to alice.
	stop := get(t, messaging, "_links", "stopMessaging", "href").(string)
	require.Equal(t, 204, b.do("POST", stop, "", "").status)
	bye, raw := c.request("BYE")
	assert.Equal(t, dlg.callID, bye.CallID().Value(), raw)
	c.respond(bye, 200, "OK", "", "", "")
	// The dialog is gone: a MESSAGE in it is refused.
	assert.Equal(t, 481, c.message(dlg, "late").StatusCode)
}

// TestSIPIMBetweenSIPUsers: two pidgin-sipe users; bob has two endpoints,
// both are invited, the one that answers first gets the conversation and
// the other a CANCEL.
func TestSIPIMBetweenSIPUsers(t *testing.T) {
	e := newSIPEnv(t, sim.Options{}, false)
	a := e.signedIn(t, alice, "alice-pw")
	b1 := e.signedIn(t, bob, "bob-pw")
	b2 := e.signedIn(t, bob, "bob-pw")

	dlg := a.invite(bob, "Hello")
	inv1, raw := b1.request("INVITE")
	inv2, _ := b2.request("INVITE")
	assert.Equal(t, dlg.callID, inv1.CallID().Value(), "the Call-ID is kept end to end")
	fromTag, _ := inv1.From().Params.Get("tag")
	assert.Equal(t, dlg.ourTag, fromTag)
	assert.Contains(t, hdr(inv1)("Ms-Text-Format"), base64.StdEncoding.EncodeToString([]byte("Hello")), raw)
	assert.Contains(t, hdr(inv1)("P-Asserted-Identity"), "sip:alice@contoso.com")

	// b2 answers as a client that read the first message.
	b2tag := randHex(5)
	b2.respond(inv2, 200, "OK", b2tag, "Supported: ms-text-format\r\nContent-Type: application/sdp\r\n", b2.sipeSDP(string(bob)))
	res, raw := a.response(1, "INVITE")
	require.Equal(t, 200, res.StatusCode, raw)
	a.established(dlg, res)
	b2.request("ACK")
	cancel, raw := b1.request("CANCEL")
	assert.Equal(t, inv1.CallID().Value(), cancel.CallID().Value(), raw)
	assert.Equal(t, inv1.Via().Params, cancel.Via().Params, "a CANCEL repeats the INVITE's branch")
	assert.Contains(t, hdr(cancel)("Reason"), "Call completed elsewhere")
	b1.respond(cancel, 200, "OK", "", "", "")
	b1.respond(inv1, 487, "Request Terminated", randHex(5), "", "")
	assert.Equal(t, []string{"alice@contoso.com: Hello"}, deliveredTo(e, bob))

	// alice → bob: the MESSAGE is answered with bob's answer.
	done := make(chan *sip.Response, 1)
	go func() { done <- a.message(dlg, "how are you") }()
	m, raw := b2.request("MESSAGE")
	assert.Equal(t, "how are you", string(m.Body()), raw)
	b2.respond(m, 200, "OK", "", "", "")
	assert.Equal(t, 200, (<-done).StatusCode)

	// bob → alice, in bob's dialog.
	bdlg := &sipeDialog{callID: inv2.CallID().Value(), ourTag: b2tag, theirTag: fromTag, with: string(alice), cseq: 0}
	go func() { done <- b2.message(bdlg, "fine") }()
	m, raw = a.request("MESSAGE")
	assert.Equal(t, "fine", string(m.Body()), raw)
	a.respond(m, 200, "OK", "", "", "")
	assert.Equal(t, 200, (<-done).StatusCode)

	// A refused delivery reaches the sender as the recipient's answer.
	go func() { done <- a.message(dlg, "refused") }()
	m, _ = b2.request("MESSAGE")
	b2.respond(m, 415, "Unsupported media type", "", "", "")
	assert.Equal(t, 415, (<-done).StatusCode)

	// A recipient refusing messages (the fault): declined, as UCWA says.
	require.NoError(t, e.sim.RejectMessages(bob, true))
	res = a.message(dlg, "nobody home")
	assert.Equal(t, 603, res.StatusCode)
	require.NoError(t, e.sim.RejectMessages(bob, false))

	// bob leaves: alice gets a BYE.
	cseq := b2.inDialog(bdlg, "BYE", "", "")
	res, _ = b2.response(cseq, "BYE")
	assert.Equal(t, 200, res.StatusCode)
	bye, _ := a.request("BYE")
	assert.Equal(t, dlg.callID, bye.CallID().Value())
	a.respond(bye, 200, "OK", "", "", "")
}

// TestSIPIMFailures: what an inviter hears when nobody can take the
// conversation, as SfB answers it.
func TestSIPIMFailures(t *testing.T) {
	e := newSIPEnv(t, sim.Options{}, false)
	a := e.signedIn(t, alice, "alice-pw")

	// Unknown user.
	a.invite("sip:nobody@contoso.com", "hi")
	res, raw := a.response(1, "INVITE")
	assert.Equal(t, 404, res.StatusCode, raw)
	assert.Contains(t, hdr(res)("ms-diagnostics"), "4005;")

	// Nobody signed in: neither endpoint, application nor native client.
	require.NoError(t, e.sim.SetNativeClient(carol, false))
	a.invite(carol, "hi")
	res, raw = a.response(1, "INVITE")
	assert.Equal(t, 480, res.StatusCode, raw)
	assert.NotEmpty(t, hdr(res)("ms-diagnostics"))

	// Messages refused (fault).
	require.NoError(t, e.sim.RejectMessages(bob, true))
	a.invite(bob, "hi")
	res, raw = a.response(1, "INVITE")
	assert.Equal(t, 603, res.StatusCode, raw)
	require.NoError(t, e.sim.RejectMessages(bob, false))

	// Cancelled before bob's endpoint answers: 487, and bob's endpoint
	// gets a CANCEL.
	b := e.signedIn(t, bob, "bob-pw")
	dlg := a.invite(bob, "")
	inv, _ := b.request("INVITE")
	a.mu.Lock()
	sa := a.sa
	a.mu.Unlock()
	a.write(sa, false, "CANCEL", string(bob), string(bob), dlg.callID, 1, dlg.ourTag, "", "", "")
	res, raw = a.response(1, "CANCEL")
	assert.Equal(t, 200, res.StatusCode, raw)
	res, raw = a.response(1, "INVITE")
	assert.Equal(t, 487, res.StatusCode, raw)
	cancel, _ := b.request("CANCEL")
	assert.Equal(t, inv.CallID().Value(), cancel.CallID().Value())

	// bob's endpoint declines: 603 to alice.
	a.invite(bob, "hi")
	inv, _ = b.request("INVITE")
	b.respond(inv, 603, "Decline", randHex(5), "", "")
	res, raw = a.response(1, "INVITE")
	assert.Equal(t, 603, res.StatusCode, raw)

	// bob's endpoint disappears while invited: unreachable.
	a.invite(bob, "hi")
	b.request("INVITE")
	require.NoError(t, b.nc.Close())
	res, raw = a.response(1, "INVITE")
	assert.Equal(t, 480, res.StatusCode, raw)

	// A message to a dialog nobody knows.
	assert.Equal(t, 481, a.message(&sipeDialog{callID: "nope", ourTag: "x", theirTag: "y", with: string(bob)}, "x").StatusCode)
}

// TestSIPIMFromUCWA: a UCWA application starts a conversation with a
// pidgin-sipe user; the invitation completes when the endpoint answers.
func TestSIPIMFromUCWA(t *testing.T) {
	e := newSIPEnv(t, sim.Options{}, false)
	c := e.signedIn(t, alice, "alice-pw")
	b := e.signIn("bob@contoso.com", "bob-pw")
	b.makeMeAvailable("Plain", "Html")
	start := get(t, b.app, "_embedded", "communication", "_links", "startMessaging", "href").(string)
	body := `{"importance":"Normal","to":"sip:alice@contoso.com","operationId":"op-1",` +
		`"_links":{"message":{"href":"data:text/plain;charset=utf-8,Hello+Alice"}}}`
	require.Equal(t, 201, b.do("POST", start, "application/json", body).status)

	inv, raw := c.request("INVITE")
	assert.Contains(t, hdr(inv)("Ms-Text-Format"), base64.StdEncoding.EncodeToString([]byte("Hello Alice")), raw)
	assert.Contains(t, hdr(inv)("P-Asserted-Identity"), "sip:bob@contoso.com")
	// Not yet answered: the invitation is still open.
	assert.Empty(t, deliveredTo(e, alice))
	c.respond(inv, 200, "OK", "al1ce", "Content-Type: application/sdp\r\n", c.sipeSDP(string(alice)))
	c.request("ACK")
	first, _ := c.request("MESSAGE")
	assert.Equal(t, "Hello Alice", string(first.Body()))
	c.respond(first, 200, "OK", "", "", "")

	var messaging obj
	for _, ev := range b.await("invitation completed", is("messagingInvitation", "completed")) {
		if ev.rel == "messaging" && ev.typ == "updated" {
			messaging = ev.embedded()
		}
		if ev.rel == "messagingInvitation" && ev.typ == "completed" {
			assert.Equal(t, "Success", ev.status)
		}
	}
	require.Equal(t, "Connected", messaging["state"])

	// Typing and a message from UCWA reach the endpoint.
	typing := get(t, messaging, "_links", "setIsTyping", "href").(string)
	require.Equal(t, 204, b.do("POST", typing, "", "").status)
	info, raw := c.request("INFO")
	assert.Contains(t, string(info.Body()), `status="type"`, raw)
	c.respond(info, 200, "OK", "", "", "")
	send := get(t, messaging, "_links", "sendMessage", "href").(string)
	require.Equal(t, 201, b.do("POST", send, "text/plain", "second").status)
	// The message ends the typing first, in order.
	idle, raw := c.request("INFO")
	assert.Contains(t, string(idle.Body()), `status="idle"`, raw)
	c.respond(idle, 200, "OK", "", "", "")
	m, _ := c.request("MESSAGE")
	assert.Equal(t, "second", string(m.Body()))
	c.respond(m, 200, "OK", "", "", "")
	require.Eventually(t, func() bool { return len(deliveredTo(e, alice)) == 2 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, []string{"bob@contoso.com: Hello Alice", "bob@contoso.com: second"}, deliveredTo(e, alice))

	// The endpoint declines the next conversation: the invitation fails.
	stop := get(t, messaging, "_links", "stopMessaging", "href").(string)
	require.Equal(t, 204, b.do("POST", stop, "", "").status)
	bye, _ := c.request("BYE")
	c.respond(bye, 200, "OK", "", "", "")
	require.Equal(t, 201, b.do("POST", start, "application/json", body).status)
	inv, _ = c.request("INVITE")
	c.respond(inv, 603, "Decline", "x", "", "")
	evs := b.await("invitation failed", func(ev evt) bool {
		return ev.rel == "messagingInvitation" && ev.typ == "completed" && ev.status == "Failure"
	})
	assert.Equal(t, "Declined", get(t, evs[len(evs)-1].raw, "reason", "subcode"))
}

// TestSIPIMForkWithUCWA: a user with a UCWA application and a SIP
// endpoint is invited on both; the application accepts, the endpoint's
// INVITE is cancelled; the next time the endpoint accepts and the
// application's invitation ends with "accepted elsewhere".
func TestSIPIMForkWithUCWA(t *testing.T) {
	ctx := context.Background()
	e := newSIPEnv(t, sim.Options{}, false)
	c := e.signedIn(t, alice, "alice-pw")
	a := e.signIn("alice@contoso.com", "alice-pw")
	a.makeMeAvailable("Plain", "Html")

	require.NoError(t, e.sim.SendMessage(ctx, bob, alice, sfb.Message{Text: "first"}))
	inv, _ := c.request("INVITE")
	evs := a.await("invitation", is("messagingInvitation", "started"))
	accept := get(t, evs[len(evs)-1].embedded(), "_links", "accept", "href").(string)
	require.Equal(t, 204, a.do("POST", accept, "", "").status)
	cancel, raw := c.request("CANCEL")
	assert.Equal(t, inv.CallID().Value(), cancel.CallID().Value(), raw)
	c.respond(cancel, 200, "OK", "", "", "")
	c.respond(inv, 487, "Request Terminated", "t1", "", "")
	require.Eventually(t, func() bool { return len(deliveredTo(e, alice)) == 1 }, 5*time.Second, 5*time.Millisecond)

	// The conversation ends; bob writes again and the endpoint is first.
	e.sim.ExpireConversations(bob)
	require.NoError(t, e.sim.SendMessage(ctx, bob, alice, sfb.Message{Text: "second"}))
	inv, _ = c.request("INVITE")
	a.await("second invitation", is("messagingInvitation", "started"))
	c.respond(inv, 200, "OK", "t2", "Supported: ms-text-format\r\nContent-Type: application/sdp\r\n", c.sipeSDP(string(alice)))
	c.request("ACK")
	evs = a.await("invitation withdrawn", func(ev evt) bool {
		return ev.rel == "messagingInvitation" && ev.typ == "completed" && ev.status == "Failure"
	})
	assert.Equal(t, "ConnectedElsewhere", get(t, evs[len(evs)-1].raw, "reason", "subcode"))
	require.Eventually(t, func() bool { return len(deliveredTo(e, alice)) == 2 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, "bob@contoso.com: second", deliveredTo(e, alice)[1])
}
