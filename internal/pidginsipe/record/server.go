package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/ntlm"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipae"
)

// entry is one message of the recorded exchange.
type entry struct {
	fromClient bool
	msg        *message
}

// server is a canned SfB Front End: just enough of a registrar, presence
// server and IM peer to lead pidgin-sipe through sign-in, presence and
// IM, answering as the OCS/SfB recordings in pidgin-sipe's sources do, and
// keeping every message both ways.
type server struct {
	domain, fqdn string
	users        map[string]string // NTLM user -> password
	contacts     string            // the one contact on the user's list
	trace        bool              // log every message

	mu      sync.Mutex
	changed chan struct{}
	log     []entry
	conn    net.Conn
	sasl    *sipae.Server
	sa      *sipae.SA
	opaque  string
	// Challenge is the NTLM CHALLENGE sent, for the fixtures: with it the
	// recorded AUTHENTICATE can be checked again.
	challenge []byte
	cseq      uint32
}

func newServer(domain, fqdn string, users map[string]string) *server {
	return &server{domain: domain, fqdn: fqdn, users: users, changed: make(chan struct{}), cseq: 100}
}

func (s *server) serve(ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conn = nc
		s.mu.Unlock()
		go s.read(nc)
	}
}

func (s *server) read(nc net.Conn) {
	r := bufio.NewReader(nc)
	for {
		m, err := readMessage(r)
		if err != nil {
			return
		}
		// Waiters see a request once it is answered, so what they send
		// next comes after the answer, as from a real server.
		s.append(true, m)
		if m.isRequest() {
			s.handle(m)
		}
		s.signal()
	}
}

func (s *server) record(fromClient bool, m *message) {
	s.append(fromClient, m)
	s.signal()
}

func (s *server) signal() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *server) append(fromClient bool, m *message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, entry{fromClient, m})
	if s.trace {
		dir := "<<< server"
		if fromClient {
			dir = ">>> client"
		}
		log.Printf("%s\n%s\n", dir, m.raw)
	}
}

// wait returns the first client message after position from that match
// accepts, and the position after it.
func (s *server) wait(from int, timeout time.Duration, what string, match func(*message) bool) (*message, int) {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		for i := from; i < len(s.log); i++ {
			if s.log[i].fromClient && match(s.log[i].msg) {
				s.mu.Unlock()
				return s.log[i].msg, i + 1
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			fatalf("record: pidgin-sipe sent no %s within %s", what, timeout)
		}
	}
}

func (s *server) position() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.log)
}

// send signs (once the security association holds) and writes a message.
func (s *server) send(start string, headers [][2]string, body []byte) {
	s.mu.Lock()
	sa := s.sa
	s.mu.Unlock()
	if sa != nil {
		status := 0
		if strings.HasPrefix(start, "SIP/2.0 ") {
			fmt.Sscanf(start, "SIP/2.0 %d", &status)
		}
		unsigned := build(start, headers, body)
		f, err := sipae.FieldsFrom(unsigned.get, status)
		if err != nil {
			fatalf("record: signing %q: %v", start, err)
		}
		p, err := sa.Sign(f)
		if err != nil {
			fatalf("record: signing %q: %v", start, err)
		}
		headers = append([][2]string{{"Authentication-Info", p.String()}}, headers...)
	}
	m := build(start, headers, body)
	s.record(false, m)
	s.mu.Lock()
	nc := s.conn
	s.mu.Unlock()
	if _, err := nc.Write(m.raw); err != nil {
		log.Printf("record: writing %q: %v", start, err)
	}
}

// respond answers a request: Via, From, Call-ID and CSeq copied, a To tag
// added (one per Call-ID, as a dialog's).
func (s *server) respond(req *message, status int, reason string, extra [][2]string, body []byte) {
	var h [][2]string
	for _, v := range req.all("Via") {
		h = append(h, [2]string{"Via", v})
	}
	to := req.get("To")
	if param(to, "tag") == "" {
		to += ";tag=" + tagFor(req.get("Call-ID"))
	}
	h = append(h, [2]string{"From", req.get("From")}, [2]string{"To", to},
		[2]string{"Call-ID", req.get("Call-ID")}, [2]string{"CSeq", req.get("CSeq")})
	h = append(h, extra...)
	h = append(h, [2]string{"Server", "RTC/6.0"})
	s.send(fmt.Sprintf("SIP/2.0 %d %s", status, reason), h, body)
}

