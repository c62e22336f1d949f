package matrixapp

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// redactingBot records the redactions the guard sends.
type redactingBot struct {
	bridgev2.MatrixAPI
	mu       sync.Mutex
	redacted []id.EventID
}

func (b *redactingBot) SendMessage(_ context.Context, _ id.RoomID, typ event.Type, content *event.Content, _ *bridgev2.MatrixSendExtra) (*mautrix.RespSendEvent, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if typ == event.EventRedaction {
		b.redacted = append(b.redacted, content.Parsed.(*event.RedactionEventContent).Redacts)
	}
	return &mautrix.RespSendEvent{}, nil
}

func (b *redactingBot) redactions() []id.EventID {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]id.EventID(nil), b.redacted...)
}

// scriptedCommands plays mautrix's login command: "login" starts a flow,
// "address" and "password" are its inputs, "password" ends it, and
// during (when set) runs while a message is handled.
type scriptedCommands struct {
	handled []string
	during  func()
}

func (s *scriptedCommands) Handle(_ context.Context, _ id.RoomID, _ id.EventID, user *bridgev2.User, message string, _ id.EventID) {
	s.handled = append(s.handled, message)
	switch message {
	case "login", "address":
		commands.StoreCommandState(user, &commands.CommandState{Action: "Login"})
	case "password":
		commands.StoreCommandState(user, nil)
	}
	if s.during != nil {
		s.during()
	}
}

func TestLoginInputGuard(t *testing.T) {
	ctx := context.Background()
	bot := &redactingBot{}
	next := &scriptedCommands{}
	guard := newLoginInputGuard(next, bot)
	now := time.Unix(1700000000, 0)
	guard.now = func() time.Time { return now }
	alice := &bridgev2.User{User: &mxdb.User{MXID: "@alice:example.org"}}
	bob := &bridgev2.User{User: &mxdb.User{MXID: "@bob:example.org"}}
	send := func(user *bridgev2.User, evt id.EventID, msg string) { guard.Handle(ctx, "!mgmt", evt, user, msg, "") }

	send(alice, "$help", "help")
	send(alice, "$login", "login")
	assert.Empty(t, bot.redactions(), "outside a login nothing is redacted")

	// Every input of the flow, whichever field it answers.
	send(alice, "$address", "address")
	// A message while the flow's last input is being handled (the
	// sign-in runs; mautrix's flow has no state meanwhile) and one of
	// another user at the same time.
	next.during = func() {
		next.during = nil
		send(alice, "$impatient", "hunter2")
		send(bob, "$bob", "help")
	}
	send(alice, "$password", "password")
	assert.ElementsMatch(t, []id.EventID{"$address", "$impatient", "$password"}, bot.redactions())

	// Right after the flow ended: the password typed again.
	now = now.Add(afterLogin - time.Second)
	send(alice, "$again", "hunter2")
	assert.Contains(t, bot.redactions(), id.EventID("$again"))
	now = now.Add(2 * time.Second)
	send(alice, "$later", "help")
	assert.NotContains(t, bot.redactions(), id.EventID("$later"), "only right after a login")
	assert.NotContains(t, bot.redactions(), id.EventID("$bob"), "another user's messages are not touched")

	assert.Equal(t, []string{"help", "login", "address", "password", "hunter2", "help", "hunter2", "help"}, next.handled,
		"every message still reaches the commands")
}

// loggingCommands does to the logger of its context what mautrix's
// command processor does: it adds the command with UpdateContext.
type loggingCommands struct{}

func (loggingCommands) Handle(ctx context.Context, _ id.RoomID, _ id.EventID, _ *bridgev2.User, message string, _ id.EventID) {
	log := zerolog.Ctx(ctx)
	log.UpdateContext(func(c zerolog.Context) zerolog.Context { return c.Str("mx_command", message) })
	log.Debug().Msg("Received command")
}

// The context a command arrives with lives as long as the bridge: what the
// processor adds to its logger stays with the command.
func TestLoginInputGuardKeepsCommandFieldsToTheCommand(t *testing.T) {
	var out bytes.Buffer
	ctx := zerolog.New(&out).WithContext(context.Background())
	guard := newLoginInputGuard(loggingCommands{}, &redactingBot{})
	alice := &bridgev2.User{User: &mxdb.User{MXID: "@alice:example.org"}}
	guard.Handle(ctx, "!mgmt", "$1", alice, "help", "")
	guard.Handle(ctx, "!mgmt", "$2", alice, "version", "")
	zerolog.Ctx(ctx).Info().Msg("a later event")

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	assert.Equal(t, []string{
		`{"level":"debug","mx_command":"help","message":"Received command"}`,
		`{"level":"debug","mx_command":"version","message":"Received command"}`,
		`{"level":"info","message":"a later event"}`,
	}, lines)
}
