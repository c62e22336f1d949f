package sim_test

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

func TestLoadUsersCSV(t *testing.T) {
	good := "uri,display_name,password\n" +
		"sip:Alice@Contoso.com,Alice Aaling,pw1\n" +
		"# a comment\n" +
		"bob@contoso.com,\"Meston, Bob\",pw2\n" +
		"carol@contoso.com,,pw3\n"
	users, err := sim.LoadUsersCSV(strings.NewReader(good))
	require.NoError(t, err)
	assert.Equal(t, []sim.User{
		{URI: "sip:alice@contoso.com", DisplayName: "Alice Aaling", Password: "pw1"},
		{URI: "sip:bob@contoso.com", DisplayName: "Meston, Bob", Password: "pw2"},
		{URI: "sip:carol@contoso.com", DisplayName: "carol@contoso.com", Password: "pw3"},
	}, users)

	for _, tc := range []struct {
		name, csv string
		want      []string
	}{
		{"empty", "", []string{"empty file"}},
		{"wrong header", "address,name,password\nalice@contoso.com,A,p\n", []string{"line 1", `column 1 is "address"`}},
		{"header only", "uri,display_name,password\n", []string{"no users"}},
		{"bad rows", "uri,display_name,password\n" +
			"alice@contoso.com,Alice,pw\n" +
			"not-an-address,X,pw\n" +
			"bob@contoso.com,Bob\n" +
			"carol@contoso.com,Carol,\n" +
			"ALICE@contoso.com,Again,pw\n" +
			"dave@contoso.com,\"Da\x01ve\",pw\n",
			[]string{
				"line 3: parse SIP URI",
				"line 4: 2 columns, want 3",
				"line 5: password of sip:carol@contoso.com is empty",
				"line 6: sip:alice@contoso.com already defined on line 2",
				"line 7: display name of sip:dave@contoso.com contains control characters",
			}},
		{"quote", "uri,display_name,password\nalice@contoso.com,\"Al\"ice,pw\n", []string{"line 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			users, err := sim.LoadUsersCSV(strings.NewReader(tc.csv))
			require.Error(t, err)
			assert.Nil(t, users)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestGenerateUsersAndAddUser(t *testing.T) {
	e := newEnv(t, sim.Options{Users: []sim.User{}})
	users := e.sim.GenerateUsers(3, "Fabrikam.com")
	require.Len(t, users, 3)
	assert.Equal(t, sim.User{URI: "sip:user00001@fabrikam.com", DisplayName: "User 00001", Password: sim.GeneratedPassword}, users[0])
	assert.Equal(t, sfb.URI("sip:user00003@fabrikam.com"), users[2].URI)
	assert.Empty(t, e.sim.GenerateUsers(3, "fabrikam.com"), "existing users are skipped")
	c := e.signIn("user00002@fabrikam.com", sim.GeneratedPassword)
	assert.Equal(t, "User 00002", get(t, c.app, "_embedded", "me", "name"))

	require.NoError(t, e.sim.AddUser(sim.User{URI: "dana@fabrikam.com", Password: "x"}))
	assert.Error(t, e.sim.AddUser(sim.User{URI: "sip:Dana@fabrikam.com", Password: "y"}), "duplicate")
	assert.Error(t, e.sim.AddUser(sim.User{URI: "dana", Password: "y"}))
	assert.Error(t, e.sim.AddUser(sim.User{URI: "erin@fabrikam.com"}), "no password")
	assert.Equal(t, 4, e.sim.Users())
}

// TestSeventyThousandUsers holds the organisation's 70,000 seats in one
// process and signs a few of them in.
func TestSeventyThousandUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("70,000 users")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err := sim.New(sim.Options{})
	require.NoError(t, err)
	defer s.Close()
	users := s.GenerateUsers(70000, "contoso.com")
	require.Len(t, users, 70000)
	runtime.GC()
	runtime.ReadMemStats(&after)
	perUser := float64(after.HeapAlloc-before.HeapAlloc) / 70000
	t.Logf("heap for 70,000 users: %.1f MiB (%.0f bytes/user, including the returned slice)", float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), perUser)
	assert.Less(t, perUser, 400.0, "bytes per idle user")
	runtime.KeepAlive(users)
	assert.Equal(t, 70000, s.Users())
	ctx := context.Background()
	require.NoError(t, s.SendMessage(ctx, "sip:user00001@contoso.com", "sip:user70000@contoso.com", sfb.Message{Text: "last one"}))
	assert.Len(t, s.Received("sip:user70000@contoso.com"), 1)
}

func BenchmarkGenerateUsers(b *testing.B) {
	for b.Loop() {
		s, err := sim.New(sim.Options{})
		require.NoError(b, err)
		s.GenerateUsers(70000, "contoso.com")
		_ = s.Close()
	}
}

func TestControlAPI(t *testing.T) {
	e := newEnv(t, sim.Options{})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	alice.makeMeAvailable()
	post := func(path, body string) resp { return e.do("POST", path, "", "application/json", body) }

	r := post("/sim/v1/users/bob@contoso.com/messages", `{"to":"sip:alice@contoso.com","text":"from control","html":"<b>from control</b>"}`)
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	evs := alice.await("invitation", is("messagingInvitation", "started"))
	inv := evs[len(evs)-1].embedded()
	require.Equal(t, http.StatusNoContent, alice.do("POST", get(t, inv, "_links", "accept", "href").(string), "", "").status)
	alice.await("connected", is("messagingInvitation", "completed"))

	r = e.do("GET", "/sim/v1/users/alice@contoso.com/received", "", "", "")
	require.Equal(t, http.StatusOK, r.status)
	var rec []map[string]any
	require.NoError(t, json.Unmarshal(r.body, &rec))
	require.Len(t, rec, 1)
	assert.Equal(t, "sip:bob@contoso.com", rec[0]["from"])
	assert.Equal(t, "from control", rec[0]["text"])
	assert.Equal(t, "<b>from control</b>", rec[0]["html"])

	require.Equal(t, http.StatusNoContent, post("/sim/v1/users/bob@contoso.com/typing", `{"to":"alice@contoso.com","typing":true}`).status)
	alice.await("typing", is("participant", "added"))
	r = e.do("GET", "/sim/v1/users/alice@contoso.com/typing?from=bob@contoso.com", "", "", "")
	assert.Equal(t, obj{"typing": true}, r.json(t))

	r = e.do("GET", "/sim/v1/users/alice@contoso.com/applications", "", "", "")
	assert.Equal(t, obj{"count": float64(1)}, r.json(t))

	// Faults.
	require.Equal(t, http.StatusNoContent, post("/sim/v1/faults/fail-requests", `{"count":1,"status":503,"retry_after_seconds":7}`).status)
	r = alice.do("GET", alice.self, "", "")
	assert.Equal(t, http.StatusServiceUnavailable, r.status)
	assert.Equal(t, "7", r.header.Get("Retry-After"))
	require.Equal(t, http.StatusNoContent, post("/sim/v1/faults/resync", `{"user":"alice@contoso.com"}`).status)
	body := alice.do("GET", alice.next, "", "").json(t)
	assert.Contains(t, body["_links"], "resync")
	assert.NotContains(t, body["_links"], "next")
	require.Equal(t, http.StatusNoContent, post("/sim/v1/faults/expire-tokens", `{"user":"alice@contoso.com"}`).status)
	assert.Equal(t, http.StatusUnauthorized, alice.do("GET", alice.self, "", "").status)
	tok, _ := e.token("alice@contoso.com", "alice-pw")
	alice.token = tok
	require.Equal(t, http.StatusNoContent, post("/sim/v1/faults/latency", `{"latency_ms":1}`).status)
	require.Equal(t, http.StatusNoContent, post("/sim/v1/faults/latency", `{"latency_ms":0}`).status)
	require.Equal(t, http.StatusNoContent, post("/sim/v1/faults/expire-conversations", `{"user":"alice@contoso.com"}`).status)
	require.Equal(t, http.StatusNoContent, post("/sim/v1/faults/delete-applications", `{"user":"alice@contoso.com"}`).status)
	assert.Equal(t, 0, e.sim.Applications("sip:alice@contoso.com"))
	assert.Equal(t, http.StatusNotFound, alice.do("GET", alice.self, "", "").status)

	// Errors are JSON with a message.
	for _, tc := range []struct {
		path, body string
		status     int
	}{
		{"/sim/v1/users/nobody@contoso.com/messages", `{"to":"alice@contoso.com","text":"x"}`, http.StatusNotFound},
		{"/sim/v1/users/bob@contoso.com/messages", `{"to":"nobody@contoso.com","text":"x"}`, http.StatusNotFound},
		{"/sim/v1/users/bob@contoso.com/messages", `{"to":"alice@contoso.com"}`, http.StatusBadRequest},
		{"/sim/v1/users/bob@contoso.com/messages", `{`, http.StatusBadRequest},
		{"/sim/v1/faults/fail-requests", `{"count":1,"status":200}`, http.StatusBadRequest},
		{"/sim/v1/faults/resume", `{"user":"x"}`, http.StatusBadRequest},
	} {
		r := post(tc.path, tc.body)
		assert.Equal(t, tc.status, r.status, "%s %s", tc.path, tc.body)
		assert.NotEmpty(t, r.json(t)["error"])
	}
	require.Equal(t, http.StatusCreated, post("/sim/v1/users", `{"uri":"sip:erin@contoso.com","display_name":"Erin","password":"pw"}`).status)
	e.signIn("erin@contoso.com", "pw")
}

func TestColleague(t *testing.T) {
	e := newEnv(t, sim.Options{Colleague: "sip:colleague@contoso.com", ColleagueTypingDelay: time.Millisecond})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	alice.makeMeAvailable("Plain", "Html")

	evs := alice.await("greeting", is("messagingInvitation", "started"))
	inv := evs[len(evs)-1].embedded()
	assert.Equal(t, "Colleague", get(t, inv, "_links", "from", "title"))
	assert.Contains(t, get(t, inv, "_links", "message", "href"), "Hello+Alice+Aaling")
	require.Equal(t, http.StatusNoContent, alice.do("POST", get(t, inv, "_links", "accept", "href").(string), "", "").status)

	// The greeting again as the first message event (ReceiveAnIM step 16).
	evs = alice.await("repeated greeting", is("message", "completed"))
	greeting := evs[len(evs)-1]
	assert.True(t, strings.HasSuffix(greeting.href, "/messages/1"), greeting.href)
	assert.Equal(t, get(t, inv, "_links", "message", "href"), get(t, greeting.embedded(), "_links", "plainMessage", "href"))
	var send string
	for _, ev := range evs {
		if ev.rel == "messaging" && ev.typ == "updated" {
			send = get(t, ev.embedded(), "_links", "sendMessage", "href").(string)
		}
	}

	// Typing, then the formatted message.
	evs = alice.await("formatted message", is("message", "completed"))
	assert.True(t, strings.HasSuffix(evs[len(evs)-1].href, "/messages/2"), evs[len(evs)-1].href)
	typing := find(t, evs, func(ev evt) bool { return ev.rel == "participant" && ev.typ == "added" && ev.raw["in"] != nil })
	assert.Equal(t, "typingParticipants", get(t, typing.raw, "in", "rel"))
	html := get(t, evs[len(evs)-1].embedded(), "_links", "htmlMessage", "href").(string)
	assert.Contains(t, html, "data:text/html;charset=utf-8,")
	assert.Contains(t, html, "%3Cb%3Eformatted%3C%2Fb%3E")

	if send == "" {
		r := alice.do("GET", strings.TrimSuffix(evs[len(evs)-1].href, "/messages/2"), "", "")
		require.Equal(t, http.StatusOK, r.status)
		send = get(t, r.json(t), "_links", "sendMessage", "href").(string)
	}
	require.Equal(t, http.StatusCreated, alice.do("POST", send, "text/plain", "ping ü").status)
	evs = alice.await("reply", func(ev evt) bool {
		return ev.rel == "message" && ev.typ == "completed" && ev.embedded()["direction"] == "Incoming"
	})
	plain := get(t, evs[len(evs)-1].embedded(), "_links", "plainMessage", "href").(string)
	assert.True(t, strings.HasPrefix(plain, "data:text/plain;charset=utf-8;base64,"), "non-ASCII reply is base64: %s", plain)
	rec := e.sim.Received("sip:colleague@contoso.com")
	require.Len(t, rec, 1)
	assert.Equal(t, "ping ü", rec[0].Message.Text)
	got := e.sim.Received("sip:alice@contoso.com")
	require.Len(t, got, 3)
	assert.Equal(t, `You wrote: "ping ü"`, got[2].Message.Text)
}

func TestCloseStopsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 5 {
		s, err := sim.New(sim.Options{Users: testUsers, Colleague: "sip:colleague@contoso.com", SweepInterval: time.Millisecond})
		require.NoError(t, err)
		require.NoError(t, s.Close())
	}
	// Not require.Eventually: it runs its condition in a goroutine of its own.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), before)
}
