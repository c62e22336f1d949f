package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipae"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/sipconn"
)

// registration is an endpoint's registration on one connection.
type registration struct {
	// server is the pool registered with (after redirects).
	server sfb.SIPServer
	// callID, fromTag and cseq are the REGISTERs' dialog-less sequence:
	// one Call-ID for every REGISTER on the connection, CSeq counting up
	// (pidgin-sipe's register_callid and transport->cseq).
	callID  string
	fromTag string
	cseq    uint32
	// contactAddr is the Contact registered, without its parameters.
	contactAddr string
	// gruu is the endpoint's GRUU from the 200, empty when the server
	// gave none.
	gruu string
	// displayName is the user's name from the 200, "" when not given.
	displayName string
	// lifetime is what the server granted; registered is when.
	lifetime   time.Duration
	registered time.Time
	// sa signs and verifies (per-user mode); nil in trusted mode and
	// before the handshake. authHeader is where the signature goes:
	// Authorization after a 401, Proxy-Authorization after a 407.
	sa         *sipae.SA
	authHeader string
	saSince    time.Time
}

// defaultLifetime is taken when a 200 to a REGISTER states no expiry.
const defaultLifetime = time.Hour

// registerSupported is what SfB clients send in Supported (pidgin-sipe's
// do_register).
const registerSupported = "gruu-10, adhoclist, msrtc-event-categories, com.microsoft.msrtc.presence"

// newRegistration starts the registration state of an endpoint on c
// towards srv; host, when not empty, replaces the connection's local
// address in Contact (a trusted application's FQDN).
func (s *Session) newRegistration(c *sipconn.Conn, srv sfb.SIPServer, host string) registration {
	transport := "tls"
	if srv.TCP {
		transport = "tcp"
	}
	addr := c.LocalAddr().String()
	if h, port, err := net.SplitHostPort(addr); err == nil {
		if host == "" {
			host = h
		}
		addr = net.JoinHostPort(host, port)
	}
	return registration{server: srv, callID: newCallID(), fromTag: newTag(),
		contactAddr: "<sip:" + addr + ";transport=" + transport + ";ms-opaque=" + randomHex(5) + ">"}
}

// registerRequest builds the next REGISTER (pidgin-sipe's do_register);
// expiresZero removes the registration.
func (s *Session) registerRequest(reg *registration, expiresZero bool) *sipmsg.Request {
	reg.cseq++
	req := sipmsg.NewRequest(sipmsg.REGISTER, sipmsg.Uri{Scheme: "sip", Host: s.self.Domain()})
	req.AppendHeader(sipmsg.NewHeader("From", "<"+string(s.self)+">;tag="+reg.fromTag+";epid="+s.epid))
	req.AppendHeader(sipmsg.NewHeader("To", "<"+string(s.self)+">"))
	req.AppendHeader(sipmsg.NewHeader("Call-ID", reg.callID))
	req.AppendHeader(sipmsg.NewHeader("CSeq", fmt.Sprintf("%d REGISTER", reg.cseq)))
	req.AppendHeader(sipmsg.NewHeader("Max-Forwards", "70"))
	req.AppendHeader(sipmsg.NewHeader("Contact", reg.contactAddr+`;methods="`+allowedMethods+`";proxy=replace;+sip.instance="<urn:uuid:`+s.instance+`>"`))
	req.AppendHeader(sipmsg.NewHeader("User-Agent", s.t.cfg.UserAgent))
	req.AppendHeader(sipmsg.NewHeader("Supported", registerSupported))
	req.AppendHeader(sipmsg.NewHeader("Event", "registration"))
	req.AppendHeader(sipmsg.NewHeader("Allow-Events", "presence"))
	req.AppendHeader(sipmsg.NewHeader("ms-keep-alive", "UAC;hop-hop=yes"))
	if expiresZero {
		req.AppendHeader(sipmsg.NewHeader("Expires", "0"))
	}
	return req
}

// redirectError is a 301/302 to a REGISTER: the user is homed on another
// pool.
type redirectError struct{ to sfb.SIPServer }

func (e *redirectError) Error() string { return "redirected to " + e.to.Addr() }

// maxAuthLegs bounds the REGISTERs of one handshake: offer, challenge,
// answer, and one more for a security association the server refused.
const maxAuthLegs = 5

