package dashboard

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// cookieName is the session cookie. It carries the credential the person
// logged in with, sealed with a key that exists only in this process's
// memory: a restart (or a failover to the standby) ends every session, and
// nobody can read or forge one without the key.
const cookieName = "sfb_dashboard"

// session is what the cookie holds. The credential is checked again on
// every request (the authenticator caches the homeserver's answer for a
// minute), so a logged-out access token or a changed shared secret ends
// the session within a minute.
type session struct {
	Credential string `json:"c"`
	// CSRF is the token the write forms must send back.
	CSRF    string `json:"x"`
	Expires int64  `json:"e"`
}

// sealer encrypts and authenticates session cookies (AES-256-GCM).
type sealer struct{ aead cipher.AEAD }

func newSealer() (*sealer, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("make the session key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(sess session) (string, error) {
	plain, err := json.Marshal(sess)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	// The cookie's name is the additional data, so that a sealed value
	// cannot be replayed as another cookie of ours.
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(cookieName))), nil
}

var errBadSession = errors.New("no valid session")

func (s *sealer) open(value string, now time.Time) (session, error) {
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return session{}, errBadSession
	}
	plain, err := s.aead.Open(nil, raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():], []byte(cookieName))
	if err != nil {
		return session{}, errBadSession
	}
	var sess session
	if err := json.Unmarshal(plain, &sess); err != nil || sess.Credential == "" || sess.CSRF == "" {
		return session{}, errBadSession
	}
	if !now.Before(time.Unix(sess.Expires, 0)) {
		return session{}, errBadSession
	}
	return sess, nil
}

func newCSRFToken() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func (sess session) csrfMatches(sent string) bool {
	return sent != "" && subtle.ConstantTimeCompare([]byte(sent), []byte(sess.CSRF)) == 1
}

// secure reports whether the page was reached over https, directly or
// through a reverse proxy that says so.
func secure(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

func sessionCookie(r *http.Request, value string, ttl time.Duration) *http.Cookie {
	return &http.Cookie{
		Name:     cookieName,
		Value:    value,
		Path:     Prefix + "/",
		MaxAge:   int(ttl / time.Second),
		HttpOnly: true,
		Secure:   secure(r),
		SameSite: http.SameSiteStrictMode,
	}
}

func expiredCookie(r *http.Request) *http.Cookie {
	c := sessionCookie(r, "", 0)
	c.MaxAge = -1
	return c
}
