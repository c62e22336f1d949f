package bridge

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

const thread = "thread-42"

var groupConv = sfb.Conversation{ThreadID: thread, Group: true}

// loginBob logs bob@contoso.com in for the Matrix user @bob, a second
// migrated user next to alice.
func (e *testEnv) loginBob() (*bridgev2.UserLogin, *Client, *fakeSession) {
	e.t.Helper()
	e.transport.mu.Lock()
	e.transport.passwords["bob@contoso.com"] = "bob-pw"
	e.transport.mu.Unlock()
	user, err := e.br.GetUserByMXID(e.ctx, id.UserID("@bob:example.org"))
	require.NoError(e.t, err)
	proc, err := e.conn.CreateLogin(e.ctx, user, FlowPassword)
	require.NoError(e.t, err)
	_, err = proc.Start(e.ctx)
	require.NoError(e.t, err)
	step, err := proc.(bridgev2.LoginProcessUserInput).SubmitUserInput(e.ctx, map[string]string{
		FieldSignInAddress: "bob@contoso.com", FieldUsername: "-", FieldPassword: "bob-pw",
	})
	require.NoError(e.t, err)
	require.Equal(e.t, bridgev2.LoginStepTypeComplete, step.Type)
	ul := step.CompleteParams.UserLogin
	require.Eventually(e.t, func() bool { return ul.Client.IsLoggedIn() && ul.Client.(*Client).currentSession() != nil }, waitFor, time.Millisecond)
	return ul, ul.Client.(*Client), ul.Client.(*Client).currentSession().(*fakeSession)
}

// groupMessages are the group portal's messages queued so far, in order.
func (e *testEnv) groupMessages() []*simplevent.Message[sfb.MessageReceived] {
	var out []*simplevent.Message[sfb.MessageReceived]
	for _, evt := range e.queuedEvents() {
		if m, ok := evt.(*simplevent.Message[sfb.MessageReceived]); ok && m.GetPortalKey().ID == groupPortalPrefix+thread {
			out = append(out, m)
		}
	}
	return out
}

func groupMsg(id string, from sfb.URI, text string, at time.Time) sfb.MessageReceived {
	return sfb.MessageReceived{ID: id, Conversation: groupConv, From: sfb.Person{URI: from}, Message: sfb.Message{Text: text}, Time: at}
}

// distinctIDs are the message IDs bridgev2 was given, each once: what it
// shows, since it drops a message whose ID it stored.
func distinctIDs(msgs []*simplevent.Message[sfb.MessageReceived]) []networkid.MessageID {
	seen := map[networkid.MessageID]bool{}
	var out []networkid.MessageID
	for _, m := range msgs {
		if !seen[m.GetID()] {
			seen[m.GetID()] = true
			out = append(out, m.GetID())
		}
	}
	return out
}

