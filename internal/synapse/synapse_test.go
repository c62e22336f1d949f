package synapse_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/synapse"
)

// One homeserver for the whole test binary: starting Synapse costs seconds.
var (
	hs         *synapse.Server
	skipReason string
	// appservicePings counts pings Synapse forwarded to the fake appservice.
	appservicePings atomic.Int32
	asToken         = "as-token-for-test"
	hsToken         = "hs-token-for-test"
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	wanted, reason := synapse.Wanted()
	if !wanted {
		skipReason = reason
		return m.Run()
	}
	// A minimal application service that answers pings, to prove the
	// homeserver loads registrations and reaches the appservice on loopback.
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+hsToken {
			http.Error(w, `{"errcode":"M_FORBIDDEN"}`, http.StatusForbidden)
			return
		}
		if r.URL.Path == "/_matrix/app/v1/ping" {
			appservicePings.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}))
	defer as.Close()

	dir, err := os.MkdirTemp("", "synapse-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	reg := filepath.Join(dir, "registration.yaml")
	regYAML := fmt.Sprintf(`id: testas
url: %s
as_token: %s
hs_token: %s
sender_localpart: testbot
rate_limited: false
namespaces:
  users:
    - regex: '@testghost_.*:localhost'
      exclusive: true
`, as.URL, asToken, hsToken)
	if err := os.WriteFile(reg, []byte(regYAML), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	hs, err = synapse.Start(ctx, synapse.Options{AppServiceRegistrations: []string{reg}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start synapse: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "synapse healthy at %s after %s\n", hs.URL, time.Since(start).Round(time.Millisecond))
	code := m.Run()
	if err := hs.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "stop synapse: %v\n", err)
	}
	return code
}

func needSynapse(t *testing.T) {
	t.Helper()
	if hs == nil {
		t.Skip(skipReason)
	}
}

func TestRegisterLoginAndChat(t *testing.T) {
	needSynapse(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	alice, err := hs.RegisterUser(ctx, "alice", "alice-password", false)
	require.NoError(t, err)
	assert.Equal(t, id.UserID("@alice:localhost"), alice.UserID)
	bob, err := hs.RegisterUser(ctx, "bob", "bob-password", true)
	require.NoError(t, err)

	// The password works for an ordinary login, not only the token.
	aliceClient, err := mautrix.NewClient(hs.URL, "", "")
	require.NoError(t, err)
	_, err = aliceClient.Login(ctx, &mautrix.ReqLogin{
		Type:             mautrix.AuthTypePassword,
		Identifier:       mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "alice"},
		Password:         "alice-password",
		StoreCredentials: true,
	})
	require.NoError(t, err)
	assert.Equal(t, alice.UserID, aliceClient.UserID)

	bobClient, err := mautrix.NewClient(hs.URL, bob.UserID, bob.AccessToken)
	require.NoError(t, err)
	whoami, err := bobClient.Whoami(ctx)
	require.NoError(t, err)
	assert.Equal(t, bob.UserID, whoami.UserID)

	room, err := aliceClient.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat",
		Invite: []id.UserID{bob.UserID},
		Name:   "harness test",
	})
	require.NoError(t, err)
	_, err = bobClient.JoinRoomByID(ctx, room.RoomID)
	require.NoError(t, err)
	sent, err := aliceClient.SendText(ctx, room.RoomID, "hello bob")
	require.NoError(t, err)

	evt, err := bobClient.GetEvent(ctx, room.RoomID, sent.EventID)
	require.NoError(t, err)
	require.NoError(t, evt.Content.ParseRaw(event.EventMessage))
	assert.Equal(t, "hello bob", evt.Content.AsMessage().Body)
	assert.Equal(t, alice.UserID, evt.Sender)
}

func TestRegisterRejectsDuplicate(t *testing.T) {
	needSynapse(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := hs.RegisterUser(ctx, "carol", "pw1", false)
	require.NoError(t, err)
	_, err = hs.RegisterUser(ctx, "carol", "pw2", false)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "M_USER_IN_USE")
}

func TestAppServiceRegistrationLoaded(t *testing.T) {
	needSynapse(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	as, err := mautrix.NewClient(hs.URL, "", asToken)
	require.NoError(t, err)

	// Synapse answers the appservice ping only after reaching the
	// appservice's URL itself.
	before := appservicePings.Load()
	resp, err := as.AppservicePing(ctx, "testas", "")
	require.NoError(t, err)
	assert.GreaterOrEqual(t, resp.DurationMS, int64(0))
	assert.Equal(t, before+1, appservicePings.Load())

	// The exclusive namespace belongs to the appservice: it may register a
	// ghost there without a password or shared secret.
	_, _, err = as.Register(ctx, &mautrix.ReqRegister[any]{
		Username:     "testghost_alice",
		Type:         mautrix.AuthTypeAppservice,
		InhibitLogin: true,
	})
	require.NoError(t, err)

	// And nobody else may.
	_, err = hs.RegisterUser(ctx, "testghost_bob", "pw", false)
	require.Error(t, err)
}

func TestHealthAndConfig(t *testing.T) {
	needSynapse(t)
	assert.True(t, hs.Running())
	assert.True(t, strings.HasPrefix(hs.URL, "http://127.0.0.1:"), hs.URL)
	data, err := os.ReadFile(filepath.Join(hs.Dir, "homeserver.yaml"))
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal(data, &cfg))
	assert.Equal(t, false, cfg["enable_registration"])
	assert.Equal(t, []any{}, cfg["trusted_key_servers"])
}

// A restarted homeserver answers on the same URL with the same data: an
// access token issued before still works, a room created before is
// still joined. Between Stop and Restart nothing answers.
func TestRestartKeepsPortAndData(t *testing.T) {
	needSynapse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	erin, err := hs.RegisterUser(ctx, "erin", "erin-password", false)
	require.NoError(t, err)
	client, err := mautrix.NewClient(hs.URL, erin.UserID, erin.AccessToken)
	require.NoError(t, err)
	room, err := client.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "before the restart"})
	require.NoError(t, err)
	url := hs.URL

	require.NoError(t, hs.Stop())
	assert.False(t, hs.Running())
	_, err = client.Whoami(ctx)
	require.Error(t, err, "a stopped homeserver answers nothing")

	require.NoError(t, hs.Restart(ctx))
	assert.True(t, hs.Running())
	assert.Equal(t, url, hs.URL, "same port")
	who, err := client.Whoami(ctx)
	require.NoError(t, err, "the token issued before the restart")
	assert.Equal(t, erin.UserID, who.UserID)
	joined, err := client.JoinedRooms(ctx)
	require.NoError(t, err)
	assert.Contains(t, joined.JoinedRooms, room.RoomID)
}
