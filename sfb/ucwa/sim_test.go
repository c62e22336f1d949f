package ucwa

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

const (
	alice = sfb.URI("sip:alice@contoso.com")
	bob   = sfb.URI("sip:bob@contoso.com")
)

// startSim runs the simulator with alice (signed in through this client)
// and bob (on a simulated native client). wrap, when given, serves in
// front of the simulator on the same host.
func startSim(t *testing.T, opts sim.Options, wrap ...func(http.Handler) http.Handler) (*sim.Server, *Transport) {
	t.Helper()
	opts.Users = []sim.User{{URI: alice, DisplayName: "Alice Liddell", Password: "pw-alice"}, {URI: bob, DisplayName: "Bob Builder", Password: "pw-bob"}}
	opts.Logger = zerolog.New(zerolog.NewTestWriter(t)).With().Str("side", "sim").Logger()
	if opts.EventWait == 0 {
		opts.EventWait = 200 * time.Millisecond
	}
	srv, err := sim.New(opts)
	require.NoError(t, err)
	h := srv.Handler()
	for _, w := range wrap {
		h = w(h)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	t.Cleanup(func() { _ = srv.Close() })
	srv.SetBaseURL(hs.URL)
	tr, err := New(sfb.Config{DiscoveryURL: srv.DiscoveryURL(), AllowInsecureLoopback: true, RequestTimeout: 5 * time.Second},
		zerolog.New(zerolog.NewTestWriter(t)), WithTimings(testTimings()))
	require.NoError(t, err)
	return srv, tr
}

func simSignIn(t *testing.T, tr *Transport) (sfb.Session, *recorder) {
	t.Helper()
	rec := &recorder{}
	s, err := tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "pw-alice"}}, rec.handle)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s, rec
}

func receivedTexts(srv *sim.Server, uri sfb.URI) []string {
	var out []string
	for _, r := range srv.Received(uri) {
		out = append(out, r.Message.Text)
	}
	return out
}

func TestSimReceiveAndReply(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	s, rec := simSignIn(t, tr)
	assert.Equal(t, "Alice Liddell", s.Self().DisplayName)
	ctx := context.Background()

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "Hello there"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)
	m := messages(rec.all())[0]
	assert.Equal(t, "Hello there", m.Message.Text)
	assert.Equal(t, bob, m.From.URI)
	assert.Equal(t, bob, m.Conversation.Peer)

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "second"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 2 }, waitFor, tick)
	assert.Equal(t, "second", messages(rec.all())[1].Message.Text)

	sent, err := s.SendMessage(ctx, bob, sfb.Message{Text: "reply"})
	require.NoError(t, err)
	assert.NotEmpty(t, sent.ID)
	require.Eventually(t, func() bool { return len(srv.Received(bob)) == 1 }, waitFor, tick)
	assert.Equal(t, []string{"reply"}, receivedTexts(srv, bob))
	assert.Equal(t, 1, srv.Applications(alice))

	require.NoError(t, srv.SetTyping(ctx, bob, alice, true))
	require.Eventually(t, func() bool {
		for _, tc := range eventsOf[sfb.TypingChanged](rec.all()) {
			if tc.From == bob && tc.Typing {
				return true
			}
		}
		return false
	}, waitFor, tick)
	require.NoError(t, s.SetTyping(ctx, bob, true))
	require.Eventually(t, func() bool { return srv.Typing(bob, alice) }, waitFor, tick)

	p, err := s.LookupPerson(ctx, bob)
	require.NoError(t, err)
	assert.Equal(t, "Bob Builder", p.DisplayName)
	_, err = s.LookupPerson(ctx, "sip:nobody@contoso.com")
	require.ErrorIs(t, err, sfb.ErrNotFound, "the simulator's directory does not know the address")

	require.NoError(t, s.Close(ctx))
	require.Eventually(t, func() bool { return srv.Applications(alice) == 0 }, waitFor, tick)
}

