package matrixapp

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// afterLogin is how long after a login flow ended the user's messages to
// the bot are still redacted: a user whose login failed types the password
// again, whatever the bot said.
const afterLogin = 2 * time.Minute

// loginInputGuard redacts every message a user sends to the bot during a
// login flow and right after it. mautrix redacts only the answer to a
// password field; but a non-technical user types the password where the
// bot asked for the address or the user name, again while the sign-in is
// running (it takes seconds, and mautrix's flow holds no state meanwhile),
// or after the flow ended, and such a message would stay readable in the
// room. The bot still handles every message as before: a command it
// redacts still runs.
type loginInputGuard struct {
	bridgev2.CommandProcessor
	bot bridgev2.MatrixAPI
	now func() time.Time

	mu sync.Mutex
	// running counts, per user, the messages being handled that a login
	// flow took as input; ended is when a user's last flow ended.
	running map[id.UserID]int
	ended   map[id.UserID]time.Time
}

// guardLoginInput wraps the bridge's command processor. It runs after
// everything that adds commands to the processor mautrix created.
func guardLoginInput(br *bridgev2.Bridge) {
	br.Commands = newLoginInputGuard(br.Commands, br.Bot)
}

func newLoginInputGuard(next bridgev2.CommandProcessor, bot bridgev2.MatrixAPI) *loginInputGuard {
	return &loginInputGuard{
		CommandProcessor: next,
		bot:              bot,
		now:              time.Now,
		running:          map[id.UserID]int{},
		ended:            map[id.UserID]time.Time{},
	}
}

func inLogin(user *bridgev2.User) bool {
	state := commands.LoadCommandState(user)
	return state != nil && state.Action == "Login"
}

func (g *loginInputGuard) Handle(ctx context.Context, roomID id.RoomID, eventID id.EventID, user *bridgev2.User, message string, replyTo id.EventID) {
	// mautrix's processor adds the command and the flow's action to the
	// logger of ctx in place (UpdateContext), and ctx is the appservice
	// event processor's for the bridge's whole life: without a logger of
	// its own, every command added its fields to all later log lines.
	log := zerolog.Ctx(ctx).With().Logger()
	ctx = log.WithContext(ctx)
	input := inLogin(user)
	g.mu.Lock()
	ended, recent := g.ended[user.MXID]
	recent = recent && g.now().Sub(ended) < afterLogin
	redact := input || g.running[user.MXID] > 0 || recent
	if input {
		g.running[user.MXID]++
	}
	g.mu.Unlock()
	if redact {
		_, err := g.bot.SendMessage(ctx, roomID, event.EventRedaction, &event.Content{
			Parsed: &event.RedactionEventContent{Redacts: eventID},
		}, nil)
		if err != nil {
			zerolog.Ctx(ctx).Err(err).Stringer("event_id", eventID).Msg("Failed to redact a message sent during a login")
		}
	}

	g.CommandProcessor.Handle(ctx, roomID, eventID, user, message, replyTo)

	if !input {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running[user.MXID]--; g.running[user.MXID] <= 0 {
		delete(g.running, user.MXID)
	}
	if !inLogin(user) {
		now := g.now()
		for u, t := range g.ended {
			if now.Sub(t) >= afterLogin {
				delete(g.ended, u)
			}
		}
		g.ended[user.MXID] = now
	}
}