func tagFor(callID string) string {
	b := []byte(callID)
	var sum uint32 = 2166136261
	for _, c := range b {
		sum = (sum ^ uint32(c)) * 16777619
	}
	return fmt.Sprintf("%08X", sum)
}

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

func (s *server) handle(req *message) {
	switch req.method() {
	case "REGISTER":
		s.register(req)
	case "SUBSCRIBE":
		s.subscribe(req)
	case "INVITE":
		sdp := "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=session\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 5061 sip sip:bob@" + s.domain + "\r\na=accept-types:text/plain text/html image/gif multipart/alternative application/im-iscomposing+xml text/rtf\r\n"
		s.respond(req, 200, "OK", [][2]string{
			{"Contact", "<sip:bob@" + s.domain + ";opaque=user:epid:bobepid0000000000000000;gruu>"},
			// bob's client took the first message from Ms-Text-Format.
			{"Supported", "ms-text-format"},
			{"Content-Type", "application/sdp"},
		}, []byte(sdp))
	case "ACK":
	case "SERVICE":
		// addGroup is answered with the new group's id, as OCS does; the
		// other SOAP requests (setContact, publish, ...) with a bare 200.
		if strings.Contains(string(req.body), "<m:addGroup>") {
			body := `<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m:addGroup xmlns:m="http://schemas.microsoft.com/winrtc/2002/11/sip"><m:groupID>2</m:groupID></m:addGroup></SOAP-ENV:Body></SOAP-ENV:Envelope>`
			s.respond(req, 200, "OK", [][2]string{{"Content-Type", "application/SOAP+xml"}}, []byte(body))
			return
		}
		s.respond(req, 200, "OK", nil, nil)
	case "MESSAGE", "INFO", "BYE", "OPTIONS", "NOTIFY", "CANCEL":
		s.respond(req, 200, "OK", nil, nil)
	default:
		s.respond(req, 501, "Not Implemented", nil, nil)
	}
}

