package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/msgconv"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

const bob = sfb.URI("sip:bob@contoso.com")

func TestTokenPersistedAfterRenewal(t *testing.T) {
	e := newTestEnv(t)
	ul, _, session := e.mustLogin()
	renewed := sfb.Token{Value: "renewed-token", ExpiresAt: time.Now().Add(16 * time.Hour).Truncate(time.Millisecond)}
	session.renew(renewed)

	require.Eventually(t, func() bool {
		cred := e.credential(string(ul.ID))
		return cred.Token != nil && e.open(cred.Token, tokenAD(ul.ID)) == "renewed-token"
	}, 5*time.Second, 2*time.Millisecond)
	cred := e.credential(string(ul.ID))
	assert.True(t, cred.TokenExpiry.Equal(renewed.ExpiresAt))
	assert.Equal(t, "alice-pw", e.open(cred.Password, passwordAD(ul.ID)), "renewal keeps the password")
	require.Eventually(t, func() bool {
		actions := e.audit(string(ul.ID))
		return len(actions) > 0 && actions[0] == database.AuditTokenRenewed
	}, 5*time.Second, 2*time.Millisecond)

	// The next start uses the renewed token.
	ul.Client.Disconnect()
	e2 := newTestEnv(t, withDB(e.dbPath), withTransport(e.transport))
	ul2, err := e2.br.GetExistingUserLoginByID(e2.ctx, ul.ID)
	require.NoError(t, err)
	ul2.Client.Connect(e2.ctx)
	e2.waitState(status.StateConnected)
	reqs := e.transport.signInRequests()
	assert.Equal(t, "renewed-token", reqs[len(reqs)-1].Token.Value)
}

func TestMessageFromSfBQueued(t *testing.T) {
	e := newTestEnv(t)
	ul, _, session := e.mustLogin()
	when := time.UnixMilli(1700000000123)
	session.emit(sfb.MessageReceived{
		ID:           "msg-1",
		Conversation: sfb.Conversation{ThreadID: "thread-a", Peer: bob},
		From:         sfb.Person{URI: bob, DisplayName: "Bob Builder"},
		Message:      sfb.Message{Text: "hello", HTML: `<span style="font-size:10pt">hello <b>there</b></span>`},
		Time:         when,
	})
	events := e.queuedEvents()
	require.Len(t, events, 1)
	msg, ok := events[0].(*simplevent.Message[sfb.MessageReceived])
	require.True(t, ok, "got %T", events[0])
	assert.Equal(t, bridgev2.RemoteEventMessage, msg.GetType())
	assert.Equal(t, networkid.PortalKey{ID: "bob@contoso.com", Receiver: ul.ID}, msg.GetPortalKey())
	assert.Equal(t, networkid.MessageID("msg-1"), msg.GetID())
	assert.Equal(t, networkid.UserID("bob@contoso.com"), msg.GetSender().Sender)
	assert.False(t, msg.GetSender().IsFromMe)
	assert.True(t, msg.ShouldCreatePortal())
	assert.True(t, msg.GetTimestamp().Equal(when))

	converted, err := msg.ConvertMessage(e.ctx, nil, nil)
	require.NoError(t, err)
	require.Len(t, converted.Parts, 1)
	assert.Equal(t, event.EventMessage, converted.Parts[0].Type)
	assert.Equal(t, "hello there", converted.Parts[0].Content.Body, "the text of the HTML")
	assert.Equal(t, "hello <b>there</b>", converted.Parts[0].Content.FormattedBody)
}

func TestLongMessageFromSfBIsSplitInOrder(t *testing.T) {
	e := newTestEnv(t)
	_, _, session := e.mustLogin()
	first, second := strings.Repeat("first ", 8000), strings.Repeat("second ", 8000)
	session.emit(sfb.MessageReceived{
		ID:           "msg-long",
		Conversation: sfb.Conversation{ThreadID: "thread-a", Peer: bob},
		From:         sfb.Person{URI: bob},
		Message:      sfb.Message{Text: first + "\n\n" + second},
		Time:         time.Now(),
	})
	events := e.queuedEvents()
	require.Len(t, events, 1)
	converted, err := events[0].(*simplevent.Message[sfb.MessageReceived]).ConvertMessage(e.ctx, nil, nil)
	require.NoError(t, err)
	require.Len(t, converted.Parts, 2, "one event each, nothing cut off")
	assert.Equal(t, strings.TrimSpace(first), converted.Parts[0].Content.Body)
	assert.Equal(t, strings.TrimSpace(second), converted.Parts[1].Content.Body)
	assert.NotEqual(t, converted.Parts[0].ID, converted.Parts[1].ID,
		"each part has its own ID, from which its transaction ID is derived")
	assert.Equal(t, networkid.PartID(""), converted.Parts[0].ID, "the first part keeps the ID of a message of one part")
}

