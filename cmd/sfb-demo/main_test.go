package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

const (
	demoUser  = id.UserID("@demo:localhost")
	bridgeBot = id.UserID("@sfbbot:localhost")
	ghost     = id.UserID("@sfb_colleague=40contoso.com:localhost")
	botRoom   = id.RoomID("!bot:localhost")
	portal    = id.RoomID("!portal:localhost")
)

// TestWatchDoesNotPrintWhatIsTypedToTheBot: someone trying the demo with a
// Matrix client logs in through the bridge bot, which asks for the SfB
// password; the demo's output must not show it, while it does show the
// chat with the colleague.
func TestWatchDoesNotPrintWhatIsTypedToTheBot(t *testing.T) {
	members := map[id.RoomID][]id.UserID{
		botRoom: {demoUser, bridgeBot},
		portal:  {demoUser, bridgeBot, ghost},
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for room, users := range members {
			if r.URL.Path == "/_matrix/client/v3/rooms/"+string(room)+"/joined_members" {
				joined := map[id.UserID]any{}
				for _, u := range users {
					joined[u] = map[string]any{}
				}
				_ = json.NewEncoder(w).Encode(map[string]any{"joined": joined})
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errcode":"M_NOT_FOUND","error":"not here"}`))
	}))
	defer hs.Close()
	client, err := mautrix.NewClient(hs.URL, demoUser, "token")
	require.NoError(t, err)
	var out bytes.Buffer
	w := newMatrixWatch(client, bridgeBot, &printer{w: &out, start: time.Now()})
	ctx := context.Background()

	send := func(room id.RoomID, body string) {
		w.onMessage(ctx, &event.Event{
			Sender: demoUser, RoomID: room, Type: event.EventMessage,
			Content: event.Content{Parsed: &event.MessageEventContent{MsgType: event.MsgText, Body: body}},
		})
	}
	send(botRoom, "login")
	send(botRoom, "s3cret-sfb-password")
	send(portal, "hello colleague")

	printed := out.String()
	assert.NotContains(t, printed, "s3cret-sfb-password")
	assert.NotContains(t, printed, `"login"`)
	assert.Equal(t, 2, strings.Count(printed, "wrote to the bridge bot (not shown"), printed)
	assert.Contains(t, printed, `"hello colleague"`, "the chat with the colleague is shown")
}
