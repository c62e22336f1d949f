package ucwa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// incomingInvitation is ReceiveAnIM.md's step 8 event, with the message
// link given.
func incomingInvitation(id, msgLink string) string {
	return `[{"rel":"communication","href":"{APP}/communication","events":[{
"link":{"rel":"messagingInvitation","href":"{APP}/communication/messagingInvitations/` + id + `"},
"_embedded":{"messagingInvitation":{"direction":"Incoming","importance":"Normal","threadId":"thr-` + id + `","state":"Connecting","subject":"",
"_links":{"self":{"href":"{APP}/communication/messagingInvitations/` + id + `"},
"conversation":{"href":"{APP}/communication/conversations/c1"},
"accept":{"href":"{APP}/communication/messagingInvitations/` + id + `/accept"},
"messaging":{"href":"{APP}/communication/conversations/c1/messaging"},
"message":{"href":"` + msgLink + `"}},
"_embedded":{"from":{"sourceNetwork":"SameEnterprise","anonymous":false,"name":"Lene Aaling","uri":"sip:lenea@contoso.com",
"_links":{"self":{"href":"{APP}/communication/conversations/c1/participants/lenea@contoso.com"}},"rel":"participant"}},
"rel":"messagingInvitation"}},"type":"started"}]}]`
}

func messagingConnected() string {
	return `{"rel":"conversation","href":"{APP}/communication/conversations/c1","events":[{
"link":{"rel":"messaging","href":"{APP}/communication/conversations/c1/messaging"},
"_embedded":{"messaging":{"state":"Connected","negotiatedMessageFormats":["Plain"],"_links":{
"self":{"href":"{APP}/communication/conversations/c1/messaging"},
"conversation":{"href":"{APP}/communication/conversations/c1"},
"sendMessage":{"href":"{APP}/communication/conversations/c1/messaging/messages"},
"setIsTyping":{"href":"{APP}/communication/conversations/c1/messaging/typing"}},"rel":"messaging"}},"type":"updated"}]}`
}

func incomingMessage(n, dataURI string) string {
	return `{"link":{"rel":"message","href":"{APP}/communication/conversations/c1/messaging/messages/` + n + `"},"status":"Success",
"_embedded":{"message":{"direction":"Incoming","timeStamp":"\/Date(1383784870271)\/","_links":{
"self":{"href":"{APP}/communication/conversations/c1/messaging/messages/` + n + `"},
"participant":{"href":"{APP}/communication/conversations/c1/participants/lenea@contoso.com","title":"Lene Aaling"},
"messaging":{"href":"{APP}/communication/conversations/c1/messaging"},
"plainMessage":{"href":"` + dataURI + `"}},"rel":"message"}},"type":"completed"}`
}

func convSender(events ...string) string {
	return `[{"rel":"conversation","href":"{APP}/communication/conversations/c1","events":[` + strings.Join(events, ",") + `]}]`
}

func TestIncomingInvitationFirstMessage(t *testing.T) {
	tests := []struct {
		name, link, want string
	}{
		{"url-encoded", "data:text/plain;charset=utf-8,Hi+Tosh%0d%0a", "Hi Tosh"},
		{"percent blanks", "data:text/plain;charset=utf-8,Hello%20there", "Hello there"},
		{"base64", "data:text/plain;base64,SMOpbGxvIOKCrA==", "Héllo €"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			tr := newTestTransport(t, f)
			_, rec := signIn(t, tr, "secret")
			f.pushSenders(incomingInvitation("inv1", tt.link))
			require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)
			m := messages(rec.all())[0]
			assert.Equal(t, tt.want, m.Message.Text)
			assert.Equal(t, sfb.URI("sip:lenea@contoso.com"), m.From.URI)
			assert.Equal(t, "Lene Aaling", m.From.DisplayName)
			assert.Equal(t, sfb.URI("sip:lenea@contoso.com"), m.Conversation.Peer)
			assert.Equal(t, "thr-inv1", m.Conversation.ThreadID)
			assert.Equal(t, f.url("/ucwa/oauth/v1/applications/101/communication/messagingInvitations/inv1"), m.ID)
			require.Eventually(t, func() bool { return len(f.recorded("POST", "/inv1/accept")) == 1 }, waitFor, tick)
			assert.Contains(t, f.recorded("POST", "/inv1/accept")[0].Query, "sessionContext=")
		})
	}
}

func TestIncomingMessagesDeduplicated(t *testing.T) {
	f := newFake(t)
	tr := newTestTransport(t, f)
	_, rec := signIn(t, tr, "secret")
	f.pushSenders(incomingInvitation("inv1", "data:text/plain;charset=utf-8,Hi+Tosh%0d%0a"))
	// The same invitation again (updated), then ReceiveAnIM.md's repeat of
	// the first message as message 2, then a real second message, then a
	// replay of it.
	f.pushSenders(strings.Replace(incomingInvitation("inv1", "data:text/plain;charset=utf-8,Hi+Tosh%0d%0a"), `"started"`, `"updated"`, 1))
	f.pushSenders(`[` + strings.Trim(convSender(incomingMessage("2", "data:text/plain;charset=utf-8,Hi+Tosh%0d%0a")), "[]") + `,` + messagingConnected() + `]`)
	f.pushSenders(convSender(incomingMessage("3", "data:text/plain;charset=utf-8,second")))
	f.pushSenders(convSender(incomingMessage("3", "data:text/plain;charset=utf-8,second")))
	f.pushSenders(convSender(incomingMessage("4", "data:text/html;charset=utf-8,%3Cb%3Ebold%3C%2Fb%3E")))
	require.Eventually(t, func() bool { return len(messages(rec.all())) >= 3 }, waitFor, tick)
	// Let the fake drain its queue before counting.
	require.Eventually(t, func() bool { return len(f.queue) == 0 }, waitFor, tick)
	f.pushSenders("[]")
	require.Eventually(t, func() bool { return len(f.queue) == 0 }, waitFor, tick)
	msgs := messages(rec.all())
	require.Len(t, msgs, 3)
	assert.Equal(t, "Hi Tosh", msgs[0].Message.Text)
	assert.Equal(t, "second", msgs[1].Message.Text)
	assert.True(t, strings.HasSuffix(msgs[1].ID, "/messaging/messages/3"))
	assert.Equal(t, sfb.URI("sip:lenea@contoso.com"), msgs[1].From.URI)
	assert.Equal(t, time.UnixMilli(1383784870271).UTC(), msgs[1].Time)
	assert.Equal(t, "<b>bold</b>", msgs[2].Message.HTML)
	assert.Equal(t, "bold", msgs[2].Message.Text)
}