func TestPortalKeyIsThePairNotTheConversation(t *testing.T) {
	e := newTestEnv(t)
	ul, _, session := e.mustLogin()
	for i, thread := range []string{"thread-a", "thread-b", ""} {
		session.emit(sfb.MessageReceived{
			ID:           fmt.Sprintf("msg-%d", i),
			Conversation: sfb.Conversation{ThreadID: thread, Peer: bob},
			From:         sfb.Person{URI: bob},
			Message:      sfb.Message{Text: "hi"},
		})
	}
	// A message the user sent from their own SfB client (coexistence)
	// lands in the same room, as from the user.
	session.emit(sfb.MessageReceived{
		ID:           "msg-own",
		Conversation: sfb.Conversation{ThreadID: "thread-c", Peer: bob},
		From:         sfb.Person{URI: "sip:alice@contoso.com"},
		Message:      sfb.Message{Text: "mine"},
	})
	events := e.queuedEvents()
	require.Len(t, events, 4)
	want := networkid.PortalKey{ID: "bob@contoso.com", Receiver: ul.ID}
	for _, evt := range events {
		assert.Equal(t, want, evt.GetPortalKey())
	}
	assert.True(t, events[3].GetSender().IsFromMe)
	assert.Equal(t, ul.ID, events[3].GetSender().SenderLogin)
}

func TestMessageWithoutIDGetsStableID(t *testing.T) {
	e := newTestEnv(t)
	_, _, session := e.mustLogin()
	m := sfb.MessageReceived{Conversation: sfb.Conversation{Peer: bob}, From: sfb.Person{URI: bob}, Message: sfb.Message{Text: "x"}, Time: time.UnixMilli(5)}
	session.emit(m)
	session.emit(m)
	session.emit(sfb.MessageReceived{From: sfb.Person{}, Message: sfb.Message{Text: "no sender"}})
	events := e.queuedEvents()
	require.Len(t, events, 2, "a message without sender is dropped")
	id1 := events[0].(bridgev2.RemoteMessage).GetID()
	assert.NotEmpty(t, id1)
	assert.Equal(t, id1, events[1].(bridgev2.RemoteMessage).GetID(), "a redelivery gets the same ID")
}

func TestTypingFromSfB(t *testing.T) {
	e := newTestEnv(t)
	ul, _, session := e.mustLogin()
	session.emit(sfb.TypingChanged{Conversation: sfb.Conversation{Peer: bob}, From: bob, Typing: true})
	session.emit(sfb.TypingChanged{Conversation: sfb.Conversation{Peer: bob}, From: bob, Typing: false})
	events := e.queuedEvents()
	require.Len(t, events, 2)
	start, ok := events[0].(*simplevent.Typing)
	require.True(t, ok)
	assert.Equal(t, bridgev2.RemoteEventTyping, start.GetType())
	assert.Equal(t, networkid.PortalKey{ID: "bob@contoso.com", Receiver: ul.ID}, start.GetPortalKey())
	assert.Equal(t, typingTimeout, start.GetTimeout())
	assert.Zero(t, events[1].(*simplevent.Typing).GetTimeout(), "stopped typing clears at once")
}

func TestConversationEndedIsInvisible(t *testing.T) {
	e := newTestEnv(t)
	_, _, session := e.mustLogin()
	before := len(e.matrix.stateEvents())
	session.emit(sfb.ConversationEnded{Conversation: sfb.Conversation{ThreadID: "t", Peer: bob}})
	assert.Empty(t, e.queuedEvents())
	assert.Len(t, e.matrix.stateEvents(), before)
}