// Alice and Bob, both migrated, are in one SfB conversation with Carol.
// Each session delivers every message under its own IDs and its own
// server's time stamps; Carol writes "ok" twice. The room shows three
// messages, each once, whichever session delivers first, and a message
// delivered again after a restart keeps its ID.
func TestGroupCopiesFromTwoLoginsBridgeOnce(t *testing.T) {
	e := newTestEnv(t)
	alice, _, as := e.mustLogin()
	_, _, bs := e.loginBob()
	t0 := time.UnixMilli(1700000000000)

	as.emit(groupMsg("a-1", carol, "ok", t0))
	bs.emit(groupMsg("b-1", carol, "ok", t0.Add(300*time.Millisecond)))
	// Bob's session is ahead for the repeat.
	bs.emit(groupMsg("b-2", carol, "ok", t0.Add(4*time.Second)))
	as.emit(groupMsg("a-2", carol, "ok", t0.Add(4*time.Second+200*time.Millisecond)))
	as.emit(sfb.MessageReceived{ID: "a-3", Conversation: groupConv, From: sfb.Person{URI: carol},
		Message: sfb.Message{Text: "lunch?", HTML: "<b>lunch?</b>"}, Time: t0.Add(6 * time.Second)})
	bs.emit(sfb.MessageReceived{ID: "b-3", Conversation: groupConv, From: sfb.Person{URI: carol},
		Message: sfb.Message{Text: "lunch?", HTML: "<span style=\"color:#000\"><b>lunch?</b></span>"}, Time: t0.Add(6 * time.Second)})

	msgs := e.groupMessages()
	require.Len(t, msgs, 6, "every copy is handed on: the message arrives whichever login is there")
	ids := distinctIDs(msgs)
	require.Len(t, ids, 3, "two copies of each of three messages: %v", ids)
	assert.Equal(t, msgs[0].GetID(), msgs[1].GetID(), "the copies of the first ok")
	assert.Equal(t, msgs[2].GetID(), msgs[3].GetID(), "the copies of the repeated ok")
	assert.NotEqual(t, msgs[0].GetID(), msgs[2].GetID(), "a real repeat is a message of its own")
	assert.Equal(t, msgs[4].GetID(), msgs[5].GetID(), "the same text in another markup")
	for _, m := range msgs {
		assert.Equal(t, networkid.PortalKey{ID: groupPortalPrefix + thread}, m.GetPortalKey(), "one room for every login")
		assert.Equal(t, networkid.UserID("carol@contoso.com"), m.GetSender().Sender)
		assert.True(t, m.ShouldCreatePortal())
	}

	// After a restart Alice's session delivers the first ok again, and
	// the repeat it had not acknowledged.
	e2 := newTestEnv(t, withDB(e.dbPath), withTransport(e.transport))
	ul2, err := e2.br.GetExistingUserLoginByID(e2.ctx, alice.ID)
	require.NoError(t, err)
	ul2.Client.Connect(e2.ctx)
	e2.waitState(status.StateConnected)
	as2 := e.transport.lastSession()
	as2.emit(groupMsg("a-1", carol, "ok", t0))
	as2.emit(groupMsg("a-2", carol, "ok", t0.Add(4*time.Second+200*time.Millisecond)))
	again := e2.groupMessages()
	require.Len(t, again, 2)
	assert.Equal(t, msgs[0].GetID(), again[0].GetID())
	assert.Equal(t, msgs[2].GetID(), again[1].GetID())
}

// A login that sees the same text from the same sender far apart in time
// (it was not there for the first) does not take it for the first.
func TestGroupCopyOutsideTheWindowIsNew(t *testing.T) {
	e := newTestEnv(t)
	_, _, as := e.mustLogin()
	_, _, bs := e.loginBob()
	t0 := time.UnixMilli(1700000000000)
	as.emit(groupMsg("a-1", carol, "ok", t0))
	bs.emit(groupMsg("b-1", carol, "ok", t0.Add(10*time.Minute)))
	assert.Len(t, distinctIDs(e.groupMessages()), 2)
}

func TestGroupMessageFromSelfAndOtherUser(t *testing.T) {
	e := newTestEnv(t)
	alice, _, as := e.mustLogin()
	bob, _, _ := e.loginBob()
	as.emit(groupMsg("a-1", "sip:alice@contoso.com", "from my desk phone", time.Now()))
	as.emit(groupMsg("a-2", bob2URI(bob), "from bob", time.Now()))
	msgs := e.groupMessages()
	require.Len(t, msgs, 2)
	assert.Equal(t, bridgev2.EventSender{IsFromMe: true, SenderLogin: alice.ID, Sender: "alice@contoso.com"}, msgs[0].GetSender())
	assert.Equal(t, bridgev2.EventSender{SenderLogin: bob.ID, Sender: "bob@contoso.com"}, msgs[1].GetSender(),
		"another user of the bridge, shown as their Matrix account when double puppeted")
}

func bob2URI(ul *bridgev2.UserLogin) sfb.URI { return sfb.URI("sip:" + string(ul.ID)) }

// memberChanges returns the membership changes queued for the group.
func (e *testEnv) memberChanges() []*simplevent.ChatInfoChange {
	var out []*simplevent.ChatInfoChange
	for _, evt := range e.queuedEvents() {
		if c, ok := evt.(*simplevent.ChatInfoChange); ok {
			out = append(out, c)
		}
	}
	return out
}