// register runs MS-SIPAE's NTLM handshake and then registers: 401 with the
// offer, 401 with the CHALLENGE, 200 signed, as OCS does.
func (s *server) register(req *message) {
	auth := req.get("Authorization")
	if auth == "" {
		s.mu.Lock()
		s.sa, s.sasl = nil, nil
		s.mu.Unlock()
		offer := &sipae.Params{Scheme: sipae.SchemeNTLM, Realm: sipae.Realm, TargetName: s.fqdn, Version: sipae.ProtocolVersion}
		s.respond(req, 401, "Unauthorized", [][2]string{{"WWW-Authenticate", offer.String()}}, nil)
		return
	}
	p, err := sipae.ParseHeader(auth)
	if err != nil {
		fatalf("record: REGISTER Authorization %q: %v", auth, err)
	}
	s.mu.Lock()
	sa := s.sa
	s.mu.Unlock()
	if sa == nil && p.HasGSSAPIData && len(p.GSSAPIData) == 0 {
		srv := sipae.NewServer(&ntlm.Server{NetBIOSDomain: "CONTOSO", NetBIOSComputer: "FE01", DNSDomain: s.domain, DNSComputer: s.fqdn,
			NTHash: func(user, domain string) ([]byte, bool) {
				pw, ok := s.users[strings.ToLower(user)]
				return ntlm.NTOWFv1(pw), ok
			}})
		token, _, err := srv.Next(nil)
		if err != nil {
			fatalf("record: NTLM challenge: %v", err)
		}
		s.mu.Lock()
		s.sasl, s.opaque, s.challenge = srv, random(4), token
		s.mu.Unlock()
		ch := &sipae.Params{Scheme: sipae.SchemeNTLM, Opaque: s.opaque, GSSAPIData: token, TargetName: s.fqdn, Realm: sipae.Realm, Version: sipae.ProtocolVersion}
		s.respond(req, 401, "Unauthorized", [][2]string{{"WWW-Authenticate", ch.String()}}, nil)
		return
	}
	if sa == nil {
		if _, done, err := s.sasl.Next(p.GSSAPIData); err != nil || !done {
			fatalf("record: NTLM AUTHENTICATE refused: %v", err)
		}
		if sa, err = s.sasl.SA(sipae.Realm, s.fqdn, s.opaque, sipae.ProtocolVersion); err != nil {
			fatalf("record: %v", err)
		}
		s.mu.Lock()
		s.sa = sa
		s.mu.Unlock()
	}
	f, err := sipae.FieldsFrom(req.get, 0)
	if err != nil {
		fatalf("record: REGISTER fields: %v", err)
	}
	if err := sa.Verify(f, p); err != nil {
		fatalf("record: REGISTER signature: %v", err)
	}
	expires := req.get("Expires")
	if expires == "" {
		expires = "7200"
	}
	contact := req.get("Contact")
	instance := param(contact, "+sip.instance")
	aor := strings.Trim(strings.Split(req.get("To"), ";")[0], "<> ")
	epid := strings.TrimSuffix(strings.TrimPrefix(instance, "<urn:uuid:"), ">")
	gruu := aor + ";opaque=user:epid:" + epid + ";gruu"
	extra := [][2]string{
		{"Contact", contact[:strings.Index(contact, ">")+1] + `;expires=` + expires + `;+sip.instance="` + instance + `";gruu="` + gruu + `"`},
		{"Expires", expires},
		{"Allow-Events", "vnd-microsoft-provisioning,vnd-microsoft-roaming-contacts,vnd-microsoft-roaming-ACL,presence,presence.wpending,vnd-microsoft-roaming-self,vnd-microsoft-provisioning-v2"},
		{"Supported", "adhoclist"},
		{"Supported", "msrtc-event-categories"},
		{"Supported", "ms-userservices-state-notification"},
		{"ms-keep-alive", "UAS; tcp=no; hop-hop=yes; end-end=no; timeout=300"},
	}
	if expires == "0" {
		extra = [][2]string{{"Expires", "0"}}
	}
	s.respond(req, 200, "OK", extra, nil)
}

func (s *server) subscribe(req *message) {
	expires := req.get("Expires")
	if expires == "" {
		expires = "3600"
	}
	extra := [][2]string{{"Expires", expires}, {"Contact", "<sip:" + s.fqdn + ":5061;transport=tls>"}}
	var body []byte
	// The contact list comes in the 200 to its subscription (the first
	// NOTIFY piggy-backed), as OCS and SfB without the Unified Contact
	// Store send it.
	if req.get("Event") == "vnd-microsoft-roaming-contacts" {
		extra = append(extra, [2]string{"Event", "vnd-microsoft-roaming-contacts"}, [2]string{"ms-piggyback-cseq", "1"},
			[2]string{"Subscription-State", "active;expires=" + expires},
			[2]string{"Content-Type", "application/vnd-microsoft-roaming-contacts+xml"})
		body = []byte(`<contactList deltaNum="1" xmlns="http://schemas.microsoft.com/2006/09/sip/roaming-contacts"><group id="1" name="~" externalURI="" /><contact uri="` + s.contacts + `" name="" groups="1 " subscribed="true" externalURI="" /></contactList>`)
	}
	s.respond(req, 200, "OK", extra, body)
}

// request sends a request of the server (from a contact) to the client.
func (s *server) request(method, uri, from, to, callID string, extra [][2]string, body []byte) {
	s.mu.Lock()
	s.cseq++
	cseq := s.cseq
	s.mu.Unlock()
	h := [][2]string{
		{"Via", "SIP/2.0/TCP 127.0.0.1:5061;branch=z9hG4bK" + random(6)},
		{"Max-Forwards", "70"},
		{"From", from},
		{"To", to},
		{"Call-ID", callID},
		{"CSeq", fmt.Sprintf("%d %s", cseq, method)},
	}
	h = append(h, extra...)
	s.send(method+" "+uri+" SIP/2.0", h, body)
}
