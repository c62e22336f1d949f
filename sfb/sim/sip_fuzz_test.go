package sim

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipae"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipconn"
)

// FuzzSIPRequest: any request a trusted application's connection sends
// (past the parser, which has fuzz targets of its own) is answered or
// dropped without a crash, and the registrar's count stays the sum of the
// users' registrations.
func FuzzSIPRequest(f *testing.F) {
	for _, m := range []string{
		"REGISTER sip:contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK1\r\nFrom: <sip:alice@contoso.com>;tag=a;epid=e1\r\nTo: <sip:alice@contoso.com>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\n" +
			"Contact: <sip:127.0.0.1:5061;transport=tls>;methods=\"INVITE, MESSAGE\";+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000000001>\"\r\nContent-Length: 0\r\n\r\n",
		"REGISTER sip:contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK2\r\nFrom: <sip:bob@contoso.com>;tag=b;epid=e2\r\nTo: <sip:bob@contoso.com>\r\nCall-ID: r2\r\nCSeq: 1 REGISTER\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n",
		"INVITE sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061\r\nFrom: <sip:alice@contoso.com>;tag=a1;epid=e1\r\nTo: <sip:bob@contoso.com>\r\nCall-ID: i1\r\nCSeq: 1 INVITE\r\n" +
			"ms-text-format: text/plain; charset=UTF-8;ms-body=SGk=\r\nContent-Type: application/sdp\r\nContent-Length: 94\r\n\r\nv=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=session\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 5061 sip null\r\n",
		"MESSAGE sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061\r\nFrom: <sip:alice@contoso.com>;tag=a1\r\nTo: <sip:bob@contoso.com>;tag=x\r\nCall-ID: i1\r\nCSeq: 2 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
		"INFO sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061\r\nFrom: <sip:alice@contoso.com>;tag=a1\r\nTo: <sip:bob@contoso.com>;tag=x\r\nCall-ID: i1\r\nCSeq: 3 INFO\r\nContent-Type: application/xml\r\nContent-Length: 69\r\n\r\n<?xml version=\"1.0\"?><KeyboardActivity><status status=\"type\" /></KeyboardActivity>",
		"BYE sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061\r\nFrom: <sip:alice@contoso.com>;tag=a1\r\nTo: <sip:bob@contoso.com>;tag=x\r\nCall-ID: i1\r\nCSeq: 4 BYE\r\nContent-Length: 0\r\n\r\n",
		"CANCEL sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061\r\nFrom: <sip:alice@contoso.com>;tag=a1\r\nTo: <sip:bob@contoso.com>\r\nCall-ID: i1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(m))
	}
	s, err := New(Options{Users: []User{{URI: "sip:alice@contoso.com", Password: "a"}, {URI: "sip:bob@contoso.com", Password: "b"}}, Logger: zerolog.Nop()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	server, client := net.Pipe()
	go func() { _, _ = io.Copy(io.Discard, client) }()
	sc := &sipConn{
		log: zerolog.Nop(), trusted: "bridge.contoso.com", done: make(chan struct{}),
		handshakes: map[string]*sipae.Server{}, regs: map[*sipReg]struct{}{}, legs: map[*sipLeg]struct{}{},
	}
	sc.c = sipconn.New(context.Background(), server, sipconn.Options{Logger: zerolog.Nop()})
	s.mu.Lock()
	s.sip.conns[sc] = struct{}{}
	s.mu.Unlock()
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := sip.ParseMessage(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		s.handleSIP(sc, req)
		s.mu.Lock()
		defer s.mu.Unlock()
		n := 0
		for _, u := range s.users {
			if u.st != nil {
				n += len(u.st.sipRegs)
			}
		}
		if n != s.sip.registrations {
			t.Fatalf("%d registrations counted, %d held by users", s.sip.registrations, n)
		}
	})
}
