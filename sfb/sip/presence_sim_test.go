package sip

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip/presence"
)

// startPresenceSim runs the simulator's SIP front end with alice (signed
// in through this transport, per user with NTLM), bob and carol.
func startPresenceSim(t *testing.T, opts sim.Options) (*sim.Server, *Session, *presEvents) {
	t.Helper()
	opts.Logger = zerolog.Nop()
	opts.Users = []sim.User{
		{URI: "sip:alice@contoso.com", DisplayName: "Alice Liddell", Password: "pw-alice"},
		{URI: bob, DisplayName: "Bob Builder", Password: "pw-bob"},
		{URI: carol, DisplayName: "Carol Singer", Password: "pw-carol"},
		{URI: dave, DisplayName: "Dave Diver", Password: "pw-dave"},
	}
	srv, err := sim.New(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.ServeSIP(ln, nil) }()

	cfg := sfb.DefaultConfig()
	cfg.Transport = sfb.TransportSIP
	cfg.AllowInsecureLoopback = true
	cfg.SIP.Server = "tcp://" + ln.Addr().String()
	tr, err := New(cfg, zerolog.Nop(), WithTimings(presTimings()))
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	e := &presEvents{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := tr.SignIn(ctx, sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "pw-alice"}}, e.handle)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return srv, s.(*Session), e
}

// lastPresence is the last PresenceChanged of u so far.
func (e *presEvents) lastPresence(u sfb.URI) (sfb.Presence, bool) {
	var last sfb.Presence
	found := false
	for _, pc := range e.presence() {
		if pc.Person == u {
			last, found = pc.Presence, true
		}
	}
	return last, found
}

// Against the simulator's SIP side (faithful to MS-PRES and pidgin-sipe,
// not to this client): watched people's presence arrives and follows their
// changes, the contact list and its changes, a publication shows as the
// user's presence, and unwatching ends the subscriptions.
func TestPresenceAgainstSimulator(t *testing.T) {
	srv, s, e := startPresenceSim(t, sim.Options{})
	ctx := context.Background()
	require.NoError(t, srv.SetPresence(bob, sim.Presence{Availability: "Busy", Activity: sfb.ActivityInAMeeting, Note: "Planning", DeviceType: "Mobile"}))

	taken, err := s.Watch(ctx, []sfb.URI{bob, carol})
	require.NoError(t, err)
	assert.Equal(t, []sfb.URI{bob, carol}, taken)
	require.Eventually(t, func() bool {
		p, ok := e.lastPresence(bob)
		_, okc := e.lastPresence(carol)
		return ok && okc && p.Availability == sfb.AvailabilityBusy
	}, 10*time.Second, 10*time.Millisecond)
	p, _ := e.lastPresence(bob)
	assert.Equal(t, sfb.ActivityInAMeeting, p.Activity)
	assert.Equal(t, "Planning", p.Note)
	assert.Equal(t, sfb.DeviceMobile, p.Device)
	c, _ := e.lastPresence(carol)
	assert.Equal(t, sfb.AvailabilityOnline, c.Availability)

	require.NoError(t, srv.SetPresence(bob, sim.Presence{Availability: "Away", OutOfOffice: "On leave"}))
	require.Eventually(t, func() bool {
		p, _ := e.lastPresence(bob)
		return p.Availability == sfb.AvailabilityAway && p.OutOfOffice != nil && p.OutOfOffice.Message == "On leave"
	}, 10*time.Second, 10*time.Millisecond)

	// The contact list, and a change to it.
	require.NoError(t, srv.SetContacts("sip:alice@contoso.com", []sim.ContactGroup{{Name: "Team", Members: []sfb.URI{bob, carol}}}))
	people, err := s.Contacts(ctx)
	require.NoError(t, err)
	var uris []sfb.URI
	for _, pp := range people {
		uris = append(uris, pp.URI)
	}
	assert.ElementsMatch(t, []sfb.URI{bob, carol}, uris)
	require.NoError(t, srv.SetContacts("sip:alice@contoso.com", []sim.ContactGroup{{Name: "Team", Members: []sfb.URI{bob, carol, dave}}}))
	require.Eventually(t, func() bool {
		return e.count(func(evt sfb.Event) bool { _, ok := evt.(sfb.ContactsChanged); return ok }) >= 1
	}, 10*time.Second, 10*time.Millisecond)
	people, err = s.Contacts(ctx)
	require.NoError(t, err)
	assert.Len(t, people, 3)

	// What alice publishes is what colleagues see.
	dnd, note := sfb.AvailabilityDoNotDisturb, "Writing"
	require.NoError(t, s.Publish(ctx, sfb.Publication{Availability: &dnd, Note: &note}))
	require.Eventually(t, func() bool {
		got, err := srv.GetPresence("sip:alice@contoso.com")
		return err == nil && got.Availability == "DoNotDisturb" && got.Note == "Writing"
	}, 10*time.Second, 10*time.Millisecond)
	online := sfb.AvailabilityOnline
	require.NoError(t, s.Publish(ctx, sfb.Publication{Availability: &online}))
	require.Eventually(t, func() bool {
		got, err := srv.GetPresence("sip:alice@contoso.com")
		return err == nil && got.Availability == "Online" && got.Note == "Writing"
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, s.ReportActivity(ctx))

	require.NoError(t, s.Unwatch(ctx, []sfb.URI{bob, carol}))
	require.Eventually(t, func() bool { return srv.Subscribers(bob) == 0 && srv.Subscribers(carol) == 0 }, 10*time.Second, 10*time.Millisecond)
}

// The simulator's quota of category subscriptions (Lync's policy, four
// categories a person) refuses people beyond it in the rlmi list: Watch
// takes the others and says ErrWatchLimit.
func TestPresenceQuotaAgainstSimulator(t *testing.T) {
	_, s, e := startPresenceSim(t, sim.Options{MaxCategorySubscriptions: 2 * len(presence.DefaultCategories)})
	taken, err := s.Watch(context.Background(), []sfb.URI{bob, carol, dave})
	assert.ErrorIs(t, err, sfb.ErrWatchLimit)
	assert.Equal(t, []sfb.URI{bob, carol}, taken)
	assert.Equal(t, 2, s.WatchCapacity())
	e.waitPresence(t, 2)
}

// A person's name comes from the contact card the simulator keeps for
// them (a one-off query, no subscription left behind); somebody the
// directory does not know is named by address.
func TestLookupPersonAgainstSimulator(t *testing.T) {
	srv, s, _ := startPresenceSim(t, sim.Options{})
	ctx := context.Background()
	p, err := s.LookupPerson(ctx, bob)
	require.NoError(t, err)
	assert.Equal(t, sfb.Person{URI: bob, DisplayName: "Bob Builder"}, p)
	subs, people := srv.PresenceSubscriptions("sip:alice@contoso.com")
	assert.Zero(t, subs+people, "the query left a subscription behind")

	stranger := sfb.URI("sip:nobody@contoso.com")
	p, err = s.LookupPerson(ctx, stranger)
	require.NoError(t, err)
	assert.Equal(t, sfb.Person{URI: stranger, DisplayName: "nobody@contoso.com"}, p)
}
