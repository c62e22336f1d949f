package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
)

// modeDeadline is what the bridge promises the migration team: a mode
// change takes effect within a minute, without a restart.
const modeDeadline = 60 * time.Second

// A wave imported from CSV through the API, given a planned start in the
// past and switched to matrix_only, changes what the running bridge does
// within a minute: the signed-in person's Matrix presence is published on
// SfB and an SfB call to them is declined on all their endpoints; the
// person not signed in yet gets the bot's announcement in their
// management room, and the wave's view lists who has not signed in.
func TestWaveSwitchedToMatrixOnlyTakesEffectWithinAMinute(t *testing.T) {
	t.Parallel()
	env := setup(t)
	migrated := env.newPair(t, "modeswitch")
	newcomer := env.newPairSignedOut(t, "modesnew")
	ctx, cancel := context.WithTimeout(context.Background(), 3*modeDeadline)
	defer cancel()

	// Coexistence (the default for people nobody imported): the bridge
	// publishes nothing; the SfB client shows presence.
	migrated.mx.setSyncPresence(event.PresenceOnline)
	require.NoError(t, migrated.mx.Client.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceOnline, StatusMsg: "Jetzt in Element"}))
	never(t, 3*time.Second, "a publication before the switch", func() string {
		if n := env.sim.Publications(migrated.self.URI); n != 0 {
			return fmt.Sprintf("the bridge published %d times", n)
		}
		return ""
	})

	const wave = "E2E Modes"
	csv := "sip_address;matrix_id;wave\r\n" +
		migrated.self.URI.Address() + ";" + migrated.mx.ID.String() + ";" + wave + "\r\n" +
		newcomer.self.URI.Address() + ";" + newcomer.mx.ID.String() + ";" + wave + "\r\n"
	secret := env.st.ProvisioningSecret
	announced := newcomer.mx.mark()
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "POST", "/import?dry_run=false", secret, csv, nil))
	start := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "PUT", "/waves/E2E%20Modes", secret, `{"planned_start":"`+start+`"}`, nil))
	require.Equal(t, http.StatusOK, migrationAPI(t, env, "PUT", "/waves/E2E%20Modes/mode", secret, `{"mode":"matrix_only"}`, nil))
	switched := time.Now()

	// Presence now comes from Matrix.
	require.Eventually(t, func() bool {
		p, err := env.sim.GetPresence(migrated.self.URI)
		return err == nil && p.Availability == "Online" && p.Note == "Jetzt in Element"
	}, modeDeadline, 100*time.Millisecond, "the Matrix presence was not published on SfB within a minute of the switch")
	t.Logf("presence published %s after the switch", time.Since(switched).Round(time.Millisecond))

	// A call is declined on every endpoint: the SfB client stops ringing.
	callID, err := env.sim.Call(ctx, migrated.colleague.URI, migrated.self.URI, false)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		res, err := env.sim.CallResult(callID)
		return err == nil && slices.Contains(res.DeclineReasons, "Global")
	}, hop, 100*time.Millisecond, "the call was not declined globally")

	// The newcomer is told, in German and English, how to sign in.
	msg := newcomer.mx.waitFor(announced, modeDeadline, "the wave announcement", isMessage(newcomer.mgmt, env.st.Bot, func(b string) bool {
		return strings.Contains(b, "Ihr Wechsel von Skype for Business zu Element beginnt")
	}))
	assert.Less(t, time.Since(switched), modeDeadline, "announced more than a minute after the wave started")
	body := msg.Content.AsMessage().Body
	assert.Contains(t, body, "Element replaces your Skype for Business")
	assert.Contains(t, body, newcomer.self.URI.Address())

	var view struct {
		NotSignedIn []string `json:"not_signed_in"`
		People      []struct {
			Address      string `json:"sip_address"`
			Mode         string `json:"mode"`
			Announcement *struct {
				FirstSent *time.Time `json:"first_sent"`
				SignedIn  *time.Time `json:"signed_in"`
			} `json:"announcement"`
		} `json:"people"`
	}
	require.Eventually(t, func() bool {
		require.Equal(t, http.StatusOK, migrationAPI(t, env, "GET", "/waves/E2E%20Modes", secret, "", &view))
		return len(view.People) == 2 && view.People[0].Announcement != nil && view.People[1].Announcement != nil
	}, modeDeadline, 200*time.Millisecond, "the wave view shows no announcements")
	assert.Equal(t, []string{newcomer.self.URI.Address()}, view.NotSignedIn)
	for _, p := range view.People {
		assert.Equal(t, "matrix_only", p.Mode)
		if p.Address == newcomer.self.URI.Address() {
			assert.NotNil(t, p.Announcement.FirstSent, "the newcomer was told")
			assert.Nil(t, p.Announcement.SignedIn)
		} else {
			assert.Nil(t, p.Announcement.FirstSent, "the signed-in person needs no announcement")
			assert.NotNil(t, p.Announcement.SignedIn)
		}
	}
}