// register runs REGISTER on c until the server accepts it: signed with
// reg's security association when there is one, else (per-user mode)
// through the MS-SIPAE NTLM handshake (pidgin-sipe's
// process_register_response). It updates reg (CSeq, security association,
// GRUU, lifetime). expiresZero deregisters.
func (s *Session) register(ctx context.Context, c *sipconn.Conn, reg *registration, expiresZero bool) error {
	var (
		client    *sipae.Client
		challenge *sipae.Params
		token     []byte
		answered  bool // the AUTHENTICATE went out
	)
	for leg := 0; leg < maxAuthLegs; leg++ {
		req := s.registerRequest(reg, expiresZero)
		switch {
		case challenge != nil:
			creds := sipae.Credentials(challenge, token)
			if reg.sa != nil && challenge.Version > 3 {
				// MS-SIPAE version 4 signs the REGISTER that carries
				// the AUTHENTICATE already (pidgin-sipe's
				// initialize_auth_context).
				sig, err := s.signature(reg.sa, req)
				if err != nil {
					return fmt.Errorf("register: %w", err)
				}
				creds.CRand, creds.CNum, creds.Response = sig.CRand, sig.CNum, sig.Response
			}
			req.AppendHeader(sipmsg.NewHeader(reg.authHeader, creds.String()))
			answered = answered || reg.sa != nil
		case reg.sa != nil:
			if err := s.sign(*reg, req); err != nil {
				return fmt.Errorf("register: %w", err)
			}
		}
		sent := time.Now()
		res, err := c.Do(ctx, req)
		if err != nil {
			s.t.observer.ServerAnswered(0, "")
			return fmt.Errorf("register: %w: %w", sfb.ErrServerUnavailable, err)
		}
		s.observe(reg.server, sent, res)
		switch {
		case res.StatusCode >= 200 && res.StatusCode < 300:
			if err := s.verifyResponse(*reg, res); err != nil {
				return fmt.Errorf("register: %w", err)
			}
			if reg.sa != nil && reg.saSince.IsZero() {
				reg.saSince = time.Now()
			}
			if expiresZero {
				return nil
			}
			got, err := parseRegistered(res, s.instance)
			if err != nil {
				return fmt.Errorf("register: %w", err)
			}
			reg.gruu, reg.lifetime, reg.registered = got.gruu, got.lifetime, time.Now()
			if got.displayName != "" {
				reg.displayName = got.displayName
			}
			return nil
		case res.StatusCode == 401 || res.StatusCode == 407:
			if s.creds.Password == "" {
				// Trusted mode: the server does not trust the
				// application's certificate for this pool.
				return &Error{Op: "register", Method: "REGISTER", Status: res.StatusCode, Reason: res.Reason,
					Diagnostics: diagnostics(res), kind: errUntrusted}
			}
			if answered {
				// The AUTHENTICATE was refused: wrong user name or
				// password (pidgin-sipe gives up on NTLM here).
				return &Error{Op: "register", Method: "REGISTER", Status: res.StatusCode, Reason: res.Reason,
					Diagnostics: diagnostics(res), kind: sfb.ErrBadCredentials}
			}
			if reg.sa != nil && challenge == nil {
				// A re-REGISTER signed with an association the server
				// no longer has: a new handshake (do_reauthenticate_cb).
				reg.sa, reg.saSince = nil, time.Time{}
			}
			p, hdr, err := ntlmChallenge(res)
			if err != nil {
				return fmt.Errorf("register: %w", err)
			}
			reg.authHeader = hdr
			if !p.HasGSSAPIData || len(p.GSSAPIData) == 0 {
				// The offer: connection-less NTLM starts empty.
				client = sipae.NewClient(ntlmUser(s.creds))
				if _, token, err = client.Start(); err != nil {
					return fmt.Errorf("register: %w", err)
				}
				challenge = p
				continue
			}
			if client == nil {
				return fmt.Errorf("register: the server sent an NTLM challenge before offering NTLM: %w", sipae.ErrHandshake)
			}
			if token, err = client.Next(p.GSSAPIData); err != nil {
				return fmt.Errorf("register: answer the NTLM challenge: %w", err)
			}
			if reg.sa, err = client.SA(p); err != nil {
				return fmt.Errorf("register: %w", err)
			}
			reg.saSince = time.Time{}
			challenge = p
		case res.StatusCode == 301 || res.StatusCode == 302:
			to, err := redirectTarget(res)
			if err != nil {
				return fmt.Errorf("register: %d: %w", res.StatusCode, err)
			}
			return &redirectError{to: to}
		case res.StatusCode == 403:
			// Not allowed to sign in (not enabled for SIP, blocked):
			// another password would not help either.
			return &Error{Op: "register", Method: "REGISTER", Status: res.StatusCode, Reason: res.Reason,
				Diagnostics: diagnostics(res), RetryAfter: retryAfter(res), kind: errRefused}
		default:
			return responseError("register", "REGISTER", res)
		}
	}
	return fmt.Errorf("register: no answer after %d authentication legs: %w", maxAuthLegs, sipae.ErrHandshake)
}

