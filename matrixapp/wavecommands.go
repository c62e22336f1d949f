package matrixapp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
)

// helpSectionMigration groups the migration team's commands in help (which
// shows them to bridge admins only).
var helpSectionMigration = commands.HelpSection{Name: "Migration (bridge admins)", Order: 25}

// fileFetcher returns the name and bytes of the file a Matrix event carries.
type fileFetcher func(ctx context.Context, room id.RoomID, evt id.EventID) (name string, data []byte, err error)

// Why a message cannot be imported; the texts tell the admin what to do.
var (
	errNotAFile      = errors.New("that message is not a file: send the CSV file as an attachment")
	errEncryptedFile = errors.New("the file is end-to-end encrypted and the bridge has encryption turned off, so the bot cannot read it: import it through the API (docs/migration.md), or from an unencrypted management room")
	errFileTooLarge  = fmt.Errorf("the file is larger than %d MiB: split it", migration.MaxImportBytes>>20)
)

// migrationCommands are the admin commands for waves and modes.
type migrationCommands struct {
	service func() *migration.Service
	fetch   fileFetcher
}

// addMigrationCommands registers the migration commands with the bot.
func addMigrationCommands(m *mxmain.BridgeMain) {
	conn, ok := m.Connector.(*bridge.Connector)
	proc, isProc := m.Bridge.Commands.(*commands.Processor)
	if !ok || !isProc || m.Matrix == nil {
		return
	}
	mc := &migrationCommands{service: conn.Migration, fetch: botFileFetcher(m.Matrix)}
	proc.AddHandlers(mc.handlers()...)
}

func (mc *migrationCommands) handlers() []commands.CommandHandler {
	return []commands.CommandHandler{
		&commands.FullHandler{
			Name: "wave", RequiresAdmin: true, Func: mc.admin(mc.wave),
			Help: commands.HelpMeta{Section: helpSectionMigration, Args: "list | show _name_",
				Description: "List the migration waves with their counts, or show one wave and its people."},
		},
		&commands.FullHandler{
			Name: "user", RequiresAdmin: true, Func: mc.admin(mc.user),
			Help: commands.HelpMeta{Section: helpSectionMigration, Args: "show _SIP address_",
				Description: "Show a person's mode, wave, Skype for Business login and last error."},
		},
		&commands.FullHandler{
			Name: "mode", RequiresAdmin: true, Func: mc.admin(mc.mode),
			Help: commands.HelpMeta{Section: helpSectionMigration, Args: "set _SIP address_ | wave _name_ _mode_",
				Description: "Set the mode (sfb_only, coexistence, matrix_only; none to clear) of one person or of a wave."},
		},
		&commands.FullHandler{
			Name: "import", RequiresAdmin: true, Func: mc.admin(mc.importFile),
			Help: commands.HelpMeta{Section: helpSectionMigration,
				Description: "Import people into waves from a CSV file (sip_address;matrix_id;wave;mode): a dry run first, then you confirm."},
		},
	}
}

// admin runs fn only in the admin's management room, once the service is
// there.
func (mc *migrationCommands) admin(fn func(ce *commands.Event, svc *migration.Service)) func(*commands.Event) {
	return func(ce *commands.Event) {
		if !inManagementRoom(ce) {
			return
		}
		svc := mc.service()
		if svc == nil {
			ce.Reply("The bridge is still starting; try again in a minute.")
			return
		}
		fn(ce, svc)
	}
}

// inManagementRoom tells the admin to move to their management room, where
// the answers (names, addresses) stay between them and the bot, unless the
// command came from there.
func inManagementRoom(ce *commands.Event) bool {
	if ce.RoomID == ce.User.ManagementRoom {
		return true
	}
	say(ce, "Use this command in your management room (your direct chat with the bridge bot).")
	return false
}

func actorOf(ce *commands.Event) migration.Actor {
	return migration.Actor{Who: string(ce.User.MXID), From: "management room " + string(ce.RoomID)}
}

func (mc *migrationCommands) wave(ce *commands.Event, svc *migration.Service) {
	switch {
	case len(ce.Args) == 1 && strings.EqualFold(ce.Args[0], "list"):
		o, err := svc.Overview(ce.Ctx)
		say(ce, orError(err, func() string { return formatOverview(o) }))
	case len(ce.Args) >= 2 && strings.EqualFold(ce.Args[0], "show"):
		d, err := svc.Wave(ce.Ctx, strings.Join(ce.Args[1:], " "))
		say(ce, orError(err, func() string { return formatWave(d) }))
	default:
		ce.Reply("Usage: `$cmdprefix wave list` or `$cmdprefix wave show <name>`")
	}
}