func TestGroupMembershipAndNameFromSfB(t *testing.T) {
	e := newTestEnv(t)
	alice, client, as := e.mustLogin()
	bob, _, _ := e.loginBob()
	as.emit(sfb.ParticipantJoined{Conversation: groupConv, Person: sfb.Person{URI: "sip:alice@contoso.com", DisplayName: "Alice Example"}})
	as.emit(sfb.ParticipantJoined{Conversation: groupConv, Person: sfb.Person{URI: carol, DisplayName: "Carol Singer"}})
	as.emit(sfb.ParticipantJoined{Conversation: groupConv, Person: sfb.Person{URI: bob2URI(bob), DisplayName: "Bob Builder"}})
	changes := e.memberChanges()
	require.Len(t, changes, 3)
	carolJoin := changes[1].ChatInfoChange.MemberChanges.MemberMap["carol@contoso.com"]
	assert.Equal(t, event.MembershipJoin, carolJoin.Membership)
	assert.Equal(t, bridgev2.EventSender{Sender: "carol@contoso.com"}, carolJoin.EventSender, "an SfB participant is a ghost")
	bobJoin := changes[2].ChatInfoChange.MemberChanges.MemberMap["bob@contoso.com"]
	assert.Equal(t, bridgev2.EventSender{SenderLogin: bob.ID}, bobJoin.EventSender, "a migrated user is their Matrix account, not a ghost")
	assert.True(t, changes[2].ShouldCreatePortal())
	assert.Equal(t, "Alice Example, Bob Builder, Carol Singer", *changes[2].ChatInfoChange.ChatInfo.Name, "no subject: named from the participants")

	info, err := client.GetChatInfo(e.ctx, &bridgev2.Portal{Portal: &mxdb.Portal{PortalKey: networkid.PortalKey{ID: groupPortalPrefix + thread}}})
	require.NoError(t, err)
	assert.Len(t, info.Members.MemberMap, 3)
	assert.True(t, info.Members.MemberMap[networkid.UserID(alice.ID)].IsFromMe)
	assert.Equal(t, "Alice Example, Bob Builder, Carol Singer", *info.Name)

	as.emit(sfb.SubjectChanged{Conversation: groupConv, Subject: "Budget 2027"})
	changes = e.memberChanges()
	require.Len(t, changes, 4)
	assert.Equal(t, "Budget 2027", *changes[3].ChatInfoChange.ChatInfo.Name)
	as.emit(sfb.SubjectChanged{Conversation: groupConv, Subject: "Budget 2027"})
	assert.Len(t, e.memberChanges(), 4, "an unchanged subject changes nothing")

	as.emit(sfb.ParticipantLeft{Conversation: groupConv, URI: carol})
	changes = e.memberChanges()
	require.Len(t, changes, 5)
	assert.Equal(t, event.MembershipLeave, changes[4].ChatInfoChange.MemberChanges.MemberMap["carol@contoso.com"].Membership)
	// The conference ended for Alice: the room stays as it is.
	as.emit(sfb.ParticipantLeft{Conversation: groupConv, URI: "sip:alice@contoso.com"})
	assert.Len(t, e.memberChanges(), 5)

	g, err := client.sfbGroup(e.ctx, thread)
	require.NoError(t, err)
	assert.Equal(t, sfb.Group{ThreadID: thread, Subject: "Budget 2027", Participants: []sfb.URI{bob2URI(bob)}}, g,
		"the conversation is started again with who is left, without the user")
}

// groupPortal is the real bridgev2 portal of the test thread, with a room.
func (e *testEnv) groupPortal(client *Client) *bridgev2.Portal {
	e.t.Helper()
	portal, err := e.br.GetPortalByKey(e.ctx, client.groupPortalKey(thread))
	require.NoError(e.t, err)
	if portal.MXID == "" {
		portal.MXID = id.RoomID("!group:example.org")
	}
	return portal
}