// Registration refusals that have no sfb error of their own.
var (
	errUntrusted = errors.New("the server does not accept the trusted application's connection for this user (check the certificate and the trusted application pool)")
	errRefused   = errors.New("the server refused the user's sign-in")
)

// ntlmUser splits the user name to authenticate (DOMAIN\user, or a user
// principal name, or else the sign-in address) for sipae.NewClient.
func ntlmUser(c sfb.Credentials) (user, domain, password string) {
	name := c.Username
	if name == "" {
		name = c.SignInAddress
	}
	if d, u, ok := strings.Cut(name, `\`); ok {
		return u, d, c.Password
	}
	return name, "", c.Password
}

// ntlmChallenge finds the NTLM offer or challenge of a 401/407 among its
// authentication headers (the server also offers Kerberos and TLS-DSK),
// and the header the answer goes in.
func ntlmChallenge(res *sipmsg.Response) (*sipae.Params, string, error) {
	name, answer := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		name, answer = "Proxy-Authenticate", "Proxy-Authorization"
	}
	var schemes []string
	for _, h := range res.GetHeaders(name) {
		p, err := sipae.ParseHeader(h.Value())
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", name, err)
		}
		if strings.EqualFold(p.Scheme, sipae.SchemeNTLM) {
			return p, answer, nil
		}
		schemes = append(schemes, p.Scheme)
	}
	return nil, "", fmt.Errorf("%d offers %v, not NTLM: %w", res.StatusCode, schemes, sfb.ErrUnsupported)
}

// signature signs req with sa.
func (s *Session) signature(sa *sipae.SA, req *sipmsg.Request) (*sipae.Params, error) {
	f, err := sipae.FieldsFrom(func(name string) string { return headerValue(req, name) }, 0)
	if err != nil {
		return nil, err
	}
	return sa.Sign(f)
}

// sign adds reg's signature to req (per-user mode after the handshake;
// nothing otherwise), in the header the handshake used, as pidgin-sipe's
// sign_outgoing_message.
func (s *Session) sign(reg registration, req *sipmsg.Request) error {
	if reg.sa == nil {
		return nil
	}
	p, err := s.signature(reg.sa, req)
	if err != nil {
		return err
	}
	req.RemoveHeader(reg.authHeader)
	req.AppendHeader(sipmsg.NewHeader(reg.authHeader, p.String()))
	return nil
}

// verifyResponse checks the server's signature of res (per-user mode
// after the handshake). As in pidgin-sipe, an unsigned 401/407 (the
// association is gone) and an unsigned answer to a REGISTER are taken;
// any other unsigned answer is refused.
func (s *Session) verifyResponse(reg registration, res *sipmsg.Response) error {
	if reg.sa == nil {
		return nil
	}
	info := headerValue(res, "Authentication-Info")
	if info == "" {
		cseq := res.CSeq()
		if res.StatusCode == 401 || res.StatusCode == 407 || (cseq != nil && cseq.MethodName == sipmsg.REGISTER) {
			return nil
		}
		return fmt.Errorf("%d without signature: %w", res.StatusCode, sipae.ErrNotSigned)
	}
	return verify(reg.sa, res, res.StatusCode, info)
}

// verifyRequest checks the server's signature of a request it sent.
func (s *Session) verifyRequest(req *sipmsg.Request) error {
	_, reg := s.connection()
	if reg.sa == nil {
		return nil
	}
	info := headerValue(req, "Authentication-Info")
	if info == "" {
		return sipae.ErrNotSigned
	}
	return verify(reg.sa, req, 0, info)
}

func verify(sa *sipae.SA, m sipmsg.Message, status int, info string) error {
	p, err := sipae.ParseHeader(info)
	if err != nil {
		return fmt.Errorf("Authentication-Info: %w", err)
	}
	f, err := sipae.FieldsFrom(func(name string) string { return headerValue(m, name) }, status)
	if err != nil {
		return err
	}
	return sa.Verify(f, p)
}

// registered is what a 200 to a REGISTER says about the endpoint.
type registered struct {
	gruu     string
	lifetime time.Duration
	// displayName is the user's name as the server gives it in the From
	// of the 200 (OCS and SfB do, pidgin-sipe's recording), "" when not.
	displayName string
	// keepAlive is ms-keep-alive's timeout, zero when absent.
	keepAlive time.Duration
}

// maxLifetime bounds a registration's lifetime as read from the server.
const maxLifetime = 24 * time.Hour

// parseRegistered reads a 200 to a REGISTER: the GRUU and expiry of the
// Contact whose +sip.instance is ours (there is one Contact per endpoint
// of the user; pidgin-sipe's process_register_response), else the Expires
// header.
func parseRegistered(res *sipmsg.Response, instance string) (registered, error) {
	var got registered
	secs := -1
	for _, h := range res.GetHeaders("Contact") {
		// sipgo splits a quoted parameter value at its semicolons
		// (gruu="sip:...;opaque=...;gruu") and quotes some again when
		// writing them; its writing keeps the text, so the parameters
		// are read from that, quotes and all.
		params := contactParams(h.Value())
		inst := strings.TrimSuffix(strings.TrimPrefix(params["+sip.instance"], "<urn:uuid:"), ">")
		if !strings.EqualFold(inst, instance) {
			continue
		}
		if g, ok := params["gruu"]; ok {
			var u sipmsg.Uri
			if err := sipmsg.ParseUri(g, &u); err != nil || !strings.EqualFold(u.Scheme, "sip") || u.User == "" || u.Host == "" ||
				strings.ContainsAny(g, "<>\" \t\r\n") {
				return got, fmt.Errorf("GRUU %q of the registered Contact is not a SIP URI", g)
			}
			got.gruu = g
		}
		if e, ok := params["expires"]; ok {
			n, err := strconv.Atoi(e)
			if err != nil || n < 0 {
				return got, fmt.Errorf("expires %q of the registered Contact", e)
			}
			secs = n
		}
		break
	}
	if secs < 0 {
		if e := headerValue(res, "Expires"); e != "" {
			n, err := strconv.Atoi(strings.TrimSpace(e))
			if err != nil || n < 0 {
				return got, fmt.Errorf("expiry %q of the Expires header", e)
			}
			secs = n
		}
	}
	switch {
	case secs < 0:
		got.lifetime = defaultLifetime
	case secs == 0:
		return got, fmt.Errorf("the server registered the endpoint for 0 seconds")
	default:
		got.lifetime = min(time.Duration(secs)*time.Second, maxLifetime)
	}
	if f := res.From(); f != nil {
		got.displayName = cleanDisplayName(f.DisplayName)
	}
	if ka := headerValue(res, "ms-keep-alive"); ka != "" {
		for _, part := range strings.Split(ka, ";") {
			name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && strings.EqualFold(name, "timeout") {
				if n, err := strconv.Atoi(strings.TrimSpace(val)); err == nil && n > 0 {
					got.keepAlive = time.Duration(n) * time.Second
				}
			}
		}
	}
	return got, nil
}

// maxDisplayName bounds a display name from the server, in runes.
const maxDisplayName = 256

// cleanDisplayName makes a display name from the server fit to show: valid
// UTF-8, no quotes or control characters around or in it, bounded.
func cleanDisplayName(v string) string {
	v = strings.ToValidUTF8(v, "")
	v = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '"' {
			return -1
		}
		return r
	}, v)
	v = strings.TrimSpace(v)
	if r := []rune(v); len(r) > maxDisplayName {
		v = string(r[:maxDisplayName])
	}
	return v
}

// contactParams reads the header parameters of one Contact value
// (`<uri>;name=value;name="quoted;value"`), names lower-cased, values
// without their quotes (however many sipgo put around them).
func contactParams(v string) map[string]string {
	params := map[string]string{}
	if i := strings.IndexByte(v, '>'); i >= 0 {
		v = v[i+1:]
	} else if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[i:]
	} else {
		return params
	}
	quoted := false
	start := 0
	flush := func(part string) {
		name, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			return
		}
		val = strings.Trim(strings.TrimSpace(val), `"`)
		if _, seen := params[name]; !seen {
			params[name] = val
		}
	}
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			quoted = !quoted
		case ';':
			if !quoted {
				flush(v[start:i])
				start = i + 1
			}
		}
	}
	flush(v[start:])
	return params
}

