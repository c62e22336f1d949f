package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pidginsipe/recorded"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/im"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipconn"
)

// imPeer is a scripted SfB pool with one remote user, bob, behind it: it
// registers alice's endpoint (trusted mode over loopback TCP), hands the
// test every other request the endpoint sends, and sends bob's requests
// to it.
type imPeer struct {
	t      *testing.T
	conn   atomic.Pointer[sipconn.Conn]
	reqs   chan *sipmsg.Request
	events chan sfb.Event
	// hold, when set, keeps the handler from returning until it is
	// closed (a slow Matrix).
	hold    atomic.Pointer[chan struct{}]
	session *Session
}

const (
	alice = sfb.URI("sip:alice@contoso.com")
	bob   = sfb.URI("sip:bob@contoso.com")
)

func newIMPeer(t *testing.T, timings func(*Timings)) *imPeer {
	t.Helper()
	p := &imPeer{t: t, reqs: make(chan *sipmsg.Request, 64), events: make(chan sfb.Event, 64)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		c := sipconn.New(context.Background(), nc, sipconn.Options{Logger: zerolog.Nop(), Handler: p.handle})
		p.conn.Store(c)
		t.Cleanup(func() { c.Close() })
	}()

	cfg := sfb.DefaultConfig()
	cfg.Transport = sfb.TransportSIP
	cfg.AllowInsecureLoopback = true
	cfg.SIP.Mode = sfb.SIPModeTrusted
	cfg.SIP.Server = "tcp://" + ln.Addr().String()
	cfg.SIP.Connections = 1
	tm := DefaultTimings()
	tm.RequestTimeout = 5 * time.Second
	if timings != nil {
		timings(&tm)
	}
	// The certificate is never presented over plain TCP; trusted mode
	// only wants one configured.
	tr, err := New(cfg, zerolog.Nop(), WithTimings(tm),
		WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{{0}}}}}))
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: alice.Address()}},
		func(_ context.Context, evt sfb.Event) {
			p.events <- evt
			if hold := p.hold.Load(); hold != nil {
				<-*hold
			}
		})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		p.answerAll() // the deregistration's
		_ = s.Close(ctx)
	})
	p.session = s.(*Session)
	return p
}

// handle answers REGISTER and queues every other request for the test.
func (p *imPeer) handle(c *sipconn.Conn, req *sipmsg.Request) {
	// The handler may run before New returned and the accept loop
	// stored the connection.
	p.conn.CompareAndSwap(nil, c)
	if req.Method == sipmsg.REGISTER {
		_ = c.Respond(req, 200, "OK", nil, sipmsg.NewHeader("Expires", "3600"))
		return
	}
	p.reqs <- req
}

// answerAll answers 200 to every request the endpoint sends from now on
// (but ACK), for a test that no longer looks at them.
func (p *imPeer) answerAll() {
	go func() {
		for req := range p.reqs {
			if req.Method != sipmsg.ACK {
				_ = p.conn.Load().Respond(req, 200, "OK", nil)
			}
		}
	}()
}

// next is the next request the endpoint sent (ACK included).
func (p *imPeer) next() *sipmsg.Request {
	p.t.Helper()
	select {
	case req := <-p.reqs:
		return req
	case <-time.After(5 * time.Second):
		p.t.Fatal("the endpoint sent no request")
		return nil
	}
}

// expect is next, checked to be of method.
func (p *imPeer) expect(method sipmsg.RequestMethod) *sipmsg.Request {
	p.t.Helper()
	req := p.next()
	require.Equal(p.t, method, req.Method, "request:\n%s", req)
	return req
}

// nothing checks that the endpoint sends nothing for a while.
func (p *imPeer) nothing() {
	p.t.Helper()
	select {
	case req := <-p.reqs:
		p.t.Fatalf("unexpected request:\n%s", req)
	case <-time.After(100 * time.Millisecond):
	}
}

// event is the next event the session emitted.
func (p *imPeer) event() sfb.Event {
	p.t.Helper()
	select {
	case evt := <-p.events:
		return evt
	case <-time.After(5 * time.Second):
		p.t.Fatal("the session emitted no event")
		return nil
	}
}

// respond answers a request of the endpoint as bob's client: the To tag
// of the dialog, bob's Contact, the pool's Record-Route.
func (p *imPeer) respond(req *sipmsg.Request, status int, reason string, body []byte, headers ...sipmsg.Header) {
	p.t.Helper()
	_, hadTag := req.To().Params.Get("tag")
	res := sipmsg.NewResponseFromRequest(req, status, reason, body)
	if to := res.To(); to != nil && !hadTag {
		to.Params.Add("tag", "bobtag")
		to.Params.Add("epid", "bobepid")
	}
	for _, h := range headers {
		res.AppendHeader(h)
	}
	require.NoError(p.t, p.conn.Load().Send(res))
}