// A Matrix message in a group room goes through the outbox to the
// conversation, with what the session needs to start it again; its echo
// and the copy another login then receives carry one ID, so it shows once.
func TestGroupMessageFromMatrix(t *testing.T) {
	e := newTestEnv(t)
	alice, client, as := e.mustLogin()
	_, _, bs := e.loginBob()
	as.emit(sfb.ParticipantJoined{Conversation: sfb.Conversation{ThreadID: thread, Group: true, Subject: "Budget"}, Person: sfb.Person{URI: carol}})
	as.emit(sfb.ParticipantJoined{Conversation: groupConv, Person: sfb.Person{URI: "sip:bob@contoso.com"}})
	portal := e.groupPortal(client)

	resp, err := client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$g1", &event.MessageEventContent{MsgType: event.MsgText, Body: "hello all"}))
	require.NoError(t, err)
	assert.True(t, resp.Pending)
	echo := e.waitEcho("$g1")
	assert.Equal(t, networkid.MessageID("mx:$g1"), echo.GetID())
	assert.Equal(t, networkid.PortalKey{ID: groupPortalPrefix + thread}, echo.GetPortalKey())
	sent := as.groupState().sent
	require.Len(t, sent, 1)
	assert.Equal(t, sfb.Group{ThreadID: thread, Subject: "Budget", Participants: []sfb.URI{"sip:bob@contoso.com", carol}}, sent[0].Group)
	assert.Equal(t, "hello all", sent[0].Msg.Text)
	assert.Empty(t, as.sentMessages(), "nothing went to a 1:1 conversation")
	requireOutboxEmpty(t, e, alice.ID)

	// Bob's session receives Alice's message from SfB: it is the
	// message already in the room, whose row bridgev2 may not have yet.
	bs.emit(groupMsg("b-7", "sip:alice@contoso.com", "hello all", time.Now()))
	bs.emit(groupMsg("b-8", carol, "hello all", time.Now()))
	msgs := e.groupMessages()
	require.Len(t, msgs, 1, "only Carol's message, which has the same text")
	assert.Equal(t, networkid.UserID("carol@contoso.com"), msgs[0].GetSender().Sender)

	as.mu.Lock()
	as.groups.sendErr = fmt.Errorf("conference gone: %w", sfb.ErrDeliveryFailed)
	as.mu.Unlock()
	_, err = client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$g2", &event.MessageEventContent{MsgType: event.MsgText, Body: "again"}))
	require.NoError(t, err)
	save, statusErr := handleEcho(e.waitEcho("$g2"), nil)
	assert.False(t, save)
	requireNotice(t, statusErr, event.MessageStatusFail, "could not deliver the message to the group chat")
}

// Entries stored before groups existed (peer is an address) and group
// entries wait in the same table; after a restart each goes where it
// belongs.
func TestOutboxGroupAndPeerEntriesAfterRestart(t *testing.T) {
	e := newTestEnv(t)
	ul, client, _ := e.mustLogin()
	// The first process is gone: a login still connected here would send
	// the entries itself when its outbox starts (after CONNECTED).
	ul.Client.Disconnect()
	leftInOutbox(t, e, ul, e.portalFor(ul.ID, bob), "$old-1to1", "to bob")
	entry := leftInOutbox(t, e, ul, e.groupPortal(client), "$old-group", "to the group")
	assert.Equal(t, groupPortalPrefix+thread, entry.Peer)
	_, sent := restartAndSettle(t, e, ul.ID, 2)
	assert.Equal(t, []string{"to bob"}, sent)
	gs := e.transport.lastSession().groupState().sent
	require.Len(t, gs, 1)
	assert.Equal(t, thread, gs[0].Group.ThreadID)
	assert.Equal(t, "to the group", gs[0].Msg.Text)
}

func TestGroupTypingBothWays(t *testing.T) {
	e := newTestEnv(t)
	_, client, as := e.mustLogin()
	portal := e.groupPortal(client)
	require.NoError(t, client.HandleMatrixTyping(e.ctx, &bridgev2.MatrixTyping{Portal: portal, IsTyping: true}))
	assert.Equal(t, []groupTyping{{thread, true}}, as.groupState().typing)
	as.mu.Lock()
	assert.Empty(t, as.typing, "not a 1:1 conversation")
	as.mu.Unlock()

	as.emit(sfb.TypingChanged{Conversation: groupConv, From: carol, Typing: true})
	as.emit(sfb.TypingChanged{Conversation: groupConv, From: "sip:alice@contoso.com", Typing: true})
	var typing []*simplevent.Typing
	for _, evt := range e.queuedEvents() {
		if ty, ok := evt.(*simplevent.Typing); ok {
			typing = append(typing, ty)
		}
	}
	require.Len(t, typing, 1, "the user's own typing is not echoed")
	assert.Equal(t, networkid.PortalKey{ID: groupPortalPrefix + thread}, typing[0].GetPortalKey())
	assert.Equal(t, networkid.UserID("carol@contoso.com"), typing[0].GetSender().Sender)
}

