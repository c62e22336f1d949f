package bridge

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

func withTrustedSIP() envOption {
	return func(e *testEnv, c *Config) {
		e.transport.trusted = true
		c.Transport = sfb.TransportSIP
		c.SIP.Mode = sfb.SIPModeTrusted
	}
}

// A trusted application signs anyone in without a password: the bridge
// lets a Matrix user sign in only as the address the migration table
// assigns to them.
func TestTrustedLoginOnlyAsTheAssignedAddress(t *testing.T) {
	e := newTestEnv(t, withTrustedSIP())

	proc, err := e.conn.CreateLogin(e.ctx, e.user, FlowPassword)
	require.NoError(t, err)
	step, err := proc.Start(e.ctx)
	require.NoError(t, err)
	require.Len(t, step.UserInputParams.Fields, 1, "no password asked")
	assert.Equal(t, FieldSignInAddress, step.UserInputParams.Fields[0].ID)
	proc.Cancel()

	refused := func(address string) {
		t.Helper()
		_, err := e.login(address, "", "")
		var re bridgev2.RespError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, ErrCodeNotAssigned, re.ErrCode)
		assert.Equal(t, http.StatusForbidden, re.StatusCode)
		assert.Contains(t, re.Err, address)
	}
	refused("alice@contoso.com") // nobody assigned
	_, err = e.conn.Migration().Import(e.ctx, []byte("sip_address;matrix_id;wave;mode\n"+
		"alice@contoso.com;@alice:example.org;Pilot;\n"+
		"bob@contoso.com;@bob:example.org;Pilot;\n"), false, migration.Actor{Who: "test"})
	require.NoError(t, err)
	refused("bob@contoso.com") // someone else's
	assert.Empty(t, e.transport.signInRequests(), "a refused login reaches no server")

	ul, err := e.login("alice@contoso.com", "", "typed anyway")
	require.NoError(t, err)
	assert.Equal(t, "alice@contoso.com", string(ul.ID))
	reqs := e.transport.signInRequests()
	require.Len(t, reqs, 1)
	assert.Empty(t, reqs[0].Credentials.Password, "no password goes to a trusted application's sign-in")
	assert.Nil(t, e.credential("alice@contoso.com").Password)
}
