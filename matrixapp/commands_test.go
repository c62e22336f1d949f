package matrixapp

import (
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/database"
)

// help lists what a user of this bridge can use, before they logged in
// too (when bridgev2 cannot check network features against a login).
func TestHelpShowsOnlyMeaningfulCommands(t *testing.T) {
	br := &bridgev2.Bridge{Log: zerolog.Nop(), Config: &bridgeconfig.BridgeConfig{CommandPrefix: "!sfb"}}
	proc := commands.NewProcessor(br)
	hideCommands(proc)
	help := commands.FormatHelp(&commands.Event{
		Processor: proc.(*commands.Processor),
		Bridge:    br,
		User:      &bridgev2.User{User: &database.User{}, Bridge: br},
	})
	for _, want := range []string{"**login**", "**logout**", "**start-chat**", "**resolve-identifier**", "**help**", "**create-group**", "**set-relay**"} {
		assert.Contains(t, help, want)
	}
	for _, h := range notForSfB {
		assert.NotContains(t, help, "**"+h.Name+"**")
	}
}
