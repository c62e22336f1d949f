package bridge

import (
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