func TestSimConversationExpiryAndRestart(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	s, rec := simSignIn(t, tr)
	ctx := context.Background()
	_, err := s.SendMessage(ctx, bob, sfb.Message{Text: "one"})
	require.NoError(t, err)
	srv.ExpireConversations(alice)
	require.Eventually(t, func() bool { return len(eventsOf[sfb.ConversationEnded](rec.all())) >= 1 }, waitFor, tick)
	assert.Equal(t, bob, eventsOf[sfb.ConversationEnded](rec.all())[0].Conversation.Peer)
	_, err = s.SendMessage(ctx, bob, sfb.Message{Text: "two"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(srv.Received(bob)) == 2 }, waitFor, tick)
	assert.Equal(t, []string{"one", "two"}, receivedTexts(srv, bob))
}

func TestSimEventChannelDropNothingLostOrDoubled(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	_, rec := simSignIn(t, tr)
	ctx := context.Background()
	// Every drop cuts a GET (the pending one or the next), so the client
	// sees each as a failed event channel; a drop is counted once the
	// client is back, so that the next drop cannot coincide with it.
	drops := func() int { return len(disconnects(rec.all())) }
	seenDrop := func(n int) func() bool {
		return func() bool {
			states := eventsOf[sfb.SessionState](rec.all())
			return drops() == n && states[len(states)-1].Connected
		}
	}
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "m0"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)
	srv.DropEventChannel(alice)
	for _, txt := range []string{"m1", "m2", "m3"} {
		require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: txt}))
	}
	require.Eventually(t, seenDrop(1), waitFor, tick)
	srv.ForceResync(alice)
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "m4"}))
	srv.DropEventChannel(alice)
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "m5"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) >= 6 }, waitFor, tick)
	require.Eventually(t, seenDrop(2), waitFor, tick)
	for _, st := range disconnects(rec.all()) {
		assert.ErrorIs(t, st.Err, sfb.ErrServerUnavailable, "a cut response is a network failure")
	}
	// Another message after everything settles proves nothing more is in
	// flight before counting.
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "m6"}))
	require.Eventually(t, func() bool {
		msgs := messages(rec.all())
		return len(msgs) > 0 && msgs[len(msgs)-1].Message.Text == "m6"
	}, waitFor, tick)
	assert.Equal(t, []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6"}, deliveredOnce(t, messages(rec.all())))
	assert.Equal(t, 2, drops(), "no failures but the two drops")
}

// deliveredOnce is the texts of msgs, in order; it fails the test for a
// message delivered twice.
func deliveredOnce(t *testing.T, msgs []sfb.MessageReceived) []string {
	t.Helper()
	var texts []string
	ids := map[string]bool{}
	for _, m := range msgs {
		texts = append(texts, m.Message.Text)
		assert.False(t, ids[m.ID], "message %s delivered twice", m.ID)
		ids[m.ID] = true
	}
	return texts
}

// disconnects are the SessionState events that report a lost connection.
func disconnects(evts []sfb.Event) []sfb.SessionState {
	var out []sfb.SessionState
	for _, st := range eventsOf[sfb.SessionState](evts) {
		if !st.Connected {
			out = append(out, st)
		}
	}
	return out
}

func TestSimTokenExpiryAndFailures(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	s, rec := simSignIn(t, tr)
	ctx := context.Background()
	first := s.Token()

	srv.ExpireTokens(alice)
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "after expiry"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 1 }, waitFor, tick)
	// The simulator records the message once the invitation is accepted;
	// the 503s below are for the event channel, not for that accept.
	require.Eventually(t, func() bool { return len(srv.Received(alice)) == 1 }, waitFor, tick)
	assert.NotEqual(t, first.Value, s.Token().Value, "renewed with the password")

	srv.FailRequestsRetryAfter(3, 503, 20*time.Millisecond)
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "after 503"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 2 }, waitFor, tick)
	require.Eventually(t, func() bool {
		states := eventsOf[sfb.SessionState](rec.all())
		return len(states) >= 2 && !states[0].Connected && states[len(states)-1].Connected
	}, waitFor, tick, "disconnected during the 503s, connected again after")

	srv.DeleteApplications(alice)
	// The simulated sender fails when alice has no endpoint, as SfB would:
	// wait until the client made a new application and polls it.
	require.Eventually(t, func() bool { return srv.Applications(alice) == 1 && srv.PendingGETs(alice) > 0 }, waitFor, tick)
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "new app"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 3 }, waitFor, tick)
	assert.Equal(t, 1, srv.Applications(alice))
	assert.Empty(t, eventsOf[sfb.SessionEnded](rec.all()))
}