func (mc *migrationCommands) user(ce *commands.Event, svc *migration.Service) {
	if len(ce.Args) != 2 || !strings.EqualFold(ce.Args[0], "show") {
		ce.Reply("Usage: `$cmdprefix user show <SIP address>`, e.g. `$cmdprefix user show alice@contoso.com`")
		return
	}
	p, err := svc.Person(ce.Ctx, ce.Args[1])
	say(ce, orError(err, func() string { return formatPerson(p) }))
}

const modeUsage = "Usage: `$cmdprefix mode set <SIP address> <mode>` or `$cmdprefix mode set wave <name> <mode>`; " +
	"the mode is sfb_only, coexistence, matrix_only, or none to clear it."

func (mc *migrationCommands) mode(ce *commands.Event, svc *migration.Service) {
	args := ce.Args
	if len(args) < 3 || !strings.EqualFold(args[0], "set") {
		ce.Reply(modeUsage)
		return
	}
	rawMode := args[len(args)-1]
	var mode migration.Mode
	if !strings.EqualFold(rawMode, "none") {
		var err error
		if mode, err = migration.ParseMode(rawMode); err != nil {
			say(ce, capitalise(err.Error())+".")
			return
		}
	}
	if strings.EqualFold(args[1], "wave") {
		if len(args) < 4 {
			ce.Reply(modeUsage)
			return
		}
		name := strings.Join(args[2:len(args)-1], " ")
		if err := svc.SetWaveMode(ce.Ctx, name, mode, actorOf(ce)); err != nil {
			say(ce, orError(err, nil))
			return
		}
		d, err := svc.Wave(ce.Ctx, name)
		say(ce, orError(err, func() string {
			return fmt.Sprintf("Wave **%s** now has mode %s. Its %d people: %s. Every bridge process applies the change within a minute.",
				d.Name, modeName(mode), d.Assigned, formatByMode(d.ByMode))
		}))
		return
	}
	if len(args) != 3 {
		ce.Reply(modeUsage)
		return
	}
	if err := svc.SetPersonMode(ce.Ctx, args[1], mode, actorOf(ce)); err != nil {
		say(ce, orError(err, nil))
		return
	}
	p, err := svc.Person(ce.Ctx, args[1])
	say(ce, orError(err, func() string {
		return fmt.Sprintf("`%s` now has mode %s (%s). Every bridge process applies the change within a minute.", p.Address, p.Mode, sourceText(p))
	}))
}

// importState is an import waiting for the admin: first for the file,
// then for "confirm".
type importState struct {
	mc   *migrationCommands
	svc  *migration.Service
	data []byte
	name string
}

func (mc *migrationCommands) importFile(ce *commands.Event, svc *migration.Service) {
	if existing := commands.LoadCommandState(ce.User); existing != nil {
		ce.Reply("You have an ongoing %s; finish it or use `$cmdprefix cancel` first.", strings.ToLower(existing.Action))
		return
	}
	st := &importState{mc: mc, svc: svc}
	if ce.ReplyTo != "" {
		st.dryRun(ce, ce.ReplyTo)
		return
	}
	st.awaitFile(ce)
	ce.Reply("Send the CSV file now, as an attachment (columns sip_address;matrix_id;wave;mode, see docs/migration.md). " +
		"I will check it first and change nothing until you confirm. `$cmdprefix cancel` stops the import.")
}

// awaitFile takes the admin's next message as the file.
func (st *importState) awaitFile(ce *commands.Event) {
	commands.StoreCommandState(ce.User, &commands.CommandState{
		Next: commands.MinimalCommandHandlerFunc(func(ce *commands.Event) { st.dryRun(ce, ce.EventID) }), Action: "Import",
	})
}

func (st *importState) dryRun(ce *commands.Event, file id.EventID) {
	name, data, err := st.mc.fetch(ce.Ctx, ce.RoomID, file)
	if err != nil {
		st.awaitFile(ce)
		ce.Reply("%s Send the file again, or `$cmdprefix cancel`.", capitalise(err.Error())+".")
		return
	}
	report, err := st.svc.Import(ce.Ctx, data, true, actorOf(ce))
	if err != nil {
		commands.StoreCommandState(ce.User, nil)
		say(ce, fmt.Sprintf("Cannot import `%s`: %s Nothing was changed; fix the file and start again with `$cmdprefix import`.", name, orError(err, nil)))
		return
	}
	st.data, st.name = data, name
	if len(report.Errors) > 0 {
		commands.StoreCommandState(ce.User, nil)
		say(ce, formatReport(name, report)+"\n\nNothing was changed. Fix these rows and start again with `$cmdprefix import`.")
		return
	}
	commands.StoreCommandState(ce.User, &commands.CommandState{Next: commands.MinimalCommandHandlerFunc(st.confirm), Action: "Import"})
	say(ce, formatReport(name, report)+"\n\nNothing is changed yet. Reply `confirm` to import it for real, or `$cmdprefix cancel`.")
}

