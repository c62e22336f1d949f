package matrixapp

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/commands"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/dbtest"
)

// replyingBot records the bot's replies.
type replyingBot struct {
	bridgev2.MatrixAPI
	mu      sync.Mutex
	replies []string
}

func (b *replyingBot) SendMessage(_ context.Context, _ id.RoomID, _ event.Type, content *event.Content, _ *bridgev2.MatrixSendExtra) (*mautrix.RespSendEvent, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.replies = append(b.replies, content.Parsed.(*event.MessageEventContent).Body)
	return &mautrix.RespSendEvent{}, nil
}

func (b *replyingBot) last(t *testing.T) string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	require.NotEmpty(t, b.replies)
	return b.replies[len(b.replies)-1]
}

type commandRig struct {
	t    *testing.T
	bot  *replyingBot
	br   *bridgev2.Bridge
	user *bridgev2.User
	mc   *migrationCommands
	db   *database.DB
	// files are what the fake fetcher returns, by event ID.
	files map[id.EventID]string
}

func newCommandRig(t *testing.T) *commandRig {
	db := dbtest.SQLite(t)
	svc := migration.New(db, zerolog.Nop(), migration.Options{})
	r := &commandRig{t: t, bot: &replyingBot{}, db: db, files: map[id.EventID]string{}}
	r.br = &bridgev2.Bridge{Log: zerolog.Nop(), Config: &bridgeconfig.BridgeConfig{CommandPrefix: "!sfb"}}
	r.user = &bridgev2.User{User: &mxdb.User{MXID: "@lead:example.org", ManagementRoom: "!mgmt:example.org"}, Bridge: r.br}
	r.mc = &migrationCommands{service: func() *migration.Service { return svc }, fetch: func(_ context.Context, _ id.RoomID, evt id.EventID) (string, []byte, error) {
		data, ok := r.files[evt]
		if !ok {
			return "", nil, errNotAFile
		}
		return "wave1.csv", []byte(data), nil
	}}
	return r
}

// run sends message in room as the admin, as the command processor would,
// and returns the bot's reply.
func (r *commandRig) run(room id.RoomID, evt id.EventID, replyTo id.EventID, message string) string {
	r.t.Helper()
	ce := &commands.Event{Bot: r.bot, Bridge: r.br, User: r.user, RoomID: room, OrigRoomID: room, EventID: evt, ReplyTo: replyTo,
		Ctx: context.Background(), Log: &zerolog.Logger{}, RawArgs: message}
	fields := splitFields(message)
	handlers := map[string]func(*commands.Event){}
	for _, h := range r.mc.handlers() {
		fh := h.(*commands.FullHandler)
		handlers[fh.Name] = fh.Func
	}
	if h, ok := handlers[fields[0]]; ok {
		ce.Command, ce.Args = fields[0], fields[1:]
		h(ce)
	} else {
		state := commands.LoadCommandState(r.user)
		require.NotNil(r.t, state, "no command %q and no ongoing command", fields[0])
		ce.Args = fields
		state.Next.Run(ce)
	}
	return r.bot.last(r.t)
}

func splitFields(s string) []string {
	var out []string
	field := ""
	for _, c := range s + " " {
		if c == ' ' {
			if field != "" {
				out = append(out, field)
			}
			field = ""
			continue
		}
		field += string(c)
	}
	return out
}

const mgmt = id.RoomID("!mgmt:example.org")

func TestImportCommandDryRunThenConfirm(t *testing.T) {
	r := newCommandRig(t)
	r.files["$file"] = "sip_address;matrix_id;wave\r\nalice@contoso.com;@alice:example.org;Welle 1\r\nbob@contoso.com;@bob:example.org;Welle 1\r\n"

	reply := r.run(mgmt, "$cmd", "", "import")
	assert.Contains(t, reply, "Send the CSV file now")
	reply = r.run(mgmt, "$file", "", "wave1.csv")
	assert.Contains(t, reply, "2 rows, 0 bad; 2 new people")
	assert.Contains(t, reply, "Reply `confirm`")
	_, err := r.db.GetWave(context.Background(), "Welle 1")
	assert.ErrorIs(t, err, database.ErrNotFound, "the dry run changed something")

	reply = r.run(mgmt, "$what", "", "yes please")
	assert.Contains(t, reply, "Reply `confirm`")
	reply = r.run(mgmt, "$ok", "", "confirm")
	assert.Contains(t, reply, "Imported `wave1.csv`: 2 new people")
	assert.Nil(t, commands.LoadCommandState(r.user), "the import stayed open")

	reply = r.run(mgmt, "$list", "", "wave list")
	assert.Contains(t, reply, "**Welle 1**: no start date, mode none (the default applies); 2 people (2 sfb_only, 0 coexistence, 0 matrix_only)")

	reply = r.run(mgmt, "$set", "", "mode set wave Welle 1 coexistence")
	assert.Contains(t, reply, "Wave **Welle 1** now has mode coexistence. Its 2 people: 0 sfb_only, 2 coexistence, 0 matrix_only")
	reply = r.run(mgmt, "$set2", "", "mode set alice@contoso.com matrix_only")
	assert.Contains(t, reply, "`alice@contoso.com` now has mode matrix_only (their own mode)")
	reply = r.run(mgmt, "$show", "", "user show sip:Alice@contoso.com")
	assert.Contains(t, reply, "Mode: matrix_only (their own mode)")
	assert.Contains(t, reply, "Wave: Welle 1")

	events, err := r.db.ListAudit(context.Background(), "", 10)
	require.NoError(t, err)
	require.Len(t, events, 4)
	for _, e := range events {
		assert.Equal(t, "@lead:example.org", e.Actor)
		assert.Equal(t, "management room "+string(mgmt), e.Origin)
	}
}

