package sim

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

const (
	discoveryPath = "/autodiscover/autodiscoverservice.svc/root"
	userPath      = discoveryPath + "/oauth/user"
	tokenPath     = "/webticket/oauthtoken"
	xframePath    = "/autodiscover/xframe/xframe.html"
	ucwaPrefix    = "/ucwa/oauth/v1/applications"
)

// tokenKey is the SHA-256 of a token, so that tokens are looked up without
// comparing secrets byte by byte.
type tokenKey [sha256.Size]byte

type token struct {
	user    *user
	gen     uint32
	expires time.Time
}

// serveSfB routes the requests of the SfB side.
func (s *Server) serveSfB(w http.ResponseWriter, r *http.Request) {
	p := strings.ToLower(strings.TrimRight(r.URL.Path, "/"))
	switch {
	case p == "" || p == discoveryPath:
		s.handleDiscovery(w, r)
	case p == userPath:
		s.handleUser(w, r)
	case p == tokenPath:
		s.handleToken(w, r)
	case p == xframePath:
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<!DOCTYPE html><html><head><title>XFrame</title></head><body></body></html>"))
	case strings.HasPrefix(r.URL.Path, ucwaPrefix):
		s.serveUCWA(w, r)
	default:
		writeError(w, http.StatusNotFound, "NotFound", "", "The resource does not exist.")
	}
}

// handleDiscovery is the autodiscovery root: links to the user and xframe
// resources, absolute as in the reference.
func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "", "")
		return
	}
	base := s.BaseURL()
	writeJSON(w, http.StatusOK, obj{"_links": obj{
		"self":   link(base + "/Autodiscover/AutodiscoverService.svc/root"),
		"user":   link(base + "/Autodiscover/AutodiscoverService.svc/root/oauth/user"),
		"xframe": link(base + "/Autodiscover/XFrame/XFrame.html"),
	}})
}

// challenge answers 401 with the two WWW-Authenticate headers of the
// reference's CreateAnApplication transcript.
func (s *Server) challenge(w http.ResponseWriter, diagnostics string) {
	base := s.BaseURL()
	h := w.Header()
	h.Add("WWW-Authenticate", `Bearer trusted_issuers="00000002-0000-0ff1-ce00-000000000000@contoso.com", client_id="00000004-0000-0ff1-ce00-000000000000"`)
	h.Add("WWW-Authenticate", `MsRtcOAuth href="`+base+`/WebTicket/oauthtoken",grant_type="urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password"`)
	if diagnostics != "" {
		h.Set("X-Ms-Diagnostics", diagnostics)
	}
	h.Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte("<html><body>Server Error 401 - Unauthorized: Access is denied due to invalid credentials.</body></html>"))
}

// authenticate returns the token's user, or answers 401.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) *user {
	auth := r.Header.Get("Authorization")
	scheme, value, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(value) == "" {
		s.challenge(w, "")
		return nil
	}
	key := tokenKey(sha256.Sum256([]byte(strings.TrimSpace(value))))
	s.mu.Lock()
	t := s.tokens[key]
	var u *user
	expired := false
	if t != nil {
		if t.gen != t.user.state().tokenGen || !s.now().Before(t.expires) {
			delete(s.tokens, key)
			expired = true
		} else {
			u = t.user
		}
	}
	s.mu.Unlock()
	if u == nil {
		diag := `28070;source="sfb-sim";reason="The web ticket is invalid."`
		if expired {
			diag = `28072;source="sfb-sim";reason="The web ticket has expired."`
		}
		s.challenge(w, diag)
		return nil
	}
	return u
}

// handleUser is the protected user resource: a challenge without a valid
// token, else the link to applications.
func (s *Server) handleUser(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "", "")
		return
	}
	if s.authenticate(w, r) == nil {
		return
	}
	base := s.BaseURL()
	writeJSON(w, http.StatusOK, obj{"_links": obj{
		"self":         link(base + "/Autodiscover/AutodiscoverService.svc/root/user"),
		"applications": link(base + ucwaPrefix),
		"xframe":       link(base + "/Autodiscover/XFrame/XFrame.html"),
	}})
}

func oauthError(w http.ResponseWriter, status int, code, diagnostics string) {
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if diagnostics != "" {
		h.Set("X-Ms-Diagnostics", diagnostics)
	}
	w.WriteHeader(status)
	_, _ = w.Write(mustJSON(obj{"error": code}))
}

// handleToken is the WebTicket OAuth endpoint; only grant_type=password can
// succeed here.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "")
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		oauthError(w, http.StatusBadRequest, "invalid_request", `28026;source="sfb-sim";reason="The content type is not supported."`)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "")
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "password":
	case "urn:microsoft.rtc:windows", "urn:microsoft.rtc:anonmeeting":
		oauthError(w, http.StatusBadRequest, "invalid_grant", `28020;source="sfb-sim";reason="No valid security token."`)
		return
	case "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "")
		return
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", `28029;source="sfb-sim";reason="Authentication type not allowed."`)
		return
	}
	username, password := r.PostForm.Get("username"), r.PostForm.Get("password")
	if username == "" || password == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "")
		return
	}
	// DOMAIN\user is not known to the simulator; addresses are.
	uri, err := sfb.ParseURI(username)
	s.mu.Lock()
	var u *user
	if err == nil {
		u = s.users[uri]
	}
	ok := u != nil && subtle.ConstantTimeCompare([]byte(u.password), []byte(password)) == 1
	if !ok {
		s.mu.Unlock()
		oauthError(w, http.StatusBadRequest, "invalid_grant", `28020;source="sfb-sim";reason="The credentials are not valid."`)
		return
	}
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	value := "cwt=" + base64.RawURLEncoding.EncodeToString(raw)
	s.tokens[tokenKey(sha256.Sum256([]byte(value)))] = &token{user: u, gen: u.state().tokenGen, expires: s.now().Add(s.opts.TokenLifetime)}
	s.pruneTokens()
	s.mu.Unlock()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	_, _ = w.Write(mustJSON(obj{
		"access_token":         value,
		"expires_in":           int(s.opts.TokenLifetime / time.Second),
		"ms_rtc_identityscope": "local",
		"token_type":           "Bearer",
	}))
}

// pruneTokens drops expired tokens once the table has grown, so that
// repeated sign-ins do not accumulate.
func (s *Server) pruneTokens() {
	if len(s.tokens) < 4*len(s.users)+1024 {
		return
	}
	now := s.now()
	for k, t := range s.tokens {
		if !now.Before(t.expires) || t.gen != t.user.state().tokenGen {
			delete(s.tokens, k)
		}
	}
}
