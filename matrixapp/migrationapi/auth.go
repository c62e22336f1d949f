package migrationapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/matrixapp/bearer"
)

// SecretActor names the provisioning shared secret in the audit log.
const SecretActor = "provisioning shared secret"

// Challenge is the WWW-Authenticate header of a refused request, shared
// with the dashboard since both accept the same credentials.
const Challenge = `Bearer realm="sfb-migration"`

// MinSecretLength is the shortest shared secret accepted, as mautrix's
// provisioning API; a shorter one (or "disable") lets only admins in.
const MinSecretLength = 16

// Whoami asks the homeserver whose access token this is
// (/_matrix/client/v3/account/whoami).
type Whoami func(ctx context.Context, token string) (id.UserID, error)

// Auth decides who may use the API: the holder of the provisioning shared
// secret, or a Matrix user who is a bridge admin, proven by their access
// token. Neither secrets nor tokens are ever logged; a token is kept only
// as its hash, for the cache.
type Auth struct {
	secretHash [sha256.Size]byte
	hasSecret  bool
	isAdmin    func(id.UserID) bool
	whoami     Whoami
	now        func() time.Time

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cachedToken
}

type cachedToken struct {
	user    id.UserID // "" for a token the homeserver did not accept
	expires time.Time
}

// TokenCacheTTL is how long the homeserver's answer about a token is
// trusted: a logged-out token stops working within this time.
const TokenCacheTTL = time.Minute

// refusedTokenTTL is how long a token the homeserver did not accept is
// refused without asking again, so that a client retrying with a bad
// token does not become a stream of requests to the homeserver.
const refusedTokenTTL = 10 * time.Second

// maxCachedTokens bounds the cache; it is emptied when full.
const maxCachedTokens = 1024

// NewAuth returns the authentication for secret (ignored when shorter
// than MinSecretLength), the permission check and the homeserver lookup.
func NewAuth(secret string, isAdmin func(id.UserID) bool, whoami Whoami) *Auth {
	a := &Auth{isAdmin: isAdmin, whoami: whoami, now: time.Now, cache: map[[sha256.Size]byte]cachedToken{}}
	if len(secret) >= MinSecretLength {
		a.secretHash, a.hasSecret = sha256.Sum256([]byte(secret)), true
	}
	return a
}

// authenticate returns who made the request, or false.
func (a *Auth) authenticate(r *http.Request) (migration.Actor, bool) {
	token, ok := bearer.Token(r)
	if !ok {
		return migration.Actor{}, false
	}
	return a.Credential(r, token)
}

// Credential returns whose credential (the shared secret or an access
// token) came with r some other way than the Authorization header, such as
// the dashboard's login form or session, or false.
func (a *Auth) Credential(r *http.Request, token string) (migration.Actor, bool) {
	if token == "" {
		return migration.Actor{}, false
	}
	from := remoteHost(r)
	hash := sha256.Sum256([]byte(token))
	// Hashing first makes the comparison's time independent of the
	// secret's length too.
	if a.hasSecret && subtle.ConstantTimeCompare(hash[:], a.secretHash[:]) == 1 {
		return migration.Actor{Who: SecretActor, From: from}, true
	}
	user, ok := a.userOf(r.Context(), hash, token)
	if !ok || !a.isAdmin(user) {
		return migration.Actor{}, false
	}
	return migration.Actor{Who: string(user), From: from}, true
}

func (a *Auth) userOf(ctx context.Context, hash [sha256.Size]byte, token string) (id.UserID, bool) {
	now := a.now()
	a.mu.Lock()
	c, ok := a.cache[hash]
	a.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.user, c.user != ""
	}
	if a.whoami == nil {
		return "", false
	}
	user, err := a.whoami(ctx, token)
	ttl := TokenCacheTTL
	if err != nil || user == "" {
		user, ttl = "", refusedTokenTTL
	}
	a.mu.Lock()
	if len(a.cache) >= maxCachedTokens {
		a.cache = map[[sha256.Size]byte]cachedToken{}
	}
	a.cache[hash] = cachedToken{user: user, expires: now.Add(ttl)}
	a.mu.Unlock()
	return user, user != ""
}

// remoteHost is where a request came from, for the audit log. Behind a
// reverse proxy the peer is the proxy; the client address it forwards is
// recorded beside it, marked as what the proxy says, since anyone can send
// the header.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	first, _, _ := strings.Cut(r.Header.Get("X-Forwarded-For"), ",")
	if client := net.ParseIP(strings.TrimSpace(first)); client != nil {
		return client.String() + " (forwarded by " + host + ")"
	}
	return host
}
