package sip

import (
	"context"
	"errors"
	"testing"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

func testSession(t *testing.T) *Session {
	t.Helper()
	tr := newTransport(t, testConfig("tcp://127.0.0.1:5060"))
	s := &Session{t: tr, self: "sip:alice@contoso.com", epid: "0123456789ab", heapIndex: -1}
	s.reg.gruu = "sip:alice@contoso.com;opaque=user:epid:x;gruu"
	return s
}

// A dialog the endpoint starts learns the peer's tag, epid, Contact and
// route set from the 2xx; its next request goes to the Contact along the
// reversed Record-Route, one CSeq up.
func TestDialogAsCaller(t *testing.T) {
	s := testSession(t)
	d := s.newDialog("sip:bob@contoso.com")
	invite, err := s.request(d, sipmsg.INVITE)
	require.NoError(t, err)
	assert.Equal(t, "sip:bob@contoso.com", invite.Recipient.String())
	assert.Equal(t, "<sip:bob@contoso.com>", headerValue(invite, "To"))
	assert.Equal(t, "<sip:alice@contoso.com>;tag="+d.LocalTag+";epid=0123456789ab", headerValue(invite, "From"))
	assert.Equal(t, "1 INVITE", headerValue(invite, "CSeq"))
	assert.Equal(t, "<"+s.reg.gruu+">", headerValue(invite, "Contact"))

	raw := "SIP/2.0 200 OK\r\n" +
		"Via: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bK1\r\n" +
		"From: <sip:alice@contoso.com>;tag=" + d.LocalTag + ";epid=0123456789ab\r\n" +
		"To: <sip:bob@contoso.com>;tag=bobtag;epid=bobepid\r\n" +
		"Call-ID: " + d.CallID + "\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Record-Route: <sip:fe2.contoso.com:5061;transport=tls;opaque=state:T;lr>, <sip:fe1.contoso.com:5061;transport=tls;lr>\r\n" +
		"Contact: <sip:bob@contoso.com;opaque=user:epid:bob;gruu>\r\n" +
		"Content-Length: 0\r\n\r\n"
	d.update(parseResponse(t, raw))
	assert.Equal(t, "bobtag", d.RemoteTag)
	assert.Equal(t, "bobepid", d.RemoteEPID)

	bye, err := s.request(d, sipmsg.BYE)
	require.NoError(t, err)
	assert.Equal(t, "sip:bob@contoso.com;opaque=user:epid:bob;gruu", bye.Recipient.String())
	assert.Equal(t, "<sip:bob@contoso.com>;tag=bobtag;epid=bobepid", headerValue(bye, "To"))
	assert.Equal(t, "2 BYE", headerValue(bye, "CSeq"))
	assert.Equal(t, d.CallID, headerValue(bye, "Call-ID"))
	var routes []string
	for _, h := range bye.GetHeaders("Route") {
		routes = append(routes, h.Value())
	}
	assert.Equal(t, []string{"<sip:fe1.contoso.com:5061;transport=tls;lr>", "<sip:fe2.contoso.com:5061;transport=tls;opaque=state:T;lr>"}, routes)

	ack, err := s.requestCSeq(d, sipmsg.ACK, 1)
	require.NoError(t, err)
	assert.Equal(t, "1 ACK", headerValue(ack, "CSeq"))
	assert.Empty(t, ack.GetHeaders("Contact"))
}

// A dialog the peer starts takes its tag, epid, Contact and route set
// from the request, and gives the request's To our tag so the answer
// carries it.
func TestDialogAsCallee(t *testing.T) {
	s := testSession(t)
	raw := "INVITE sip:alice@contoso.com;opaque=user:epid:x;gruu SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bK2\r\n" +
		"From: \"Bob\" <sip:bob@contoso.com>;tag=bobtag;epid=bobepid\r\n" +
		"To: <sip:alice@contoso.com>\r\n" +
		"Call-ID: c1\r\n" +
		"CSeq: 7 INVITE\r\n" +
		"Record-Route: <sip:fe1.contoso.com:5061;transport=tls;lr>\r\n" +
		"Contact: <sip:bob@contoso.com;opaque=user:epid:bob;gruu>\r\n" +
		"Content-Length: 0\r\n\r\n"
	m, err := sipmsg.ParseMessage([]byte(raw))
	require.NoError(t, err)
	req := m.(*sipmsg.Request)
	d, err := s.dialogFromRequest(req)
	require.NoError(t, err)
	assert.Equal(t, Dialog{CallID: "c1", LocalTag: d.LocalTag, RemoteTag: "bobtag", RemoteEPID: "bobepid", Peer: "sip:bob@contoso.com",
		RemoteTarget: "sip:bob@contoso.com;opaque=user:epid:bob;gruu", Routes: []string{"<sip:fe1.contoso.com:5061;transport=tls;lr>"},
		RemoteCSeq: 7}, *d)
	require.NotEmpty(t, d.LocalTag)
	res := sipmsg.NewResponseFromRequest(req, 200, "OK", nil)
	tag, _ := res.To().Params.Get("tag")
	assert.Equal(t, d.LocalTag, tag)

	bye, err := s.request(d, sipmsg.BYE)
	require.NoError(t, err)
	assert.Equal(t, "<sip:alice@contoso.com>;tag="+d.LocalTag+";epid=0123456789ab", headerValue(bye, "From"))
	assert.Equal(t, "1 BYE", headerValue(bye, "CSeq"), "our own numbering")
}

// What SIP does not carry says so in the transport-neutral terms the
// bridge decides on, without looking like a refused message.
func TestNotCarriedIsUnsupported(t *testing.T) {
	_, err := (&Session{}).SendGroupMessage(context.Background(), sfb.Group{ThreadID: "t1"}, sfb.Message{Text: "hi"})
	assert.ErrorIs(t, err, sfb.ErrNotCarried)
	assert.ErrorIs(t, err, sfb.ErrUnsupported)
	assert.ErrorIs(t, err, errors.ErrUnsupported)
	assert.NotErrorIs(t, err, sfb.ErrDeliveryFailed)
}