func TestGroupMembershipFromMatrix(t *testing.T) {
	e := newTestEnv(t)
	alice, client, as := e.mustLogin()
	as.emit(sfb.ParticipantJoined{Conversation: groupConv, Person: sfb.Person{URI: carol}})
	portal := e.groupPortal(client)
	ghost, err := e.br.GetGhostByID(e.ctx, "dave@contoso.com")
	require.NoError(t, err)

	_, err = client.HandleMatrixMembership(e.ctx, &bridgev2.MatrixMembershipChange{
		MatrixRoomMeta: bridgev2.MatrixRoomMeta[*event.MemberEventContent]{MatrixEventBase: bridgev2.MatrixEventBase[*event.MemberEventContent]{Portal: portal}},
		Target:         ghost, Type: bridgev2.Invite,
	})
	require.NoError(t, err)
	added := as.groupState().added
	require.Len(t, added, 1)
	assert.Equal(t, dave, added[0].URI)
	assert.Equal(t, []sfb.URI{carol}, added[0].Group.Participants)
	g, err := client.sfbGroup(e.ctx, thread)
	require.NoError(t, err)
	assert.Equal(t, []sfb.URI{carol, dave}, g.Participants, "Dave is in the conversation when it starts again")

	_, err = client.HandleMatrixMembership(e.ctx, &bridgev2.MatrixMembershipChange{
		MatrixRoomMeta: bridgev2.MatrixRoomMeta[*event.MemberEventContent]{MatrixEventBase: bridgev2.MatrixEventBase[*event.MemberEventContent]{Portal: portal}},
		Target:         alice, Type: bridgev2.Leave,
	})
	require.NoError(t, err)
	assert.Equal(t, []string{thread}, as.groupState().left)

	// In a 1:1 room membership means nothing on SfB.
	_, err = client.HandleMatrixMembership(e.ctx, &bridgev2.MatrixMembershipChange{
		MatrixRoomMeta: bridgev2.MatrixRoomMeta[*event.MemberEventContent]{MatrixEventBase: bridgev2.MatrixEventBase[*event.MemberEventContent]{Portal: e.portalFor(alice.ID, bob)}},
		Target:         alice, Type: bridgev2.Leave,
	})
	require.NoError(t, err)
	assert.Len(t, as.groupState().left, 1)
}

// A group created from Matrix gets a thread of its own, its participants
// and, by default, its creator as relay for Matrix users without a login.
func TestCreateGroupFromMatrix(t *testing.T) {
	for _, relay := range []GroupRelay{GroupRelayCreator, GroupRelayOff} {
		t.Run(string(relay), func(t *testing.T) {
			e := newTestEnv(t, func(_ *testEnv, c *Config) { c.Groups.Relay = relay })
			alice, client, as := e.mustLogin()
			resp, err := client.CreateGroup(e.ctx, &bridgev2.GroupCreateParams{
				Type: groupType, Participants: []networkid.UserID{"carol@contoso.com", "dave@contoso.com", "alice@contoso.com"},
				Name: &event.RoomNameEventContent{Name: "Planning"},
			})
			require.NoError(t, err)
			created, ok := groupThread(resp.PortalKey.ID)
			require.True(t, ok, "a group key: %s", resp.PortalKey.ID)
			assert.Empty(t, resp.PortalKey.Receiver)
			assert.Equal(t, "Planning", *resp.PortalInfo.Name)
			assert.Len(t, resp.PortalInfo.Members.MemberMap, 3)
			up, err := e.br.DB.UserPortal.Get(e.ctx, alice.UserLogin, resp.PortalKey)
			require.NoError(t, err)
			assert.NotNil(t, up, "the creator's login is in the portal: their messages never go through the relay")
			if relay == GroupRelayCreator {
				require.NotNil(t, resp.Portal.Relay)
				assert.Equal(t, alice.ID, resp.Portal.Relay.ID)
			} else {
				assert.Nil(t, resp.Portal.Relay)
			}

			resp.Portal.MXID = "!planning:example.org"
			_, err = client.HandleMatrixMessage(e.ctx, matrixMessage(resp.Portal, "$p1", &event.MessageEventContent{MsgType: event.MsgText, Body: "first"}))
			require.NoError(t, err)
			e.waitEcho("$p1")
			sent := as.groupState().sent
			require.Len(t, sent, 1)
			assert.Equal(t, sfb.Group{ThreadID: created, Subject: "Planning", Participants: []sfb.URI{carol, dave}}, sent[0].Group)
		})
	}
}

