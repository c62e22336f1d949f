package matrixapp

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
)

type recordingEraser struct{ erased []string }

func (r *recordingEraser) PlanErasure(_ context.Context, address string) (*bridge.ErasurePlan, error) {
	address = strings.TrimPrefix(strings.ToLower(address), "sip:")
	plan := &bridge.ErasurePlan{Address: address, Pseudonym: "erased:abc"}
	if address == "alice@contoso.com" {
		plan.Login, plan.Portals, plan.Ghost, plan.MatrixUser, plan.Wave = true, 3, true, "@alice:example.org", "Welle 1"
	}
	return plan, nil
}

func (r *recordingEraser) ErasePerson(ctx context.Context, address string, by migration.Actor) (*bridge.ErasureReport, error) {
	r.erased = append(r.erased, address+" by "+by.Who)
	plan, _ := r.PlanErasure(ctx, address)
	return &bridge.ErasureReport{ErasurePlan: *plan, Erased: database.Erased{Outbox: 1, AuditRows: 5}}, nil
}

func TestEraseCommandAsksBeforeErasing(t *testing.T) {
	r := newCommandRig(t)
	eraser := &recordingEraser{}
	h := eraseCommand{eraser: eraser}.handler()
	send := func(room id.RoomID, message string) string {
		ce := &commands.Event{Bot: r.bot, Bridge: r.br, User: r.user, RoomID: room, OrigRoomID: room,
			Ctx: context.Background(), Log: &zerolog.Logger{}, RawArgs: message}
		fields := strings.Fields(message)
		if fields[0] == "erase" {
			ce.Command, ce.Args = fields[0], fields[1:]
			ce.RawArgs = strings.Join(fields[1:], " ")
			h.Func(ce)
		} else {
			state := commands.LoadCommandState(r.user)
			require.NotNil(t, state)
			ce.Args = fields
			state.Next.Run(ce)
		}
		return r.bot.last(t)
	}

	assert.Contains(t, send("!elsewhere:example.org", "erase alice@contoso.com"), "management room")
	assert.Contains(t, send(mgmt, "erase"), "Usage")
	assert.Contains(t, send(mgmt, "erase nobody@contoso.com"), "knows nobody")
	assert.Nil(t, commands.LoadCommandState(r.user))

	plan := send(mgmt, "erase sip:Alice@Contoso.com")
	assert.Contains(t, plan, "3 portal rooms")
	assert.Contains(t, plan, "wave Welle 1")
	assert.Contains(t, plan, "erased:abc")
	assert.Contains(t, plan, "Reply `alice@contoso.com`")
	assert.Contains(t, send(mgmt, "confirm"), "Reply `alice@contoso.com`", "a plain confirm erased")
	assert.Empty(t, eraser.erased)

	done := send(mgmt, "Alice@Contoso.com")
	assert.Equal(t, []string{"alice@contoso.com by @lead:example.org"}, eraser.erased)
	assert.Contains(t, done, "signed out")
	assert.Contains(t, done, "5 audit entries anonymised")
	assert.Contains(t, done, "docs/erasure.md")
	assert.Nil(t, commands.LoadCommandState(r.user))
}