func TestBadEventDoesNotDropBatch(t *testing.T) {
	f := newFake(t)
	tr := newTestTransport(t, f)
	_, rec := signIn(t, tr, "secret")
	f.pushSenders(convSender(
		incomingMessage("1", "data:text/plain;charset=utf-8,first"),
		incomingMessage("2", "data:text/plain;base64,@@@not-base64"),
		`{"link":{"rel":"somethingNew","href":"/x"},"type":"added"}`,
		`{"link":{"rel":"message","href":"{APP}/m/5"},"_embedded":{"message":"not an object"},"type":"completed"}`,
		incomingMessage("3", "data:text/plain;charset=utf-8,%ff%fe"),
		incomingMessage("4", "data:text/plain;charset=utf-8,last"),
	))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 3 }, waitFor, tick)
	msgs := messages(rec.all())
	assert.Equal(t, "first", msgs[0].Message.Text)
	assert.Equal(t, "\uFFFD", msgs[1].Message.Text, "invalid UTF-8 is replaced")
	assert.Equal(t, "last", msgs[2].Message.Text)
}

// outgoingScript answers startMessaging like SendAnIM.md: started,
// conversation and messaging connected, then completed with status.
func outgoingScript(f *fakeUCWA, status string) {
	f.mu.Lock()
	f.override = func(w http.ResponseWriter, r *http.Request, body string) bool {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/communication/messagingInvitations") {
			return false
		}
		var req struct {
			OperationID string `json:"operationId"`
			To          string `json:"to"`
		}
		_ = json.Unmarshal([]byte(body), &req)
		inv := func(typ, st string) string {
			return `{"link":{"rel":"messagingInvitation","href":"{APP}/communication/messagingInvitations/inv1"},` + st +
				`"_embedded":{"messagingInvitation":{"direction":"Outgoing","operationId":"` + req.OperationID + `","threadId":"t1","state":"Connecting",
"_links":{"self":{"href":"{APP}/communication/messagingInvitations/inv1"},"to":{"href":"{APP}/people/lenea@contoso.com"},
"conversation":{"href":"{APP}/communication/conversations/c1"},"messaging":{"href":"{APP}/communication/conversations/c1/messaging"}},
"rel":"messagingInvitation"}},"type":"` + typ + `"}`
		}
		w.Header().Set("Location", "/ucwa/oauth/v1/applications/101/communication/messagingInvitations/inv1")
		w.WriteHeader(201)
		f.pushSenders(`[{"rel":"communication","href":"{APP}/communication","events":[` + inv("started", "") + `]}]`)
		if status == "Success" {
			f.pushSenders(`[` + messagingConnected() + `]`)
			f.pushSenders(`[{"rel":"communication","href":"{APP}/communication","events":[` + inv("completed", `"status":"Success",`) + `]}]`)
		} else {
			f.pushSenders(`[{"rel":"communication","href":"{APP}/communication","events":[` + inv("completed", `"status":"Failure","reason":{"code":"Forbidden","subcode":"DoNotDisturb","message":"The person is busy"},`) + `]}]`)
		}
		return true
	}
	f.mu.Unlock()
}

// messageScript answers sendMessage with the completed event.
func messageScript(f *fakeUCWA, status func(n int) string) {
	f.mu.Lock()
	prev := f.override
	f.override = func(w http.ResponseWriter, r *http.Request, body string) bool {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/messaging/messages") {
			return prev != nil && prev(w, r, body)
		}
		f.mu.Lock()
		f.msgN++
		n := f.msgN
		f.mu.Unlock()
		st := status(n)
		if st == "404" {
			writeJSON(w, 404, `{"code":"NotFound","message":"conversation gone"}`)
			return true
		}
		href := fmt.Sprintf("/ucwa/oauth/v1/applications/101/communication/conversations/c1/messaging/messages/out%d", n)
		w.Header().Set("Location", href)
		w.WriteHeader(201)
		f.pushSenders(convSender(`{"link":{"rel":"message","href":"` + href + `"},"status":"` + st + `",
"_embedded":{"message":{"direction":"Outgoing","timeStamp":"\/Date(1364327898968)\/","_links":{"self":{"href":"` + href + `"}},"rel":"message"}},"type":"completed"}`))
		return true
	}
	f.mu.Unlock()
}

func TestSendMessageStartsThenReusesConversation(t *testing.T) {
	f := newFake(t)
	tr := newTestTransport(t, f)
	s, _ := signIn(t, tr, "secret")
	outgoingScript(f, "Success")
	messageScript(f, func(n int) string {
		if n == 2 {
			return "Failed"
		}
		return "Success"
	})
	ctx := context.Background()
	lene := sfb.URI("sip:lenea@contoso.com")

	sent, err := s.SendMessage(ctx, lene, sfb.Message{Text: "What's up?"})
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(sent.ID, "/messagingInvitations/inv1"))
	inv := f.recorded("POST", "/communication/messagingInvitations")
	require.Len(t, inv, 1)
	var body struct {
		To    string `json:"to"`
		OpID  string `json:"operationId"`
		SC    string `json:"sessionContext"`
		Links struct {
			Message struct{ Href string } `json:"message"`
		} `json:"_links"`
	}
	require.NoError(t, json.Unmarshal([]byte(inv[0].Body), &body))
	assert.Equal(t, "sip:lenea@contoso.com", body.To)
	assert.NotEmpty(t, body.OpID)
	assert.NotEmpty(t, body.SC)
	d, err := ParseDataURI(body.Links.Message.Href)
	require.NoError(t, err)
	assert.Equal(t, "What's up?", string(d.Data))

	sent, err = s.SendMessage(ctx, lene, sfb.Message{Text: "second"})
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(sent.ID, "/messages/out1"))
	msgs := f.recorded("POST", "/messaging/messages")
	require.Len(t, msgs, 1)
	assert.Equal(t, "second", msgs[0].Body)
	assert.True(t, strings.HasPrefix(msgs[0].ContentType, "text/plain"))
	assert.Contains(t, msgs[0].Query, "operationId=")

	_, err = s.SendMessage(ctx, lene, sfb.Message{Text: "third"})
	require.Error(t, err)
	assert.ErrorIs(t, err, sfb.ErrDeliveryFailed)
	assert.Len(t, f.recorded("POST", "/communication/messagingInvitations"), 1, "conversation reused")
}

