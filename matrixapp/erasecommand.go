package matrixapp

import (
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/matrixapp/migrationapi"
)

// eraseCommand is `erase ADDRESS`: it shows what would go and erases only
// after the admin confirms by repeating the address.
type eraseCommand struct {
	eraser migrationapi.Eraser
}

// addEraseCommand registers the erase command with the bot.
func addEraseCommand(m *mxmain.BridgeMain) {
	conn, ok := m.Connector.(*bridge.Connector)
	proc, isProc := m.Bridge.Commands.(*commands.Processor)
	if !ok || !isProc {
		return
	}
	proc.AddHandlers(eraseCommand{eraser: conn}.handler())
}

func (ec eraseCommand) handler() *commands.FullHandler {
	return &commands.FullHandler{
		Name: "erase", RequiresAdmin: true, Func: ec.start,
		Help: commands.HelpMeta{Section: helpSectionMigration, Args: "_SIP address_",
			Description: "Erase one person's bridge data (login, rooms, ghost, wave); shows what goes and asks you to confirm. Cannot be undone."},
	}
}

func (ec eraseCommand) start(ce *commands.Event) {
	if !inManagementRoom(ce) {
		return
	}
	if len(ce.Args) != 1 {
		ce.Reply("Usage: `$cmdprefix erase <SIP address>`, e.g. `$cmdprefix erase alice@contoso.com`")
		return
	}
	if existing := commands.LoadCommandState(ce.User); existing != nil {
		ce.Reply("You have an ongoing %s; finish it or use `$cmdprefix cancel` first.", strings.ToLower(existing.Action))
		return
	}
	plan, err := ec.eraser.PlanErasure(ce.Ctx, ce.Args[0])
	if err != nil {
		say(ce, erasureError(err))
		return
	}
	if !plan.Known() {
		say(ce, fmt.Sprintf("The bridge knows nobody with the address %s; check the spelling. Nothing was erased.", plan.Address))
		return
	}
	commands.StoreCommandState(ce.User, &commands.CommandState{Action: "Erasure",
		Next: commands.MinimalCommandHandlerFunc(func(ce *commands.Event) { ec.confirm(ce, plan) })})
	say(ce, formatErasurePlan(plan)+
		fmt.Sprintf("\n\nThis cannot be undone. Reply `%s` (the address again) to erase, or `$cmdprefix cancel`.", plan.Address))
}

func (ec eraseCommand) confirm(ce *commands.Event, plan *bridge.ErasurePlan) {
	if !migrationapi.ConfirmsErasure(ce.RawArgs, plan) {
		ce.Reply("Reply `%s` to erase that person, or `$cmdprefix cancel`.", plan.Address)
		return
	}
	commands.StoreCommandState(ce.User, nil)
	report, err := ec.eraser.ErasePerson(ce.Ctx, plan.Address, actorOf(ce))
	if err != nil {
		say(ce, "Nothing or only part was erased: "+erasureError(err)+" Run `$cmdprefix erase` again; it continues where it stopped.")
		return
	}
	login := "no login"
	if report.Login {
		login = "their login signed out and removed"
	}
	say(ce, fmt.Sprintf("Erased the bridge data of %s: %s, %s, %d unsent messages, %d audit entries anonymised. "+
		"The audit log now calls them %s. What the homeserver keeps is erased separately: see docs/erasure.md.",
		plan.Address, login, plural(report.Portals, "room", "rooms"), report.Outbox, report.AuditRows, report.Pseudonym))
}

func formatErasurePlan(p *bridge.ErasurePlan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Erasing %s removes:\n", p.Address)
	if p.Login {
		b.WriteString("- their Skype for Business login (signed out first) with its stored credentials\n")
	}
	fmt.Fprintf(&b, "- %s of theirs with the messages in them\n", plural(p.Portals, "portal room", "portal rooms"))
	if p.Ghost {
		b.WriteString("- their ghost, and the messages it sent into other people's rooms from the bridge's records\n")
	}
	if p.MatrixUser != "" {
		fmt.Fprintf(&b, "- the bridge's records of their Matrix account %s\n", p.MatrixUser)
	}
	if p.Wave != "" {
		fmt.Fprintf(&b, "- their place in wave %s and their mode\n", p.Wave)
	}
	fmt.Fprintf(&b, "The audit log keeps that an erasure happened, under the pseudonym %s.", p.Pseudonym)
	return b.String()
}

func erasureError(err error) string {
	if errors.Is(err, bridge.ErrNoPseudonymKey) {
		return capitalise(err.Error()) + "."
	}
	return orError(err, nil)
}

var _ migrationapi.Eraser = (*bridge.Connector)(nil)
