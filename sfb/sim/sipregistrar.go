package sim

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/ntlm"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipae"
)

// The registrar (MS-SIPREGE): REGISTER authenticated with MS-SIPAE NTLM on
// client connections, unchallenged for trusted applications; one
// registration per endpoint (+sip.instance), a GRUU for each.

// sipReg is one registered endpoint. It stays small: the bench registers
// 70,000 of them.
type sipReg struct {
	user *user
	conn *sipConn
	// instance is the +sip.instance UUID of the Contact, or the epid of
	// From for endpoints that send none.
	instance string
	// contact is the Contact address the endpoint registered.
	contact string
	// callID and tag are the REGISTER's Call-ID and From tag: the
	// registration's dialog, where registration-notify goes.
	callID, tag string
	expires     time.Time
}

// allowEvents are the events an SfB registrar announces in the 200 to
// REGISTER (MS-SIPREGE 4.1.1).
const allowEvents = "vnd-microsoft-provisioning,vnd-microsoft-roaming-contacts,vnd-microsoft-roaming-ACL,presence,presence.wpending,vnd-microsoft-roaming-self,vnd-microsoft-provisioning-v2"

func (s *Server) sipRegister(sc *sipConn, req *sip.Request) {
	aor, err := sipToURI(req)
	if err != nil {
		sc.respond(req, sip.StatusBadRequest, "Bad Request", nil, sipDiagnostics(s.opts.SIP.FQDN, 5004, "Failed parsing the incoming request: To"))
		return
	}
	s.mu.Lock()
	u := s.users[aor]
	authUser := sc.user
	s.mu.Unlock()
	if u == nil {
		// SfB tells the client the user is not SIP-enabled (pidgin-sipe
		// shows the reason of ms-diagnostics).
		sc.respond(req, sip.StatusNotFound, "Not Found", nil, sipDiagnostics(s.opts.SIP.FQDN, 4005, "Destination URI either not enabled for SIP or does not exist"))
		return
	}
	if sc.trusted != "" {
		s.sipBind(sc, req, u)
		return
	}
	authz := sipHeader(req)("Authorization")
	if authz == "" {
		sc.respond(req, sip.StatusUnauthorized, "Unauthorized", nil, s.ntlmOffer())
		return
	}
	p, err := sipae.ParseHeader(authz)
	if err != nil || !strings.EqualFold(p.Scheme, sipae.SchemeNTLM) {
		sc.log.Debug().AnErr("error", err).Msg("REGISTER with an Authorization header that is not NTLM")
		sc.respond(req, sip.StatusUnauthorized, "Unauthorized", nil, s.ntlmOffer())
		return
	}
	switch {
	case p.HasGSSAPIData && len(p.GSSAPIData) == 0:
		s.ntlmChallenge(sc, req, u)
	case p.HasGSSAPIData:
		s.ntlmAccept(sc, req, u, p)
	default:
		// A refresh (or unregister) signed with the established SA.
		sa := sc.sa.Load()
		if sa == nil || authUser != u {
			sc.respond(req, sip.StatusUnauthorized, "Unauthorized", nil, s.ntlmOffer())
			return
		}
		if err := sa.Verify(sipFields(req), p); err != nil {
			sc.log.Debug().Err(err).Msg("REGISTER refresh without a valid signature")
			sc.respond(req, sip.StatusUnauthorized, "Unauthorized", nil, s.ntlmOffer())
			return
		}
		s.sipBind(sc, req, u)
	}
}

// sipFields are the signed fields of a request; a request whose fields
// cannot be read does not verify.
func sipFields(msg sip.Message) sipae.Fields {
	f, _ := sipae.FieldsFrom(sipHeader(msg), 0)
	return f
}

// ntlmOffer is the WWW-Authenticate that starts a handshake. Only NTLM is
// offered: pidgin-sipe in automatic mode would try TLS-DSK or Kerberos
// first when offered, which the simulator does not speak.
func (s *Server) ntlmOffer() sip.Header {
	p := sipae.Params{Scheme: sipae.SchemeNTLM, Realm: sipae.Realm, TargetName: s.opts.SIP.FQDN, Version: sipae.ProtocolVersion}
	return sip.NewHeader("WWW-Authenticate", p.String())
}

// maxHandshakes bounds the handshakes in progress on one connection.
const maxHandshakes = 8