// redirectTarget reads the pool a 301/302 sends the user to from its
// Contact: sip:host[:port][;transport=tls|tcp] (pidgin-sipe keeps TLS
// unless transport=tcp).
func redirectTarget(res *sipmsg.Response) (sfb.SIPServer, error) {
	hs := res.GetHeaders("Contact")
	if len(hs) == 0 {
		return sfb.SIPServer{}, errors.New("redirect without Contact")
	}
	ch, ok := hs[0].(*sipmsg.ContactHeader)
	if !ok || ch.Address.Host == "" {
		return sfb.SIPServer{}, fmt.Errorf("redirect to %q: not a SIP URI", hs[0].Value())
	}
	if ch.Address.Port < 0 || ch.Address.Port > 65535 || strings.ContainsAny(ch.Address.Host, "/ @") {
		return sfb.SIPServer{}, fmt.Errorf("redirect to %q: not a server", hs[0].Value())
	}
	srv := sfb.SIPServer{Host: ch.Address.Host, Port: ch.Address.Port}
	if tp, ok := ch.Address.UriParams.Get("transport"); ok && strings.EqualFold(tp, "tcp") {
		srv.TCP = true
	}
	if srv.Port == 0 {
		srv.Port = 5061
		if srv.TCP {
			srv.Port = 5060
		}
	}
	return srv, nil
}