func TestImportCommandAsReplyWithBadRows(t *testing.T) {
	r := newCommandRig(t)
	r.files["$file"] = "sip_address;matrix_id;wave\r\nalice@contoso.com;@alice:example.org;Welle 1\r\nbob;@bob:example.org;Welle 1\r\n"
	// A reply to a message that is no file: the bot waits for the file.
	reply := r.run(mgmt, "$cmd", "$text", "import")
	assert.Contains(t, reply, "That message is not a file")
	reply = r.run(mgmt, "$file", "", "x.csv")
	assert.Contains(t, reply, "line 3: SIP address \"bob\" is not valid")
	assert.Contains(t, reply, "Nothing was changed")
	assert.Nil(t, commands.LoadCommandState(r.user))
}

func TestMigrationCommandsAnswerUsefully(t *testing.T) {
	r := newCommandRig(t)
	for msg, want := range map[string]string{
		"wave":                                   "Usage: `!sfb wave list`",
		"wave show Welle 9":                      `There is no wave "Welle 9"`,
		"wave list":                              "No waves yet. Import a CSV file with `!sfb import`",
		"user show nobody@contoso.com":           "`nobody@contoso.com` is in no wave and was never imported; their mode is the default, sfb_only",
		"user show nobody":                       `"nobody" is not a SIP address`,
		"mode set alice@contoso.com teams":       `Unknown mode "teams": use sfb_only, coexistence or matrix_only`,
		"mode set alice@contoso.com coexistence": "Nobody with the address alice@contoso.com was imported yet; import them first",
		"mode set wave Welle 9 coexistence":      `There is no wave "Welle 9"`,
		"mode":                                   "Usage: `!sfb mode set",
	} {
		assert.Contains(t, r.run(mgmt, "$x", "", msg), want, msg)
	}
	assert.Contains(t, r.run("!elsewhere:example.org", "$x", "", "wave list"), "Use this command in your management room")
}

// `wave show` tells the team who was told, reminded and signed in.
func TestWaveShowSaysWhoWasToldAndWhoSignedIn(t *testing.T) {
	sent := time.Date(2027, 3, 1, 7, 0, 4, 0, time.UTC)
	in := sent.Add(26 * time.Hour)
	d := &migration.WaveDetail{
		WaveSummary: migration.WaveSummary{Name: "Welle 1", PlannedStart: &sent, Counts: migration.Counts{ByMode: map[migration.Mode]int{}}},
		People: []migration.PersonView{
			{Address: "anna@contoso.com", Mode: migration.Coexistence, Login: migration.Login{Status: migration.LoginNone},
				Announcement: &migration.Announced{FirstSent: &sent, LastSent: &in, Reminders: 2}},
			{Address: "ben@contoso.com", Mode: migration.Coexistence, Login: migration.Login{Status: migration.LoginConnected},
				Announcement: &migration.Announced{FirstSent: &sent, SignedIn: &in}},
			{Address: "carla@contoso.com", Mode: migration.Coexistence, Login: migration.Login{Status: migration.LoginConnected},
				Announcement: &migration.Announced{SignedIn: &sent}},
		},
		NotSignedIn: []string{"anna@contoso.com"},
	}
	out := formatWave(d)
	assert.Contains(t, out, "Not signed in yet: 1")
	assert.Contains(t, out, "`anna@contoso.com` (): coexistence (the default), login none, told 2027-03-01 07:00 UTC (2 reminders)\n")
	assert.Contains(t, out, "login connected, told 2027-03-01 07:00 UTC, signed in 2027-03-02 09:00 UTC\n")
	assert.Contains(t, out, "`carla@contoso.com` (): coexistence (the default), login connected, signed in before being told\n")
}
