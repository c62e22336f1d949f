package sim_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// A user migrated to Matrix has no SfB client of their own: their only
// endpoint is the bridge's UCWA application. Once it is gone (the bridge
// logged out), SfB fails what is sent to them instead of swallowing it.

func TestNativeSenderSeesFailureAfterLogout(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{})
	require.NoError(t, e.sim.SetNativeClient("sip:alice@contoso.com", false))
	alice := e.signIn("alice@contoso.com", "alice-pw")
	alice.makeMeAvailable()

	// While the application is signed in, it gets the invitation.
	require.NoError(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{Text: "before"}))
	alice.await("invitation", is("messagingInvitation", "started"))

	// The bridge logs out: the application is deleted.
	e.sim.DeleteApplications("sip:alice@contoso.com")
	err := e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{Text: "after logout"})
	require.ErrorIs(t, err, sfb.ErrDeliveryFailed, "the sender's client says the message was not delivered")
	assert.Contains(t, err.Error(), "not reachable")
	for _, r := range e.sim.Received("sip:alice@contoso.com") {
		assert.NotEqual(t, "after logout", r.Message.Text, "nobody received it")
	}

	// Through the control API the sender gets 409 with the reason.
	r := e.do("POST", "/sim/v1/users/bob@contoso.com/messages", "", "application/json", `{"to":"sip:alice@contoso.com","text":"again"}`)
	assert.Equal(t, http.StatusConflict, r.status, "%s", r.body)
	assert.Contains(t, string(r.body), "not reachable")

	// Signed in on a native client again, the user gets messages there.
	r = e.do("PUT", "/sim/v1/users/alice@contoso.com/native-client", "", "application/json", `{"signed_in":true}`)
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	require.NoError(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{Text: "native"}))
	got := e.sim.Received("sip:alice@contoso.com")
	require.NotEmpty(t, got)
	assert.Equal(t, "native", got[len(got)-1].Message.Text)
}

func TestInvitationToUserWithoutEndpointFails(t *testing.T) {
	e := newEnv(t, sim.Options{})
	require.NoError(t, e.sim.SetNativeClient("sip:bob@contoso.com", false))
	alice := e.signIn("alice@contoso.com", "alice-pw")
	start := get(t, alice.app, "_embedded", "communication", "_links", "startMessaging", "href").(string)

	r := alice.do("POST", start, "application/json", `{"to":"sip:bob@contoso.com","operationId":"op-1"}`)
	require.Equal(t, http.StatusCreated, r.status)
	evs := alice.await("invitation completed", is("messagingInvitation", "completed"))
	done := evs[len(evs)-1]
	assert.Equal(t, "Failure", done.status)
	assert.Equal(t, "RemoteFailure", get(t, done.raw, "reason", "code"))
	assert.Equal(t, "Unreachable", get(t, done.raw, "reason", "subcode"))
	assert.Empty(t, e.sim.Received("sip:bob@contoso.com"))
}

func TestSigningOutNativeClientEndsItsConversations(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	start := get(t, alice.app, "_embedded", "communication", "_links", "startMessaging", "href").(string)
	require.Equal(t, http.StatusCreated, alice.do("POST", start, "application/json", `{"to":"sip:bob@contoso.com","operationId":"op-1"}`).status)
	evs := alice.await("invitation completed", is("messagingInvitation", "completed"))
	require.Equal(t, "Success", evs[len(evs)-1].status, "bob's native client accepted")

	require.NoError(t, e.sim.SetNativeClient("sip:bob@contoso.com", false))
	alice.await("conversation ended", is("conversation", "deleted"))
	err := e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{Text: "x"})
	assert.ErrorContains(t, err, "signed out", "a signed-out client sends nothing")

	r := e.do("PUT", "/sim/v1/users/bob@contoso.com/native-client", "", "application/json", `{}`)
	assert.Equal(t, http.StatusBadRequest, r.status)
}

// An invitation the native client sent and nobody answered yet is withdrawn
// when that client signs out: accepting it must not connect the invitee to
// a client that is gone.
func TestSigningOutNativeClientWithdrawsItsInvitation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{})
	alice := e.signIn("alice@contoso.com", "alice-pw")
	alice.makeMeAvailable()
	require.NoError(t, e.sim.SendMessage(ctx, "sip:bob@contoso.com", "sip:alice@contoso.com", sfb.Message{Text: "hello"}))
	alice.await("invitation", is("messagingInvitation", "started"))

	require.NoError(t, e.sim.SetNativeClient("sip:bob@contoso.com", false))
	evs := alice.await("invitation withdrawn", is("messagingInvitation", "completed"))
	done := evs[len(evs)-1]
	assert.Equal(t, "Failure", done.status)
	assert.Equal(t, "Canceled", get(t, done.raw, "reason", "subcode"))
}