func TestSessionEventsToBridgeStates(t *testing.T) {
	tests := []struct {
		name       string
		evt        sfb.Event
		want       status.BridgeStateEvent
		code       status.BridgeStateErrorCode
		action     status.BridgeStateUserAction
		audit      string
		loggedIn   bool
		reconnects bool
	}{
		{"interrupted", sfb.SessionState{Connected: false, Err: errors.New("event channel reset")},
			status.StateTransientDisconnect, StateErrSessionInterrupted, "", "", true, false},
		{"token expired without password", sfb.SessionEnded{Err: fmt.Errorf("renew: %w", sfb.ErrCredentialsRequired)},
			status.StateBadCredentials, StateErrCredentialsNeeded, status.UserActionRelogin, database.AuditReloginRequired, false, false},
		{"password changed", sfb.SessionEnded{Err: fmt.Errorf("renew: %w", sfb.ErrBadCredentials)},
			status.StateBadCredentials, StateErrBadCredentials, status.UserActionRelogin, database.AuditReloginRequired, false, false},
		{"server dropped the application", sfb.SessionEnded{Err: fmt.Errorf("410: %w", sfb.ErrServerUnavailable)},
			status.StateConnected, "", "", "", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			ul, client, session := e.mustLogin()
			mark := e.stateMark()
			session.emit(tt.evt)
			if tt.reconnects {
				e.waitStates(mark, status.StateTransientDisconnect, status.StateConnected)
				assert.Equal(t, 2, e.transport.sessionCount())
				assert.Same(t, e.transport.lastSession(), client.currentSession())
				return
			}
			state := e.waitStates(mark, tt.want)
			assert.Equal(t, tt.code, state.Error)
			assert.Equal(t, tt.action, state.UserAction)
			assert.NotEmpty(t, state.Message)
			assert.Equal(t, tt.loggedIn, client.IsLoggedIn())
			if tt.audit != "" {
				assert.Equal(t, tt.audit, e.audit(string(ul.ID))[0])
			}
			if tt.want == status.StateTransientDisconnect {
				mark = e.stateMark()
				session.emit(sfb.SessionState{Connected: true})
				e.waitStates(mark, status.StateConnected)
			}
		})
	}
}

func TestConnectRetriesWhileServerUnavailable(t *testing.T) {
	e := newTestEnv(t)
	ul, _, _ := e.mustLogin()
	ul.Client.Disconnect()
	e.transport.failWith(fmt.Errorf("503: %w", sfb.ErrServerUnavailable), fmt.Errorf("503: %w", sfb.ErrServerUnavailable))
	before := len(e.transport.signInRequests())
	mark := e.stateMark()
	ul.Client.Connect(e.ctx)
	e.waitStates(mark, status.StateConnecting, status.StateTransientDisconnect, status.StateConnected)
	assert.Equal(t, before+3, len(e.transport.signInRequests()), "two failures, then success")
	var transient int
	for _, s := range e.matrix.stateEvents() {
		if s.StateEvent == status.StateTransientDisconnect {
			transient++
			assert.Equal(t, StateErrUnavailable, s.Error)
		}
	}
	assert.Positive(t, transient)
}

func TestConnectBadCredentials(t *testing.T) {
	e := newTestEnv(t)
	ul, _, _ := e.mustLogin()
	ul.Client.Disconnect()
	e.transport.mu.Lock()
	e.transport.passwords["alice@contoso.com"] = "changed"
	e.transport.tokens = map[string]sfb.Token{} // the server forgot the token
	e.transport.mu.Unlock()
	mark := e.stateMark()
	ul.Client.Connect(e.ctx)
	state := e.waitStates(mark, status.StateBadCredentials)
	assert.Equal(t, status.UserActionRelogin, state.UserAction)
	assert.Equal(t, StateErrBadCredentials, state.Error)
	assert.False(t, ul.Client.IsLoggedIn())
}

