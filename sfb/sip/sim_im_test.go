package sip

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// Two SIP users chat through the simulator, which routes as an SfB pool:
// the first message in the INVITE, answers in the same conversation,
// formatting, typing, the end of the conversation and a refusal.
// Per user (signed with NTLM) and as a trusted application (both
// endpoints on one shared connection).
func TestSimIM(t *testing.T) {
	t.Run("per user", func(t *testing.T) {
		srv, addr := startSimSIP(t, sim.Options{}, nil)
		tr := simTransport(t, testConfig(addr))
		ea, eb := newEvents(), newEvents()
		a := signIn(t, tr, "alice@contoso.com", "pw-alice", ea)
		b := signIn(t, tr, "bob@contoso.com", "pw-bob", eb)
		testSimIM(t, srv, a, b, ea, eb)
	})
	t.Run("trusted", func(t *testing.T) {
		srv, tr := simTrusted(t)
		ea, eb := newEvents(), newEvents()
		a := signIn(t, tr, "alice@contoso.com", "", ea)
		b := signIn(t, tr, "bob@contoso.com", "", eb)
		testSimIM(t, srv, a, b, ea, eb)
	})
}

func testSimIM(t *testing.T, srv *sim.Server, a, b *Session, ea, eb *events) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	sent, err := a.SendMessage(ctx, bob, sfb.Message{Text: "Hello Bob"})
	require.NoError(t, err)
	assert.NotEmpty(t, sent.ID)
	got := next[sfb.MessageReceived](t, eb)
	assert.Equal(t, alice, got.From.URI)
	assert.Equal(t, "Hello Bob", got.Message.Text)
	assert.Equal(t, alice, got.Conversation.Peer)

	_, err = b.SendMessage(ctx, alice, sfb.Message{Text: "Hi Alice", HTML: "<b>Hi</b> Alice"})
	require.NoError(t, err)
	reply := next[sfb.MessageReceived](t, ea)
	assert.Equal(t, bob, reply.From.URI)
	assert.Equal(t, "<b>Hi</b> Alice", reply.Message.HTML)
	assert.Equal(t, "Hi Alice", reply.Message.Text)

	require.NoError(t, a.SetTyping(ctx, bob, true))
	typing := next[sfb.TypingChanged](t, eb)
	assert.Equal(t, alice, typing.From)
	assert.True(t, typing.Typing)

	for _, text := range []string{"one", "two", "three"} {
		_, err := a.SendMessage(ctx, bob, sfb.Message{Text: text})
		require.NoError(t, err)
	}
	for _, text := range []string{"one", "two", "three"} {
		assert.Equal(t, text, next[sfb.MessageReceived](t, eb).Message.Text)
	}

	// Bob signs out: his BYE ends alice's conversation.
	ctxClose, cancelClose := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelClose()
	require.NoError(t, b.Close(ctxClose))
	assert.Equal(t, bob, next[sfb.ConversationEnded](t, ea).Conversation.Peer)

	// A refusal of the pool reaches the sender as a delivery failure.
	srv.FailSIPRequests(1, 480, 0)
	_, err = a.SendMessage(ctx, bob, sfb.Message{Text: "still there?"})
	require.Error(t, err)
	assert.True(t, errors.Is(err, sfb.ErrDeliveryFailed), "%v", err)
	assert.True(t, errors.Is(err, sfb.ErrRecipientUnavailable), "%v", err)
}
