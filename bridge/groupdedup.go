package bridge

import (
	"context"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2/networkid"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/msgconv"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Deduplication across logins.
//
// When several migrated users are in one SfB conversation, each login's
// session delivers every message, each under its own ID: UCWA names a
// message by a resource of the receiving endpoint. The group room is
// shared, and bridgev2 drops a message whose ID it has stored already, so
// every copy of one message must carry the same ID, and two messages that
// look alike (someone writes "ok" twice) different IDs.
//
// A copy is matched by thread, sender, text (its fingerprint) and time: it
// belongs to a message already bridged from another login's copy when
// that copy was sent within groupCopyWindow of it and this login has not
// matched that message yet; of several, the nearest in time. Otherwise it
// is a new message, named by the login and its own ID. Each login matches
// a bridged message at most once, so the second "ok" finds the first taken
// and becomes a message of its own: a real repeat is never dropped, and
// the copies of one message never double. Every copy is handed to
// bridgev2 under the ID it matched, so the message reaches Matrix as long
// as one login delivers it, whichever that is.
//
// The matches are stored (sfb_group_seen) before the event is handed on.
// A session that delivers a message again after a restart or an event
// channel resume gives the same per-login ID and finds its match, so the
// message keeps its ID and bridgev2 drops it. Messages a migrated user sends
// from Matrix are recorded under the Matrix event before they are sent, so
// that the copies other logins receive match the message already in the
// room; such copies are not handed on at all (see handleGroupMessage).
//
// The one case this cannot tell apart: a login that missed a message (it
// joined later) receives a repeat of it within the window while the other
// login never receives that repeat; the repeat is then taken for the
// message it repeats. The window is short to keep that rare.

// groupCopyWindow is how far apart the times two logins' copies of one
// message may be. Each endpoint's server stamps its copy; they differ by
// the time the conference takes to fan the message out.
const groupCopyWindow = 30 * time.Second

// groupCopyRetention is how long matches are kept: longer than any
// redelivery after a restart or a resume.
const groupCopyRetention = 14 * 24 * time.Hour

// fingerprint identifies a message's text as every participant receives
// it: the text of its HTML (senders' clients and servers rewrite markup),
// blanks collapsed.
func fingerprint(msg sfb.Message) string {
	var text []string
	for _, content := range msgconv.ToMatrix(msg) {
		text = append(text, content.Body)
	}
	return stableID("", strings.Join(strings.Fields(strings.Join(text, " ")), " "))
}

// matchGroupCopy returns the ID under which login's copy msgID of a group
// message is bridged (see above).
func (c *Connector) matchGroupCopy(ctx context.Context, login networkid.UserLoginID, msgID, thread string, from sfb.URI, msg sfb.Message, at time.Time) (string, error) {
	if at.IsZero() {
		at = time.Now()
	}
	// The conversion behind the fingerprint runs outside the lock, which
	// every login's group messages share.
	fp := fingerprint(msg)
	// One match at a time: two logins' copies of a new message must not
	// both find nothing and both become new.
	c.groupMu.Lock()
	defer c.groupMu.Unlock()
	canonical, again, err := c.db.MatchGroupCopy(ctx, database.GroupCopy{
		LoginID: string(login), MessageID: msgID, ThreadID: thread, Sender: string(from),
		Fingerprint: fp, SentAt: at,
	}, groupCopyWindow, string(login)+"/"+msgID)
	if err == nil {
		zerolog.Ctx(ctx).Debug().Str("bridged_id", canonical).Bool("delivered_again", again).Msg("Matched SfB group message")
	}
	return canonical, err
}

// recordGroupSend records a message that login is about to send from
// Matrix to the conversation thread as the copy that login has of the
// bridged message canonical, so that other logins' copies match it.
func (c *Connector) recordGroupSend(ctx context.Context, login networkid.UserLoginID, canonical, thread string, msg sfb.Message) error {
	fp := fingerprint(msg)
	c.groupMu.Lock()
	defer c.groupMu.Unlock()
	return c.db.RecordGroupCopy(ctx, database.GroupCopy{
		LoginID: string(login), MessageID: canonical, ThreadID: thread, Sender: "sip:" + string(login),
		Fingerprint: fp, SentAt: time.Now(),
	}, canonical)
}

// pruneGroupCopies forgets old matches.
func (c *Connector) pruneGroupCopies(ctx context.Context) {
	n, err := c.db.PruneGroupCopies(ctx, time.Now().Add(-groupCopyRetention))
	if err != nil {
		c.log.Warn().Err(err).Msg("Failed to prune old group message matches")
	} else if n > 0 {
		c.log.Debug().Int64("pruned", n).Msg("Pruned old group message matches")
	}
}