func TestLogoutRemote(t *testing.T) {
	e := newTestEnv(t)
	ul, client, session := e.mustLogin()
	client.LogoutRemote(e.ctx)
	assert.True(t, session.isClosed())
	assert.False(t, client.IsLoggedIn())
	_, err := e.conn.db.GetCredential(e.ctx, string(ul.ID))
	assert.ErrorIs(t, err, database.ErrNotFound)
	actions := e.audit(string(ul.ID))
	assert.Contains(t, actions, database.AuditLogout)
	assert.Contains(t, actions, database.AuditCredentialsDeleted)

	// Events of the closed session go nowhere.
	e.qmu.Lock()
	e.queued = nil
	e.qmu.Unlock()
	session.emit(sfb.MessageReceived{ID: "late", Conversation: sfb.Conversation{Peer: bob}, From: sfb.Person{URI: bob}, Message: sfb.Message{Text: "x"}})
	assert.Empty(t, e.queuedEvents())
}

// Matrix messages still queued for SfB at logout are not dropped
// silently: each sender gets a failure status and a notice in the room.
func TestLogoutReportsQueuedMessages(t *testing.T) {
	e := newTestEnv(t)
	ul, client, session := e.mustLogin()
	portal := e.portalFor(ul.ID, bob)
	// SfB never answers the first send; the logout's disconnect cancels
	// it, so both messages are still queued.
	sending := make(chan struct{}, 2)
	e.transport.setSendCtxHook(func(ctx context.Context, _ sfb.URI, _ sfb.Message) error {
		sending <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	for _, evtID := range []string{"$q1", "$q2"} {
		resp, err := client.HandleMatrixMessage(e.ctx, matrixMessage(portal, evtID, &event.MessageEventContent{MsgType: event.MsgText, Body: "queued " + evtID}))
		require.NoError(t, err)
		require.True(t, resp.Pending)
	}
	select {
	case <-sending:
	case <-time.After(waitFor):
		t.Fatal("the outbox never sent the first message")
	}
	client.LogoutRemote(e.ctx)
	requireOutboxEmpty(t, e, ul.ID)
	statuses := e.matrix.messageStatuses()
	require.Len(t, statuses, 2, "one status per queued message")
	for i, st := range statuses {
		assert.Equal(t, id.EventID(fmt.Sprintf("$q%d", i+1)), st.Info.SourceEventID)
		assert.Equal(t, portal.MXID, st.Info.RoomID)
		assert.Equal(t, event.MessageStatusFail, st.Status.Status)
		assert.True(t, st.Status.SendNotice, "the sender is told in the room")
		assert.Contains(t, st.Status.Message, "logged out of Skype for Business")
		assert.NoError(t, st.Ctx.Err())
	}
	assert.Empty(t, session.sentMessages())
}

func matrixMessage(portal *bridgev2.Portal, eventID string, content *event.MessageEventContent) *bridgev2.MatrixMessage {
	return &bridgev2.MatrixMessage{MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
		Event: &event.Event{ID: id.EventID(eventID), Type: event.EventMessage, RoomID: portal.MXID, Sender: "@alice:example.org",
			Content: event.Content{Parsed: content}},
		Content: content,
		Portal:  portal,
	}}
}

func TestHandleMatrixMessage(t *testing.T) {
	e := newTestEnv(t)
	ul, client, session := e.mustLogin()
	portal := e.portalFor(ul.ID, bob)

	resp, err := client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$m1", &event.MessageEventContent{
		MsgType: event.MsgText, Body: "**hi** bob", Format: event.FormatHTML, FormattedBody: "<strong>hi</strong> bob<script>x</script>",
	}))
	require.NoError(t, err)
	assert.True(t, resp.Pending, "settled by the echo, not here")
	assert.Nil(t, resp.DB)

	// The echo carries the SfB ID, which bridgev2 stores for the pending
	// message (matched by the transaction ID), and success.
	echo := e.waitEcho("$m1")
	assert.Equal(t, networkid.MessageID("sfb-msg-1"), echo.GetID())
	assert.Equal(t, networkid.TransactionID("$m1"), echo.GetTransactionID())
	assert.Equal(t, portalKeyFor(bob, ul.ID), echo.GetPortalKey())
	assert.True(t, echo.GetSender().IsFromMe)
	assert.Equal(t, networkid.UserID("alice@contoso.com"), echo.GetSender().Sender)
	save, statusErr := handleEcho(echo, &mxdb.Message{})
	assert.True(t, save)
	assert.NoError(t, statusErr)
	_, err = echo.ConvertMessage(e.ctx, nil, nil)
	assert.ErrorIs(t, err, bridgev2.ErrIgnoringRemoteEvent, "an echo never shows up as a message")

	sent := session.sentMessages()
	require.Len(t, sent, 1)
	assert.Equal(t, bob, sent[0].To)
	assert.Equal(t, sfb.Message{Text: "**hi** bob", HTML: "<strong>hi</strong> bob"}, sent[0].Msg)

	_, err = client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$m2", &event.MessageEventContent{MsgType: event.MsgEmote, Body: "waves"}))
	require.NoError(t, err)
	_, err = client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$m3", &event.MessageEventContent{MsgType: event.MsgNotice, Body: "note"}))
	require.NoError(t, err)
	e.waitEcho("$m3")
	sent = session.sentMessages()
	require.Len(t, sent, 3)
	assert.Equal(t, "* Alice Example waves", sent[1].Msg.Text)
	assert.Equal(t, "note", sent[2].Msg.Text)
	requireOutboxEmpty(t, e, ul.ID)
}

