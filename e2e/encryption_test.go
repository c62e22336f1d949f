package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/e2e/stack"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// The bridge as docs/operator-guide.md sets up encryption (the example's
// defaults) and double puppeting, in an environment of its own: double puppeting changes how
// every portal starts (the bridge joins the user), which the shared
// environment's tests do not expect.
func TestEncryptionAndDoublePuppeting(t *testing.T) {
	env := ownEnv(t, "", func(o *stack.Options) {
		o.DoublePuppet = true
		// As many administrations run Synapse: every private room is
		// encrypted from its creation, the bridge's portals and
		// management rooms included.
		o.SynapseConfig["encryption_enabled_by_default_for_room_type"] = "invite"
	})
	t.Run("encrypted DM", func(t *testing.T) { testEncryptedDM(t, env) })
	t.Run("double puppet", func(t *testing.T) { testDoublePuppet(t, env) })
	t.Run("own SfB client", func(t *testing.T) { testOwnSfBClientMessage(t, env) })
}

// A migrated user starts an encrypted DM from Element with an SfB
// colleague's ghost. Everything in the room is encrypted on the wire,
// and both ways the text is what the other side wrote: SfB -> Matrix the
// user's client decrypts the colleague's message; Matrix -> SfB the
// colleague reads the user's encrypted message in clear; an encrypted
// image reaches SfB as a link that a plain HTTP client downloads,
// decrypted, byte for byte.
func testEncryptedDM(t *testing.T, env *testEnv) {
	p := env.newPairOf(t, "enid", newEncryptingUser)
	env.login(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 6*hop)
	defer cancel()

	from := p.mx.mark()
	createResp, err := p.mx.Client.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset:   "trusted_private_chat",
		IsDirect: true,
		Invite:   []id.UserID{p.ghost},
		InitialState: []*event.Event{{
			Type:    event.StateEncryption,
			Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
		}},
	})
	require.NoError(t, err)
	room := createResp.RoomID
	// bridgev2 says the room is a portal now, encrypted: until then an
	// SfB message would open a portal room of its own (bridgev2 does not
	// hold incoming events while it takes over a room).
	created := p.mx.waitFor(from, hop, "the bridge's notice that the portal is ready", isMessage(room, p.ghost, func(b string) bool {
		return strings.Contains(b, "portal created")
	}))
	assert.NotZero(t, created.Mautrix.EventSource&event.SourceDecrypted, "the bridge's notice came encrypted")

	// SfB -> Matrix: encrypted by the bridge, decrypted by the user.
	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: "Encrypted hello from SfB"}))
	got := p.mx.waitFor(from, hop, "the colleague's message, decrypted", isMessage(room, p.ghost, equals("Encrypted hello from SfB")))
	assert.NotZero(t, got.Mautrix.EventSource&event.SourceDecrypted, "the message came encrypted and the user's client decrypted it")
	for _, evt := range p.mx.Events(from) {
		if evt.RoomID == room && evt.Type == event.EventMessage {
			assert.NotZero(t, evt.Mautrix.EventSource&event.SourceDecrypted, "a message in clear in the encrypted room: %s from %s", evt.Content.AsMessage().Body, evt.Sender)
		}
	}

	// Matrix -> SfB: the user's client encrypts; the colleague reads.
	sent, err := p.mx.Client.SendText(ctx, room, "Encrypted reply from Matrix")
	require.NoError(t, err)
	raw, err := p.mx.Client.GetEvent(ctx, room, sent.EventID)
	require.NoError(t, err)
	assert.Equal(t, event.EventEncrypted.Type, raw.Type.Type, "the homeserver got ciphertext")
	assert.NotContains(t, string(raw.Content.VeryRaw), "Encrypted reply")
	env.waitReceived(t, p, "the user's encrypted reply", func(r sim.Received) bool {
		return r.Message.Text == "Encrypted reply from Matrix"
	})

	// An encrypted image: the homeserver holds only ciphertext; the SfB
	// colleague gets a link that serves the plaintext.
	image := make([]byte, 50_000)
	_, err = rand.Read(image)
	require.NoError(t, err)
	copy(image, "\x89PNG\r\n\x1a\n")
	file := attachment.NewEncryptedFile()
	ciphertext := bytes.Clone(image)
	file.EncryptInPlace(ciphertext)
	uploaded, err := p.mx.Client.UploadBytes(ctx, ciphertext, "application/octet-stream")
	require.NoError(t, err)
	_, err = p.mx.Client.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgImage,
		Body:    "scan.png",
		File:    &event.EncryptedFileInfo{EncryptedFile: *file, URL: uploaded.ContentURI.CUString()},
		Info:    &event.FileInfo{MimeType: "image/png", Size: len(image)},
	})
	require.NoError(t, err)
	received := env.waitReceived(t, p, "the encrypted image as a link", func(r sim.Received) bool {
		return strings.HasPrefix(r.Message.Text, "📎 scan.png (50.0 KB): ")
	})
	link := mediaLinkPattern.FindString(received.Message.Text)
	require.NotEmpty(t, link, received.Message.Text)
	assert.NotContains(t, received.Message.Text+received.Message.HTML, file.Key.Key, "the file's key is not in the message")

	resp, body := download(t, ctx, link)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.True(t, bytes.Equal(image, body), "the decrypted bytes (%d of %d)", len(body), len(image))
	assert.Equal(t, "image/png", resp.Header.Get("Content-Type"))

	// A tampered link, or the link under another name, gets 403.
	tampered := []byte(link)
	i := strings.Index(link, "/sfb/media/v1/e/") + len("/sfb/media/v1/e/") + 40
	tampered[i] ^= 1
	resp, body = download(t, ctx, string(tampered))
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, string(body))
	resp, body = download(t, ctx, strings.TrimSuffix(link, "scan.png")+"scan.html")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, string(body))
	assert.NotContains(t, string(body), "PNG")
}

