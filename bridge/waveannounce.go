package bridge

import (
	"context"
	"fmt"
	"html"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
)

// When a wave's planned start comes (and for people added to a wave that
// started), the bridge bot writes to each of its people in their
// management room (the direct chat with the bot, where `login` works
// without a prefix): what changes for them and how to sign in. It reminds
// those without a login every reminder_interval, at most max_reminders
// times, and stops once they signed in. People whose own mode is sfb_only
// were held back by the team and get nothing.
//
// Each message is sent once: its number is stored (pending) before it is
// sent and recorded as sent after, in sfb_announcement. A restart reads
// the table first and sends only what is due; a message whose sending a
// crash cut short is sent again with the same transaction ID, which the
// homeserver answers with the first event instead of a second one.

// announceBatch bounds the messages of one round, so that a wave of
// thousands starting at once does not flood the homeserver: the rest
// follow at the next round (every poll_interval).
const announceBatch = 50

// announceRetry is how long a person whose message failed waits before
// the next attempt.
const announceRetry = 5 * time.Minute

type announceKey struct{ address, wave string }

// deliverFunc sends content to the user's management room with the
// transaction ID and returns the room.
type deliverFunc func(ctx context.Context, user id.UserID, content *event.MessageEventContent, txnID string) (id.RoomID, error)

type announcer struct {
	conn    *Connector
	db      *database.DB
	log     zerolog.Logger
	now     func() time.Time
	deliver deliverFunc

	// roundMu lets one round, or the first load, run at a time.
	roundMu sync.Mutex
	mu      sync.Mutex
	loaded  bool
	rows    map[announceKey]*database.Announcement
	retryAt map[announceKey]time.Time
}

func newAnnouncer(c *Connector, db *database.DB) *announcer {
	a := &announcer{
		conn: c, db: db, log: c.log.With().Str("component", "announcements").Logger(), now: time.Now,
		rows: map[announceKey]*database.Announcement{}, retryAt: map[announceKey]time.Time{},
	}
	a.deliver = a.toManagementRoom
	return a
}