func TestSendMessageFailureReason(t *testing.T) {
	f := newFake(t)
	tr := newTestTransport(t, f)
	s, _ := signIn(t, tr, "secret")
	outgoingScript(f, "Failure")
	_, err := s.SendMessage(context.Background(), "sip:lenea@contoso.com", sfb.Message{Text: "hi"})
	require.ErrorIs(t, err, sfb.ErrDeliveryFailed)
	assert.Contains(t, err.Error(), "DoNotDisturb")
}

func TestConversationEndedAndRestarted(t *testing.T) {
	f := newFake(t)
	tr := newTestTransport(t, f)
	s, rec := signIn(t, tr, "secret")
	outgoingScript(f, "Success")
	messageScript(f, func(n int) string {
		if n == 1 {
			return "404"
		}
		return "Success"
	})
	ctx := context.Background()
	lene := sfb.URI("sip:lenea@contoso.com")
	_, err := s.SendMessage(ctx, lene, sfb.Message{Text: "one"})
	require.NoError(t, err)
	// A stale conversation (404 on sendMessage) is restarted and the
	// message sent once more through a new invitation.
	_, err = s.SendMessage(ctx, lene, sfb.Message{Text: "two"})
	require.NoError(t, err)
	assert.Len(t, f.recorded("POST", "/communication/messagingInvitations"), 2)

	// The server ends the conversation: ConversationEnded, then the next
	// message starts a new one.
	f.pushSenders(`[{"rel":"communication","href":"{APP}/communication","events":[{"link":{"rel":"conversation","href":"{APP}/communication/conversations/c1"},"type":"deleted"}]}]`)
	require.Eventually(t, func() bool { return len(eventsOf[sfb.ConversationEnded](rec.all())) == 1 }, waitFor, tick)
	assert.Equal(t, lene, eventsOf[sfb.ConversationEnded](rec.all())[0].Conversation.Peer)
	_, err = s.SendMessage(ctx, lene, sfb.Message{Text: "three"})
	require.NoError(t, err)
	assert.Len(t, f.recorded("POST", "/communication/messagingInvitations"), 3)
}

func TestTyping(t *testing.T) {
	f := newFake(t)
	tr := newTestTransport(t, f)
	s, rec := signIn(t, tr, "secret")
	lene := sfb.URI("sip:lenea@contoso.com")
	// No conversation: nothing to do.
	require.NoError(t, s.SetTyping(context.Background(), lene, true))
	assert.Empty(t, f.recorded("POST", "/messaging/typing"))

	f.pushSenders(incomingInvitation("inv1", "data:text/plain;charset=utf-8,hi"))
	f.pushSenders(`[` + messagingConnected() + `]`)
	typing := func(typ string) string {
		return convSender(`{"link":{"rel":"participant","href":"{APP}/communication/conversations/c1/participants/lenea@contoso.com"},
"in":{"rel":"typingParticipants","href":"{APP}/communication/conversations/c1/participants/typingParticipants"},"type":"` + typ + `"}`)
	}
	f.pushSenders(typing("added"))
	f.pushSenders(typing("deleted"))
	require.Eventually(t, func() bool { return len(eventsOf[sfb.TypingChanged](rec.all())) == 2 }, waitFor, tick)
	tc := eventsOf[sfb.TypingChanged](rec.all())
	assert.Equal(t, lene, tc[0].From)
	assert.True(t, tc[0].Typing)
	assert.False(t, tc[1].Typing)
	assert.Equal(t, "thr-inv1", tc[0].Conversation.ThreadID)

	require.NoError(t, s.SetTyping(context.Background(), lene, true))
	assert.Len(t, f.recorded("POST", "/messaging/typing"), 1)
}

func TestEventChannelTransientErrorsKeepAck(t *testing.T) {
	f := newFake(t)
	tr := newTestTransport(t, f)
	_, rec := signIn(t, tr, "secret")
	f.pushSenders(convSender(incomingMessage("1", "data:,one")))
	f.push(fakeBatch{status: 503, header: map[string]string{"Retry-After": "0"}, body: `{"code":"ServiceFailure"}`})
	f.push(fakeBatch{status: 500, body: `{"code":"ServiceFailure"}`})
	f.pushSenders(convSender(incomingMessage("2", "data:,two")))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 2 }, waitFor, tick)
	evts := rec.all()
	states := eventsOf[sfb.SessionState](evts)
	require.Len(t, states, 2)
	assert.False(t, states[0].Connected)
	assert.ErrorIs(t, states[0].Err, sfb.ErrServerUnavailable)
	assert.True(t, states[1].Connected)
	f.mu.Lock()
	acks := append([]int(nil), f.acks...)
	f.mu.Unlock()
	// ack=2 failed twice and was asked again, unchanged.
	assert.Equal(t, []int{1, 2, 2, 2}, acks[:4])
}

// conversationsScript serves the conversations collection (with the
// hrefs list returns, or status when it is not 200) and c1 as a connected
// 1:1 conversation with Lene, as conversations_ref.md, conversation_ref.md,
// messaging_ref.md and participants_ref.md show them.
func conversationsScript(f *fakeUCWA, list func() (int, []string)) {
	f.mu.Lock()
	prev := f.override
	f.override = func(w http.ResponseWriter, r *http.Request, body string) bool {
		a := f.app()
		c1 := a + "/communication/conversations/c1"
		switch {
		case r.Method != http.MethodGet:
		case r.URL.Path == a+"/communication/conversations":
			st, hrefs := list()
			if st != 200 {
				writeJSON(w, st, `{"code":"ServiceFailure","message":"try later"}`)
				return true
			}
			var links []string
			for _, h := range hrefs {
				links = append(links, `{"href":"`+a+h+`"}`)
			}
			writeJSON(w, 200, `{"rel":"conversations","_links":{"self":{"href":"`+a+`/communication/conversations"},"conversation":[`+strings.Join(links, ",")+`]}}`)
			return true
		case r.URL.Path == c1:
			writeJSON(w, 200, `{"rel":"conversation","state":"Connected","threadId":"thr-inv1","subject":"","activeModalities":["Messaging"],"participantCount":2,
"_links":{"self":{"href":"`+c1+`"},"messaging":{"href":"`+c1+`/messaging"},"participants":{"href":"`+c1+`/participants"}}}`)
			return true
		case r.URL.Path == c1+"/messaging":
			writeJSON(w, 200, `{"rel":"messaging","state":"Connected","negotiatedMessageFormats":["Plain","Html"],"_links":{"self":{"href":"`+c1+`/messaging"},
"conversation":{"href":"`+c1+`"},"sendMessage":{"href":"`+c1+`/messaging/messages"},"setIsTyping":{"href":"`+c1+`/messaging/typing"}}}`)
			return true
		case r.URL.Path == c1+"/participants":
			writeJSON(w, 200, `{"rel":"participants","_links":{"self":{"href":"`+c1+`/participants"},
"participant":[{"href":"`+c1+`/participants/lenea@contoso.com","title":"Lene Aaling"}]}}`)
			return true
		}
		return prev != nil && prev(w, r, body)
	}
	f.mu.Unlock()
}