// With double puppeting, the bridge acts in Matrix as the user where the
// user acted on SfB: a portal the colleague opens is joined by the user's
// own account, without the user accepting an invite. The portal is one
// that Synapse encrypted by itself.
func testDoublePuppet(t *testing.T, env *testEnv) {
	p := env.newPairOf(t, "dominik", newEncryptingUser)
	env.login(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 2*hop)
	defer cancel()

	from := p.mx.mark()
	require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: "Hello Dominik"}))
	msg := p.mx.waitFor(from, hop, "the colleague's first message", isMessage("", p.ghost, equals("Hello Dominik")))
	room := msg.RoomID
	assert.NotZero(t, msg.Mautrix.EventSource&event.SourceDecrypted, "Synapse encrypted the portal from its creation, and the bridge encrypted even its first message")
	join := p.mx.waitFor(from, hop, "the user's join, made by the bridge", isJoin(room, p.mx.ID))
	assert.Equal(t, p.mx.ID, join.Sender)
	assert.Equal(t, "sfb-matrix-bridge", join.Content.Raw[appservice.DoublePuppetKey], "the bridge joined as the user: %s", join.Content.VeryRaw)
	members, err := p.mx.Client.JoinedMembers(ctx, room)
	require.NoError(t, err)
	assert.Contains(t, members.Joined, p.mx.ID, "joined without accepting the invite")
}

// In coexistence the user still has their own SfB client. In a
// multi-party conversation SfB hands what they write there to the
// bridge's endpoint too, From the user themselves: it appears in the
// group room as sent by the user's own Matrix account (the double puppet),
// not by the bridge bot or a ghost, and is not sent back to SfB.
func testOwnSfBClientMessage(t *testing.T, env *testEnv) {
	p := env.newPairOf(t, "oskar", newEncryptingUser)
	env.login(t, p)
	carol := sim.User{URI: "sip:oskar.carol@contoso.com", DisplayName: "Carol Oskar", Password: "unused"}
	require.NoError(t, env.sim.AddUser(carol))
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()

	// The user starts the conversation from their own SfB client; their
	// other endpoint, the bridge, is invited into it.
	from := p.mx.mark()
	thread, err := env.sim.StartGroup(ctx, p.self.URI, []sfb.URI{p.colleague.URI, carol.URI}, "Budget", "")
	require.NoError(t, err)
	joined := p.mx.waitFor(from, hop, "the colleague's ghost in the group room", func(evt *event.Event) bool {
		return evt.RoomID != p.mgmt && isJoin(evt.RoomID, p.ghost)(evt)
	})
	room := joined.RoomID
	p.mx.waitFor(from, hop, "the user in the group room, joined by the bridge", isJoin(room, p.mx.ID))
	require.NoError(t, env.sim.SendGroupMessage(ctx, thread, p.colleague.URI, sfb.Message{Text: "hello all"}))
	p.mx.waitFor(from, hop, "the colleague's message in the group room", isMessage(room, p.ghost, equals("hello all")))

	require.NoError(t, env.sim.SendGroupMessage(ctx, thread, p.self.URI, sfb.Message{Text: "typed in my SfB client"}))
	own := p.mx.waitFor(from, hop, "the user's own SfB message, from their Matrix account", isMessage(room, p.mx.ID, equals("typed in my SfB client")))
	assert.Equal(t, "sfb-matrix-bridge", own.Content.Raw[appservice.DoublePuppetKey], "sent by the bridge as the user: %s", own.Content.VeryRaw)
	assert.NotZero(t, own.Mautrix.EventSource&event.SourceDecrypted, "in the encrypted room, encrypted")
	for _, evt := range p.mx.Events(from) {
		if evt.RoomID == room && evt.Type == event.EventMessage && evt.Content.AsMessage().Body == "typed in my SfB client" {
			assert.Equal(t, p.mx.ID, evt.Sender, "the user's message from anyone else")
		}
	}

	// Not echoed back: the colleague has it once, from the user's own
	// client.
	require.NoError(t, env.sim.SendGroupMessage(ctx, thread, p.colleague.URI, sfb.Message{Text: "after yours"}))
	p.mx.waitFor(from, hop, "the colleague's next message", isMessage(room, p.ghost, equals("after yours")))
	n := 0
	for _, r := range env.sim.Received(p.colleague.URI) {
		if r.Message.Text == "typed in my SfB client" {
			n++
		}
	}
	assert.Equal(t, 1, n, "the colleague received the user's message once")
}