func requireOutboxEmpty(t *testing.T, e *testEnv, loginID networkid.UserLoginID) {
	t.Helper()
	require.Eventually(t, func() bool {
		peers, err := e.conn.db.OutboxPeers(e.ctx, string(loginID))
		return err == nil && len(peers) == 0
	}, 5*time.Second, time.Millisecond, "the outbox keeps settled messages")
}

// requireNotice asserts err is a message status that fails the event and
// makes the bot post a notice containing want.
func requireNotice(t *testing.T, err error, wantStatus event.MessageStatus, want string) bridgev2.MessageStatus {
	t.Helper()
	var ms bridgev2.MessageStatus
	require.ErrorAs(t, err, &ms)
	assert.True(t, ms.SendNotice, "the sender must be told")
	assert.Equal(t, wantStatus, ms.Status)
	assert.False(t, ms.ErrorAsMessage)
	assert.Contains(t, ms.Message, want)
	return ms
}

// A Matrix message longer than SfB takes is refused as a whole, with a
// notice naming the limit; no part of it reaches SfB.
func TestTooLongMatrixMessageIsRefusedNamingTheLimit(t *testing.T) {
	e := newTestEnv(t)
	ul, client, session := e.mustLogin()
	portal := e.portalFor(ul.ID, bob)
	long := strings.Repeat("word ", msgconv.MaxSfBMessageBytes/5+1)
	_, err := client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$long", &event.MessageEventContent{MsgType: event.MsgText, Body: long}))
	requireNotice(t, err, event.MessageStatusFail, fmt.Sprintf("at most %d bytes", msgconv.MaxSfBMessageBytes))
	assert.Empty(t, session.sentMessages(), "nothing was sent, not even the part that fits")
	requireOutboxEmpty(t, e, ul.ID)
}

func TestUnsupportedMatrixMessagesGetNotices(t *testing.T) {
	e := newTestEnv(t)
	ul, client, session := e.mustLogin()
	portal := e.portalFor(ul.ID, bob)
	tests := []struct {
		msgType event.MessageType
		want    string
	}{
		// Without network.media.public_url, files have no way to SfB.
		{event.MsgImage, "not set up to pass files"},
		{event.MsgFile, "not set up to pass files"},
		{event.MsgAudio, "not set up to pass files"},
		{event.MsgVideo, "not set up to pass files"},
		{event.MsgLocation, "cannot receive locations"},
		{event.CapMsgSticker, "cannot receive stickers"},
		{event.MessageType("org.example.custom"), "org.example.custom"},
	}
	for _, tt := range tests {
		t.Run(string(tt.msgType), func(t *testing.T) {
			_, err := client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$u-"+string(tt.msgType), &event.MessageEventContent{MsgType: tt.msgType, Body: "x.png", URL: "mxc://example.org/abc"}))
			ms := requireNotice(t, err, event.MessageStatusFail, tt.want)
			assert.Equal(t, event.MessageStatusUnsupported, ms.ErrorReason)
			assert.ErrorIs(t, err, sfb.ErrUnsupported)
		})
	}
	assert.Empty(t, session.sentMessages(), "nothing reached SfB")

	// Deletions bridgev2 refuses itself, at debug level: an error from a
	// handler would be an error-level log line. Edits and reactions have
	// handlers of their own (relation_test.go).
	var api bridgev2.NetworkAPI = client
	assert.NotImplements(t, (*bridgev2.RedactionHandlingNetworkAPI)(nil), api)
	assert.Implements(t, (*bridgev2.EditHandlingNetworkAPI)(nil), api)
	assert.Implements(t, (*bridgev2.ReactionHandlingNetworkAPI)(nil), api)
	_, err := client.HandleMatrixPollStart(e.ctx, &bridgev2.MatrixPollStart{})
	requireNotice(t, err, event.MessageStatusFail, "no polls")

	_, err = client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$empty", &event.MessageEventContent{MsgType: event.MsgText, Body: " \x00 "}))
	requireNotice(t, err, event.MessageStatusFail, "no text")
	_, err = client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$long", &event.MessageEventContent{MsgType: event.MsgText, Body: strings.Repeat("x", 40*1024)}))
	requireNotice(t, err, event.MessageStatusFail, "too long")
	assert.Empty(t, session.sentMessages())
}