func (st *importState) confirm(ce *commands.Event) {
	if !strings.EqualFold(strings.TrimSpace(ce.RawArgs), "confirm") {
		ce.Reply("Reply `confirm` to import `%s`, or `$cmdprefix cancel`.", st.name)
		return
	}
	commands.StoreCommandState(ce.User, nil)
	report, err := st.svc.Import(ce.Ctx, st.data, false, actorOf(ce))
	switch {
	case errors.Is(err, migration.ErrInvalidImport):
		say(ce, formatReport(st.name, report)+"\n\nThe data changed since the check; nothing was imported. Fix these rows and start again.")
	case err != nil:
		say(ce, "Nothing was imported. "+orError(err, nil))
	default:
		ce.Reply("Imported `%s`: %d new people, %d changed, %d unchanged, %d new waves. Every bridge process applies the new modes within a minute.",
			st.name, report.New, report.Changed, report.Unchanged, len(report.NewWaves))
	}
}

// botFileFetcher reads a file message with the bridge bot's account,
// decrypting it in an encrypted room when the bridge has encryption on.
func botFileFetcher(mc *matrix.Connector) fileFetcher {
	bot := mc.Bot.Client
	return func(ctx context.Context, room id.RoomID, eventID id.EventID) (string, []byte, error) {
		evt, err := bot.GetEvent(ctx, room, eventID)
		if err != nil {
			return "", nil, fmt.Errorf("could not read the message with the file (%w)", err)
		}
		evt.RoomID = room
		if evt.Type == event.EventEncrypted {
			if mc.Crypto == nil {
				return "", nil, errEncryptedFile
			}
			if err := evt.Content.ParseRaw(evt.Type); err != nil {
				return "", nil, errNotAFile
			}
			if evt, err = mc.Crypto.Decrypt(ctx, evt); err != nil {
				return "", nil, fmt.Errorf("could not decrypt the message with the file (%w)", err)
			}
		}
		if evt.Type != event.EventMessage {
			return "", nil, errNotAFile
		}
		if evt.Content.Parsed == nil {
			if err := evt.Content.ParseRaw(evt.Type); err != nil {
				return "", nil, errNotAFile
			}
		}
		msg := evt.Content.AsMessage()
		if msg.MsgType != event.MsgFile {
			return "", nil, errNotAFile
		}
		if msg.Info != nil && msg.Info.Size > migration.MaxImportBytes {
			return "", nil, errFileTooLarge
		}
		uri := msg.URL
		if msg.File != nil {
			uri = msg.File.URL
		}
		mxc, err := uri.Parse()
		if err != nil {
			return "", nil, errNotAFile
		}
		data, err := bot.DownloadBytes(ctx, mxc)
		if err != nil {
			return "", nil, fmt.Errorf("could not download the file (%w)", err)
		}
		if len(data) > migration.MaxImportBytes {
			return "", nil, errFileTooLarge
		}
		if msg.File != nil {
			if err := msg.File.DecryptInPlace(data); err != nil {
				return "", nil, fmt.Errorf("could not decrypt the file (%w)", err)
			}
		}
		name := msg.FileName
		if name == "" {
			name = msg.Body
		}
		return name, data, nil
	}
}

// say replies text, in which $cmdprefix stands for the command prefix.
func say(ce *commands.Event, text string) {
	ce.Reply("%s", strings.ReplaceAll(text, "$cmdprefix", ce.Bridge.Config.CommandPrefix))
}

// orError returns the text of ok, or what went wrong in words for the
// admin.
func orError(err error, ok func() string) string {
	switch {
	case err == nil:
		return ok()
	case errors.Is(err, migration.ErrNotFound), errors.Is(err, migration.ErrInvalid):
		return capitalise(err.Error()) + "."
	default:
		return "That did not work: " + err.Error() + ". Try again; if it keeps failing, the bridge's log says more."
	}
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func modeName(m migration.Mode) string {
	if m == "" {
		return "none (the default applies)"
	}
	return string(m)
}

func formatByMode(byMode map[migration.Mode]int) string {
	parts := make([]string, 0, len(migration.Modes()))
	for _, m := range migration.Modes() {
		parts = append(parts, fmt.Sprintf("%d %s", byMode[m], m))
	}
	return strings.Join(parts, ", ")
}

func formatCounts(c migration.Counts) string {
	return fmt.Sprintf("%d people (%s); %d signed in, %d connected, %d in error",
		c.Assigned, formatByMode(c.ByMode), c.SignedIn, c.Connected, c.InError)
}

func formatStart(t *time.Time) string {
	if t == nil {
		return "no start date"
	}
	return "starts " + t.UTC().Format("2006-01-02 15:04 MST")
}

func formatOverview(o *migration.Overview) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Waves** (people in no wave have the default mode, %s)\n\n", o.DefaultMode)
	if len(o.Waves) == 0 {
		b.WriteString("No waves yet. Import a CSV file with `$cmdprefix import`.\n")
	}
	for _, w := range o.Waves {
		fmt.Fprintf(&b, "- **%s**: %s, mode %s; %s\n", w.Name, formatStart(w.PlannedStart), modeName(w.Mode), formatCounts(w.Counts))
	}
	fmt.Fprintf(&b, "- In no wave: %s\n", formatCounts(o.NoWave))
	return b.String()
}