// bobRequest builds a request of bob's to alice in the dialog callID.
func (p *imPeer) bobRequest(method sipmsg.RequestMethod, callID, toTag string, cseq uint32) *sipmsg.Request {
	req := sipmsg.NewRequest(method, sipmsg.Uri{Scheme: "sip", User: "alice", Host: "contoso.com"})
	req.AppendHeader(sipmsg.NewHeader("From", `"Bob Baker" <sip:bob@contoso.com>;tag=bobtag;epid=bobepid`))
	to := "<sip:alice@contoso.com>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	req.AppendHeader(sipmsg.NewHeader("To", to))
	req.AppendHeader(sipmsg.NewHeader("Call-ID", callID))
	req.AppendHeader(sipmsg.NewHeader("CSeq", fmt.Sprintf("%d %s", cseq, method)))
	req.AppendHeader(sipmsg.NewHeader("Max-Forwards", "70"))
	req.AppendHeader(sipmsg.NewHeader("Contact", "<sip:bob@contoso.com;gruu;opaque=app:conf:focus>"))
	req.AppendHeader(sipmsg.NewHeader("Record-Route", "<sip:fe1.contoso.com:5061;transport=tls;lr>"))
	return req
}

// send sends bob's request and returns the endpoint's answer.
func (p *imPeer) send(req *sipmsg.Request) *sipmsg.Response {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := p.conn.Load().Do(ctx, req)
	require.NoError(p.t, err)
	return res
}

// The INVITE pidgin-sipe sends bob → alice: the first message in
// ms-text-format, the SDP of sipe_im_invite.
func (p *imPeer) bobInvite(callID, textFormat string) *sipmsg.Request {
	req := p.bobRequest(sipmsg.INVITE, callID, "", 1)
	req.AppendHeader(sipmsg.NewHeader("Supported", "ms-sender"))
	req.AppendHeader(sipmsg.NewHeader("Ms-Conversation-ID", "f1e2d3"))
	req.AppendHeader(sipmsg.NewHeader("EndPoints", "<sip:bob@contoso.com>, <sip:alice@contoso.com>"))
	if textFormat != "" {
		req.AppendHeader(sipmsg.NewHeader("ms-text-format", textFormat))
	}
	req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte("v=0\r\no=- 0 0 IN IP4 192.0.2.9\r\ns=session\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n" +
		"m=message 5061 sip null\r\na=accept-types:text/plain text/html image/gif multipart/alternative application/im-iscomposing+xml application/ms-imdn+xml text/x-msmsgsinvite\r\n"))
	return req
}

// bob's 200 to alice's INVITE, from pidgin-sipe's send_invite_response.
func bobOK(textFormat bool) (body []byte, headers []sipmsg.Header) {
	headers = []sipmsg.Header{
		sipmsg.NewHeader("Contact", "<sip:bob@contoso.com;opaque=user:epid:bob;gruu>"),
		sipmsg.NewHeader("Record-Route", "<sip:fe1.contoso.com:5061;transport=tls;lr>, <sip:edge.contoso.com:5061;transport=tls;lr>"),
		sipmsg.NewHeader("Supported", "com.microsoft.rtc-multiparty"),
		sipmsg.NewHeader("Content-Type", "application/sdp"),
	}
	if textFormat {
		headers = append(headers, sipmsg.NewHeader("Supported", "ms-text-format"))
	}
	return []byte("v=0\r\no=- 0 0 IN IP4 192.0.2.9\r\ns=session\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n" +
		"m=message 5061 sip sip:bob@contoso.com\r\na=accept-types:text/plain text/html image/gif multipart/alternative application/im-iscomposing+xml\r\n"), headers
}

type sendResult struct {
	sent sfb.SentMessage
	err  error
}

func (p *imPeer) sendAsync(msg sfb.Message) <-chan sendResult {
	ch := make(chan sendResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sent, err := p.session.SendMessage(ctx, bob, msg)
		ch <- sendResult{sent, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan sendResult) sendResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("SendMessage did not return")
		return sendResult{}
	}
}

func header(m sipmsg.Message, name string) string { return headerValue(m, name) }