// TestEventChannelResyncAndResume: after resync (EventChannelDetails.md)
// the client reads the conversations again: one the server still has stays
// (the next message goes into it, no second conversation), one it no
// longer has ends, and when the collection cannot be read every
// conversation is forgotten. After resume the server closed them all.
func TestEventChannelResyncAndResume(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		hrefs     []string
		wantEnded bool
	}{
		{"still open", 200, []string{"/communication/conversations/c1"}, false},
		{"server closed it", 200, nil, true},
		{"collection unreadable", 500, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			tr := newTestTransport(t, f)
			s, rec := signIn(t, tr, "secret")
			conversationsScript(f, func() (int, []string) { return tt.status, tt.hrefs })
			messageScript(f, func(int) string { return "Success" })
			f.pushSenders(incomingInvitation("inv1", "data:,hi"))
			f.pushSenders(`[` + messagingConnected() + `]`)
			require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)
			f.push(fakeBatch{body: `{"_links":{"resync":{"href":"{APP}/events?ack=7"}}}`})
			require.Eventually(t, func() bool {
				f.mu.Lock()
				defer f.mu.Unlock()
				return slices.Contains(f.acks, 7)
			}, waitFor, tick)
			lene := sfb.URI("sip:lenea@contoso.com")
			if tt.wantEnded {
				require.Len(t, eventsOf[sfb.ConversationEnded](rec.all()), 1)
				assert.Equal(t, lene, eventsOf[sfb.ConversationEnded](rec.all())[0].Conversation.Peer)
				return
			}
			assert.Empty(t, eventsOf[sfb.ConversationEnded](rec.all()), "resync does not end conversations")
			sent, err := s.SendMessage(context.Background(), lene, sfb.Message{Text: "reply", HTML: "<b>reply</b>"})
			require.NoError(t, err)
			assert.True(t, strings.HasSuffix(sent.ID, "/conversations/c1/messaging/messages/out1"), sent.ID)
			assert.Empty(t, f.recorded("POST", "/communication/messagingInvitations"), "no second conversation")
			msgs := f.recorded("POST", "/messaging/messages")
			require.Len(t, msgs, 1)
			assert.Equal(t, "<b>reply</b>", msgs[0].Body, "formats read again: Html negotiated")

			f.push(fakeBatch{body: `{"_links":{"self":{"href":"x"},"resume":{"href":"{APP}/events?ack=20"}},"sender":` +
				strings.ReplaceAll(convSender(incomingMessage("9", "data:,after resume")), "c1", "c9") + `}`})
			require.Eventually(t, func() bool { return len(messages(rec.all())) == 2 }, waitFor, tick)
			// The GET with ack=20 follows the handling of the resumed batch.
			require.Eventually(t, func() bool {
				f.mu.Lock()
				defer f.mu.Unlock()
				return slices.Contains(f.acks, 20)
			}, waitFor, tick)
			assert.Equal(t, "after resume", messages(rec.all())[1].Message.Text)
			ended := eventsOf[sfb.ConversationEnded](rec.all())
			require.Len(t, ended, 1, "resume: the server closed the conversations")
			assert.Equal(t, sfb.Conversation{ThreadID: "thr-inv1", Peer: lene}, ended[0].Conversation)
		})
	}
}

func TestEventChannelPGetReplaced(t *testing.T) {
	f := newFake(t)
	tr := newTestTransport(t, f)
	_, rec := signIn(t, tr, "secret")
	replaced := fakeBatch{status: 409, body: `{"code":"Conflict","subcode":"PGetReplaced"}`}
	f.push(replaced)
	f.pushSenders(convSender(incomingMessage("1", "data:,ok")))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)
	assert.Empty(t, eventsOf[sfb.SessionEnded](rec.all()))
	for range 3 {
		f.push(replaced)
	}
	require.Eventually(t, func() bool { return len(eventsOf[sfb.SessionEnded](rec.all())) == 1 }, waitFor, tick)
	assert.Contains(t, eventsOf[sfb.SessionEnded](rec.all())[0].Err.Error(), "PGetReplaced")
}

func TestApplicationRecreatedOn404(t *testing.T) {
	f := newFake(t)
	tr := newTestTransport(t, f)
	_, rec := signIn(t, tr, "secret")
	f.push(fakeBatch{status: 404, body: `{"code":"NotFound","subcode":"ApplicationNotFound"}`})
	f.pushSenders(convSender(incomingMessage("1", "data:,on the new app")))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)
	f.mu.Lock()
	posts := f.appPosts
	f.mu.Unlock()
	assert.Equal(t, 2, posts)
	assert.Len(t, f.recorded("POST", "/me/makeMeAvailable"), 2)
	assert.Contains(t, messages(rec.all())[0].ID, "/applications/102/")
}

func TestSignInBadPassword(t *testing.T) {
	f := newFake(t)
	tr := newTestTransport(t, f)
	_, err := tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "toshm@contoso.com", Password: "wrong"}}, func(context.Context, sfb.Event) {})
	require.ErrorIs(t, err, sfb.ErrBadCredentials)
	var oe *OAuthError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, "invalid_grant", oe.Code)
	assert.Contains(t, oe.Diagnostics, "28020")
	assert.NotContains(t, err.Error(), "wrong", "password never in errors")
}

func TestTokenRenewalWithFakeClock(t *testing.T) {
	f := newFake(t)
	f.expiresIn = 100
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tr := newTestTransport(t, f, WithClock(clock))
	s, _ := signIn(t, tr, "secret")
	first := s.Token()
	assert.Equal(t, "cwt=token1", first.Value)
	assert.Equal(t, now.Add(100*time.Second), first.ExpiresAt)
	mu.Lock()
	now = now.Add(81 * time.Second)
	mu.Unlock()
	require.Eventually(t, func() bool { return s.Token().Value == "cwt=token2" }, waitFor, tick)
	// The new token is used on the event channel.
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.tokenPosts == 2 && len(f.acks) > 3
	}, waitFor, tick)
}