func (s *Server) ntlmChallenge(sc *sipConn, req *sip.Request, u *user) {
	hs := sipae.NewServer(s.ntlmServer(u))
	token, _, err := hs.Next([]byte{})
	if err != nil {
		sc.log.Warn().Err(err).Msg("NTLM challenge")
		sc.respond(req, sip.StatusInternalServerError, "Server Internal Error", nil)
		return
	}
	var b [4]byte
	if _, err := io.ReadFull(s.opts.SIP.Rand, b[:]); err != nil {
		sc.respond(req, sip.StatusInternalServerError, "Server Internal Error", nil)
		return
	}
	opaque := strings.ToUpper(hex.EncodeToString(b[:]))
	s.mu.Lock()
	if len(sc.handshakes) >= maxHandshakes {
		clear(sc.handshakes)
	}
	sc.handshakes[opaque] = hs
	s.mu.Unlock()
	p := sipae.Params{
		Scheme: sipae.SchemeNTLM, Opaque: opaque, GSSAPIData: token, HasGSSAPIData: true,
		TargetName: s.opts.SIP.FQDN, Realm: sipae.Realm, Version: sipae.ProtocolVersion,
	}
	sc.respond(req, sip.StatusUnauthorized, "Unauthorized", nil, sip.NewHeader("WWW-Authenticate", p.String()))
}

func (s *Server) ntlmAccept(sc *sipConn, req *sip.Request, u *user, p *sipae.Params) {
	s.mu.Lock()
	hs := sc.handshakes[p.Opaque]
	delete(sc.handshakes, p.Opaque)
	s.mu.Unlock()
	if hs == nil {
		sc.log.Debug().Str("opaque", p.Opaque).Msg("NTLM AUTHENTICATE for no handshake in progress")
		sc.respond(req, sip.StatusUnauthorized, "Unauthorized", nil, s.ntlmOffer())
		return
	}
	if _, _, err := hs.Next(p.GSSAPIData); err != nil {
		sc.log.Info().Err(err).Stringer("user", u.uri).Msg("SIP sign-in refused")
		sc.respond(req, sip.StatusUnauthorized, "Unauthorized", nil, s.ntlmOffer())
		return
	}
	version := min(max(p.Version, 2), sipae.ProtocolVersion)
	sa, err := hs.SA(sipae.Realm, s.opts.SIP.FQDN, p.Opaque, version)
	if err != nil {
		sc.respond(req, sip.StatusInternalServerError, "Server Internal Error", nil)
		return
	}
	if version > 3 {
		// From version 4 on the REGISTER carrying the AUTHENTICATE is
		// signed already (pidgin-sipe's initialize_auth_context).
		if err := sa.Verify(sipFields(req), p); err != nil {
			sc.log.Info().Err(err).Stringer("user", u.uri).Msg("SIP sign-in refused: the REGISTER's signature does not verify")
			sc.respond(req, sip.StatusUnauthorized, "Unauthorized", nil, s.ntlmOffer())
			return
		}
	}
	s.mu.Lock()
	if sc.user != nil && sc.user != u {
		s.mu.Unlock()
		sc.respond(req, sip.StatusForbidden, "Forbidden", nil, sipNotAuthorized(s.opts.SIP.FQDN))
		return
	}
	sc.user = u
	s.mu.Unlock()
	sc.sa.Store(sa)
	sc.log.Debug().Stringer("user", u.uri).Msg("SIP user authenticated")
	s.sipBind(sc, req, u)
}

// ntlmServer checks an AUTHENTICATE against u's password. The NTLM user
// name may be the address (alice@contoso.com) or its local part with any
// domain (CONTOSO\alice), as SfB accepts both.
func (s *Server) ntlmServer(u *user) *ntlm.Server {
	addr := u.uri.Address()
	local, domain, _ := strings.Cut(addr, "@")
	netbios := func(name string) string {
		first, _, _ := strings.Cut(name, ".")
		return strings.ToUpper(first)
	}
	s.mu.Lock()
	password := u.password
	s.mu.Unlock()
	return &ntlm.Server{
		NetBIOSDomain: netbios(domain), NetBIOSComputer: netbios(s.opts.SIP.FQDN),
		DNSDomain: domain, DNSComputer: s.opts.SIP.FQDN, Rand: s.opts.SIP.Rand,
		NTHash: func(name, _ string) ([]byte, bool) {
			if !strings.EqualFold(name, addr) && !strings.EqualFold(name, local) {
				return nil, false
			}
			return ntlm.NTOWFv1(password), true
		},
	}
}