func TestSendMessageInvitesThenMessages(t *testing.T) {
	p := newIMPeer(t, nil)
	done := p.sendAsync(sfb.Message{Text: "Hello Bob"})

	inv := p.expect(sipmsg.INVITE)
	assert.Equal(t, "sip:bob@contoso.com", inv.Recipient.String())
	tf, err := im.ParseTextFormat(header(inv, "Ms-Text-Format"))
	require.NoError(t, err)
	first, err := tf.Message()
	require.NoError(t, err)
	assert.Equal(t, sfb.Message{Text: "Hello Bob"}, first)
	assert.NotEmpty(t, header(inv, "Ms-Conversation-ID"))
	eps, err := im.ParseEndPoints(header(inv, "EndPoints"))
	require.NoError(t, err)
	require.Len(t, eps, 2)
	assert.Equal(t, string(alice), eps[0].URI)
	assert.Equal(t, string(bob), eps[1].URI)
	assert.Equal(t, "application/sdp", header(inv, "Content-Type"))
	sdp, err := im.ParseSDP(inv.Body())
	require.NoError(t, err)
	assert.Equal(t, "message", sdp.Media)
	assert.Equal(t, "null", sdp.Format)
	assert.Equal(t, uint32(1), inv.CSeq().SeqNo)
	fromTag, _ := inv.From().Params.Get("tag")
	require.NotEmpty(t, fromTag)

	body, hdrs := bobOK(true)
	p.respond(inv, 200, "OK", body, hdrs...)

	// The ACK: same CSeq number, the dialog's tags, to bob's Contact,
	// through the route set (Record-Route reversed).
	ack := p.expect(sipmsg.ACK)
	assert.Equal(t, uint32(1), ack.CSeq().SeqNo)
	assert.Equal(t, inv.CallID().Value(), ack.CallID().Value())
	assert.Contains(t, ack.Recipient.String(), "opaque=user:epid:bob")
	toTag, _ := ack.To().Params.Get("tag")
	assert.Equal(t, "bobtag", toTag)
	routes := ack.GetHeaders("Route")
	require.Len(t, routes, 2)
	assert.Contains(t, routes[0].Value(), "edge.contoso.com")
	assert.Contains(t, routes[1].Value(), "fe1.contoso.com")
	require.NotNil(t, ack.Via(), "an ACK has a Via of its own")

	r := wait(t, done)
	require.NoError(t, r.err)
	assert.NotEmpty(t, r.sent.ID)
	p.nothing() // bob took the message from the INVITE: no MESSAGE

	// The next message goes in the dialog, HTML as multipart/alternative
	// since bob's SDP accepts it.
	done = p.sendAsync(sfb.Message{Text: "bold", HTML: "<b>bold</b>"})
	m := p.expect(sipmsg.MESSAGE)
	assert.Equal(t, uint32(2), m.CSeq().SeqNo)
	assert.Equal(t, inv.CallID().Value(), m.CallID().Value())
	tag, _ := m.From().Params.Get("tag")
	assert.Equal(t, fromTag, tag)
	toTag, _ = m.To().Params.Get("tag")
	assert.Equal(t, "bobtag", toTag)
	assert.Len(t, m.GetHeaders("Route"), 2)
	got, err := im.DecodeMessage(header(m, "Content-Type"), m.Body())
	require.NoError(t, err)
	assert.Equal(t, sfb.Message{Text: "bold", HTML: "<b>bold</b>"}, got)
	assert.True(t, strings.HasPrefix(header(m, "Content-Type"), "multipart/alternative"), header(m, "Content-Type"))
	p.respond(m, 200, "OK", nil)
	r2 := wait(t, done)
	require.NoError(t, r2.err)
	assert.NotEqual(t, r.sent.ID, r2.sent.ID)
}

// pidgin-sipe answers 200 without "Supported: ms-text-format" to a 1:1
// INVITE: it ignores the INVITE's message, which must come again as the
// dialog's first MESSAGE.
func TestSendMessageWhenThePeerIgnoresTheInvitesMessage(t *testing.T) {
	p := newIMPeer(t, nil)
	done := p.sendAsync(sfb.Message{Text: "Hello Bob"})
	inv := p.expect(sipmsg.INVITE)
	body, hdrs := bobOK(false)
	p.respond(inv, 200, "OK", body, hdrs...)
	p.expect(sipmsg.ACK)
	m := p.expect(sipmsg.MESSAGE)
	assert.Equal(t, uint32(2), m.CSeq().SeqNo)
	got, err := im.DecodeMessage(header(m, "Content-Type"), m.Body())
	require.NoError(t, err)
	assert.Equal(t, sfb.Message{Text: "Hello Bob"}, got)
	p.respond(m, 200, "OK", nil)
	require.NoError(t, wait(t, done).err)
}

