package e2e

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pidginsipe"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/synapse"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// startPidginSipe signs user in with a real SfB client, pidgin-sipe in
// finch (internal/pidginsipe), to the simulator's SIP listener over TLS, as
// SfB clients connect; the listener's certificate is one the user accepted
// before. Without pidgin-sipe the test fails in CI (make sipe installs it)
// and is skipped elsewhere.
func startPidginSipe(t *testing.T, env *testEnv, user sim.User) *pidginsipe.Client {
	t.Helper()
	if err := pidginsipe.Installed(); err != nil {
		if synapse.Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	server := env.sipListener.Addr().String()
	conn, err := tls.Dial("tcp", server, &tls.Config{InsecureSkipVerify: true}) // only to read the certificate to trust
	require.NoError(t, err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: conn.ConnectionState().PeerCertificates[0].Raw})
	_ = conn.Close()

	dir := t.TempDir()
	address := user.URI.Address()
	local, _, _ := strings.Cut(address, "@")
	c, err := pidginsipe.Start(context.Background(), dir, pidginsipe.Account{
		SignIn: address, Login: `CONTOSO\` + local, Password: user.Password,
		Server: server, TLS: true, ServerCertPEM: certPEM,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("finch's screen:\n%s", c.Screen())
			if b, err := os.ReadFile(filepath.Join(dir, "finch.log")); err == nil {
				lines := strings.Split(string(b), "\n")
				t.Logf("end of pidgin-sipe's debug log:\n%s", strings.Join(lines[max(0, len(lines)-120):], "\n"))
			}
		}
		c.Close()
	})
	require.NoError(t, c.WaitConnected(context.Background(), hop))
	return c
}

// The "done when": a Matrix user chats and sees presence with a
// pidgin-sipe user through the bridge on SIP. The colleague is a real SfB
// client, pidgin-sipe in finch, with the Matrix user on its contact list;
// the bridge carries the Matrix user as a trusted application, or signs
// them in as a user.

func TestSIPPidginSipeTrusted(t *testing.T) { testSIPPidginSipe(t, sfb.SIPModeTrusted, "sipetrusted") }

func TestSIPPidginSipePerUser(t *testing.T) { testSIPPidginSipe(t, sfb.SIPModePerUser, "sipeperuser") }

func testSIPPidginSipe(t *testing.T, mode, name string) {
	t.Parallel()
	if wanted, reason := synapse.Wanted(); !wanted {
		t.Skip(reason)
	}
	if err := pidginsipe.Installed(); err != nil && !synapse.Required() {
		t.Skip(err)
	}
	env, err := startEnvOn(mode)
	if env != nil {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("bridge running: %v\n%s", env.st.Bridge.Running(), env.st.Bridge.LogTail(80))
			}
			_ = env.close()
		})
	}
	require.NoError(t, err)
	p := env.newPair(t, name)
	require.Eventually(t, func() bool { return env.sim.SIPRegistrations(p.self.URI) == 1 }, hop, 50*time.Millisecond,
		"%s has %d SIP registrations, want 1", p.self.URI, env.sim.SIPRegistrations(p.self.URI))
	require.NoError(t, env.sim.SetContacts(p.colleague.URI, []sim.ContactGroup{{Name: "Matrix", Members: []sfb.URI{p.self.URI}}}))
	c := startPidginSipe(t, env, p.colleague)
	ctx, cancel := context.WithTimeout(context.Background(), 6*hop)
	defer cancel()
	matrixUser := string(p.self.URI)

	// pidgin-sipe writes first: the Matrix user is invited to the portal
	// and reads the message from the colleague's ghost.
	from := p.mx.mark()
	require.NoError(t, c.SendIM(ctx, matrixUser, "Hello from pidgin-sipe"))
	invite := p.mx.waitFor(from, hop, "an invite to the portal", func(evt *event.Event) bool {
		return isInvite(p.mx.ID)(evt) && evt.RoomID != p.mgmt && !p.mx.isSpace(evt.RoomID)
	})
	room := invite.RoomID
	_, err = p.mx.Client.JoinRoomByID(ctx, room)
	require.NoError(t, err)
	p.mx.waitFor(from, hop, "pidgin-sipe's first message", isMessage(room, p.ghost, equals("Hello from pidgin-sipe")))

	// The Matrix user answers in Element's room; pidgin-sipe shows it.
	_, err = p.mx.Client.SendText(ctx, room, "Hi pidgin-sipe, Matrix here")
	require.NoError(t, err)
	_, err = c.WaitIM(ctx, hop, func(m pidginsipe.IM) bool {
		return m.From == matrixUser && strings.Contains(m.Text(), "Matrix here")
	})
	require.NoError(t, err, "pidgin-sipe received %v", c.IMs())

	// Formatting typed in pidgin-sipe arrives formatted. pidgin-sipe sends
	// text/plain with an X-MMS-IM-Format whose effects apply to the whole
	// message (EF=B for any bold in it), as Messenger-era clients did.
	from = p.mx.mark()
	require.NoError(t, c.SendIM(ctx, matrixUser, "this is <b>important</b>"))
	msg := p.mx.waitFor(from, hop, "pidgin-sipe's formatted message", isMessage(room, p.ghost, func(b string) bool {
		return strings.Contains(b, "important")
	})).Content.AsMessage()
	assert.Equal(t, "this is important", strings.TrimSpace(strings.ReplaceAll(msg.Body, "*", "")))
	assert.Regexp(t, `^<(b|strong)>this is important</(b|strong)>$`, msg.FormattedBody)

	// pidgin-sipe's user goes away: the ghost's presence follows.
	fromPresence := p.mx.presenceMark()
	require.NoError(t, c.SetStatus(ctx, pidginsipe.StatusAway))
	p.mx.waitPresence(fromPresence, hop, "the pidgin-sipe user away", isPresence(p.ghost, event.PresenceUnavailable, "Away"))

	// The Matrix user publishes presence: pidgin-sipe shows it on its
	// contact list.
	from = p.mx.mark()
	_, err = p.mx.Client.SendText(ctx, p.mgmt, "presence-publish on")
	require.NoError(t, err)
	p.mx.waitFor(from, hop, "the bot's answer to presence-publish on", isMessage(p.mgmt, env.st.Bot, func(b string) bool {
		return strings.Contains(b, "Your Matrix presence is shown on Skype for Business")
	}))
	p.mx.setSyncPresence(event.PresenceUnavailable)
	require.NoError(t, p.mx.Client.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: "Out for lunch"}))
	require.Eventually(t, func() bool {
		s, err := c.BuddyStatus(ctx, matrixUser)
		return err == nil && s == "away"
	}, hop, 200*time.Millisecond, "the Matrix user's presence in pidgin-sipe")

	assert.Equal(t, []string{"Hello from pidgin-sipe", "this is important"}, ghostMessages(t, p, room, 0), "every pidgin-sipe message once")
}
