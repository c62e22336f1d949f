package bridge

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/format"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
)

// AdminNoticesConfig is the admin_notices section: notices from the
// bridge bot to the management rooms of bridge admins.
type AdminNoticesConfig struct {
	Enabled bool `yaml:"enabled"`
	// Interval is how often the error counts of the waves are compared.
	// Logins of a wave that enter an error state within one interval give
	// one notice.
	Interval time.Duration `yaml:"interval"`
}

func defaultAdminNotices() AdminNoticesConfig {
	return AdminNoticesConfig{Enabled: true, Interval: time.Minute}
}

func (c AdminNoticesConfig) validate() error {
	if c.Enabled && (c.Interval < 10*time.Second || c.Interval > time.Hour) {
		return fmt.Errorf("network.admin_notices.interval %s: must be between 10s and 1h", c.Interval)
	}
	return nil
}

// NotifyAdmins sends text (Markdown) as a notice from the bridge bot to
// the management room of every bridge admin who has one (an admin gets one
// by talking to the bot once). It returns how many rooms got it.
func (c *Connector) NotifyAdmins(ctx context.Context, text string) (int, error) {
	if !c.Config.AdminNotices.Enabled || c.br == nil || c.br.Bot == nil {
		return 0, nil
	}
	rooms, err := c.adminRooms(ctx)
	if err != nil {
		return 0, err
	}
	if len(rooms) == 0 {
		c.log.Warn().Msg("No bridge admin has a management room for notices; an admin gets one by sending the bot a message")
		return 0, nil
	}
	content := format.RenderMarkdown(text, true, false)
	content.MsgType = event.MsgNotice
	var errs error
	sent := 0
	for _, room := range rooms {
		if _, err := c.br.Bot.SendMessage(ctx, room, event.EventMessage, &event.Content{Parsed: &content}, nil); err != nil {
			errs = errors.Join(errs, fmt.Errorf("send notice to %s: %w", room, err))
			continue
		}
		sent++
	}
	return sent, errs
}

// adminRooms are the management rooms of the bridge's users who are
// admins by the permissions configuration (by user ID or by domain).
func (c *Connector) adminRooms(ctx context.Context) ([]id.RoomID, error) {
	rows, err := c.br.DB.Query(ctx, `SELECT mxid, management_room FROM "user" WHERE bridge_id = $1 AND management_room IS NOT NULL AND management_room <> ''`, c.br.ID)
	if err != nil {
		return nil, fmt.Errorf("list management rooms: %w", err)
	}
	defer rows.Close()
	var rooms []id.RoomID
	for rows.Next() {
		var user id.UserID
		var room id.RoomID
		if err := rows.Scan(&user, &room); err != nil {
			return nil, fmt.Errorf("list management rooms: %w", err)
		}
		if c.br.Config.Permissions.Get(user).Admin {
			rooms = append(rooms, room)
		}
	}
	sort.Slice(rooms, func(i, j int) bool { return rooms[i] < rooms[j] })
	return rooms, rows.Err()
}

// ModeChangeFailed tells the admins that a mode change did not take
// effect, so that one of them acts even if the person who made it did not
// see the error.
func (c *Connector) ModeChangeFailed(ctx context.Context, what string, cause error) {
	text := fmt.Sprintf("**Mode change failed**: %s: %v. The people concerned keep their previous mode; "+
		"try again, and look at the bridge's log if it fails again.", what, cause)
	if _, err := c.NotifyAdmins(ctx, text); err != nil {
		c.log.Err(err).Msg("Could not tell the admins that a mode change failed")
	}
}

// waveErrors turns the waves' error counts into notices: one when a
// wave's count rises above what the last notice (or the last fall) left
// it at, however many logins entered an error state since.
type waveErrors struct {
	// base is, per wave, the count last notified or fallen to.
	base map[string]int
}

func (w *waveErrors) notices(o *migration.Overview) []string {
	if w.base == nil {
		w.base = map[string]int{}
	}
	var out []string
	seen := map[string]bool{}
	for _, wave := range o.Waves {
		seen[wave.Name] = true
		now, was := wave.InError, w.base[wave.Name]
		switch {
		case now > was:
			out = append(out, fmt.Sprintf("**Wave %s**: %d of %d signed-in logins are in an error state now (%s since the last notice). "+
				"`wave show %s` lists them with their last error.", wave.Name, now, wave.SignedIn, pluralWord(now-was, "one more", "more"), wave.Name))
			w.base[wave.Name] = now
		case now < was:
			w.base[wave.Name] = now
		}
	}
	for name := range w.base {
		if !seen[name] {
			delete(w.base, name)
		}
	}
	return out
}

func pluralWord(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// watchWaveErrors compares the waves' error counts every interval and
// notifies the admins of each rise, until ctx ends. The counts come from
// the state each Client keeps itself (Connector.migrationLogin reads
// Client.lastState), not from bridgev2's BridgeStateQueue.GetPrev, which
// is read without its lock while the login sends states.
func (c *Connector) watchWaveErrors(ctx context.Context, cfg AdminNoticesConfig) {
	if !cfg.Enabled {
		return
	}
	ticker := time.NewTicker(cfg.Interval)
	defer ticker.Stop()
	var w waveErrors
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		svc := c.Migration()
		if svc == nil {
			continue
		}
		o, err := svc.Overview(ctx)
		if err != nil {
			c.log.Warn().Err(err).Msg("Could not count the waves' logins in error for admin notices")
			continue
		}
		if notices := w.notices(o); len(notices) > 0 {
			if _, err := c.NotifyAdmins(ctx, strings.Join(notices, "\n\n")); err != nil {
				c.log.Err(err).Msg("Could not send the admins a notice about logins in error")
			}
		}
	}
}