func TestSendMessageDeliveryFailures(t *testing.T) {
	for _, tc := range []struct {
		status     int
		reason     string
		headers    []sipmsg.Header
		want       []error
		notWant    error
		diagnostic string
	}{
		{480, "Temporarily Unavailable", []sipmsg.Header{sipmsg.NewHeader("ms-diagnostics", `15030;reason="Failed to route to Exchange Server";source="fe1.contoso.com"`)},
			[]error{sfb.ErrDeliveryFailed, sfb.ErrRecipientUnavailable}, nil, "Failed to route to Exchange Server"},
		{603, "Decline", nil, []error{sfb.ErrDeliveryFailed, sfb.ErrDeclined}, nil, "603"},
		{404, "Not Found", []sipmsg.Header{sipmsg.NewHeader("ms-diagnostics", `1003;reason="User does not exist";source="fe1.contoso.com"`)},
			[]error{sfb.ErrDeliveryFailed, sfb.ErrNotFound}, nil, "User does not exist"},
		{606, "Not Acceptable", []sipmsg.Header{sipmsg.NewHeader("Warning", `309 fe1.contoso.com "Message contents not allowed by policy"`)},
			[]error{sfb.ErrDeliveryFailed, sfb.ErrUnsupported}, nil, "606"},
		// SfB's answer when the recipient does not take the message.
		{488, "Not Acceptable Here", []sipmsg.Header{sipmsg.NewHeader("ms-diagnostics", `1018;reason="The recipient did not accept the message";source="fe1.contoso.com"`)},
			[]error{sfb.ErrDeliveryFailed, sfb.ErrDeclined}, nil, "did not accept"},
		{503, "Service Unavailable", []sipmsg.Header{sipmsg.NewHeader("Retry-After", "1")},
			[]error{sfb.ErrServerUnavailable}, sfb.ErrDeliveryFailed, "503"},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			p := newIMPeer(t, nil)
			done := p.sendAsync(sfb.Message{Text: "hi"})
			inv := p.expect(sipmsg.INVITE)
			p.respond(inv, tc.status, tc.reason, nil, tc.headers...)
			r := wait(t, done)
			require.Error(t, r.err)
			for _, w := range tc.want {
				assert.ErrorIs(t, r.err, w)
			}
			if tc.notWant != nil {
				assert.NotErrorIs(t, r.err, tc.notWant)
			}
			assert.Contains(t, r.err.Error(), tc.diagnostic)
			p.nothing() // no ACK of ours for a failure, no dialog
		})
	}
}

// A MESSAGE answered 481 means the server forgot the dialog: the message
// goes again in a new INVITE, which the caller never sees.
func TestSendMessageRestartsAnEndedDialog(t *testing.T) {
	p := newIMPeer(t, nil)
	establish(t, p)

	done := p.sendAsync(sfb.Message{Text: "still there?"})
	m := p.expect(sipmsg.MESSAGE)
	p.respond(m, 481, "Call Leg/Transaction Does Not Exist", nil)
	// The old dialog's BYE (best effort, in the background) may come
	// before or after the new INVITE's requests.
	var inv, ack *sipmsg.Request
	byes := 0
	for inv == nil || ack == nil {
		switch req := p.next(); req.Method {
		case sipmsg.BYE:
			byes++
			assert.Equal(t, m.CallID().Value(), req.CallID().Value())
			p.respond(req, 481, "Call Leg/Transaction Does Not Exist", nil)
		case sipmsg.INVITE:
			inv = req
			assert.NotEqual(t, m.CallID().Value(), inv.CallID().Value())
			tf, err := im.ParseTextFormat(header(inv, "Ms-Text-Format"))
			require.NoError(t, err)
			assert.Equal(t, "still there?", string(tf.Body))
			body, hdrs := bobOK(true)
			p.respond(inv, 200, "OK", body, hdrs...)
		case sipmsg.ACK:
			ack = req
			assert.Equal(t, inv.CallID().Value(), ack.CallID().Value())
		default:
			t.Fatalf("unexpected %s", req.Method)
		}
	}
	require.NoError(t, wait(t, done).err)
	if byes == 0 {
		assert.Equal(t, sipmsg.BYE, p.expect(sipmsg.BYE).Method)
	}
}

// establish runs alice's first message to bob through INVITE, 200, ACK.
func establish(t *testing.T, p *imPeer) *sipmsg.Request {
	t.Helper()
	done := p.sendAsync(sfb.Message{Text: "first"})
	inv := p.expect(sipmsg.INVITE)
	body, hdrs := bobOK(true)
	p.respond(inv, 200, "OK", body, hdrs...)
	p.expect(sipmsg.ACK)
	require.NoError(t, wait(t, done).err)
	return inv
}