func TestSimDeliveryFailure(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	s, _ := simSignIn(t, tr)
	require.NoError(t, srv.RejectMessages(bob, true))
	_, err := s.SendMessage(context.Background(), bob, sfb.Message{Text: "nope"})
	require.ErrorIs(t, err, sfb.ErrDeliveryFailed)
}

// TestSimResyncKeepsConversation: after a forced resync the client reads
// its conversations again, so its reply goes into the conversation bob
// still has open (same thread), and nothing is lost or doubled.
func TestSimResyncKeepsConversation(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	s, rec := simSignIn(t, tr)
	ctx := context.Background()
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "m1"}))
	// A second message comes once the invitation is accepted, after the
	// event that says messaging is connected: the reply then goes into
	// this conversation (a reply racing the accept would start another).
	require.Eventually(t, func() bool { return len(srv.Received(alice)) == 1 }, waitFor, tick)
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "m1b"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 2 }, waitFor, tick)
	_, err := s.SendMessage(ctx, bob, sfb.Message{Text: "r1"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(srv.Received(bob)) == 1 }, waitFor, tick)
	thread := srv.Received(bob)[0].ThreadID
	require.NotEmpty(t, thread)

	srv.ForceResync(alice)
	// The resync answers the pending GET at once; m2 comes in the batch
	// the resync link leads to, so once it is here the resync is handled.
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "m2"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 3 }, waitFor, tick)
	_, err = s.SendMessage(ctx, bob, sfb.Message{Text: "r2", HTML: "<b>r2</b>"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(srv.Received(bob)) == 2 }, waitFor, tick)
	got := srv.Received(bob)
	assert.Equal(t, thread, got[1].ThreadID, "the reply goes into the open conversation")
	assert.Equal(t, "<b>r2</b>", got[1].Message.HTML)
	assert.Equal(t, []string{"r1", "r2"}, receivedTexts(srv, bob))

	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "m3"}))
	require.Eventually(t, func() bool { return len(messages(rec.all())) == 4 }, waitFor, tick)
	msgs := messages(rec.all())
	assert.Equal(t, []string{"m1", "m1b", "m2", "m3"}, deliveredOnce(t, msgs))
	for _, m := range msgs {
		assert.Equal(t, thread, m.Conversation.ThreadID)
	}
	assert.Empty(t, eventsOf[sfb.ConversationEnded](rec.all()), "resync ends no conversation")
}

// TestSimStartMessagingHTML: a conversation we start carries formatted
// text in its first message.
func TestSimStartMessagingHTML(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	s, _ := simSignIn(t, tr)
	_, err := s.SendMessage(context.Background(), bob, sfb.Message{Text: "hello world", HTML: "hello <b>world</b>"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(srv.Received(bob)) == 1 }, waitFor, tick)
	got := srv.Received(bob)[0].Message
	assert.Equal(t, "hello <b>world</b>", got.HTML)
	assert.Equal(t, "hello world", got.Text)
}