// sipBind makes, refreshes or removes the registration of the REGISTER's
// endpoint and answers 200 with the user's registered contacts.
func (s *Server) sipBind(sc *sipConn, req *sip.Request, u *user) {
	contact := sipHeader(req)("Contact")
	instance := sipInstance(contact)
	if instance == "" && req.From() != nil {
		instance, _ = req.From().Params.Get("epid")
	}
	if instance == "" {
		sc.respond(req, sip.StatusBadRequest, "Bad Request", nil, sipDiagnostics(s.opts.SIP.FQDN, 4010, "Missing endpoint identifier"))
		return
	}
	expires := s.opts.SIP.RegistrationExpiry
	if v := sipHeader(req)("Expires"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			sc.respond(req, sip.StatusBadRequest, "Bad Request", nil, sipDiagnostics(s.opts.SIP.FQDN, 5004, "Failed parsing the incoming request: Expires"))
			return
		}
		expires = min(expires, time.Duration(n)*time.Second)
	} else if strings.Contains(contact, ";expires=0") || contact == "*" {
		expires = 0
	}
	callID := ""
	if h := req.CallID(); h != nil {
		callID = h.Value()
	}
	tag := ""
	if f := req.From(); f != nil {
		tag, _ = f.Params.Get("tag")
	}

	s.mu.Lock()
	if _, live := s.sip.conns[sc]; !live {
		// The connection ended while the request waited.
		s.mu.Unlock()
		return
	}
	if home := s.sip.homes[u.uri]; home != "" && expires > 0 {
		s.mu.Unlock()
		// The user is homed on another pool: SfB redirects the
		// (authenticated) REGISTER there, and pidgin-sipe follows the
		// Contact's host, port and transport.
		sc.respond(req, sip.StatusMovedPermanently, "Redirect request to Home Server", nil,
			sip.NewHeader("Contact", "<sip:"+home+";transport="+strings.ToLower(sc.c.Transport())+">"),
			sip.NewHeader("Expires", "0"))
		return
	}
	st := u.state()
	var r *sipReg
	for _, x := range st.sipRegs {
		if x.instance == instance {
			r = x
			break
		}
	}
	action := "added"
	switch {
	case expires == 0:
		if r != nil {
			s.removeRegistration(r)
		}
		action = "deleted"
	case r == nil && len(st.sipRegs) >= s.opts.SIP.MaxEndpointsPerUser:
		s.mu.Unlock()
		sc.respond(req, sip.StatusForbidden, "Maximum number of endpoints reached", nil)
		return
	case r == nil:
		r = &sipReg{user: u, conn: sc, instance: instance}
		st.sipRegs = append(st.sipRegs, r)
		sc.regs[r] = struct{}{}
		s.sip.registrations++
	default:
		action = "updated"
		if r.conn != sc {
			delete(r.conn.regs, r)
			r.conn = sc
			sc.regs[r] = struct{}{}
		}
	}
	if expires > 0 {
		r.contact = sipContactAddress(contact)
		r.callID, r.tag = callID, tag
		r.expires = s.now().Add(expires)
	}
	hdrs := make([]sip.Header, 0, len(st.sipRegs)+8)
	hdrs = append(hdrs, sip.NewHeader("ms-keep-alive", fmt.Sprintf("UAS; tcp=no; hop-hop=yes; end-end=no; timeout=%d", int(s.opts.SIP.KeepAliveTimeout/time.Second))))
	now := s.now()
	for _, x := range st.sipRegs {
		left := max(0, int(x.expires.Sub(now).Round(time.Second)/time.Second))
		hdrs = append(hdrs, sip.NewHeader("Contact", fmt.Sprintf("<%s>;expires=%d;+sip.instance=\"<urn:uuid:%s>\";gruu=%q", x.contact, left, x.instance, s.gruu(x))))
	}
	s.mu.Unlock()

	hdrs = append(hdrs,
		sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))),
		sip.NewHeader("presence-state", `register-action="`+action+`"`),
		sip.NewHeader("Allow-Events", allowEvents),
		sip.NewHeader("Supported", "adhoclist"),
		sip.NewHeader("Supported", "msrtc-event-categories"),
	)
	resp := sipResponse(req, sip.StatusOK, "OK", nil, hdrs...)
	if to := resp.To(); to != nil {
		// The registration's dialog keeps one server tag, which
		// registration-notify sends again.
		to.Params.Add("tag", sipTag(callID))
	}
	sc.send(sc.sa.Load(), resp)
	sc.log.Debug().Stringer("user", u.uri).Str("instance", instance).Str("action", action).Dur("expires", expires).Msg("SIP registration")
	if action == "added" {
		// The scripted colleague greets a user who signed in over SIP as
		// one who made their UCWA application available; after the 200,
		// so that the greeting does not overtake it.
		s.mu.Lock()
		if c := s.opts.Colleague; c != "" && u.uri != c && !u.state().greeted {
			u.state().greeted = true
			s.colleagueGreet(u.uri)
		}
		s.mu.Unlock()
	}
}

