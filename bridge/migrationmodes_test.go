package bridge

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
)

// The migration team's counts read a login's last bridge state: what needs
// someone is an error, a login on its way is signed in but not connected.
func TestLoginSummaryForMigrationCounts(t *testing.T) {
	for _, tc := range []struct {
		state status.BridgeState
		want  migration.Login
	}{
		{status.BridgeState{StateEvent: status.StateConnected}, migration.Login{Status: migration.LoginConnected, State: "CONNECTED"}},
		{status.BridgeState{StateEvent: status.StateConnecting}, migration.Login{Status: migration.LoginConnecting, State: "CONNECTING"}},
		{status.BridgeState{StateEvent: status.StateBadCredentials, Error: "sfb-password-wrong", Message: "The password was refused"},
			migration.Login{Status: migration.LoginError, State: "BAD_CREDENTIALS", Error: "sfb-password-wrong: The password was refused"}},
		{status.BridgeState{StateEvent: status.StateTransientDisconnect, Error: "sfb-unreachable"},
			migration.Login{Status: migration.LoginError, State: "TRANSIENT_DISCONNECT", Error: "sfb-unreachable"}},
		{status.BridgeState{StateEvent: status.StateLoggedOut}, migration.Login{Status: migration.LoginNone, State: "LOGGED_OUT"}},
	} {
		assert.Equal(t, tc.want, loginSummary(tc.state), string(tc.state.StateEvent))
	}
}