// maxPeopleShown bounds a wave's list in the room; the API lists all.
const maxPeopleShown = 50

func formatWave(d *migration.WaveDetail) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s**: %s, mode %s\n\n%s\n\n", d.Name, formatStart(d.PlannedStart), modeName(d.Mode), capitalise(formatCounts(d.Counts)))
	if len(d.NotSignedIn) > 0 {
		fmt.Fprintf(&b, "Not signed in yet: %d\n\n", len(d.NotSignedIn))
	}
	for i, p := range d.People {
		if i == maxPeopleShown {
			fmt.Fprintf(&b, "- … and %d more (the API lists every person)\n", len(d.People)-maxPeopleShown)
			break
		}
		fmt.Fprintf(&b, "- `%s` (%s): %s (%s), login %s%s%s\n", p.Address, p.MatrixUser, p.Mode, sourceText(&p), p.Login.Status, errorText(p.Login), announcedText(p.Announcement))
	}
	return b.String()
}

func formatPerson(p *migration.PersonView) string {
	if !p.Assigned {
		return fmt.Sprintf("`%s` is in no wave and was never imported; their mode is the default, %s. Login: %s%s.",
			p.Address, p.Mode, p.Login.Status, errorText(p.Login))
	}
	wave := p.Wave
	if wave == "" {
		wave = "none"
	}
	state := ""
	if p.Login.State != "" {
		state = " (" + p.Login.State + ")"
	}
	lastError := p.Login.Error
	if lastError == "" {
		lastError = "none"
	}
	return fmt.Sprintf("**%s**\n\n- Matrix ID: %s\n- Wave: %s\n- Mode: %s (%s)\n- Login: %s%s\n- Last error: %s\n",
		p.Address, p.MatrixUser, wave, p.Mode, sourceText(p), p.Login.Status, state, lastError)
}

func sourceText(p *migration.PersonView) string {
	switch p.Source {
	case migration.FromPerson:
		return "their own mode"
	case migration.FromWave:
		return "from wave " + p.Wave
	default:
		return "the default"
	}
}

// announcedText sums up what the bot told a person when their wave
// started; empty before.
func announcedText(a *migration.Announced) string {
	switch {
	case a == nil:
		return ""
	case a.FirstSent == nil && a.SignedIn != nil:
		return ", signed in before being told"
	case a.FirstSent == nil:
		return ""
	}
	told := ", told " + a.FirstSent.UTC().Format("2006-01-02 15:04 MST")
	if a.Reminders > 0 {
		told += fmt.Sprintf(" (%s)", plural(a.Reminders, "reminder", "reminders"))
	}
	if a.SignedIn != nil {
		told += ", signed in " + a.SignedIn.UTC().Format("2006-01-02 15:04 MST")
	}
	return told
}

func errorText(l migration.Login) string {
	if l.Error == "" {
		return ""
	}
	return ", last error: " + l.Error
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// maxErrorsShown bounds the bad rows listed in the room.
const maxErrorsShown = 30

func formatReport(name string, r *migration.ImportReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Checked `%s`: %s, %d bad; %s, %d changed, %d unchanged", name, plural(r.Rows, "row", "rows"), len(r.Errors),
		plural(r.New, "new person", "new people"), r.Changed, r.Unchanged)
	if len(r.NewWaves) > 0 {
		fmt.Fprintf(&b, "; new waves: %s", strings.Join(r.NewWaves, ", "))
	}
	b.WriteString(".")
	for i, e := range r.Errors {
		if i == maxErrorsShown {
			fmt.Fprintf(&b, "\n- … and %d more bad rows (the API's dry run lists them all)", len(r.Errors)-maxErrorsShown)
			break
		}
		fmt.Fprintf(&b, "\n- line %d: %s", e.Line, e.Reason)
	}
	return b.String()
}