func TestIncomingConversation(t *testing.T) {
	p := newIMPeer(t, nil)
	// What pidgin-sipe sends for "Hello <world> & ünïcode".
	tf := "text/plain; charset=UTF-8;msgr=WAAtAE0ATQBTAC0ASQBNAC0ARgBvAHIAbQBhAHQAOgAgAEYATgA9AE0AUwAlADIAMABTAGEAbgBzACUAMgAwAFMAZQByAGkAZgA7ACAARQBGAD0AOwAgAEMATwA9ADAAOwAgAFAARgA9ADAAOwAgAFIATAA9ADAADQAKAA0ACgA;ms-body=SGVsbG8gPHdvcmxkPiAmIMO8bsOvY29kZQ=="
	res := p.send(p.bobInvite("call-1", tf))
	require.Equal(t, 200, res.StatusCode)
	assert.True(t, supports(res, "ms-text-format"), "the INVITE's message was taken")
	toTag, _ := res.To().Params.Get("tag")
	require.NotEmpty(t, toTag)
	sdp, err := im.ParseSDP(res.Body())
	require.NoError(t, err)
	assert.Equal(t, string(alice), sdp.Format)
	assert.True(t, sdp.Accepts("text/html"))
	assert.NotEmpty(t, header(res, "Contact"))

	evt := p.event().(sfb.MessageReceived)
	assert.Equal(t, sfb.Message{Text: "Hello <world> & ünïcode"}, evt.Message)
	assert.Equal(t, bob, evt.From.URI)
	assert.Equal(t, "Bob Baker", evt.From.DisplayName)
	assert.Equal(t, sfb.Conversation{ThreadID: "f1e2d3", Peer: bob}, evt.Conversation)
	firstID := evt.ID

	require.NoError(t, p.conn.Load().Send(withVia(p.bobRequest(sipmsg.ACK, "call-1", toTag, 1))))

	msg := p.bobRequest(sipmsg.MESSAGE, "call-1", toTag, 2)
	msg.AppendHeader(sipmsg.NewHeader("Content-Type", "text/html; charset=UTF-8"))
	msg.SetBody([]byte("<b>second</b>"))
	require.Equal(t, 200, p.send(msg).StatusCode)
	evt = p.event().(sfb.MessageReceived)
	assert.Equal(t, sfb.Message{Text: "second", HTML: "<b>second</b>"}, evt.Message)
	assert.NotEqual(t, firstID, evt.ID)

	// The same MESSAGE again (a retransmission) has the same ID.
	again := p.bobRequest(sipmsg.MESSAGE, "call-1", toTag, 2)
	again.AppendHeader(sipmsg.NewHeader("Content-Type", "text/html; charset=UTF-8"))
	again.SetBody([]byte("<b>second</b>"))
	require.Equal(t, 200, p.send(again).StatusCode)
	assert.Equal(t, evt.ID, p.event().(sfb.MessageReceived).ID)

	// Typing: pidgin-sipe's INFO, and RFC 3994 in a MESSAGE.
	info := p.bobRequest(sipmsg.INFO, "call-1", toTag, 3)
	info.AppendHeader(sipmsg.NewHeader("Content-Type", "application/xml"))
	info.SetBody([]byte(`<?xml version="1.0"?><KeyboardActivity> <status status="type" /></KeyboardActivity>`))
	require.Equal(t, 200, p.send(info).StatusCode)
	assert.Equal(t, sfb.TypingChanged{Conversation: sfb.Conversation{ThreadID: "f1e2d3", Peer: bob}, From: bob, Typing: true}, p.event())
	comp := p.bobRequest(sipmsg.MESSAGE, "call-1", toTag, 4)
	comp.AppendHeader(sipmsg.NewHeader("Content-Type", "application/im-iscomposing+xml"))
	comp.SetBody(im.IsComposing(false, 0))
	require.Equal(t, 200, p.send(comp).StatusCode)
	assert.False(t, p.event().(sfb.TypingChanged).Typing)

	// Alice answers in bob's dialog: her own CSeq from 1, the tags
	// swapped, to bob's Contact through the Record-Route.
	done := p.sendAsync(sfb.Message{Text: "hi Bob"})
	m := p.expect(sipmsg.MESSAGE)
	assert.Equal(t, "call-1", m.CallID().Value())
	assert.Equal(t, uint32(1), m.CSeq().SeqNo)
	tag, _ := m.From().Params.Get("tag")
	assert.Equal(t, toTag, tag)
	tag, _ = m.To().Params.Get("tag")
	assert.Equal(t, "bobtag", tag)
	assert.Contains(t, m.Recipient.String(), "opaque=app:conf:focus")
	require.Len(t, m.GetHeaders("Route"), 1)
	p.respond(m, 200, "OK", nil)
	require.NoError(t, wait(t, done).err)

	// Typing towards bob goes in the dialog too.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typingDone := make(chan error, 1)
	go func() { typingDone <- p.session.SetTyping(ctx, bob, true) }()
	ti := p.expect(sipmsg.INFO)
	assert.Equal(t, uint32(2), ti.CSeq().SeqNo)
	typing, err := im.ParseTyping(header(ti, "Content-Type"), ti.Body())
	require.NoError(t, err)
	assert.True(t, typing)
	p.respond(ti, 200, "OK", nil)
	require.NoError(t, <-typingDone)

	bye := p.bobRequest(sipmsg.BYE, "call-1", toTag, 5)
	require.Equal(t, 200, p.send(bye).StatusCode)
	assert.Equal(t, sfb.ConversationEnded{Conversation: sfb.Conversation{ThreadID: "f1e2d3", Peer: bob}}, p.event())

	// With the dialog gone, typing sends nothing and a message invites.
	require.NoError(t, p.session.SetTyping(ctx, bob, false))
	p.nothing()
	done = p.sendAsync(sfb.Message{Text: "back"})
	inv := p.expect(sipmsg.INVITE)
	assert.NotEqual(t, "call-1", inv.CallID().Value())
	p.respond(inv, 486, "Busy Here", nil)
	assert.ErrorIs(t, wait(t, done).err, sfb.ErrDeclined)
}