func TestTokenExpiryWithoutPassword(t *testing.T) {
	f := newFake(t)
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tr := newTestTransport(t, f, WithClock(clock))
	// Get a token with the password first, then sign in with it alone.
	s1, _ := signIn(t, tr, "secret")
	tok := s1.Token()
	require.NoError(t, s1.Close(context.Background()))
	rec := &recorder{}
	s, err := tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "toshm@contoso.com"}, Token: &tok}, rec.handle)
	require.NoError(t, err)
	defer s.Close(context.Background())
	assert.Equal(t, tok.Value, s.Token().Value)
	mu.Lock()
	now = tok.ExpiresAt.Add(time.Second)
	mu.Unlock()
	require.Eventually(t, func() bool { return len(eventsOf[sfb.SessionEnded](rec.all())) == 1 }, waitFor, tick)
	assert.ErrorIs(t, eventsOf[sfb.SessionEnded](rec.all())[0].Err, sfb.ErrCredentialsRequired)
}

func TestSignInWithoutPasswordOrToken(t *testing.T) {
	f := newFake(t)
	tr := newTestTransport(t, f)
	_, err := tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "toshm@contoso.com"}}, func(context.Context, sfb.Event) {})
	require.ErrorIs(t, err, sfb.ErrCredentialsRequired)
}

func TestCloseDeletesApplication(t *testing.T) {
	f := newFake(t)
	tr := newTestTransport(t, f)
	s, rec := signIn(t, tr, "secret")
	require.NoError(t, s.Close(context.Background()))
	assert.Len(t, f.recorded("DELETE", "/applications/101"), 1)
	f.pushSenders(convSender(incomingMessage("1", "data:,late")))
	// A running event loop would fetch this batch within one fake
	// long-poll (20 ms); after Close nothing may arrive.
	assert.Never(t, func() bool { return len(messages(rec.all())) > 0 }, 200*time.Millisecond, tick)
	_, err := s.SendMessage(context.Background(), "sip:a@b.c", sfb.Message{Text: "x"})
	assert.Error(t, err)
}

func TestLookupPerson(t *testing.T) {
	f := newFake(t)
	f.override = func(w http.ResponseWriter, r *http.Request, _ string) bool {
		switch {
		case strings.HasSuffix(r.URL.Path, "/people/lenea@contoso.com"):
			writeJSON(w, 200, `{"uri":"sip:lenea@contoso.com","name":"Lene Aaling","type":"User","_links":{"self":{"href":"x"}},"rel":"contact"}`)
		case strings.HasSuffix(r.URL.Path, "/people/search") && strings.Contains(r.URL.RawQuery, "adrianag"):
			writeJSON(w, 200, `{"rel":"search","_links":{"self":{"href":"x"}},"_embedded":{"contact":[{"rel":"contact","uri":"sip:adrianag@contoso.com","name":"Adriana Giorgi","_links":{"self":{"href":"y"}}}]}}`)
		case strings.HasSuffix(r.URL.Path, "/people/nameless@contoso.com"):
			writeJSON(w, 200, `{"uri":"sip:nameless@contoso.com","type":"User","_links":{"self":{"href":"x"}},"rel":"contact"}`)
		case strings.HasSuffix(r.URL.Path, "/people/broken@contoso.com"):
			writeJSON(w, 503, `{"code":"ServiceUnavailable","message":"busy"}`)
		case strings.HasSuffix(r.URL.Path, "/people/search"):
			writeJSON(w, 200, `{"rel":"search","moreResultsAvailable":false,"_links":{"self":{"href":"x"}},"_embedded":{"contact":[]}}`)
		default:
			return false
		}
		return true
	}
	tr := newTestTransport(t, f)
	s, _ := signIn(t, tr, "secret")
	tests := []struct {
		uri     sfb.URI
		want    string
		wantErr error
	}{
		{"sip:lenea@contoso.com", "Lene Aaling", nil},
		{"sip:adrianag@contoso.com", "Adriana Giorgi", nil},
		// A contact without a name exists: named by its address.
		{"sip:nameless@contoso.com", "nameless@contoso.com", nil},
		// Contact 404 and a search that finds nothing, as the reference
		// answers it: nobody has the address.
		{"sip:nobody@contoso.com", "nobody@contoso.com", sfb.ErrNotFound},
		{"sip:broken@contoso.com", "broken@contoso.com", sfb.ErrServerUnavailable},
	}
	for _, tt := range tests {
		p, err := s.LookupPerson(context.Background(), tt.uri)
		if tt.wantErr != nil {
			require.ErrorIs(t, err, tt.wantErr, tt.uri)
		} else {
			require.NoError(t, err, tt.uri)
		}
		assert.Equal(t, tt.want, p.DisplayName, tt.uri)
		assert.Equal(t, tt.uri, p.URI)
	}
	assert.Equal(t, "Tosh Meston", s.Self().DisplayName)
}

func TestOversizedAndEmptyMessagesRejected(t *testing.T) {
	f := newFake(t)
	tr := newTestTransport(t, f)
	s, _ := signIn(t, tr, "secret")
	for _, msg := range []sfb.Message{{}, {Text: strings.Repeat("x", MaxMessageBytes+1)}, {Text: "bad \xff"}} {
		_, err := s.SendMessage(context.Background(), "sip:lenea@contoso.com", msg)
		require.ErrorIs(t, err, sfb.ErrUnsupported)
	}
	assert.Empty(t, f.recorded("POST", "/communication/messagingInvitations"))
}

func TestErrorUnwrap(t *testing.T) {
	tests := []struct {
		err  error
		want error
	}{
		{&Error{Status: 503}, sfb.ErrServerUnavailable},
		{&Error{Status: 429}, sfb.ErrServerUnavailable},
		{&Error{Status: 404, Subcode: "ResourceNotFound"}, sfb.ErrNotFound},
		{&Error{Status: 401}, sfb.ErrCredentialsRequired},
		{&OAuthError{Status: 400, Code: "invalid_grant"}, sfb.ErrBadCredentials},
		{&OAuthError{Status: 500, Code: "server_error"}, sfb.ErrServerUnavailable},
		{&OAuthError{Status: 400, Code: "unsupported_grant_type"}, sfb.ErrUnsupported},
	}
	for _, tt := range tests {
		assert.ErrorIs(t, tt.err, tt.want, tt.err.Error())
	}
	assert.False(t, errors.Is(&Error{Status: 404, Subcode: SubcodeApplicationNotFound}, sfb.ErrNotFound))
	assert.True(t, applicationGone(fmt.Errorf("x: %w", &Error{Status: 404, Subcode: SubcodeInactiveApplicationExpired})))
	assert.True(t, applicationGone(fmt.Errorf("x: %w", &Error{Status: 410, Subcode: SubcodeInactiveApplicationExpired})))
	assert.False(t, applicationGone(&Error{Status: 410, Subcode: "Other"}))
}