// removeRegistration forgets r (under s.mu); the endpoint's conversations
// end with it.
func (s *Server) removeRegistration(r *sipReg) {
	st := r.user.state()
	for i, x := range st.sipRegs {
		if x == r {
			st.sipRegs = append(st.sipRegs[:i:i], st.sipRegs[i+1:]...)
			s.sip.registrations--
			break
		}
	}
	delete(r.conn.regs, r)
	s.sipEndpointGone(r)
	s.sipPresenceGone(r)
}

// sweepSIP expires registrations that were not refreshed.
func (s *Server) sweepSIP(now time.Time) {
	for sc := range s.sip.conns {
		for r := range sc.regs {
			if !r.expires.After(now) {
				s.log.Debug().Stringer("user", r.user.uri).Str("instance", r.instance).Msg("SIP registration expired")
				s.removeRegistration(r)
			}
		}
	}
}

// SIPRegistrations is the number of live SIP registrations of uri, or of
// every user when uri is empty.
func (s *Server) SIPRegistrations(uri sfb.URI) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if uri == "" {
		return s.sip.registrations
	}
	if u := s.users[canonical(uri)]; u != nil && u.st != nil {
		return len(u.st.sipRegs)
	}
	return 0
}

// SetSIPHomePool homes uri on another pool (host:port): its REGISTERs are
// answered 301 with that pool, after the authentication. Empty homes it
// here again.
func (s *Server) SetSIPHomePool(uri sfb.URI, pool string) error {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[uri] == nil {
		return fmt.Errorf("home %s on %q: %w", uri, pool, sfb.ErrNotFound)
	}
	if pool == "" {
		delete(s.sip.homes, uri)
		return nil
	}
	if _, _, err := net.SplitHostPort(pool); err != nil || strings.ContainsAny(pool, "<>;\" \r\n") {
		return fmt.Errorf("home %s on %q: want host:port", uri, pool)
	}
	s.sip.homes[uri] = pool
	return nil
}

// DeregisterSIP ends every SIP registration of uri as SfB does when an
// administrator disables the user: a registration-notify NOTIFY in each
// registration's dialog ("deregistered;event=rejected", ms-diagnostics-public
// 4141 User disabled, as pidgin-sipe's sipe-notify.c shows it), then the
// registrations are gone. It returns how many there were.
func (s *Server) DeregisterSIP(uri sfb.URI) int {
	uri = canonical(uri)
	s.mu.Lock()
	u := s.users[uri]
	if u == nil || u.st == nil {
		s.mu.Unlock()
		return 0
	}
	regs := append([]*sipReg(nil), u.st.sipRegs...)
	for _, r := range regs {
		sc, req := r.conn, s.registrationNotify(r)
		s.removeRegistration(r)
		s.goSIP(func() {
			ctx, cancel := s.sipCtx()
			defer cancel()
			if _, err := sc.do(ctx, req); err != nil {
				sc.log.Debug().Err(err).Msg("registration-notify not answered")
			}
		})
	}
	s.mu.Unlock()
	return len(regs)
}

// registrationNotify is the NOTIFY ending r's registration (under s.mu).
func (s *Server) registrationNotify(r *sipReg) *sip.Request {
	req := s.sipRequest(sip.NOTIFY, r.contact, r.user.uri, sipTag(r.callID), r.user.uri, r.tag, r.callID, 1, s.sipContact())
	req.AppendHeader(sip.NewHeader("Event", "registration-notify"))
	req.AppendHeader(sip.NewHeader("Subscription-State", "terminated;expires=0"))
	req.AppendHeader(sip.NewHeader("ms-diagnostics-public", `4141;reason="User disabled"`))
	req.AppendHeader(sip.NewHeader("Content-Type", "text/registration-event"))
	req.SetBody([]byte("deregistered;event=rejected"))
	return req
}

