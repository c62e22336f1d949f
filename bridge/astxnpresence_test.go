package bridge

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"
)

func isGhostForTest(user id.UserID) bool {
	return strings.HasPrefix(string(user), "@sfb_") || user == "@sfbbot:example.org"
}

func TestDropOwnPresenceKeepsEverythingElse(t *testing.T) {
	const txn = `{
		"events": [{"type": "m.room.message", "sender": "@sfb_bob:example.org", "event_id": "$1", "room_id": "!r:example.org", "content": {"msgtype": "m.text", "body": "m.presence"}}],
		"ephemeral": [
			{"type": "m.presence", "sender": "@sfb_bob:example.org", "content": {"presence": "online"}},
			{"type": "m.presence", "sender": "@alice:example.org", "content": {"presence": "unavailable", "status_msg": "lunch"}},
			{"type": "m.typing", "room_id": "!r:example.org", "content": {"user_ids": ["@sfb_bob:example.org"]}},
			{"type": "m.presence", "sender": "@sfbbot:example.org", "content": {"presence": "online"}}
		],
		"de.sorunome.msc2409.ephemeral": [
			{"type": "m.presence", "sender": "@sfb_carol:example.org", "content": {"presence": "offline"}},
			{"type": "m.receipt", "room_id": "!r:example.org", "content": {}}
		]
	}`
	var got []byte
	handler := dropOwnPresence(isGhostForTest)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error
		got, err = io.ReadAll(r.Body)
		require.NoError(t, err)
		assert.EqualValues(t, len(got), r.ContentLength)
	}))
	req := httptest.NewRequest(http.MethodPut, transactionPath+"42", strings.NewReader(txn))
	handler.ServeHTTP(httptest.NewRecorder(), req)

	var parsed struct {
		Events    []map[string]any `json:"events"`
		Ephemeral []struct {
			Type   string `json:"type"`
			Sender string `json:"sender"`
		} `json:"ephemeral"`
		MSC2409 []struct {
			Type string `json:"type"`
		} `json:"de.sorunome.msc2409.ephemeral"`
	}
	require.NoError(t, json.Unmarshal(got, &parsed))
	require.Len(t, parsed.Events, 1, "timeline events are untouched")
	assert.Equal(t, "m.presence", parsed.Events[0]["content"].(map[string]any)["body"])
	require.Len(t, parsed.Ephemeral, 2)
	assert.Equal(t, "m.presence", parsed.Ephemeral[0].Type)
	assert.Equal(t, "@alice:example.org", parsed.Ephemeral[0].Sender, "a Matrix user's presence stays")
	assert.Equal(t, "m.typing", parsed.Ephemeral[1].Type)
	require.Len(t, parsed.MSC2409, 1)
	assert.Equal(t, "m.receipt", parsed.MSC2409[0].Type)
}

func TestDropOwnPresenceLeavesOtherBodiesAlone(t *testing.T) {
	for name, body := range map[string]string{
		"no presence":        `{"events": [], "ephemeral": [{"type": "m.typing", "content": {}}]}`,
		"only users":         `{"ephemeral": [{"type": "m.presence", "sender": "@alice:example.org", "content": {}}]}`,
		"malformed":          `{"ephemeral": [{"type": "m.presence", "sender": "@sfb_bob:example.org"`,
		"ephemeral a string": `{"ephemeral": "m.presence"}`,
	} {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, body, string(withoutOwnPresence([]byte(body), isGhostForTest)))
		})
	}

	// Not a transaction: the body is not even read.
	const other = `{"ephemeral": [{"type": "m.presence", "sender": "@sfb_bob:example.org"}]}`
	var got string
	handler := dropOwnPresence(isGhostForTest)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
	}))
	handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPut, "/_matrix/provision/v3/whatever", strings.NewReader(other)))
	assert.Equal(t, other, got)
}