func withVia(req *sipmsg.Request) *sipmsg.Request {
	via := &sipmsg.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TCP", Host: "127.0.0.1", Port: 5060, Params: sipmsg.NewParams()}
	via.Params.Add("branch", sipmsg.GenerateBranch())
	req.PrependHeader(via)
	return req
}

func TestIncomingRequestsRefused(t *testing.T) {
	p := newIMPeer(t, nil)

	// An ms-text-format that cannot be read is not acknowledged: the
	// peer sends the message again as a MESSAGE.
	res := p.send(p.bobInvite("call-2", "text/plain; charset=UTF-8;ms-body=!!!"))
	require.Equal(t, 200, res.StatusCode)
	assert.False(t, supports(res, "ms-text-format"))
	toTag, _ := res.To().Params.Get("tag")

	for _, tc := range []struct {
		ct, body string
		status   int
	}{
		{"text/plain; charset=UTF-8", "bad \xff utf-8", 400},
		{"image/gif", "GIF89a", 415},
		{"application/ms-imdn+xml", "<imdn/>", 415},
		{"application/im-iscomposing+xml", "<isComposing/>", 400},
	} {
		m := p.bobRequest(sipmsg.MESSAGE, "call-2", toTag, 2)
		m.AppendHeader(sipmsg.NewHeader("Content-Type", tc.ct))
		m.SetBody([]byte(tc.body))
		assert.Equal(t, tc.status, p.send(m).StatusCode, tc.ct)
	}
	info := p.bobRequest(sipmsg.INFO, "call-2", toTag, 3)
	info.AppendHeader(sipmsg.NewHeader("Content-Type", "application/xml"))
	info.SetBody([]byte("<KeyboardActivity><status status='dance'/></KeyboardActivity>"))
	assert.Equal(t, 400, p.send(info).StatusCode)
	select {
	case evt := <-p.events:
		t.Fatalf("an event for refused requests: %#v", evt)
	default:
	}

	// Multi-party conversations are not carried.
	inv := p.bobInvite("call-3", "")
	inv.ReplaceHeader(sipmsg.NewHeader("EndPoints", "<sip:bob@contoso.com>, <sip:alice@contoso.com>, <sip:carol@contoso.com>"))
	assert.Equal(t, 488, p.send(inv).StatusCode)
	// Nor is an audio call.
	call := p.bobRequest(sipmsg.INVITE, "call-4", "", 1)
	call.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	call.SetBody([]byte("v=0\r\no=- 0 0 IN IP4 192.0.2.9\r\ns=session\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 50000 RTP/AVP 0\r\n"))
	assert.Equal(t, 488, p.send(call).StatusCode)
	// A CANCEL for nothing pending.
	assert.Equal(t, 481, p.send(p.bobRequest(sipmsg.CANCEL, "call-9", "", 1)).StatusCode)
}

func TestIdleDialogIsClosed(t *testing.T) {
	p := newIMPeer(t, func(tm *Timings) { tm.IMIdle = 300 * time.Millisecond })
	inv := establish(t, p)
	bye := p.expect(sipmsg.BYE)
	assert.Equal(t, inv.CallID().Value(), bye.CallID().Value())
	assert.Equal(t, uint32(2), bye.CSeq().SeqNo)
	p.respond(bye, 200, "OK", nil)
	assert.Equal(t, sfb.ConversationEnded{Conversation: sfb.Conversation{ThreadID: header(inv, "Ms-Conversation-ID"), Peer: bob}}, p.event())

	// The next message starts a new dialog.
	done := p.sendAsync(sfb.Message{Text: "again"})
	inv2 := p.expect(sipmsg.INVITE)
	assert.NotEqual(t, inv.CallID().Value(), inv2.CallID().Value())
	body, hdrs := bobOK(true)
	p.respond(inv2, 200, "OK", body, hdrs...)
	p.expect(sipmsg.ACK)
	require.NoError(t, wait(t, done).err)
}