// A failure of SfB comes back as the echo's status: the message fails
// with a notice in the room, and nothing is stored for it.
func TestDeliveryFailures(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status event.MessageStatus
		want   string
	}{
		{"failed", fmt.Errorf("%w: ServiceFailure: x", sfb.ErrDeliveryFailed), event.MessageStatusFail, "Skype for Business could not deliver the message to bob@contoso.com."},
		{"offline", fmt.Errorf("%w: %w: RemoteFailure/TemporarilyUnavailable: The target is not reachable.", sfb.ErrDeliveryFailed, sfb.ErrRecipientUnavailable), event.MessageStatusFail, "bob@contoso.com is offline and Skype for Business could not deliver the message"},
		{"declined", fmt.Errorf("%w: %w: Forbidden/DoNotDisturb", sfb.ErrDeliveryFailed, sfb.ErrDeclined), event.MessageStatusFail, "bob@contoso.com is not accepting messages right now"},
		{"unknown peer", fmt.Errorf("%w: %w: NotFound/DestinationNotFound: The targeted user doesn't exist.", sfb.ErrDeliveryFailed, sfb.ErrNotFound), event.MessageStatusFail, "No Skype for Business user with the address bob@contoso.com"},
		{"unsupported", fmt.Errorf("415: %w", sfb.ErrUnsupported), event.MessageStatusFail, "refused the message as unsupported"},
		{"not carried", fmt.Errorf("send to group conversation t1: %w: %w", sfb.ErrNotCarried, sfb.ErrUnsupported), event.MessageStatusFail, "cannot carry group chats"},
		{"server down", fmt.Errorf("503: %w", sfb.ErrServerUnavailable), event.MessageStatusRetriable, "not reachable"},
		{"bridge busy", fmt.Errorf("wait for a connection: %w: %w", sfb.ErrLocalTimeout, context.DeadlineExceeded), event.MessageStatusRetriable, "bridge is too busy"},
		{"expired", fmt.Errorf("401: %w", sfb.ErrCredentialsRequired), event.MessageStatusRetriable, "Log in again"},
		{"other", errors.New("boom"), event.MessageStatusRetriable, "Sending to Skype for Business failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			ul, client, session := e.mustLogin()
			session.setSendErr(tt.err)
			resp, err := client.HandleMatrixMessage(e.ctx, matrixMessage(e.portalFor(ul.ID, bob), "$f1", &event.MessageEventContent{MsgType: event.MsgText, Body: "hi"}))
			require.NoError(t, err)
			assert.True(t, resp.Pending)
			echo := e.waitEcho("$f1")
			save, statusErr := handleEcho(echo, &mxdb.Message{})
			assert.False(t, save, "a failed message has no SfB ID to store")
			ms := requireNotice(t, statusErr, tt.status, tt.want)
			assert.ErrorIs(t, statusErr, tt.err)
			// The error chain is for the log, never for the room.
			assert.NotContains(t, ms.Message, tt.err.Error())
			assert.NotContains(t, ms.Message, "sfb:")
			assert.NotContains(t, ms.Message, "does not exist")
			requireOutboxEmpty(t, e, ul.ID)
		})
	}
}

