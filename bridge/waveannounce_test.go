package bridge

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
)

// dmRecorder stands in for the bridge bot's management rooms.
type dmRecorder struct {
	mu   sync.Mutex
	sent []sentDM
	fail error
}

type sentDM struct {
	User    id.UserID
	Content *event.MessageEventContent
	TxnID   string
}

func (d *dmRecorder) deliver(_ context.Context, user id.UserID, content *event.MessageEventContent, txnID string) (id.RoomID, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return "", d.fail
	}
	d.sent = append(d.sent, sentDM{user, content, txnID})
	return "!management:example.org", nil
}

func (d *dmRecorder) messages() []sentDM {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]sentDM(nil), d.sent...)
}

var waveStart = time.Date(2027, 3, 1, 7, 0, 0, 0, time.UTC)

// announceEnv is a bridge whose own announcer does not run by itself:
// the test drives rounds with its clock and records the messages.
func announceEnv(t *testing.T) (*testEnv, *fakeClock, *dmRecorder) {
	e := newTestEnv(t, withMigration(func(m *MigrationConfig) {
		m.Announcements = AnnouncementsConfig{Enabled: false, ReminderInterval: time.Hour, MaxReminders: 2}
	}))
	clock := &fakeClock{t: waveStart.Add(-time.Hour)}
	dms := &dmRecorder{}
	e.conn.announcer.now, e.conn.announcer.deliver = clock.now, dms.deliver
	e.importAlice("Welle 1 – Nord", waveStart)
	require.NoError(t, e.conn.Migration().Refresh(e.ctx))
	return e, clock, dms
}

func TestWaveAnnouncementOnceThenRemindersUpToTheLimit(t *testing.T) {
	e, clock, dms := announceEnv(t)
	a := e.conn.announcer
	require.NoError(t, a.round(e.ctx))
	assert.Empty(t, dms.messages(), "nothing before the wave's start")

	clock.t = clock.t.Add(time.Hour)
	require.NoError(t, a.round(e.ctx))
	require.NoError(t, a.round(e.ctx))
	msgs := dms.messages()
	require.Len(t, msgs, 1, "announced once")
	assert.Equal(t, id.UserID("@alice:example.org"), msgs[0].User)
	body := msgs[0].Content.Body
	assert.Contains(t, body, "Ihr Wechsel von Skype for Business zu Element beginnt")
	assert.Contains(t, body, "Your move from Skype for Business to Element starts")
	assert.Contains(t, body, "Schreiben Sie hier in diesen Chat das Wort login")
	assert.Contains(t, body, "type the word login here")
	assert.Contains(t, body, "alice@contoso.com")
	assert.Contains(t, body, "Ihr Skype-for-Business-Programm funktioniert weiter", "sfb_only by default: both clients")
	assert.Contains(t, msgs[0].Content.FormattedBody, "<code>login</code>")

	wave, err := e.conn.Migration().Wave(e.ctx, "Welle 1 – Nord")
	require.NoError(t, err)
	assert.Equal(t, []string{"alice@contoso.com"}, wave.NotSignedIn)
	require.NotNil(t, wave.People[0].Announcement)
	assert.Equal(t, waveStart, *wave.People[0].Announcement.FirstSent)
	assert.Zero(t, wave.People[0].Announcement.Reminders)
	assert.Nil(t, wave.People[0].Announcement.SignedIn)

	clock.t = clock.t.Add(59 * time.Minute)
	require.NoError(t, a.round(e.ctx))
	assert.Len(t, dms.messages(), 1, "no reminder before the interval")
	for i := 0; i < 4; i++ {
		clock.t = clock.t.Add(time.Hour)
		require.NoError(t, a.round(e.ctx))
	}
	msgs = dms.messages()
	require.Len(t, msgs, 3, "the announcement and max_reminders reminders")
	assert.Contains(t, msgs[1].Content.Body, "Erinnerung: Bitte melden Sie sich bei Skype for Business an")
	assert.Contains(t, msgs[2].Content.Body, "Reminder: please sign in to Skype for Business")
	assert.Len(t, map[string]bool{msgs[0].TxnID: true, msgs[1].TxnID: true, msgs[2].TxnID: true}, 3)
	assert.Equal(t, 2, a.view("alice@contoso.com", "Welle 1 – Nord").Reminders)
}