// Messages sent at once to one peer reach it in order, one INVITE among
// them.
func TestConcurrentMessagesKeepOrder(t *testing.T) {
	p := newIMPeer(t, nil)
	establish(t, p)
	const n = 5
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := p.session.SendMessage(ctx, bob, sfb.Message{Text: fmt.Sprint("m", i)})
			errs <- err
		}()
	}
	var last uint32
	for range n {
		m := p.expect(sipmsg.MESSAGE)
		assert.Greater(t, m.CSeq().SeqNo, last, "CSeq goes up")
		last = m.CSeq().SeqNo
		p.respond(m, 200, "OK", nil)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

func TestSendMessageRefusesEmpty(t *testing.T) {
	p := newIMPeer(t, nil)
	_, err := p.session.SendMessage(context.Background(), bob, sfb.Message{})
	assert.ErrorIs(t, err, sfb.ErrUnsupported)
	_, err = p.session.SendMessage(context.Background(), "not an address", sfb.Message{Text: "x"})
	assert.True(t, errors.Is(err, sfb.ErrNotFound))
	p.nothing()
}

// A peer that refuses the formatted form of a message gets its text.
func TestFormattedMessageRefusedGoesAsText(t *testing.T) {
	p := newIMPeer(t, nil)
	establish(t, p)
	done := p.sendAsync(sfb.Message{Text: "bold", HTML: "<b>bold</b>"})
	m := p.expect(sipmsg.MESSAGE)
	assert.True(t, strings.HasPrefix(header(m, "Content-Type"), "multipart/alternative"))
	p.respond(m, 415, "Unsupported Media Type", nil)
	m = p.expect(sipmsg.MESSAGE)
	assert.Equal(t, "text/plain; charset=UTF-8", header(m, "Content-Type"))
	assert.Equal(t, "bold", string(m.Body()))
	p.respond(m, 200, "OK", nil)
	require.NoError(t, wait(t, done).err)

	// Refused as text too: the peer does not take messages.
	done = p.sendAsync(sfb.Message{Text: "again", HTML: "<i>again</i>"})
	p.respond(p.expect(sipmsg.MESSAGE), 488, "Not Acceptable Here", nil)
	p.respond(p.expect(sipmsg.MESSAGE), 488, "Not Acceptable Here", nil)
	err := wait(t, done).err
	assert.ErrorIs(t, err, sfb.ErrDeclined)
	assert.ErrorIs(t, err, sfb.ErrDeliveryFailed)
	p.nothing()
}

// Signing out says goodbye in every conversation.
func TestCloseEndsConversations(t *testing.T) {
	p := newIMPeer(t, nil)
	inv := establish(t, p)
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		closed <- p.session.Close(ctx)
	}()
	bye := p.expect(sipmsg.BYE)
	assert.Equal(t, inv.CallID().Value(), bye.CallID().Value())
	p.respond(bye, 200, "OK", nil)
	require.NoError(t, <-closed)
}

// Both invite at once: bob's dialog carries the conversation on, alice's
// is closed once her INVITE was answered.
func TestInvitesCrossing(t *testing.T) {
	p := newIMPeer(t, nil)
	done := p.sendAsync(sfb.Message{Text: "from alice"})
	ours := p.expect(sipmsg.INVITE)

	res := p.send(p.bobInvite("call-bob", "text/plain; charset=UTF-8;ms-body=ZnJvbSBib2I="))
	require.Equal(t, 200, res.StatusCode)
	toTag, _ := res.To().Params.Get("tag")
	assert.Equal(t, "from bob", p.event().(sfb.MessageReceived).Message.Text)

	body, hdrs := bobOK(true)
	p.respond(ours, 200, "OK", body, hdrs...)
	var ack, bye *sipmsg.Request
	for ack == nil || bye == nil {
		switch req := p.next(); req.Method {
		case sipmsg.ACK:
			ack = req
		case sipmsg.BYE:
			bye = req
			p.respond(bye, 200, "OK", nil)
		default:
			t.Fatalf("unexpected %s", req.Method)
		}
	}
	assert.Equal(t, ours.CallID().Value(), ack.CallID().Value())
	assert.Equal(t, ours.CallID().Value(), bye.CallID().Value())
	require.NoError(t, wait(t, done).err)

	done = p.sendAsync(sfb.Message{Text: "next"})
	m := p.expect(sipmsg.MESSAGE)
	assert.Equal(t, "call-bob", m.CallID().Value())
	tag, _ := m.From().Params.Get("tag")
	assert.Equal(t, toTag, tag)
	p.respond(m, 200, "OK", nil)
	require.NoError(t, wait(t, done).err)
}

// recordedRequest is a request pidgin-sipe sent in the recording
// (internal/pidginsipe/recorded), as the pool passes it on to the other party:
// there alice wrote to bob, here bob (pidgin-sipe) writes to alice (the
// endpoint under test), so the two swap places.
func recordedRequest(t *testing.T, name string) *sipmsg.Request {
	t.Helper()
	raw := recorded.Read(t, name)
	swapped := strings.NewReplacer("alice", "bob", "bob", "alice").Replace(string(raw))
	m, err := sipmsg.ParseMessage([]byte(swapped))
	require.NoError(t, err)
	req, ok := m.(*sipmsg.Request)
	require.True(t, ok, name)
	return req
}