func TestHandleMatrixMessageWhileDisconnected(t *testing.T) {
	e := newTestEnv(t)
	ul, client, _ := e.mustLogin()
	client.Disconnect()
	_, err := client.HandleMatrixMessage(e.ctx, matrixMessage(e.portalFor(ul.ID, bob), "$d1", &event.MessageEventContent{MsgType: event.MsgText, Body: "hi"}))
	requireNotice(t, err, event.MessageStatusRetriable, "not connected")
	peers, err := e.conn.db.OutboxPeers(e.ctx, string(ul.ID))
	require.NoError(t, err)
	assert.Empty(t, peers, "nothing queued")
}

func TestHandleMatrixTyping(t *testing.T) {
	e := newTestEnv(t)
	ul, client, session := e.mustLogin()
	require.NoError(t, client.HandleMatrixTyping(e.ctx, &bridgev2.MatrixTyping{Portal: e.portalFor(ul.ID, bob), IsTyping: true}))
	require.NoError(t, client.HandleMatrixTyping(e.ctx, &bridgev2.MatrixTyping{Portal: e.portalFor(ul.ID, bob), IsTyping: false}))
	session.mu.Lock()
	defer session.mu.Unlock()
	assert.Equal(t, []bool{true, false}, session.typing)
}

func TestChatAndUserInfo(t *testing.T) {
	e := newTestEnv(t)
	ul, client, _ := e.mustLogin()
	info, err := client.GetChatInfo(e.ctx, e.portalFor(ul.ID, bob))
	require.NoError(t, err)
	assert.Equal(t, mxdb.RoomTypeDM, *info.Type)
	assert.True(t, info.Members.IsFull)
	assert.Equal(t, networkid.UserID("bob@contoso.com"), info.Members.OtherUserID)
	require.Len(t, info.Members.MemberMap, 2)
	assert.NotContains(t, info.Members.MemberMap, networkid.UserID("alice@contoso.com"), "the user's own SfB ghost is no member of their DM")
	self := info.Members.MemberMap[""]
	assert.True(t, self.IsFromMe)
	assert.Equal(t, ul.ID, self.SenderLogin)
	assert.Equal(t, true, self.MemberEventExtra["is_direct"], "the user's invite marks the room as a direct chat")
	assert.Contains(t, info.Members.MemberMap, networkid.UserID("bob@contoso.com"))

	ghost := &bridgev2.Ghost{Ghost: &mxdb.Ghost{ID: "bob@contoso.com"}}
	uinfo, err := client.GetUserInfo(e.ctx, ghost)
	require.NoError(t, err)
	assert.Equal(t, "Bob Builder (SfB)", *uinfo.Name)
	assert.Equal(t, []string{"sip:bob@contoso.com"}, uinfo.Identifiers)

	unknown := &bridgev2.Ghost{Ghost: &mxdb.Ghost{ID: "carol@fabrikam.com"}}
	uinfo, err = client.GetUserInfo(e.ctx, unknown)
	require.NoError(t, err)
	assert.Equal(t, "carol@fabrikam.com (SfB)", *uinfo.Name, "not in the directory: named by address")

	// A sender the directory does not know, whose message named them.
	session := e.transport.lastSession()
	session.emit(sfb.MessageReceived{ID: "m-carol", From: sfb.Person{URI: "sip:carol@fabrikam.com", DisplayName: "Carol Fabrikam"}, Message: sfb.Message{Text: "hi"}, Time: time.Now()})
	uinfo, err = client.GetUserInfo(e.ctx, unknown)
	require.NoError(t, err)
	assert.Equal(t, "Carol Fabrikam (SfB)", *uinfo.Name, "named as the message named the sender")
	// The directory's name wins over a message's.
	session.emit(sfb.MessageReceived{ID: "m-bob", From: sfb.Person{URI: "sip:bob@contoso.com", DisplayName: "Bobby"}, Message: sfb.Message{Text: "hi"}, Time: time.Now()})
	uinfo, err = client.GetUserInfo(e.ctx, ghost)
	require.NoError(t, err)
	assert.Equal(t, "Bob Builder (SfB)", *uinfo.Name)
	// The user's own messages (from another SfB client) name no one else.
	session.emit(sfb.MessageReceived{ID: "m-self", Conversation: sfb.Conversation{Peer: "sip:dave@fabrikam.com"}, From: sfb.Person{URI: "sip:alice@contoso.com", DisplayName: "Alice Example"}, Message: sfb.Message{Text: "hi"}, Time: time.Now()})
	uinfo, err = client.GetUserInfo(e.ctx, &bridgev2.Ghost{Ghost: &mxdb.Ghost{ID: "dave@fabrikam.com"}})
	require.NoError(t, err)
	assert.Equal(t, "dave@fabrikam.com (SfB)", *uinfo.Name, "the user's own name is not the peer's")

	assert.True(t, client.IsThisUser(e.ctx, "alice@contoso.com"))
	assert.False(t, client.IsThisUser(e.ctx, "bob@contoso.com"))
}

