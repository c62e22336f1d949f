package e2e

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// A 1:1 portal is what Element shows as a direct chat: the user's invite
// says is_direct, and the room holds the user and the colleague's ghost
// (besides the bridge bot, a functional member), not the user's own SfB
// ghost.
func TestPortalIsADirectChat(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "dora")
	ctx, cancel := context.WithTimeout(context.Background(), 2*hop)
	defer cancel()

	from := p.mx.mark()
	room := env.openPortal(t, p, "Hello Dora")
	invite := p.mx.waitFor(from, hop, "the invite to the portal", func(evt *event.Event) bool {
		return evt.RoomID == room && isInvite(p.mx.ID)(evt)
	})
	assert.True(t, invite.Content.AsMember().IsDirect, "the invite carries is_direct: %s", invite.Content.VeryRaw)

	members, err := p.mx.Client.JoinedMembers(ctx, room)
	require.NoError(t, err)
	var got []id.UserID
	for user := range members.Joined {
		if user != env.st.Bot {
			got = append(got, user)
		}
	}
	assert.ElementsMatch(t, []id.UserID{p.mx.ID, p.ghost}, got, "members besides the bot")
	assert.NotContains(t, members.Joined, env.st.GhostID(p.self.URI.Address()), "the user's own SfB ghost")
}

// resolve-identifier and start-chat for an address the SfB directory
// does not know say so and open no room.
func TestUnknownAddressIsNoChat(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "emil")
	ctx, cancel := context.WithTimeout(context.Background(), 2*hop)
	defer cancel()

	from := p.mx.mark()
	for _, cmd := range []string{"resolve-identifier", "start-chat"} {
		mark := p.mx.mark()
		_, err := p.mx.Client.SendText(ctx, p.mgmt, cmd+" nobody@contoso.com")
		require.NoError(t, err)
		reply := p.mx.waitFor(mark, hop, "the bot's answer to "+cmd, isMessage(p.mgmt, env.st.Bot, anyBody))
		body := reply.Content.AsMessage().Body
		assert.Contains(t, body, "No Skype for Business user with the address nobody@contoso.com", cmd)
		assert.NotContains(t, body, "Found", cmd)
	}
	// Commands run one after another: once the colleague's chat is
	// there, an unknown address's room would have come before it.
	mark := p.mx.mark()
	_, err := p.mx.Client.SendText(ctx, p.mgmt, "start-chat "+p.colleague.URI.Address())
	require.NoError(t, err)
	p.mx.waitFor(mark, hop, "the bot's answer to start-chat with the colleague", isMessage(p.mgmt, env.st.Bot, func(b string) bool {
		return strings.Contains(b, "Created chat")
	}))
	var invites []id.RoomID
	for _, evt := range p.mx.Events(from) {
		if isInvite(p.mx.ID)(evt) && !p.mx.isSpace(evt.RoomID) {
			invites = append(invites, evt.RoomID)
		}
	}
	assert.Len(t, invites, 1, "only the colleague's chat was created")
}

// An m.notice is text: it reaches the SfB colleague like any message.
func TestNoticeIsBridged(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "fritz")
	ctx, cancel := context.WithTimeout(context.Background(), 2*hop)
	defer cancel()
	room := env.openPortal(t, p, "Hello Fritz")
	_, err := p.mx.Client.SendNotice(ctx, room, "a notice from Matrix")
	require.NoError(t, err)
	env.waitReceived(t, p, "the notice", func(r sim.Received) bool {
		return r.Message.Text == "a notice from Matrix"
	})
}

// After logout a message in the portal is answered in the user's words.
func TestMessageAfterLogoutSaysHowToSignIn(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "gerda")
	ctx, cancel := context.WithTimeout(context.Background(), 2*hop)
	defer cancel()
	room := env.openPortal(t, p, "Hello Gerda")
	require.NoError(t, env.st.ProvisionLogout(ctx, p.mx.ID))

	from := p.mx.mark()
	_, err := p.mx.Client.SendText(ctx, room, "are you there?")
	require.NoError(t, err)
	notice := p.mx.waitFor(from, hop, "the bot's notice in the portal", isMessage(room, env.st.Bot, anyBody))
	body := notice.Content.AsMessage().Body
	assert.Contains(t, body, "You are not signed in to Skype for Business. Send `login` to the bridge bot to sign in.")
	assert.NotContains(t, body, "receiver login")
}