// A Matrix user without a login writes through the relay: bridgev2 puts
// the name in front with the shipped bridge.relay.message_formats, and the
// SfB participants read it in front of the text.
func TestRelayedGroupMessageNamesTheSender(t *testing.T) {
	raw, err := os.ReadFile("../config.example.yaml")
	require.NoError(t, err)
	var shipped struct {
		Bridge struct {
			Relay bridgeconfig.RelayConfig `yaml:"relay"`
		} `yaml:"bridge"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &shipped))
	content, err := shipped.Bridge.Relay.FormatMessage(&event.MessageEventContent{MsgType: event.MsgText, Body: "hello all"},
		&bridgev2.OrigSender{DisambiguatedName: "Guest Jana"})
	require.NoError(t, err)

	e := newTestEnv(t)
	_, client, as := e.mustLogin()
	msg := matrixMessage(e.groupPortal(client), "$r1", content)
	msg.OrigSender = &bridgev2.OrigSender{DisambiguatedName: "Guest Jana"}
	_, err = client.HandleMatrixMessage(e.ctx, msg)
	require.NoError(t, err)
	e.waitEcho("$r1")
	sent := as.groupState().sent
	require.Len(t, sent, 1)
	assert.Equal(t, "Guest Jana: hello all", sent[0].Msg.Text)
	assert.Contains(t, sent[0].Msg.HTML, "<b>Guest Jana</b>: hello all")
}

// A file offered in a group reaches the group room, once for both
// logins' copies, and is not taken for a message naming the file.
func TestGroupFileOfferFromTwoLogins(t *testing.T) {
	e := newTestEnv(t)
	_, _, as := e.mustLogin()
	_, _, bs := e.loginBob()
	t0 := time.UnixMilli(1700000000000)
	offer := func(id string, at time.Time) sfb.FileOffered {
		return sfb.FileOffered{ID: id, Conversation: groupConv, From: sfb.Person{URI: carol},
			File: sfb.File{Name: "plan.pdf", Size: 1234}, Time: at}
	}
	as.emit(offer("a-f1", t0))
	bs.emit(offer("b-f1", t0.Add(time.Second)))
	bs.emit(groupMsg("b-m1", carol, "file offer: plan.pdf", t0.Add(time.Second)))
	var files []*simplevent.Message[sfb.FileOffered]
	for _, evt := range e.queuedEvents() {
		if f, ok := evt.(*simplevent.Message[sfb.FileOffered]); ok {
			files = append(files, f)
		}
	}
	require.Len(t, files, 2)
	assert.Equal(t, networkid.PortalKey{ID: groupPortalPrefix + thread}, files[0].GetPortalKey())
	assert.Equal(t, files[0].GetID(), files[1].GetID())
	msgs := e.groupMessages()
	require.Len(t, msgs, 1)
	assert.NotEqual(t, files[0].GetID(), msgs[0].GetID())
}

// With bridgev2's split portals every login has a group room of its own,
// and each gets every message, Matrix messages of the other included.
func TestGroupWithSplitPortals(t *testing.T) {
	e := newTestEnv(t)
	e.br.Config.SplitPortals = true
	alice, client, as := e.mustLogin()
	bob, _, bs := e.loginBob()
	_, err := client.HandleMatrixMessage(e.ctx, matrixMessage(e.groupPortal(client), "$s1", &event.MessageEventContent{MsgType: event.MsgText, Body: "sent from Matrix"}))
	require.NoError(t, err)
	e.waitEcho("$s1")
	now := time.Now()
	as.emit(groupMsg("a-1", carol, "hi", now))
	bs.emit(groupMsg("b-1", carol, "hi", now))
	bs.emit(groupMsg("b-2", "sip:alice@contoso.com", "sent from Matrix", now))
	msgs := e.groupMessages()
	require.Len(t, msgs, 3)
	assert.Equal(t, networkid.PortalKey{ID: groupPortalPrefix + thread, Receiver: alice.ID}, msgs[0].GetPortalKey())
	assert.Equal(t, networkid.PortalKey{ID: groupPortalPrefix + thread, Receiver: bob.ID}, msgs[1].GetPortalKey())
	assert.Len(t, distinctIDs(msgs), 3)
}

func TestGroupFailureNoticeShowsOnlyErrorsWrittenForPeople(t *testing.T) {
	forPeople := bridgev2.RespError{ErrCode: ErrCodeUnavailable, Err: "You are not connected to Skype for Business right now.", StatusCode: 503}
	assert.Contains(t, groupFailureNotice(fmt.Errorf("create group: %w", forPeople)), "You are not connected to Skype for Business right now.")
	internal := groupFailureNotice(errors.New("insert sfb_group: database is locked"))
	assert.NotContains(t, internal, "sfb_group")
	assert.Contains(t, internal, "helpdesk")
}
