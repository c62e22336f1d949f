// Package bearer reads the credential of an "Authorization: Bearer"
// header (RFC 6750) for the operator endpoints, and compares it with a
// configured secret without letting timing tell the secret.
package bearer

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Token returns the credential of r's Authorization header when its scheme
// is Bearer (in any case), or false.
func Token(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// Matches reports whether r carries secret as its bearer token. Both are
// hashed before the constant-time comparison, so that neither the
// content nor the length of the secret shows in the time taken.
func Matches(r *http.Request, secret string) bool {
	token, ok := Token(r)
	if !ok {
		return false
	}
	sent, want := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sent[:], want[:]) == 1
}