// A conversation pidgin-sipe starts, replayed from its recording: the
// INVITE with its first message, typing, a bold message, closing the
// window.
func TestRecordedPidginSipeConversation(t *testing.T) {
	p := newIMPeer(t, nil)
	res := p.send(recordedRequest(t, "027-client-invite.sip"))
	require.Equal(t, 200, res.StatusCode)
	assert.True(t, supports(res, "ms-text-format"))
	evt := p.event().(sfb.MessageReceived)
	assert.Equal(t, sfb.Message{Text: "Hello Bob, first message"}, evt.Message)
	assert.Equal(t, bob, evt.From.URI)
	assert.Equal(t, "351056548", evt.Conversation.ThreadID)

	require.NoError(t, p.conn.Load().Send(withVia(recordedRequest(t, "029-client-ack.sip"))))
	require.Equal(t, 200, p.send(recordedRequest(t, "030-client-info.sip")).StatusCode)
	assert.True(t, p.event().(sfb.TypingChanged).Typing)
	require.Equal(t, 200, p.send(recordedRequest(t, "032-client-message.sip")).StatusCode)
	evt = p.event().(sfb.MessageReceived)
	assert.Equal(t, sfb.Message{Text: "Second message & more", HTML: "<b>Second message &amp; more</b>"}, evt.Message)
	assert.Equal(t, "351056548", evt.Conversation.ThreadID)

	// An answer goes in pidgin-sipe's dialog, to its Contact.
	done := p.sendAsync(sfb.Message{Text: "Hi"})
	m := p.expect(sipmsg.MESSAGE)
	assert.Equal(t, "E32EgFD52a730EiEAD1m6208t0B01b64EBx8E1Dx", m.CallID().Value())
	assert.Contains(t, m.Recipient.String(), "opaque=user:epid:5ccdb10d-dca1-559e-ad2b-b514060a2da2")
	tag, _ := m.To().Params.Get("tag")
	assert.Equal(t, "2339613842", tag)
	p.respond(m, 200, "OK", nil)
	require.NoError(t, wait(t, done).err)

	require.Equal(t, 200, p.send(recordedRequest(t, "036-client-bye.sip")).StatusCode)
	assert.Equal(t, sfb.ConversationEnded{Conversation: sfb.Conversation{ThreadID: "351056548", Peer: bob}}, p.event())
}

// A reply written while the handler still takes the first message of the
// peer's INVITE waits for the INVITE's 200, then goes in the peer's
// dialog.
func TestReplyWaitsForTheInvitesAnswer(t *testing.T) {
	p := newIMPeer(t, nil)
	release := make(chan struct{})
	p.hold.Store(&release)
	answered := make(chan *sipmsg.Response, 1)
	go func() { answered <- p.send(p.bobInvite("call-slow", "text/plain; charset=UTF-8;ms-body=aGk=")) }()
	assert.Equal(t, "hi", p.event().(sfb.MessageReceived).Message.Text)

	done := p.sendAsync(sfb.Message{Text: "reply"})
	p.nothing()
	select {
	case <-answered:
		t.Fatal("the INVITE was answered before the handler returned")
	default:
	}
	p.hold.Store(nil)
	close(release)
	require.Equal(t, 200, (<-answered).StatusCode)
	m := p.expect(sipmsg.MESSAGE)
	assert.Equal(t, "call-slow", m.CallID().Value())
	p.respond(m, 200, "OK", nil)
	require.NoError(t, wait(t, done).err)
}

// A message that arrives while the session closes, and that the handler
// therefore did not keep, is refused: the sender's client says it was not
// delivered instead of the message vanishing behind a 200. The answer goes
// back on the request's connection even when the endpoint has already
// signed out there.
func TestMessageDuringCloseIsRefused(t *testing.T) {
	p := newIMPeer(t, nil)
	release := make(chan struct{})
	p.hold.Store(&release)
	answered := make(chan *sipmsg.Response, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, _ := p.conn.Load().Do(ctx, p.bobInvite("call-closing", "text/plain; charset=UTF-8;ms-body=aGk="))
		answered <- res
	}()
	assert.Equal(t, "hi", p.event().(sfb.MessageReceived).Message.Text)

	p.answerAll() // the sign-out's BYE
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		closed <- p.session.Close(ctx)
	}()
	require.Eventually(t, func() bool { return p.session.ctx.Err() != nil }, 5*time.Second, time.Millisecond)
	p.hold.Store(nil)
	close(release)
	res := <-answered
	require.NotNil(t, res, "the INVITE was not answered")
	assert.Equal(t, 480, res.StatusCode)
	require.NoError(t, <-closed)
}