// deregister removes the endpoint's registration (REGISTER with Expires:
// 0, pidgin-sipe's sip_transport_deregister) and lets go of its
// connection.
func (s *Session) deregister(ctx context.Context) error {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	s.mu.Lock()
	c, reg := s.conn, s.reg
	s.conn = nil
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	defer s.leave(c)
	rctx, cancel := context.WithTimeout(ctx, s.t.timings.RequestTimeout)
	defer cancel()
	if err := s.register(rctx, c, &reg, true); err != nil {
		return fmt.Errorf("sign out %s: %w", s.self, err)
	}
	return nil
}

// handleRegistrationNotify handles the server's registration-notify
// (MS-SIPREGE; pidgin-sipe's sipe_process_registration_notify): the
// endpoint was deregistered. The body (text/registration-event) says why:
// deregistered;event=rejected (the user was disabled) ends the session
// with sfb.ErrBadCredentials, since only a new sign-in can help;
// unregistered (signed out elsewhere, the registration replaced) and
// deactivated (the user moved to another pool) register again, which
// follows the redirect to the new pool.
func (s *Session) handleRegistrationNotify(_ context.Context, req *sipmsg.Request) {
	if req.Method != "BENOTIFY" {
		_ = s.respond(req, 200, "OK", nil)
	}
	event, err := parseRegistrationEvent(headerValue(req, "Content-Type"), req.Body())
	if err != nil {
		s.log.Warn().Err(err).Msg("Unreadable registration-notify: registering again")
	}
	reason := diagnostics(req)
	s.log.Warn().Str("event", event).Str("diagnostics", reason).Msg("The server deregistered the endpoint")
	if event == "rejected" {
		go s.end(fmt.Errorf("deregistered by the server (%s): %w", reason, sfb.ErrBadCredentials))
		return
	}
	s.reregister(fmt.Errorf("deregistered by the server (event %q, %s): %w", event, reason, sfb.ErrServerUnavailable))
}

// parseRegistrationEvent reads the body of a registration-notify,
// "deregistered;event=rejected" (text/registration-event), and returns the
// event (rejected, unregistered, deactivated; "" when absent).
func parseRegistrationEvent(contentType string, body []byte) (string, error) {
	ct, _, _ := strings.Cut(contentType, ";")
	if !strings.EqualFold(strings.TrimSpace(ct), "text/registration-event") {
		return "", fmt.Errorf("content type %q, not text/registration-event", contentType)
	}
	if len(body) > 1024 {
		return "", fmt.Errorf("registration event of %d bytes", len(body))
	}
	state, params, _ := strings.Cut(strings.TrimSpace(string(body)), ";")
	if !strings.EqualFold(strings.TrimSpace(state), "deregistered") {
		return "", fmt.Errorf("registration state %q, not deregistered", state)
	}
	for _, p := range strings.Split(params, ";") {
		name, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(name, "event") {
			val = strings.ToLower(strings.TrimSpace(val))
			for _, known := range []string{"rejected", "unregistered", "deactivated"} {
				if val == known {
					return val, nil
				}
			}
			return "", fmt.Errorf("registration event %q", val)
		}
	}
	return "", nil
}
