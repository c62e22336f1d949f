package bridge

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

func withMigration(f func(*MigrationConfig)) envOption {
	return func(_ *testEnv, c *Config) { f(&c.Migration) }
}

// importAlice assigns alice@contoso.com to wave, writing the tables as
// another bridge process or the API would: this process learns of it only
// by polling.
func (e *testEnv) importAlice(wave string, plannedStart time.Time) {
	e.t.Helper()
	require.NoError(e.t, e.conn.db.ApplyImport(e.ctx, database.ImportChange{
		NewWaves: []string{wave},
		People:   []database.Person{{Address: "alice@contoso.com", MatrixUser: "@alice:example.org", Wave: wave}},
	}, database.AuditEvent{Action: database.AuditImport, Actor: "test"}))
	if !plannedStart.IsZero() {
		require.NoError(e.t, e.conn.db.PutWave(e.ctx, wave, plannedStart, database.AuditEvent{Action: database.AuditWaveSet, Actor: "test"}))
	}
}

func (e *testEnv) setWaveModeElsewhere(wave string, mode migration.Mode) {
	e.t.Helper()
	require.NoError(e.t, e.conn.db.SetWaveMode(e.ctx, wave, string(mode), database.AuditEvent{Action: database.AuditWaveModeSet, Actor: "test"}))
}

// A wave switched to matrix_only by another process reaches a running
// login within the poll interval: its Matrix presence is published on SfB
// from then on and calls are declined on all endpoints; switched back to
// coexistence, publishing stops and calls ring on in the SfB client.
func TestModeChangeReachesARunningLogin(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, nil), withMigration(func(m *MigrationConfig) { m.PollInterval = time.Second }))
	ul, c, s := e.mustLogin()
	timers := &manualTimers{}
	e.conn.presence.afterFunc = timers.afterFunc
	e.conn.presence.matrixPresence(e.ctx, e.user.MXID, &event.PresenceEventContent{Presence: event.PresenceOnline, StatusMessage: "Im Büro"})
	timers.fire()
	require.Empty(t, s.publications(), "coexistence by default: the SfB client shows presence")
	assert.Empty(t, c.declineReason(), "coexistence: calls ring on in the SfB client")

	e.importAlice("Welle 1", time.Time{})
	e.setWaveModeElsewhere("Welle 1", migration.MatrixOnly)
	start := time.Now()
	require.Eventually(t, func() bool {
		timers.fire()
		return len(s.publications()) == 1
	}, 3*time.Second, 10*time.Millisecond, "matrix_only publishes the Matrix presence")
	assert.Less(t, time.Since(start), 3*time.Second)
	pub := s.publications()[0]
	assert.Equal(t, sfb.AvailabilityOnline, *pub.Availability)
	assert.Equal(t, "Im Büro", *pub.Note)
	assert.Contains(t, e.conn.describePublish(ul), "you have moved to Matrix")

	s.emit(sfb.CallRinging{ID: "call-m1", Conversation: sfb.Conversation{Peer: bob}, From: bobPerson})
	assert.Equal(t, []declinedCall{{"call-m1", sfb.CallDeclineGlobal}}, waitDeclined(t, s, 1))

	e.setWaveModeElsewhere("Welle 1", migration.Coexistence)
	require.Eventually(t, func() bool { return !e.conn.presence.publishes(ul.ID) }, 3*time.Second, 10*time.Millisecond)
	e.conn.presence.matrixPresence(e.ctx, e.user.MXID, &event.PresenceEventContent{Presence: event.PresenceUnavailable})
	timers.fire()
	assert.Len(t, s.publications(), 1, "coexistence publishes nothing")
	s.emit(sfb.CallRinging{ID: "call-m2", Conversation: sfb.Conversation{Peer: bob}, From: bobPerson})
	waitSent(t, s, 2) // the caller's link: the call was handled
	assert.Len(t, s.declinedCalls(), 1, "coexistence: the call rings on, not declined")
}

// In matrix_only the bridge publishes whatever the user's own option
// says, and meetings are Jitsi meetings; the sign-in says what applies.
func TestMatrixOnlyOverridesThePublishOptionAndSfBMeetings(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, nil), withMeetings(func(m *MeetingsConfig) { m.SfBMeetings = true }))
	e.importAlice("Welle 2", time.Time{})
	e.setWaveModeElsewhere("Welle 2", migration.MatrixOnly)
	require.NoError(t, e.conn.Migration().Refresh(e.ctx))

	step, err := e.loginStep("alice@contoso.com", "-", "alice-pw")
	require.NoError(t, err)
	assert.Contains(t, step.Instructions, "You have moved to Matrix")
	ul := step.CompleteParams.UserLogin
	e.waitState("CONNECTED")
	s := e.transport.lastSession()
	no := false
	require.NoError(t, e.conn.setPublishPresence(e.ctx, ul, &no))
	assert.True(t, e.conn.presence.publishes(ul.ID), "own option off, still published in matrix_only")

	e.recordBot()
	portal := e.portalOfBob()
	reply, err := e.conn.meet(e.ctx, meetCommand{portal: portal, user: "@alice:example.org", eventID: "$cmd", roomID: portal.MXID, sfb: true})
	require.NoError(t, err)
	assert.Contains(t, reply, "new meetings are Jitsi meetings")
	s.mu.Lock()
	assert.Empty(t, s.meetings.requests, "no SfB meeting created")
	s.mu.Unlock()

	// Rolled back to sfb_only: the login stays, the own option counts again.
	require.NoError(t, e.conn.Migration().SetWaveMode(e.ctx, "Welle 2", migration.SfBOnly, migration.Actor{Who: "test"}))
	require.Eventually(t, func() bool { return !e.conn.presence.publishes(ul.ID) }, 3*time.Second, 10*time.Millisecond)
	assert.NotNil(t, e.br.GetCachedUserLoginByID(ul.ID), "rolling back keeps the login")
}