// A completion of the user's own message in the same batch as incoming
// messages ends SendMessage before the handler works through those: the
// caller can record the message as delivered while the handler waits
// (the bridge waits for Matrix with each incoming message).
func TestSimOwnCompletionBeforeIncomingOfTheSameBatch(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	ctx := context.Background()
	held := make(chan string, 16)
	release := make(chan struct{})
	s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "pw-alice"}},
		func(ctx context.Context, e sfb.Event) {
			if m, ok := e.(sfb.MessageReceived); ok && m.Message.Text != "open" {
				held <- m.Message.Text
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
		})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })

	// An open conversation, so that the reply goes as a message (not an
	// invitation) and its completion is a message event.
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "open"}))
	_, err = s.SendMessage(ctx, bob, sfb.Message{Text: "first reply"})
	require.NoError(t, err)

	// The handler holds the event loop on "one"; "two" and the reply's
	// completion wait on the server for the next batch.
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "one"}))
	assert.Equal(t, "one", <-held)
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "two"}))
	sent := make(chan error, 1)
	go func() {
		_, err := s.SendMessage(ctx, bob, sfb.Message{Text: "reply"})
		sent <- err
	}()
	require.Eventually(t, func() bool { return len(srv.Received(bob)) == 2 }, waitFor, tick, "the server took the reply")
	release <- struct{}{}
	// Next batch: "two", then the completion. The handler holds "two".
	assert.Equal(t, "two", <-held)
	select {
	case err := <-sent:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("SendMessage waited for the handler of an incoming message of the same batch")
	}
	close(release)
}

// SendMessageTracked names the message as soon as the server took it, and
// DeliveryStatus tells later what became of it: delivered, failed, or
// unknown once the conversation is gone.
func TestSimDeliveryTracking(t *testing.T) {
	srv, tr := startSim(t, sim.Options{})
	ctx := context.Background()
	held := make(chan struct{}, 1)
	release := make(chan struct{})
	s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "pw-alice"}},
		func(ctx context.Context, e sfb.Event) {
			if m, ok := e.(sfb.MessageReceived); ok && m.Message.Text == "hold" {
				held <- struct{}{}
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
		})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	tracker := s.(sfb.DeliveryTracker)

	// The first message of a conversation goes in an invitation.
	var first string
	sent, err := tracker.SendMessageTracked(ctx, bob, sfb.Message{Text: "first"}, func(id string) { first = id })
	require.NoError(t, err)
	assert.Equal(t, sent.ID, first, "accepted names the message SentMessage names")
	status, err := tracker.DeliveryStatus(ctx, first)
	require.NoError(t, err)
	assert.Equal(t, sfb.DeliveryDelivered, status, "invitation %s", first)

	// With the event loop held, the completion cannot be read: accepted
	// comes anyway, SendMessageTracked returns only after the release.
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "hold"}))
	<-held
	accepted := make(chan string, 1)
	done := make(chan sfb.SentMessage, 1)
	go func() {
		sent, err := tracker.SendMessageTracked(ctx, bob, sfb.Message{Text: "second"}, func(id string) { accepted <- id })
		assert.NoError(t, err)
		done <- sent
	}()
	var second string
	select {
	case second = <-accepted:
	case <-time.After(waitFor):
		t.Fatal("accepted was not called before the completion")
	}
	assert.Equal(t, []string{"first", "second"}, receivedTexts(srv, bob), "accepted after the server took the message")
	assert.Empty(t, done, "SendMessageTracked returned without the completion")
	close(release)
	assert.Equal(t, second, (<-done).ID)
	status, err = tracker.DeliveryStatus(ctx, second)
	require.NoError(t, err)
	assert.Equal(t, sfb.DeliveryDelivered, status, "message %s", second)

	require.NoError(t, srv.RejectMessages(bob, true))
	var refused string
	_, err = tracker.SendMessageTracked(ctx, bob, sfb.Message{Text: "refused"}, func(id string) { refused = id })
	require.ErrorIs(t, err, sfb.ErrDeliveryFailed)
	require.NotEmpty(t, refused)
	status, err = tracker.DeliveryStatus(ctx, refused)
	require.NoError(t, err)
	assert.Equal(t, sfb.DeliveryFailed, status)

	srv.ExpireConversations(alice)
	status, err = tracker.DeliveryStatus(ctx, second)
	require.NoError(t, err)
	assert.Equal(t, sfb.DeliveryUnknown, status, "the conversation is gone")
	status, err = tracker.DeliveryStatus(ctx, "op:123")
	require.NoError(t, err)
	assert.Equal(t, sfb.DeliveryUnknown, status)
}
