package bridge

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// fakeUserIntent is a user's double puppet as bridgev2 gets it from the
// Matrix connector (with double_puppet.secrets: an intent acting as the
// user through the second registration's token).
type fakeUserIntent struct {
	bridgev2.MatrixAPI
	mxid id.UserID
}

func (i *fakeUserIntent) GetMXID() id.UserID   { return i.mxid }
func (i *fakeUserIntent) IsDoublePuppet() bool { return true }

// NewUserIntent gives every user a double puppet, as the appservice
// double puppeting of docs/operator-guide.md does: the token is the
// configuration's, so nothing is stored for the user.
func (fm *fakeMatrix) NewUserIntent(_ context.Context, userID id.UserID, _ string) (bridgev2.MatrixAPI, string, error) {
	return &fakeUserIntent{mxid: userID}, "appservice-config", nil
}

// A message the user sent from their own SfB client (coexistence: SfB
// hands it to the bridge's endpoint too, From the user themselves) goes
// to Matrix through the user's double puppet, as their own Matrix account;
// the colleague's messages stay with the colleague's ghost.
func TestOwnSfBMessageIsSentAsTheUsersMatrixAccount(t *testing.T) {
	e := newTestEnv(t)
	ul, _, session := e.mustLogin()
	// The user's own SfB ghost exists with its profile set, as after the
	// first message, so that bridgev2 asks nothing more of the Matrix side.
	self, err := e.br.GetGhostByID(e.ctx, userIDFor("sip:alice@contoso.com"))
	require.NoError(t, err)
	self.Name, self.NameSet, self.AvatarSet = "Alice", true, true
	require.NoError(t, e.br.DB.Ghost.Update(e.ctx, self.Ghost))

	session.emit(sfb.MessageReceived{
		ID:           "msg-own",
		Conversation: sfb.Conversation{ThreadID: "thread-1", Peer: bob},
		From:         sfb.Person{URI: "sip:alice@contoso.com", DisplayName: "Alice"},
		Message:      sfb.Message{Text: "sent from my desk phone's client"},
	})
	events := e.queuedEvents()
	require.Len(t, events, 1)
	portal := e.portalFor(ul.ID, bob)
	intent, ok := portal.GetIntentFor(e.ctx, events[0].GetSender(), ul, events[0].GetType())
	require.True(t, ok)
	require.NotNil(t, intent)
	assert.Equal(t, id.UserID("@alice:example.org"), intent.GetMXID(), "sent as the user's own Matrix account")
	assert.True(t, intent.IsDoublePuppet())
	assert.Equal(t, "appservice-config", e.user.AccessToken, "no token of the user's is stored: the registration's is used")
}
