package pidginsipe_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/pidginsipe"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/synapse"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/testpki"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

const wait = 20 * time.Second

// installed fails the test in CI, where scripts/ensure-sipe.sh (make sipe)
// installs pidgin-sipe, and skips it elsewhere when something is missing.
func installed(t *testing.T) {
	t.Helper()
	if err := pidginsipe.Installed(); err != nil {
		if synapse.Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// start runs pidgin-sipe signed in as account, and on failure shows what
// finch showed and the end of its debug log.
func start(t *testing.T, account pidginsipe.Account) *pidginsipe.Client {
	t.Helper()
	dir := t.TempDir()
	c, err := pidginsipe.Start(context.Background(), dir, account)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("finch's screen:\n%s", c.Screen())
			if b, err := os.ReadFile(filepath.Join(dir, "finch.log")); err == nil {
				lines := strings.Split(string(b), "\n")
				t.Logf("end of finch's debug log:\n%s", strings.Join(lines[max(0, len(lines)-150):], "\n"))
				kept := filepath.Join(os.TempDir(), "pidginsipe-"+t.Name()+".log")
				if os.WriteFile(kept, b, 0o600) == nil {
					t.Logf("finch's whole debug log: %s", kept)
				}
			}
		}
		c.Close()
	})
	require.NoError(t, c.WaitConnected(context.Background(), wait))
	return c
}

// A real SfB client, pidgin-sipe, against the simulator's SIP front end:
// it signs in with NTLM, gets its contact list and the presence of a
// simulated native user (and its changes), chats with that user both ways,
// and its own status change reaches the simulator's presence.
func TestPidginSipeWithSimulator(t *testing.T) {
	installed(t)
	ctx := context.Background()
	const (
		alice = sfb.URI("sip:alice@contoso.com")
		bob   = sfb.URI("sip:bob@contoso.com")
	)
	srv, err := sim.New(sim.Options{SIP: sim.SIPOptions{FQDN: "fe01.contoso.com"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	require.NoError(t, srv.AddUser(sim.User{URI: alice, DisplayName: "Alice Adams", Password: "alice-pw"}))
	require.NoError(t, srv.AddUser(sim.User{URI: bob, DisplayName: "Bob Brown", Password: "bob-pw"}))
	require.NoError(t, srv.SetContacts(alice, []sim.ContactGroup{{Name: "Colleagues", Members: []sfb.URI{bob}}}))
	require.NoError(t, srv.SetPresence(bob, sim.Presence{Availability: string(sfb.AvailabilityBusy)}))
	// TLS, as SfB clients always connect: the Front End's certificate is
	// one pidgin-sipe's user accepted before (libpurple's tls_peers).
	ca, err := testpki.NewCA("interop test CA")
	require.NoError(t, err)
	fe, err := ca.Issue(testpki.Leaf{CommonName: "fe01.contoso.com", DNSNames: []string{"fe01.contoso.com"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() {
		_ = srv.ServeSIP(ln, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{fe.TLS}})
	}()

	c := start(t, pidginsipe.Account{SignIn: "alice@contoso.com", Login: `CONTOSO\alice`, Password: "alice-pw",
		Server: ln.Addr().String(), TLS: true, ServerCertPEM: fe.CertPEM})

	// bob from the contact list, busy, then away.
	status := func() string {
		s, err := c.BuddyStatus(ctx, string(bob))
		require.NoError(t, err)
		return s
	}
	require.Eventually(t, func() bool { return status() == "busy" }, wait, 100*time.Millisecond, "bob's status in pidgin-sipe")
	require.NoError(t, srv.SetPresence(bob, sim.Presence{Availability: string(sfb.AvailabilityAway)}))
	require.Eventually(t, func() bool { return status() == "away" }, wait, 100*time.Millisecond, "bob's new status in pidgin-sipe")

	// alice writes to bob; bob answers from his native client.
	require.NoError(t, c.SendIM(ctx, string(bob), "Hello Bob, from pidgin-sipe"))
	require.Eventually(t, func() bool {
		for _, r := range srv.Received(bob) {
			if r.From == alice && strings.Contains(r.Message.Text, "Hello Bob, from pidgin-sipe") {
				return true
			}
		}
		return false
	}, wait, 100*time.Millisecond, "bob receives alice's IM")
	require.NoError(t, srv.SendMessage(ctx, bob, alice, sfb.Message{Text: "Hi Alice, Bob here"}))
	_, err = c.WaitIM(ctx, wait, func(m pidginsipe.IM) bool {
		return m.From == string(bob) && strings.Contains(m.Text(), "Bob here")
	})
	require.NoError(t, err)

	// A second message in the same conversation, and typing.
	require.NoError(t, c.Typing(ctx, string(bob), true))
	require.Eventually(t, func() bool { return srv.Typing(bob, alice) }, wait, 100*time.Millisecond, "bob sees alice typing")
	require.NoError(t, c.SendIM(ctx, string(bob), "<b>second</b> one"))
	require.Eventually(t, func() bool {
		for _, r := range srv.Received(bob) {
			if strings.Contains(r.Message.Text, "second one") {
				return true
			}
		}
		return false
	}, wait, 100*time.Millisecond, "bob receives alice's second IM")

	// alice sets herself away in pidgin-sipe.
	require.NoError(t, c.SetStatus(ctx, pidginsipe.StatusAway))
	require.Eventually(t, func() bool {
		p, err := srv.GetPresence(alice)
		require.NoError(t, err)
		return p.Availability == string(sfb.AvailabilityAway)
	}, wait, 100*time.Millisecond, "alice's status published to the simulator")
}