// A reply, an edit and a reaction from Matrix arrive on SfB as text that
// says what they are; a deletion, which SfB cannot carry, gets one notice
// in the bridge's words. None of it is an error-level line in the log.
func TestRelationsArriveReadableOnSfB(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "hanna")
	ctx, cancel := context.WithTimeout(context.Background(), 3*hop)
	defer cancel()
	room := env.openPortal(t, p, "Hello Hanna\nsecond line")
	logStart := fileSize(t, env.st.Bridge.LogPath)
	first := p.mx.mark()

	hello := p.mx.waitFor(0, hop, "the colleague's message", isMessage(room, p.ghost, equals("Hello Hanna\nsecond line")))
	mine, err := p.mx.Client.SendText(ctx, room, "a message I will edit")
	require.NoError(t, err)
	env.waitReceived(t, p, "the message", func(r sim.Received) bool { return r.Message.Text == "a message I will edit" })

	reply := &event.MessageEventContent{MsgType: event.MsgText, Body: "hi back"}
	reply.RelatesTo = (&event.RelatesTo{}).SetReplyTo(hello.ID)
	_, err = p.mx.Client.SendMessageEvent(ctx, room, event.EventMessage, reply)
	require.NoError(t, err)
	quoted := env.waitReceived(t, p, "the reply", func(r sim.Received) bool { return strings.HasSuffix(r.Message.Text, "\nhi back") })
	assert.Regexp(t, `^> .+: Hello Hanna\nhi back$`, quoted.Message.Text, "a quote of the first line, then the reply")

	// SetEdit makes this the m.new_content and gives the event the
	// fallback body "* edited".
	edit := &event.MessageEventContent{MsgType: event.MsgText, Body: "edited"}
	edit.SetEdit(mine.EventID)
	_, err = p.mx.Client.SendMessageEvent(ctx, room, event.EventMessage, edit)
	require.NoError(t, err)
	env.waitReceived(t, p, "the edit", func(r sim.Received) bool { return r.Message.Text == "(edited) edited" })

	_, err = p.mx.Client.SendReaction(ctx, room, hello.ID, "👍")
	require.NoError(t, err)
	env.waitReceived(t, p, "the reaction", func(r sim.Received) bool {
		return strings.HasSuffix(r.Message.Text, " reacted 👍 to: Hello Hanna")
	})

	const deletionWords = "Skype for Business cannot delete messages"
	mark := p.mx.mark()
	_, err = p.mx.Client.RedactEvent(ctx, room, mine.EventID)
	require.NoError(t, err)
	isDeletionNotice := isMessage(room, env.st.Bot, func(b string) bool { return strings.Contains(b, deletionWords) })
	p.mx.waitFor(mark, hop, "the notice about the deletion", isDeletionNotice)
	n := 0
	for _, evt := range p.mx.Events(first) {
		if isDeletionNotice(evt) {
			n++
		}
	}
	assert.Equal(t, 1, n, "notices about the deletion")
	for _, line := range strings.Split(readFrom(t, env.st.Bridge.LogPath, logStart), "\n") {
		assert.NotContains(t, line, `"level":"error"`, "an expected refusal is no operator alert")
	}
	assert.Len(t, env.sentToColleague(p), 4, "the message, the reply, the edit and the reaction, once each")
}

// HTML as an SfB 2016 client sends it (spans with Office inline CSS) and
// text pasted from Word arrive in Element's format: the sender's bold,
// italic, colour and list, none of the Office markup, the SfB emoticon as
// emoji. The samples are those of bridge/msgconv's corpus.
func TestOfficeHTMLArrivesClean(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "olga")
	ctx, cancel := context.WithTimeout(context.Background(), 2*hop)
	defer cancel()
	room := env.openPortal(t, p, "Hello Olga")

	for _, name := range []string{"sfb2016-bold-italic-colour", "word-paste-list", "link-and-breaks"} {
		t.Run(name, func(t *testing.T) {
			in, err := sim.Sample(name)
			require.NoError(t, err)
			corpus := "../bridge/msgconv/testdata/sfb-html/" + name
			wantHTML, err := os.ReadFile(corpus + ".want.html")
			require.NoError(t, err)
			wantBody, err := os.ReadFile(corpus + ".want.txt")
			require.NoError(t, err)

			from := p.mx.mark()
			require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{HTML: in}))
			evt := p.mx.waitFor(from, hop, "the formatted message", isMessage(room, p.ghost, anyBody))
			msg := evt.Content.AsMessage()
			assert.Equal(t, event.FormatHTML, msg.Format)
			assert.Equal(t, string(wantHTML), msg.FormattedBody)
			assert.Equal(t, string(wantBody), msg.Body)
		})
	}
}

// A message to a colleague with no signed-in SfB client says that they
// are offline, not that they do not exist, and carries no error chain.
func TestMessageToOfflineColleagueSaysOffline(t *testing.T) {
	env := setup(t)
	p := env.newPair(t, "inge")
	ctx, cancel := context.WithTimeout(context.Background(), 2*hop)
	defer cancel()
	room := env.openPortal(t, p, "Hello Inge")
	require.NoError(t, env.sim.SetNativeClient(p.colleague.URI, false))
	t.Cleanup(func() { _ = env.sim.SetNativeClient(p.colleague.URI, true) })

	from := p.mx.mark()
	_, err := p.mx.Client.SendText(ctx, room, "are you there?")
	require.NoError(t, err)
	notice := p.mx.waitFor(from, hop, "the bot's notice", isMessage(room, env.st.Bot, anyBody))
	body := notice.Content.AsMessage().Body
	assert.Contains(t, body, p.colleague.URI.Address()+" is offline and Skype for Business could not deliver the message")
	for _, raw := range []string{"does not exist", "sfb:", "RemoteFailure", "Unreachable"} {
		assert.NotContains(t, body, raw)
	}
}