// run loads what was sent before and, when announcements are on, runs a
// round every interval until ctx ends.
func (a *announcer) run(ctx context.Context, interval time.Duration) {
	// Under roundMu: a load that read the table before a round's send and
	// stored its rows after would undo what that round recorded, and the
	// next round would send the same message again.
	a.roundMu.Lock()
	err := a.load(ctx)
	a.roundMu.Unlock()
	if err != nil {
		a.log.Warn().Err(err).Msg("Could not read the announcements sent before; trying again at the next round")
	}
	if !a.conn.Config.Migration.Announcements.Enabled {
		return
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if err := a.round(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn().Err(err).Msg("Announcement round failed")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (a *announcer) load(ctx context.Context) error {
	a.mu.Lock()
	loaded := a.loaded
	a.mu.Unlock()
	if loaded {
		return nil
	}
	rows, err := a.db.ListAnnouncements(ctx)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range rows {
		a.rows[announceKey{rows[i].Address, rows[i].Wave}] = &rows[i]
	}
	a.loaded = true
	return nil
}

// view implements migration.AnnouncementsFunc.
func (a *announcer) view(address, wave string) *migration.Announced {
	a.mu.Lock()
	defer a.mu.Unlock()
	row := a.rows[announceKey{address, wave}]
	if row == nil {
		return nil
	}
	v := &migration.Announced{FirstSent: timeOrNil(row.FirstSent), LastSent: timeOrNil(row.LastSent), SignedIn: timeOrNil(row.SignedIn)}
	if row.Sent > 1 {
		v.Reminders = row.Sent - 1
	}
	return v
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// round sends what is due now. Nothing is sent before the table was read:
// without it the bridge cannot know what went out before a restart.
func (a *announcer) round(ctx context.Context) error {
	a.roundMu.Lock()
	defer a.roundMu.Unlock()
	if err := a.load(ctx); err != nil {
		return err
	}
	modes := a.conn.modes.Load()
	if modes == nil {
		return nil
	}
	cfg := a.conn.Config.Migration.Announcements
	now := a.now()
	sent := 0
	for _, m := range modes.StartedWaveMembers(now) {
		if m.OwnMode == migration.SfBOnly || m.MatrixUser == "" {
			continue
		}
		key := announceKey{m.Address, m.Wave}
		a.mu.Lock()
		var row database.Announcement
		if stored := a.rows[key]; stored != nil {
			row = *stored
		}
		retryAt := a.retryAt[key]
		a.mu.Unlock()
		if !row.SignedIn.IsZero() {
			continue // signed in once: no more reminders, even after a logout
		}
		// Only whether a login exists: its bridge state (migrationLogin)
		// is written by bridgev2 without a lock.
		if a.conn.br.GetCachedUserLoginByID(networkid.UserLoginID(m.Address)) != nil {
			if err := a.db.AnnouncementSignedIn(ctx, m.Address, m.Wave, string(m.MatrixUser), now); err != nil {
				return err
			}
			a.update(key, m, func(r *database.Announcement) { r.SignedIn = now })
			continue
		}
		n := dueMessage(row, cfg, now)
		if n == 0 || now.Before(retryAt) {
			continue
		}
		if sent >= announceBatch {
			break
		}
		sent++
		if err := a.send(ctx, m, n, row.Pending == n); err != nil {
			if ctx.Err() != nil {
				return err
			}
			a.log.Warn().Err(err).Str("address", m.Address).Int("message", n).Msg("Could not send the wave announcement; trying again later")
			a.mu.Lock()
			a.retryAt[key] = now.Add(announceRetry)
			a.mu.Unlock()
		}
	}
	return nil
}

// dueMessage is the number of the message due to a person not signed in
// (1: the announcement, 2...: reminders), 0 for none.
func dueMessage(row database.Announcement, cfg AnnouncementsConfig, now time.Time) int {
	switch {
	case row.Pending != 0:
		return row.Pending
	case row.Sent == 0:
		return 1
	case row.Sent-1 < cfg.MaxReminders && !now.Before(row.LastSent.Add(cfg.ReminderInterval)):
		return row.Sent + 1
	}
	return 0
}

func (a *announcer) update(key announceKey, m migration.Member, fn func(*database.Announcement)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	row := a.rows[key]
	if row == nil {
		row = &database.Announcement{Address: m.Address, Wave: m.Wave, MatrixUser: string(m.MatrixUser)}
		a.rows[key] = row
	}
	fn(row)
}

// send sends message n to m: claimed first (unless it is the claimed one
// again), recorded after.
func (a *announcer) send(ctx context.Context, m migration.Member, n int, claimed bool) error {
	key := announceKey{m.Address, m.Wave}
	if !claimed {
		if err := a.db.ClaimAnnouncement(ctx, m.Address, m.Wave, string(m.MatrixUser), n); err != nil {
			return err
		}
		a.update(key, m, func(r *database.Announcement) { r.Pending = n })
	}
	room, err := a.deliver(ctx, m.MatrixUser, announcementContent(m, n > 1), announcementTxnID(m, n))
	if err != nil {
		return fmt.Errorf("send message %d to %s: %w", n, m.MatrixUser, err)
	}
	at := a.now()
	if err := a.db.AnnouncementSent(ctx, m.Address, m.Wave, room.String(), n, at); err != nil {
		return err
	}
	a.update(key, m, func(r *database.Announcement) {
		r.Sent, r.Pending, r.RoomID, r.LastSent = n, 0, room.String(), at
		if r.FirstSent.IsZero() {
			r.FirstSent = at
		}
	})
	a.log.Info().Str("address", m.Address).Str("wave", m.Wave).Int("message", n).Msg("Sent wave announcement")
	return nil
}

// announcementTxnID names message n to m, the same in every attempt.
func announcementTxnID(m migration.Member, n int) string {
	return stableID("sfb-wave-", m.Address, m.Wave, strconv.Itoa(n))
}

// toManagementRoom sends as the bridge bot to the user's management room,
// creating it (and inviting the user) if they have none.
func (a *announcer) toManagementRoom(ctx context.Context, user id.UserID, content *event.MessageEventContent, txnID string) (id.RoomID, error) {
	u, err := a.conn.br.GetUserByMXID(ctx, user)
	if err != nil {
		return "", fmt.Errorf("get bridge user: %w", err)
	}
	room, err := u.GetManagementRoom(ctx)
	if err != nil {
		return "", err
	}
	if _, err := a.conn.br.Bot.SendMessage(ctx, room, event.EventMessage, &event.Content{Parsed: content}, &bridgev2.MatrixSendExtra{TransactionID: txnID}); err != nil {
		return "", err
	}
	return room, nil
}

// announcementContent is the message to m, in German (the deployment's
// language) and English, for someone who never heard of Matrix.
func announcementContent(m migration.Member, reminder bool) *event.MessageEventContent {
	deTitle, enTitle := "Ihr Wechsel von Skype for Business zu Element beginnt", "Your move from Skype for Business to Element starts"
	if reminder {
		deTitle, enTitle = "Erinnerung: Bitte melden Sie sich bei Skype for Business an", "Reminder: please sign in to Skype for Business"
	}
	deWhat := "Ab jetzt können Sie Ihre Skype-for-Business-Chats auch hier in Element lesen und beantworten. " +
		"Ihr Skype-for-Business-Programm funktioniert weiter wie bisher."
	enWhat := "From now on you can also read and answer your Skype for Business chats here in Element. " +
		"Your Skype for Business program keeps working as before."
	if m.Mode == migration.MatrixOnly {
		deWhat = "Ab jetzt ersetzt Element Ihr Skype for Business: Ihre Chats mit Skype-for-Business-Nutzern laufen hier weiter, " +
			"Ihr Status (verfügbar, beschäftigt, …) wird aus Element übernommen, und Anrufe an Sie über Skype for Business " +
			"werden mit einem Link zu einer Videokonferenz beantwortet."
		enWhat = "From now on Element replaces your Skype for Business: your chats with Skype for Business users continue here, " +
			"your status (available, busy, …) is taken from Element, and Skype for Business calls to you " +
			"are answered with a link to a video meeting."
	}
	deHow := fmt.Sprintf("So melden Sie sich an (einmalig): Schreiben Sie hier in diesen Chat das Wort login und senden Sie es ab. "+
		"Der Bot fragt dann nach Ihrer Skype-for-Business-Adresse (%s), nach Ihrem Benutzernamen "+
		"(senden Sie - wenn er mit der Adresse übereinstimmt) und nach Ihrem Kennwort. Das Kennwort wird sofort wieder aus dem Chat entfernt.", m.Address)
	enHow := fmt.Sprintf("How to sign in (once): type the word login here in this chat and send it. "+
		"The bot then asks for your Skype for Business address (%s), your user name "+
		"(send - if it is the same as the address) and your password. The password is removed from the chat at once.", m.Address)
	deAsk := fmt.Sprintf("Fragen? Ihr Migrationsteam hilft gern (Welle „%s“).", m.Wave)
	enAsk := fmt.Sprintf("Questions? Your migration team is glad to help (wave \"%s\").", m.Wave)

	body := strings.Join([]string{deTitle, deWhat, deHow, deAsk, "---", enTitle, enWhat, enHow, enAsk}, "\n\n")
	var h strings.Builder
	for _, part := range [][4]string{{deTitle, deWhat, deHow, deAsk}, {enTitle, enWhat, enHow, enAsk}} {
		if h.Len() > 0 {
			h.WriteString("<hr>")
		}
		fmt.Fprintf(&h, "<p><strong>%s</strong></p><p>%s</p><p>%s</p><p>%s</p>",
			html.EscapeString(part[0]), html.EscapeString(part[1]),
			strings.Replace(html.EscapeString(part[2]), " login ", " <code>login</code> ", 1), html.EscapeString(part[3]))
	}
	return &event.MessageEventContent{MsgType: event.MsgNotice, Body: body, Format: event.FormatHTML, FormattedBody: h.String()}
}