// sipRequest builds a request the server sends: to target (a Contact or
// GRUU), From/To with their tags, in callID (new when empty), with contact
// as its Contact.
func (s *Server) sipRequest(method sip.RequestMethod, target string, from sfb.URI, fromTag string, to sfb.URI, toTag, callID string, cseq uint32, contact string) *sip.Request {
	var ruri sip.Uri
	if err := sip.ParseUri(target, &ruri); err != nil {
		_ = sip.ParseUri(string(to), &ruri)
	}
	req := sip.NewRequest(method, ruri)
	var fu, tu sip.Uri
	_ = sip.ParseUri(string(from), &fu)
	_ = sip.ParseUri(string(to), &tu)
	fh := &sip.FromHeader{Address: fu, Params: sip.NewParams()}
	if fromTag != "" {
		fh.Params.Add("tag", fromTag)
	}
	th := &sip.ToHeader{Address: tu, Params: sip.NewParams()}
	if toTag != "" {
		th.Params.Add("tag", toTag)
	}
	if callID == "" {
		callID = randomHex(16)
	}
	cid := sip.CallIDHeader(callID)
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(fh)
	req.AppendHeader(th)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: method})
	req.AppendHeader(&maxFwd)
	req.AppendHeader(sip.NewHeader("Contact", contact))
	return req
}

// do sends a request to the peer, signed when a user authenticated on
// the connection, and returns its final response.
func (sc *sipConn) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	if sa := sc.sa.Load(); sa != nil {
		if err := sipSign(sa, req, 0); err != nil {
			return nil, fmt.Errorf("sign %s: %w", req.Method, err)
		}
	}
	return sc.c.Do(ctx, req)
}

// gruu is the GRUU of r (MS-SIPREGE: the address with an opaque naming
// the endpoint, "user:epid:" and the instance in base64).
func (s *Server) gruu(r *sipReg) string {
	return string(r.user.uri) + ";opaque=user:epid:" + gruuOpaque(r.instance) + ";gruu"
}

// gruuOpaque encodes an instance UUID as SfB does: its 16 bytes in GUID
// order (the first three fields little-endian) and two zero bytes, in
// base64. An instance that is no UUID (an epid) is encoded as is.
func gruuOpaque(instance string) string {
	raw, err := hex.DecodeString(strings.ReplaceAll(instance, "-", ""))
	if err != nil || len(raw) != 16 {
		return base64.RawURLEncoding.EncodeToString([]byte(instance))
	}
	b := make([]byte, 18)
	b[0], b[1], b[2], b[3] = raw[3], raw[2], raw[1], raw[0]
	b[4], b[5], b[6], b[7] = raw[5], raw[4], raw[7], raw[6]
	copy(b[8:16], raw[8:])
	return base64.StdEncoding.EncodeToString(b)
}

// sipInstance is the UUID of the +sip.instance parameter of a Contact
// value (`+sip.instance="<urn:uuid:...>"`).
func sipInstance(contact string) string {
	const key = `+sip.instance="<urn:uuid:`
	i := strings.Index(asciiLower(contact), key)
	if i < 0 {
		return ""
	}
	rest := contact[i+len(key):]
	end := strings.IndexByte(rest, '>')
	if end <= 0 || end > 64 {
		return ""
	}
	return strings.ToUpper(rest[:end])
}

// asciiLower lower-cases ASCII letters only, keeping every byte where it
// was (strings.ToLower may change the length of invalid UTF-8).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// sipContactAddress is the address inside a Contact value's angle
// brackets (the value itself without them).
func sipContactAddress(contact string) string {
	if i := strings.IndexByte(contact, '<'); i >= 0 {
		if j := strings.IndexByte(contact[i:], '>'); j > 0 {
			return contact[i+1 : i+j]
		}
	}
	v, _, _ := strings.Cut(contact, ";")
	return strings.TrimSpace(v)
}

// sipTag is the server's tag of a dialog the registrar answers, derived
// from its Call-ID so that it need not be stored.
func sipTag(callID string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(callID))
	return strings.ToUpper(strconv.FormatUint(h.Sum64(), 16))
}