func TestAcceptRetriedWhileServerUnavailable(t *testing.T) {
	tests := []struct {
		name      string
		failures  int
		status    int
		wantPosts int
	}{
		{"503 twice then accepted", 2, http.StatusServiceUnavailable, 3},
		{"not found is final", 5, http.StatusNotFound, 1},
		{"gives up after the limit", 100, http.StatusServiceUnavailable, maxAcceptAttempts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			var mu sync.Mutex
			failed := 0
			f.override = func(w http.ResponseWriter, r *http.Request, _ string) bool {
				if !strings.HasSuffix(r.URL.Path, "/accept") {
					return false
				}
				mu.Lock()
				defer mu.Unlock()
				if failed < tt.failures {
					failed++
					w.Header().Set("Retry-After", "0")
					writeJSON(w, tt.status, `{"code":"ServiceFailure","message":"try later"}`)
					return true
				}
				return false
			}
			tr := newTestTransport(t, f)
			_, rec := signIn(t, tr, "secret")
			f.pushSenders(incomingInvitation("inv1", "data:text/plain;charset=utf-8,first"))
			require.Eventually(t, func() bool { return len(f.recorded("POST", "/inv1/accept")) == tt.wantPosts }, waitFor, tick)
			require.Len(t, messages(rec.all()), 1, "the first message is delivered whatever happens to the accept")
			// Every accept of one invitation carries the same sessionContext.
			posts := f.recorded("POST", "/inv1/accept")
			for _, p := range posts {
				assert.Equal(t, posts[0].Query, p.Query)
			}
			// No further attempts after success, a final error or the limit.
			f.pushSenders("[]")
			require.Eventually(t, func() bool { return len(f.queue) == 0 }, waitFor, tick)
			assert.Len(t, f.recorded("POST", "/inv1/accept"), tt.wantPosts)
		})
	}
}

