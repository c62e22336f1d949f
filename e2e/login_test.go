package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
)

// TestWrongPasswordThenRightOneLeavesNoPasswordInTheRoom types the password
// where the bot asks for the address (a slip), then a wrong password, then,
// after the bot's answer, the right one (the natural retry), and reads the
// management room's history as the user: no password may be readable
// there.
func TestWrongPasswordThenRightOneLeavesNoPasswordInTheRoom(t *testing.T) {
	env := setup(t)
	p := env.newPairSignedOut(t, "wendy")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	wrong := "wendy-wrong-password"
	say := func(text string) int {
		t.Helper()
		from := p.mx.mark()
		_, err := p.mx.Client.SendText(ctx, p.mgmt, text)
		require.NoError(t, err)
		return from
	}
	botSays := func(from int, what string, match func(string) bool) string {
		t.Helper()
		return p.mx.waitFor(from, hop, what, isMessage(p.mgmt, env.st.Bot, match)).Content.AsMessage().Body
	}
	prompt := func(field string) func(string) bool {
		return func(b string) bool { return strings.HasPrefix(strings.ToLower(b), "please enter your "+field) }
	}

	botSays(say("login"), "the address prompt", prompt("sign-in address"))
	// A slip: the password typed where the bot asked for the address.
	botSays(say(p.self.Password), "the bot's answer to the slip", func(b string) bool { return strings.Contains(b, "Invalid value") })
	botSays(say(p.self.URI.Address()), "the user name prompt", prompt("user name"))
	botSays(say("-"), "the password prompt", prompt("password"))
	from := say(wrong)
	rejection := botSays(from, "the bot's answer to the wrong password", func(b string) bool { return strings.Contains(b, "rejected") })
	assert.Contains(t, rejection, "Type your password again", "the bot says what to do next")

	if _, err := p.mx.waitForErr(from, hop, isMessage(p.mgmt, env.st.Bot, prompt("password"))); err != nil {
		t.Errorf("the bot does not ask for the password again: %v", err)
	}

	// The natural retry: the password again.
	from = say(p.self.Password)
	answer := botSays(from, "the bot's answer to the retyped password", anyBody)

	// Redactions are sent before the sign-in, but read the history until
	// it settles rather than assume so.
	var readable []string
	ok := assert.Eventually(t, func() bool {
		var err error
		readable, err = readableSecrets(ctx, p, wrong, p.self.Password)
		return err == nil && len(readable) == 0
	}, hop, 200*time.Millisecond)
	if !ok {
		t.Errorf("passwords readable in the management room:\n%s", strings.Join(readable, "\n"))
	}
	assert.True(t, strings.HasPrefix(strings.ToLower(answer), "logged in"), "the retyped password signs in; the bot said %q", answer)
}

// readableSecrets reads the management room's history as the user and
// returns the events whose content still contains one of secrets.
func readableSecrets(ctx context.Context, p *pair, secrets ...string) ([]string, error) {
	resp, err := p.mx.Client.Messages(ctx, p.mgmt, "", "", mautrix.DirectionBackward, nil, 200)
	if err != nil {
		return nil, err
	}
	var found []string
	for _, evt := range resp.Chunk {
		if evt.Type != event.EventMessage {
			continue
		}
		content, err := json.Marshal(evt.Content.Raw)
		if err != nil {
			return nil, err
		}
		for _, s := range secrets {
			if strings.Contains(string(content), s) {
				found = append(found, string(evt.ID)+" from "+string(evt.Sender)+": "+string(content))
			}
		}
	}
	return found, nil
}
