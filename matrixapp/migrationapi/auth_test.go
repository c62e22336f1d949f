package migrationapi

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"maunium.net/go/mautrix/id"
)

// A token the homeserver no longer accepts (its user logged out) stops
// working once the cached answer expires.
func TestLoggedOutTokenStopsWorkingWithinTheCacheTime(t *testing.T) {
	loggedOut := false
	auth := NewAuth("", func(u id.UserID) bool { return u == admin }, func(_ context.Context, token string) (id.UserID, error) {
		if loggedOut || token != adminToken {
			return "", errors.New("M_UNKNOWN_TOKEN")
		}
		return admin, nil
	})
	now := time.Date(2027, 3, 1, 8, 0, 0, 0, time.UTC)
	auth.now = func() time.Time { return now }
	req := httptest.NewRequest("GET", Prefix+"/waves", nil)
	req.Header.Set("Authorization", "bearer "+adminToken)

	actor, ok := auth.authenticate(req)
	assert.True(t, ok)
	assert.Equal(t, string(admin), actor.Who)
	assert.Equal(t, "192.0.2.1", actor.From)

	loggedOut = true
	now = now.Add(TokenCacheTTL - time.Second)
	_, ok = auth.authenticate(req)
	assert.True(t, ok, "the cached answer holds for TokenCacheTTL")
	now = now.Add(2 * time.Second)
	_, ok = auth.authenticate(req)
	assert.False(t, ok, "a logged-out token still works after TokenCacheTTL")
}

func TestOriginNamesTheForwardedClient(t *testing.T) {
	auth := NewAuth(testSecret, func(id.UserID) bool { return false }, nil)
	req := httptest.NewRequest("GET", Prefix+"/waves", nil)
	req.Header.Set("Authorization", "Bearer "+testSecret)
	req.Header.Set("X-Forwarded-For", "203.0.113.9, 10.0.0.1")
	actor, ok := auth.authenticate(req)
	assert.True(t, ok)
	assert.Equal(t, SecretActor, actor.Who)
	assert.Equal(t, "203.0.113.9 (forwarded by 192.0.2.1)", actor.From)

	// Not an address: not recorded.
	req.Header.Set("X-Forwarded-For", "<script>")
	actor, _ = auth.authenticate(req)
	assert.Equal(t, "192.0.2.1", actor.From)
}