func TestResolveIdentifier(t *testing.T) {
	e := newTestEnv(t)
	ul, client, _ := e.mustLogin()
	resp, err := client.ResolveIdentifier(e.ctx, "SIP:Bob@Contoso.com", true)
	require.NoError(t, err)
	assert.Equal(t, networkid.UserID("bob@contoso.com"), resp.UserID)
	require.NotNil(t, resp.Ghost)
	assert.Equal(t, "Bob Builder (SfB)", *resp.UserInfo.Name)
	assert.Equal(t, networkid.PortalKey{ID: "bob@contoso.com", Receiver: ul.ID}, resp.Chat.PortalKey)

	var re bridgev2.RespError
	resp, err = client.ResolveIdentifier(e.ctx, "nobody@contoso.com", true)
	require.ErrorAs(t, err, &re)
	assert.Nil(t, resp, "no chat for an unknown address")
	assert.Equal(t, 404, re.StatusCode)
	assert.Equal(t, "No Skype for Business user with the address nobody@contoso.com.", re.Err)
	_, err = client.ResolveIdentifier(e.ctx, "not an address", false)
	require.ErrorAs(t, err, &re)
	assert.Equal(t, 400, re.StatusCode)
}

func TestValidateUserID(t *testing.T) {
	c := NewConnector(nil)
	assert.True(t, c.ValidateUserID("alice@contoso.com"))
	assert.False(t, c.ValidateUserID("Alice@contoso.com"), "IDs are lower-case")
	assert.False(t, c.ValidateUserID("sip:alice@contoso.com"), "IDs carry no scheme")
	assert.False(t, c.ValidateUserID("alice"))
}

// A transport may report SessionEnded while the client closes (logout)
// or detaches (shutdown) its session. That is the end the client asked
// for, not an interruption: no TRANSIENT_DISCONNECT follows (and so none
// lands after bridgev2's LOGGED_OUT), and nothing reconnects.
func TestSessionEndedWhileStoppingIsNotAnInterruption(t *testing.T) {
	for name, stop := range map[string]func(e *testEnv, ul *bridgev2.UserLogin){
		"logout": func(e *testEnv, ul *bridgev2.UserLogin) {
			ul.Logout(e.ctx)
		},
		"shutdown": func(e *testEnv, ul *bridgev2.UserLogin) {
			ul.Client.Disconnect()
			// A state of our own marks the end of what the stop sent.
			ul.BridgeState.Send(status.BridgeState{StateEvent: status.StateLoggedOut})
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t)
			ul, _, session := e.mustLogin()
			e.transport.onStop = func(s *fakeSession) {
				s.emit(sfb.SessionEnded{Err: errors.New("application deleted")})
			}
			mark := e.stateMark()
			stop(e, ul)
			e.waitStates(mark, status.StateLoggedOut)
			var after []status.BridgeStateEvent
			for _, s := range e.matrix.stateEvents()[mark:] {
				after = append(after, s.StateEvent)
			}
			assert.Equal(t, []status.BridgeStateEvent{status.StateLoggedOut}, after)
			assert.Equal(t, 1, e.transport.sessionCount(), "nothing signed in again")
			assert.True(t, session.isClosed() || session.isDetached())
		})
	}
}
