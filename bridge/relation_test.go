package bridge

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// bobsQuestion is an SfB message from Bob as it was bridged into the
// portal room.
func bobsQuestion(roomID id.RoomID) (*event.Event, *mxdb.Message) {
	content := &event.MessageEventContent{MsgType: event.MsgText, Body: "Lunch at 12?\nor at 1?"}
	evt := &event.Event{ID: "$question", RoomID: roomID, Type: event.EventMessage, Content: event.Content{Parsed: content}}
	return evt, &mxdb.Message{ID: "sfb-q", MXID: "$question", SenderID: userIDFor(bob)}
}

// waitSent waits until SfB received n messages and returns them.
func waitSent(t *testing.T, session *fakeSession, n int) []sentMessage {
	t.Helper()
	require.Eventually(t, func() bool { return len(session.sentMessages()) >= n }, 5*time.Second, time.Millisecond,
		"SfB did not receive %d messages", n)
	return session.sentMessages()
}

func TestMatrixReplyQuotesTheOriginal(t *testing.T) {
	roomID := id.RoomID("!portal:example.org")
	question, row := bobsQuestion(roomID)
	e := newTestEnv(t, withBot(question))
	ul, client, session := e.mustLogin()
	portal := e.portalFor(ul.ID, bob)
	portal.MXID = roomID

	msg := matrixMessage(portal, "$reply", &event.MessageEventContent{MsgType: event.MsgText, Body: "yes, 12", Format: event.FormatHTML, FormattedBody: "<b>yes</b>, 12"})
	msg.ReplyTo = row
	_, err := client.HandleMatrixMessage(e.ctx, msg)
	require.NoError(t, err)

	// The reply to a message the bot cannot read goes without a quote.
	unknown := matrixMessage(portal, "$reply2", &event.MessageEventContent{MsgType: event.MsgText, Body: "and you?"})
	unknown.ReplyTo = &mxdb.Message{ID: "sfb-gone", MXID: "$gone", SenderID: userIDFor(bob)}
	_, err = client.HandleMatrixMessage(e.ctx, unknown)
	require.NoError(t, err)

	sent := waitSent(t, session, 2)
	assert.Equal(t, sfb.Message{Text: "> bob@contoso.com: Lunch at 12?\nyes, 12", HTML: "&gt; bob@contoso.com: Lunch at 12?<br><b>yes</b>, 12"}, sent[0].Msg)
	assert.Equal(t, sfb.Message{Text: "and you?"}, sent[1].Msg)
}

func TestMatrixEditIsSentAsEdited(t *testing.T) {
	e := newTestEnv(t)
	ul, client, session := e.mustLogin()
	portal := e.portalFor(ul.ID, bob)

	content := &event.MessageEventContent{MsgType: event.MsgText, Body: "12:30 then"}
	edit := &bridgev2.MatrixEdit{
		MatrixEventBase: matrixMessage(portal, "$edit", content).MatrixEventBase,
		EditTarget:      &mxdb.Message{ID: "sfb-msg-0", MXID: "$orig", SenderID: client.GetUserID()},
	}
	require.NoError(t, client.HandleMatrixEdit(e.ctx, edit))
	sent := waitSent(t, session, 1)
	assert.Equal(t, sfb.Message{Text: "(edited) 12:30 then"}, sent[0].Msg)
	requireOutboxEmpty(t, e, ul.ID)
	// The edit is linked to the SfB message it became, so that the
	// homeserver pushing it again does not send it twice.
	part, err := e.br.DB.Message.GetPartByMXID(e.ctx, "$edit")
	require.NoError(t, err)
	require.NotNil(t, part)
	assert.Equal(t, "sfb-msg-1", string(part.ID))

	images := &bridgev2.MatrixEdit{
		MatrixEventBase: matrixMessage(portal, "$edit-img", &event.MessageEventContent{MsgType: event.MsgImage, Body: "x.png"}).MatrixEventBase,
	}
	requireNotice(t, client.HandleMatrixEdit(e.ctx, images), event.MessageStatusFail, "cannot receive images")
}

func matrixReaction(portal *bridgev2.Portal, eventID id.EventID, target *mxdb.Message, key string) *bridgev2.MatrixReaction {
	content := &event.ReactionEventContent{RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: target.MXID, Key: key}}
	return &bridgev2.MatrixReaction{
		MatrixEventBase: bridgev2.MatrixEventBase[*event.ReactionEventContent]{
			Event:   &event.Event{ID: eventID, Type: event.EventReaction, RoomID: portal.MXID, Sender: "@alice:example.org", Content: event.Content{Parsed: content}},
			Content: content,
			Portal:  portal,
		},
		TargetMessage: target,
	}
}

func TestMatrixReactionIsSentAsMessage(t *testing.T) {
	roomID := id.RoomID("!portal:example.org")
	question, row := bobsQuestion(roomID)
	e := newTestEnv(t, withBot(question))
	ul, client, session := e.mustLogin()
	portal := e.portalFor(ul.ID, bob)
	portal.MXID = roomID

	react := matrixReaction(portal, "$react", row, "👍")
	pre, err := client.PreHandleMatrixReaction(e.ctx, react)
	require.NoError(t, err)
	assert.Equal(t, "👍", pre.Emoji)
	assert.Equal(t, client.GetUserID(), pre.SenderID, "one reaction per user and emoji")
	dbReaction, err := client.HandleMatrixReaction(e.ctx, react)
	require.NoError(t, err)
	assert.NotNil(t, dbReaction)

	sent := waitSent(t, session, 1)
	assert.Equal(t, ul.RemoteName+" reacted 👍 to: Lunch at 12?", sent[0].Msg.Text)
	requireOutboxEmpty(t, e, ul.ID)
	part, err := e.br.DB.Message.GetPartByMXID(e.ctx, "$react")
	require.NoError(t, err)
	assert.Nil(t, part, "a reaction is no message: its redaction must reach HandleMatrixReactionRemove")
	statuses := e.matrix.messageStatuses()
	require.NotEmpty(t, statuses)
	assert.Equal(t, event.EventReaction, statuses[len(statuses)-1].Info.EventType)

	assert.Equal(t, event.CapLevelPartialSupport, client.GetCapabilities(e.ctx, portal).Reaction)
	assert.NoError(t, client.HandleMatrixReactionRemove(e.ctx, &bridgev2.MatrixReactionRemove{}))
	assert.Len(t, session.sentMessages(), 1, "nothing is sent for a removed reaction")
}

func TestMatrixReactionDropped(t *testing.T) {
	e := newTestEnv(t, func(_ *testEnv, c *Config) { c.Messages.Reactions = ReactionsDropped })
	ul, client, session := e.mustLogin()
	portal := e.portalFor(ul.ID, bob)

	caps := client.GetCapabilities(e.ctx, portal)
	assert.Equal(t, event.CapLevelDropped, caps.Reaction, "clients learn that reactions do not reach SfB")
	assert.NotEqual(t, roomCapabilities.ID, caps.ID)
	_, err := client.HandleMatrixReaction(e.ctx, matrixReaction(portal, "$react", &mxdb.Message{MXID: "$m"}, "👍"))
	require.NoError(t, err)
	peers, err := e.conn.db.OutboxPeers(e.ctx, string(ul.ID))
	require.NoError(t, err)
	assert.Empty(t, peers, "nothing queued for SfB")
	assert.Empty(t, session.sentMessages())
}