func TestWaveAnnouncementRemindersStopAfterSignIn(t *testing.T) {
	e, clock, dms := announceEnv(t)
	a := e.conn.announcer
	require.NoError(t, e.conn.Migration().SetWaveMode(e.ctx, "Welle 1 – Nord", migration.MatrixOnly, migration.Actor{Who: "test"}))
	clock.t = clock.t.Add(time.Hour)
	require.NoError(t, a.round(e.ctx))
	require.Len(t, dms.messages(), 1)
	assert.Contains(t, dms.messages()[0].Content.Body, "Element replaces your Skype for Business", "the message says what matrix_only changes")

	e.mustLogin()
	clock.t = clock.t.Add(time.Hour)
	require.NoError(t, a.round(e.ctx))
	clock.t = clock.t.Add(time.Hour)
	require.NoError(t, a.round(e.ctx))
	assert.Len(t, dms.messages(), 1, "no reminder once signed in")
	wave, err := e.conn.Migration().Wave(e.ctx, "Welle 1 – Nord")
	require.NoError(t, err)
	assert.Empty(t, wave.NotSignedIn)
	require.NotNil(t, wave.People[0].Announcement.SignedIn)
	assert.Equal(t, waveStart.Add(time.Hour), *wave.People[0].Announcement.SignedIn)

	// Logged out later: the team sees it in the login state; the bot
	// does not start reminding again.
	for _, ul := range e.br.GetAllCachedUserLogins() {
		ul.Logout(e.ctx)
	}
	clock.t = clock.t.Add(time.Hour)
	require.NoError(t, a.round(e.ctx))
	assert.Len(t, dms.messages(), 1)
}

// A restart sends nothing that went out before; a message whose sending
// was cut short goes out again under the same transaction ID, which the
// homeserver answers with the first event.
func TestWaveAnnouncementIsNotRepeatedAfterARestart(t *testing.T) {
	e, clock, dms := announceEnv(t)
	clock.t = clock.t.Add(time.Hour)
	require.NoError(t, e.conn.announcer.round(e.ctx))
	require.Len(t, dms.messages(), 1)

	restarted := newAnnouncer(e.conn, e.conn.db)
	restarted.now, restarted.deliver = clock.now, dms.deliver
	require.NoError(t, restarted.round(e.ctx))
	clock.t = clock.t.Add(30 * time.Minute)
	require.NoError(t, restarted.round(e.ctx))
	assert.Len(t, dms.messages(), 1, "not sent again after the restart")

	// The reminder fails half-way (the homeserver may have taken it).
	clock.t = clock.t.Add(30 * time.Minute)
	dms.mu.Lock()
	dms.fail = errors.New("connection reset")
	dms.mu.Unlock()
	require.NoError(t, restarted.round(e.ctx))
	dms.mu.Lock()
	dms.fail = nil
	dms.mu.Unlock()

	again := newAnnouncer(e.conn, e.conn.db)
	again.now, again.deliver = clock.now, dms.deliver
	require.NoError(t, again.round(e.ctx))
	msgs := dms.messages()
	require.Len(t, msgs, 2)
	assert.Equal(t, announcementTxnID(migration.Member{Address: "alice@contoso.com", Wave: "Welle 1 – Nord"}, 2), msgs[1].TxnID)
	assert.Contains(t, msgs[1].Content.Body, "Erinnerung")
	require.NoError(t, again.round(e.ctx))
	assert.Len(t, dms.messages(), 2)
}

// People the team held back (own mode sfb_only) get nothing.
func TestWaveAnnouncementSkipsPeopleHeldBack(t *testing.T) {
	e, clock, dms := announceEnv(t)
	require.NoError(t, e.conn.Migration().SetPersonMode(e.ctx, "alice@contoso.com", migration.SfBOnly, migration.Actor{Who: "test"}))
	clock.t = clock.t.Add(time.Hour)
	require.NoError(t, e.conn.announcer.round(e.ctx))
	assert.Empty(t, dms.messages())
	require.NoError(t, e.conn.Migration().SetPersonMode(e.ctx, "alice@contoso.com", "", migration.Actor{Who: "test"}))
	require.NoError(t, e.conn.announcer.round(e.ctx))
	assert.Len(t, dms.messages(), 1, "announced once no longer held back")
}

// Someone added to a wave that started is announced at the next round;
// those told before are not told again.
func TestWaveAnnouncementForPeopleAddedAfterTheStart(t *testing.T) {
	e, clock, dms := announceEnv(t)
	clock.t = clock.t.Add(time.Hour)
	require.NoError(t, e.conn.announcer.round(e.ctx))
	require.Len(t, dms.messages(), 1)

	_, err := e.conn.Migration().Import(e.ctx, []byte("sip_address;matrix_id;wave\ncarol@contoso.com;@carol:example.org;Welle 1 – Nord\n"), false, migration.Actor{Who: "test"})
	require.NoError(t, err)
	clock.t = clock.t.Add(time.Minute)
	require.NoError(t, e.conn.announcer.round(e.ctx))
	msgs := dms.messages()
	require.Len(t, msgs, 2)
	assert.Equal(t, id.UserID("@carol:example.org"), msgs[1].User)
	assert.Contains(t, msgs[1].Content.Body, "carol@contoso.com")
}