// TestInFlightSendFailsWhenConversationsAreGone: a message whose POST the
// server accepted waits for its completed event; when the server then
// resumes the event channel (closing the conversations) or loses the
// application, that event never comes, and SendMessage must say so at
// once instead of running into OperationTimeout.
func TestInFlightSendFailsWhenConversationsAreGone(t *testing.T) {
	tests := []struct {
		name  string
		fault fakeBatch
	}{
		{"resume", fakeBatch{body: `{"_links":{"self":{"href":"x"},"resume":{"href":"{APP}/events?ack=30"}},"sender":[]}`}},
		{"application gone", fakeBatch{status: 404, body: `{"code":"NotFound","subcode":"ApplicationNotFound"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			tm := testTimings()
			tm.OperationTimeout = time.Minute
			tr := newTestTransport(t, f, WithTimings(tm))
			s, _ := signIn(t, tr, "secret")
			outgoingScript(f, "Success")
			lene := sfb.URI("sip:lenea@contoso.com")
			_, err := s.SendMessage(context.Background(), lene, sfb.Message{Text: "one"})
			require.NoError(t, err)

			posted := make(chan struct{})
			f.mu.Lock()
			prev := f.override
			f.override = func(w http.ResponseWriter, r *http.Request, body string) bool {
				if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/messaging/messages") {
					return prev(w, r, body)
				}
				w.Header().Set("Location", "/ucwa/oauth/v1/applications/101/communication/conversations/c1/messaging/messages/lost")
				w.WriteHeader(201)
				close(posted)
				return true
			}
			f.mu.Unlock()
			done := make(chan error, 1)
			go func() {
				_, err := s.SendMessage(context.Background(), lene, sfb.Message{Text: "two"})
				done <- err
			}()
			select {
			case <-posted:
			case <-time.After(waitFor):
				t.Fatal("sendMessage never posted")
			}
			f.push(tt.fault)
			select {
			case err := <-done:
				require.Error(t, err)
				assert.ErrorIs(t, err, sfb.ErrServerUnavailable)
				assert.ErrorIs(t, err, errOutcomeUnknown)
			case <-time.After(waitFor):
				t.Fatal("SendMessage still waits for a completion that cannot come")
			}
		})
	}
}

// TestFirstMessageRepeatDroppedWhateverTheDelay: ReceiveAnIM.md's repeat
// of the invitation's first message is recognised by being the
// conversation's first message event, not by the clock: a homeserver
// outage that holds the handler, or a dropped event channel, may delay it
// well past any window. A later message with the same text is new.
func TestFirstMessageRepeatDroppedWhateverTheDelay(t *testing.T) {
	f := newFake(t)
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tr := newTestTransport(t, f, WithClock(clock))
	_, rec := signIn(t, tr, "secret")
	f.pushSenders(incomingInvitation("inv1", "data:text/plain;charset=utf-8,Hi+Tosh"))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	f.pushSenders(`[` + strings.Trim(convSender(incomingMessage("2", "data:text/plain;charset=utf-8,Hi+Tosh")), "[]") + `,` + messagingConnected() + `]`)
	f.pushSenders(convSender(incomingMessage("3", "data:text/plain;charset=utf-8,Hi+Tosh")))
	require.Eventually(t, func() bool { return len(messages(rec.all())) >= 2 }, waitFor, tick)
	require.Eventually(t, func() bool { return len(f.queue) == 0 }, waitFor, tick)
	f.pushSenders("[]")
	require.Eventually(t, func() bool { return len(f.queue) == 0 }, waitFor, tick)
	msgs := messages(rec.all())
	require.Len(t, msgs, 2, "the repeat is dropped, the genuine same-text message is not")
	assert.True(t, strings.HasSuffix(msgs[0].ID, "/messagingInvitations/inv1"))
	assert.True(t, strings.HasSuffix(msgs[1].ID, "/messaging/messages/3"))
}

// TestResumedSessionDoesNotRepeatFirstMessage: a session resumed from the
// state of one that had emitted an invitation's first message gets the
// rest of the invitation again when the server redelivers the batch that
// followed (ReceiveAnIM.md: the completed invitation carries the message
// link, then the message event repeats it). Only the new message is news.
func TestResumedSessionDoesNotRepeatFirstMessage(t *testing.T) {
	s := newOfflineSession(t)
	rec := &recorder{}
	s.handler = rec.handle
	app := "/ucwa/oauth/v1/applications/101"
	s.firsts[s.abs(app+"/communication/conversations/c1")] = firstMessage{sum: textDigest("Hi Tosh"), at: s.t.now()}

	completed := strings.Replace(incomingInvitation("inv1", "data:text/plain;charset=utf-8,Hi+Tosh%0d%0a"), `"type":"started"`, `"status":"Success","type":"completed"`, 1)
	batch := strings.Trim(completed, "[]") + "," + strings.Trim(convSender(
		incomingMessage("2", "data:text/plain;charset=utf-8,Hi+Tosh%0d%0a"),
		incomingMessage("3", "data:text/plain;charset=utf-8,second")), "[]")
	var evs Events
	require.NoError(t, json.Unmarshal([]byte(`{"_links":{"next":{"href":"`+app+`/events?ack=5"}},"sender":[`+strings.ReplaceAll(batch, "{APP}", app)+`]}`), &evs))
	s.processBatch(evs, app+"/events?ack=5")

	msgs := messages(rec.all())
	require.Len(t, msgs, 1, "%+v", msgs)
	assert.Equal(t, "second", msgs[0].Message.Text)
}

// TestTypingRepeatedWhileTyping: setIsTyping only starts a short server
// timer (setIsTyping_ref.md), so the client repeats it while the user
// types, and stops when the user stops or sends the message.
func TestTypingRepeatedWhileTyping(t *testing.T) {
	tests := []struct {
		name string
		stop func(s sfb.Session, lene sfb.URI) error
	}{
		{"stopped typing", func(s sfb.Session, lene sfb.URI) error { return s.SetTyping(context.Background(), lene, false) }},
		{"sent the message", func(s sfb.Session, lene sfb.URI) error {
			_, err := s.SendMessage(context.Background(), lene, sfb.Message{Text: "done"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			tm := testTimings()
			tm.TypingRefresh = 10 * time.Millisecond
			tm.TypingMax = time.Minute
			tr := newTestTransport(t, f, WithTimings(tm))
			s, rec := signIn(t, tr, "secret")
			messageScript(f, func(int) string { return "Success" })
			lene := sfb.URI("sip:lenea@contoso.com")
			f.pushSenders(incomingInvitation("inv1", "data:text/plain;charset=utf-8,hi"))
			f.pushSenders(`[` + messagingConnected() + `]`)
			require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)
			require.Eventually(t, func() bool { return s.(*session).activeConv(lene) != nil }, waitFor, tick)

			require.NoError(t, s.SetTyping(context.Background(), lene, true))
			require.Eventually(t, func() bool { return len(f.recorded("POST", "/messaging/typing")) >= 4 }, waitFor, tick, "setIsTyping repeated")
			require.NoError(t, tt.stop(s, lene))
			sess := s.(*session)
			require.Eventually(t, func() bool {
				sess.mu.Lock()
				defer sess.mu.Unlock()
				return len(sess.typing) == 0
			}, waitFor, tick)
			n := len(f.recorded("POST", "/messaging/typing"))
			assert.Never(t, func() bool { return len(f.recorded("POST", "/messaging/typing")) > n+1 }, 100*time.Millisecond, 10*time.Millisecond, "repetition stopped")
		})
	}
}

// TestStartMessagingFirstMessageFormat: the invitation's message is a
// data URI (messagingInvitation_ref.md); formatted text goes as
// text/html, and as plain text only when the server refuses the HTML.
func TestStartMessagingFirstMessageFormat(t *testing.T) {
	tests := []struct {
		name       string
		msg        sfb.Message
		refuseHTML int
		want       []string // media type and text of each invitation's message
	}{
		{"plain", sfb.Message{Text: "hi"}, 0, []string{"text/plain", "hi"}},
		{"html", sfb.Message{Text: "hi bold", HTML: "hi <b>bold</b>"}, 0, []string{"text/html", "hi <b>bold</b>"}},
		{"html only", sfb.Message{HTML: "<i>x</i>"}, 0, []string{"text/html", "<i>x</i>"}},
		{"html refused 415", sfb.Message{Text: "hi bold", HTML: "hi <b>bold</b>"}, 415, []string{"text/html", "hi <b>bold</b>", "text/plain", "hi bold"}},
		{"html refused 400", sfb.Message{HTML: "<i>x</i>"}, 400, []string{"text/html", "<i>x</i>", "text/plain", "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			tr := newTestTransport(t, f)
			s, _ := signIn(t, tr, "secret")
			outgoingScript(f, "Success")
			f.mu.Lock()
			prev := f.override
			f.override = func(w http.ResponseWriter, r *http.Request, body string) bool {
				if tt.refuseHTML != 0 && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/communication/messagingInvitations") &&
					strings.Contains(body, "data:text/html") {
					writeJSON(w, tt.refuseHTML, `{"code":"BadRequest","message":"unsupported message format"}`)
					return true
				}
				return prev(w, r, body)
			}
			f.mu.Unlock()
			_, err := s.SendMessage(context.Background(), "sip:lenea@contoso.com", tt.msg)
			require.NoError(t, err)
			var got []string
			for _, inv := range f.recorded("POST", "/communication/messagingInvitations") {
				var body struct {
					Links struct {
						Message struct{ Href string } `json:"message"`
					} `json:"_links"`
				}
				require.NoError(t, json.Unmarshal([]byte(inv.Body), &body))
				d, err := ParseDataURI(body.Links.Message.Href)
				require.NoError(t, err)
				got = append(got, d.MediaType, string(d.Data))
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestUndecodableEventBodies: a few undecodable responses in a row are
// retried quietly; more report the session disconnected, and the first
// good body connects it again with nothing lost.
func TestUndecodableEventBodies(t *testing.T) {
	tests := []struct {
		name string
		bad  int
		want []bool // Connected of each SessionState
	}{
		{"one", 1, nil},
		{"below the limit", maxUndecodable - 1, nil},
		{"at the limit", maxUndecodable, []bool{false, true}},
		{"many", maxUndecodable + 3, []bool{false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			tr := newTestTransport(t, f)
			_, rec := signIn(t, tr, "secret")
			for range tt.bad {
				f.push(fakeBatch{body: `{"_links":{"next":`})
			}
			f.pushSenders(convSender(incomingMessage("1", "data:,after")))
			require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)
			var got []bool
			for _, st := range eventsOf[sfb.SessionState](rec.all()) {
				got = append(got, st.Connected)
				if !st.Connected {
					assert.ErrorIs(t, st.Err, sfb.ErrServerUnavailable)
					assert.Contains(t, st.Err.Error(), "undecodable")
				}
			}
			assert.Equal(t, tt.want, got)
			assert.Equal(t, "after", messages(rec.all())[0].Message.Text)
			assert.Empty(t, eventsOf[sfb.SessionEnded](rec.all()))
		})
	}
}

// TestTokenRenewalFailures: a renewal the server cannot answer is retried
// with a growing (capped) backoff, not every TokenCheck; a refused
// password or grant ends the session with the matching error.
func TestTokenRenewalFailures(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantEnd error
	}{
		{"server error backs off", 503, `{"error":"server_error"}`, nil},
		{"bad password ends", 400, `{"error":"invalid_grant"}`, sfb.ErrBadCredentials},
		{"grant refused ends", 400, `{"error":"unsupported_grant_type"}`, sfb.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.expiresIn = 100
			var mu sync.Mutex
			now := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			tr := newTestTransport(t, f, WithClock(clock))
			_, rec := signIn(t, tr, "secret")
			var attempts []time.Time
			f.mu.Lock()
			f.override = func(w http.ResponseWriter, r *http.Request, _ string) bool {
				if r.URL.Path != "/WebTicket/oauthtoken" {
					return false
				}
				f.mu.Lock()
				attempts = append(attempts, time.Now())
				f.mu.Unlock()
				writeJSON(w, tt.status, tt.body)
				return true
			}
			f.mu.Unlock()
			mu.Lock()
			now = now.Add(81 * time.Second)
			mu.Unlock()
			if tt.wantEnd != nil {
				require.Eventually(t, func() bool { return len(eventsOf[sfb.SessionEnded](rec.all())) == 1 }, waitFor, tick)
				assert.ErrorIs(t, eventsOf[sfb.SessionEnded](rec.all())[0].Err, tt.wantEnd)
				f.mu.Lock()
				defer f.mu.Unlock()
				assert.Len(t, attempts, 1, "not asked again")
				return
			}
			const n = 7
			require.Eventually(t, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return len(attempts) >= n }, waitFor, tick)
			f.mu.Lock()
			got := append([]time.Time(nil), attempts[:n]...)
			f.mu.Unlock()
			// The backoff doubles from BackoffMin to BackoffMax, with
			// jitter down to half: the later gaps are at least half the cap.
			tm := testTimings()
			for i := n - 2; i < n; i++ {
				assert.GreaterOrEqual(t, got[i].Sub(got[i-1]), tm.BackoffMax/2, "gap before attempt %d", i+1)
			}
			assert.Empty(t, eventsOf[sfb.SessionEnded](rec.all()), "a server error does not end the session")
		})
	}
}

// A completed message event without a status of its own: the delivery
// status is the message resource's (message_ref.md: Succeeded, Failed).
func TestSendMessageStatusFromResource(t *testing.T) {
	f := newFake(t)
	tr := newTestTransport(t, f)
	s, _ := signIn(t, tr, "secret")
	outgoingScript(f, "Success")
	f.mu.Lock()
	prev := f.override
	f.override = func(w http.ResponseWriter, r *http.Request, body string) bool {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/messaging/messages") {
			return prev != nil && prev(w, r, body)
		}
		f.mu.Lock()
		f.msgN++
		n := f.msgN
		f.mu.Unlock()
		st := "Succeeded"
		if n == 2 {
			st = "Failed"
		}
		href := fmt.Sprintf("/ucwa/oauth/v1/applications/101/communication/conversations/c1/messaging/messages/out%d", n)
		w.Header().Set("Location", href)
		w.WriteHeader(201)
		f.pushSenders(convSender(`{"link":{"rel":"message","href":"` + href + `"},
"_embedded":{"message":{"direction":"Outgoing","status":"` + st + `","timeStamp":"\/Date(1364327898968)\/","_links":{"self":{"href":"` + href + `"}},"rel":"message"}},"type":"completed"}`))
		return true
	}
	f.mu.Unlock()
	ctx := context.Background()
	lene := sfb.URI("sip:lenea@contoso.com")
	_, err := s.SendMessage(ctx, lene, sfb.Message{Text: "first"})
	require.NoError(t, err)
	sent, err := s.SendMessage(ctx, lene, sfb.Message{Text: "delivered"})
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(sent.ID, "/messages/out1"), sent.ID)
	_, err = s.SendMessage(ctx, lene, sfb.Message{Text: "not delivered"})
	require.ErrorIs(t, err, sfb.ErrDeliveryFailed)
}

// TestConversationEndedOnceUnderRace: the server ending a conversation
// (event goroutine) while a send drops it as stale (caller's goroutine)
// reports it at most once, and the two never touch it unsynchronised
// (run with -race).
func TestConversationEndedOnceUnderRace(t *testing.T) {
	for range 50 {
		s := newOfflineSession(t)
		rec := &recorder{}
		s.handler = rec.handle
		c := s.upsertConv("https://lyncweb.contoso.com/c1", "sip:lenea@contoso.com", "t1")
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); s.endConversation(c.href) }()
		go func() { defer wg.Done(); s.dropConv(c) }()
		wg.Wait()
		assert.LessOrEqual(t, len(eventsOf[sfb.ConversationEnded](rec.all())), 1)
	}
}

// A failed delivery says what kind of failure it was, so that the sender
// is not told that an offline colleague does not exist.
func TestDeliveryErrorKinds(t *testing.T) {
	tests := []struct {
		code, subcode string
		want, not     error
	}{
		{"NotFound", "DestinationNotFound", sfb.ErrNotFound, sfb.ErrRecipientUnavailable},
		{"RemoteFailure", "Unreachable", sfb.ErrRecipientUnavailable, sfb.ErrNotFound},
		{"RemoteFailure", "TemporarilyUnavailable", sfb.ErrRecipientUnavailable, sfb.ErrNotFound},
		{"Timeout", "", sfb.ErrRecipientUnavailable, sfb.ErrNotFound},
		{"RemoteFailure", "Declined", sfb.ErrDeclined, sfb.ErrNotFound},
		{"Forbidden", "DoNotDisturb", sfb.ErrDeclined, sfb.ErrNotFound},
		{"ServiceFailure", "", sfb.ErrDeliveryFailed, sfb.ErrNotFound},
	}
	for _, tt := range tests {
		err := deliveryError(opResult{status: "Failure", reason: &ErrorBody{Code: tt.code, Subcode: tt.subcode, Message: "m"}})
		assert.ErrorIs(t, err, sfb.ErrDeliveryFailed, tt.subcode)
		assert.ErrorIs(t, err, tt.want, "%s/%s", tt.code, tt.subcode)
		assert.NotErrorIs(t, err, tt.not, "%s/%s", tt.code, tt.subcode)
	}
}
