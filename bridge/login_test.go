package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// bridgev2 serves the provisioning API before it starts the network
// connector; a login in that gap is told to wait instead of reaching a
// connector without transport or database (it panicked).
func TestLoginBeforeStartSaysTheBridgeIsStarting(t *testing.T) {
	c := NewConnector(nil)
	_, err := c.CreateLogin(context.Background(), nil, FlowPassword)
	var re bridgev2.RespError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, ErrCodeStarting, re.ErrCode)
	assert.Equal(t, http.StatusServiceUnavailable, re.StatusCode)
	assert.Contains(t, re.Err, "still starting")
}

func TestLoginFlowFields(t *testing.T) {
	e := newTestEnv(t)
	flows := e.conn.GetLoginFlows()
	require.Len(t, flows, 1)
	assert.Equal(t, FlowPassword, flows[0].ID)

	_, err := e.conn.CreateLogin(e.ctx, e.user, "qr")
	assert.ErrorIs(t, err, bridgev2.ErrInvalidLoginFlowID)

	proc, err := e.conn.CreateLogin(e.ctx, e.user, FlowPassword)
	require.NoError(t, err)
	step, err := proc.Start(e.ctx)
	require.NoError(t, err)
	fields := step.UserInputParams.Fields
	require.Len(t, fields, 3)
	assert.Equal(t, []string{FieldSignInAddress, FieldUsername, FieldPassword}, []string{fields[0].ID, fields[1].ID, fields[2].ID})
	assert.Equal(t, bridgev2.LoginInputFieldTypePassword, fields[2].Type)

	// The bot command runs these validators on what the user types.
	addr, err := fields[0].Validate(" SIP:Alice@Contoso.COM ")
	require.NoError(t, err)
	assert.Equal(t, "alice@contoso.com", addr)
	_, err = fields[0].Validate("alice")
	assert.Error(t, err)
	user, err := fields[1].Validate("-")
	require.NoError(t, err)
	assert.Empty(t, user, "- means: the sign-in address")
	user, err = fields[1].Validate(`CONTOSO\alice`)
	require.NoError(t, err)
	assert.Equal(t, `CONTOSO\alice`, user)
}

func TestLoginStoresSealedPasswordAndToken(t *testing.T) {
	e := newTestEnv(t)
	ul, client, session := e.mustLogin()

	assert.Equal(t, "alice@contoso.com", string(ul.ID), "login ID is the lower-cased address")
	assert.Equal(t, "Alice Example", ul.RemoteName)
	assert.True(t, client.IsLoggedIn())
	assert.Equal(t, 1, e.transport.sessionCount(), "the login's session is reused, not signed in twice")
	req := e.transport.signInRequests()[0]
	assert.Equal(t, "alice@contoso.com", req.Credentials.SignInAddress)
	assert.Empty(t, req.Credentials.Username)

	cred := e.credential("alice@contoso.com")
	assert.Equal(t, "alice@contoso.com", cred.SignInAddress)
	require.NotNil(t, cred.Password)
	assert.NotContains(t, string(cred.Password), "alice-pw", "password stored sealed")
	assert.Equal(t, "alice-pw", e.open(cred.Password, passwordAD(ul.ID)))
	require.NotNil(t, cred.Token)
	assert.Equal(t, session.Token().Value, e.open(cred.Token, tokenAD(ul.ID)))
	assert.True(t, cred.TokenExpiry.Equal(session.Token().ExpiresAt))

	// The sealed password is bound to its login and column.
	_, err := openWith(e, cred.Password, tokenAD(ul.ID))
	assert.Error(t, err)
	_, err = openWith(e, cred.Password, passwordAD("bob@contoso.com"))
	assert.Error(t, err)

	assert.Equal(t, []string{database.AuditLogin}, e.audit("alice@contoso.com"))
}

func openWith(e *testEnv, sealed, ad []byte) ([]byte, error) {
	return e.conn.box.Open(sealed, ad)
}

func TestLoginKeepPasswordOff(t *testing.T) {
	e := newTestEnv(t, withKeepPassword(false))
	ul, _, session := e.mustLogin()
	cred := e.credential(string(ul.ID))
	assert.Nil(t, cred.Password, "no password stored when keep_password is off")
	require.NotNil(t, cred.Token, "the token is still kept for restarts")
	assert.Equal(t, session.Token().Value, e.open(cred.Token, tokenAD(ul.ID)))
}

func TestLoginKeepPasswordOffWithoutKey(t *testing.T) {
	e := newTestEnv(t, withKeepPassword(false), func(_ *testEnv, c *Config) { c.SecretKey = "" })
	require.Nil(t, e.conn.box)
	ul, _, _ := e.mustLogin()
	cred := e.credential(string(ul.ID))
	assert.Nil(t, cred.Password)
	assert.Nil(t, cred.Token, "nothing is stored unsealed")
}

// A rejected password keeps the flow in the password step: the bot then
// takes the retyped password as input to the flow (and redacts it) instead
// of leaving it in the room as an unknown command.
func TestLoginBadCredentialsAsksForThePasswordAgain(t *testing.T) {
	e := newTestEnv(t)
	proc, err := e.conn.CreateLogin(e.ctx, e.user, FlowPassword)
	require.NoError(t, err)
	_, err = proc.Start(e.ctx)
	require.NoError(t, err)
	login := proc.(bridgev2.LoginProcessUserInput)
	step, err := login.SubmitUserInput(e.ctx, map[string]string{
		FieldSignInAddress: "alice@contoso.com", FieldUsername: `CONTOSO\alice`, FieldPassword: "wrong-pw",
	})
	require.NoError(t, err, "a rejection is a step of the flow, not its end")
	require.Equal(t, bridgev2.LoginStepTypeUserInput, step.Type)
	assert.Equal(t, StepIDPasswordRetry, step.StepID)
	require.Len(t, step.UserInputParams.Fields, 1)
	field := step.UserInputParams.Fields[0]
	assert.Equal(t, FieldPassword, field.ID)
	assert.Equal(t, bridgev2.LoginInputFieldTypePassword, field.Type, "the bot redacts what is typed for a password field")
	assert.Contains(t, step.Instructions, "rejected the user name or password for alice@contoso.com")
	assert.Contains(t, step.Instructions, "Type your password again")
	assert.Contains(t, step.Instructions, "`cancel`")
	assert.NotContains(t, step.Instructions, "wrong-pw")

	assert.Empty(t, e.user.GetUserLogins(), "no login is created")
	_, err = e.conn.db.GetCredential(e.ctx, "alice@contoso.com")
	assert.ErrorIs(t, err, database.ErrNotFound, "nothing is stored")
	assert.Equal(t, []string{database.AuditLoginFailed}, e.audit("alice@contoso.com"))

	// The second try sends the password alone and signs in with the address
	// and user name of the first.
	step, err = login.SubmitUserInput(e.ctx, map[string]string{FieldPassword: "alice-pw"})
	require.NoError(t, err)
	require.Equal(t, bridgev2.LoginStepTypeComplete, step.Type)
	assert.Equal(t, "alice@contoso.com", string(step.CompleteParams.UserLoginID))
	reqs := e.transport.signInRequests()
	require.Len(t, reqs, 2)
	assert.Equal(t, "alice@contoso.com", reqs[1].Credentials.SignInAddress)
	assert.Equal(t, `CONTOSO\alice`, reqs[1].Credentials.Username)
	assert.Equal(t, "alice-pw", e.open(e.credential("alice@contoso.com").Password, passwordAD("alice@contoso.com")))
}

// A server that does not answer also leaves the user in the password step.
func TestLoginServerUnavailableAsksForThePasswordAgain(t *testing.T) {
	e := newTestEnv(t)
	e.transport.failWith(fmt.Errorf("503: %w", sfb.ErrServerUnavailable))
	step, err := e.loginStep("alice@contoso.com", "", "alice-pw")
	require.NoError(t, err)
	assert.Equal(t, StepIDPasswordRetry, step.StepID)
	assert.Contains(t, step.Instructions, "not reachable")
	assert.Empty(t, e.user.GetUserLogins())
}

func TestLoginErrors(t *testing.T) {
	tests := []struct {
		name     string
		address  string
		password string
		signIn   error
		code     string
		status   int
	}{
		{"invalid address", "not an address", "pw", nil, ErrCodeInvalidAddress, http.StatusBadRequest},
		{"other scheme", "tel:+123", "pw", nil, ErrCodeInvalidAddress, http.StatusBadRequest},
		{"empty password", "alice@contoso.com", "", nil, ErrCodeMissingPassword, http.StatusBadRequest},
		{"no server", "alice@contoso.com", "alice-pw", fmt.Errorf("lyncdiscover: %w", sfb.ErrNotFound), ErrCodeServerNotFound, http.StatusNotFound},
		{"other failure", "alice@contoso.com", "alice-pw", errors.New("tls: bad certificate"), ErrCodeSignInFailed, http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			if tt.signIn != nil {
				e.transport.failWith(tt.signIn)
			}
			_, err := e.login(tt.address, "", tt.password)
			var re bridgev2.RespError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, tt.code, re.ErrCode)
			assert.Equal(t, tt.status, re.StatusCode)
			assert.NotEmpty(t, re.Err)
			assert.Empty(t, e.user.GetUserLogins())
		})
	}
}

func TestLoginWithUsername(t *testing.T) {
	e := newTestEnv(t)
	_, err := e.login("alice@contoso.com", `CONTOSO\alice`, "alice-pw")
	require.NoError(t, err)
	assert.Equal(t, `CONTOSO\alice`, e.transport.signInRequests()[0].Credentials.Username)
	assert.Equal(t, `CONTOSO\alice`, e.credential("alice@contoso.com").Username)
}

func TestReloginReplacesSession(t *testing.T) {
	e := newTestEnv(t)
	_, _, first := e.mustLogin()
	ul, err := e.login("alice@contoso.com", "", "alice-pw")
	require.NoError(t, err)
	assert.True(t, first.isClosed(), "the old session is signed out")
	assert.Len(t, e.user.GetUserLogins(), 1)
	second := e.transport.lastSession()
	assert.NotSame(t, first, second)
	assert.Same(t, second, ul.Client.(*Client).currentSession())
}

func TestRestartSignsInWithStoredToken(t *testing.T) {
	e := newTestEnv(t)
	ul, _, session := e.mustLogin()
	tok := session.Token()
	ul.Client.Disconnect()
	assert.True(t, session.isDetached(), "a shutdown keeps the SfB session for the next start")
	assert.False(t, session.isClosed(), "a shutdown does not sign out")

	// A new bridge process on the same database.
	e2 := newTestEnv(t, withDB(e.dbPath), withTransport(e.transport))
	ul2, err := e2.br.GetExistingUserLoginByID(e2.ctx, ul.ID)
	require.NoError(t, err)
	require.NotNil(t, ul2)
	ul2.Client.Connect(e2.ctx)
	e2.waitState(status.StateConnected)

	reqs := e.transport.signInRequests()
	last := reqs[len(reqs)-1]
	require.NotNil(t, last.Token, "the stored token is offered")
	assert.Equal(t, tok.Value, last.Token.Value)
	assert.True(t, tok.ExpiresAt.Equal(last.Token.ExpiresAt))
	assert.Equal(t, "alice-pw", last.Credentials.Password, "the password comes along for renewal")
	assert.True(t, ul2.Client.IsLoggedIn())
}

func TestRestartWithoutPasswordAfterTokenExpiry(t *testing.T) {
	ft := newFakeTransport()
	e := newTestEnv(t, withKeepPassword(false), withTransport(ft))
	ul, _, _ := e.mustLogin()
	ul.Client.Disconnect()

	ft.mu.Lock()
	ft.now = func() time.Time { return time.Now().Add(9 * time.Hour) }
	ft.mu.Unlock()
	e2 := newTestEnv(t, withDB(e.dbPath), withTransport(ft), withKeepPassword(false))
	ul2, err := e2.br.GetExistingUserLoginByID(e2.ctx, ul.ID)
	require.NoError(t, err)
	ul2.Client.Connect(e2.ctx)
	state := e2.waitState(status.StateBadCredentials)
	assert.Equal(t, status.UserActionRelogin, state.UserAction)
	assert.Equal(t, StateErrCredentialsNeeded, state.Error)
	assert.False(t, ul2.Client.IsLoggedIn())
	assert.Equal(t, database.AuditReloginRequired, e2.audit(string(ul.ID))[0])
}

func TestRestartWithChangedKeyNeedsRelogin(t *testing.T) {
	e := newTestEnv(t)
	ul, _, _ := e.mustLogin()
	ul.Client.Disconnect()

	e2 := newTestEnv(t, withDB(e.dbPath), withTransport(e.transport), func(e *testEnv, c *Config) {
		e.key = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
		c.SecretKey = e.key
	})
	ul2, err := e2.br.GetExistingUserLoginByID(e2.ctx, ul.ID)
	require.NoError(t, err)
	ul2.Client.Connect(e2.ctx)
	state := e2.waitState(status.StateBadCredentials)
	assert.Equal(t, status.UserActionRelogin, state.UserAction)
	assert.Contains(t, state.Message, "secret key")
}

func TestTurningKeepPasswordOffErasesStoredPassword(t *testing.T) {
	e := newTestEnv(t)
	ul, _, _ := e.mustLogin()
	ul.Client.Disconnect()
	require.NotNil(t, e.credential(string(ul.ID)).Password)

	e2 := newTestEnv(t, withDB(e.dbPath), withTransport(e.transport), withKeepPassword(false))
	ul2, err := e2.br.GetExistingUserLoginByID(e2.ctx, ul.ID)
	require.NoError(t, err)
	ul2.Client.Connect(e2.ctx)
	e2.waitState(status.StateConnected)
	assert.Nil(t, e2.credential(string(ul.ID)).Password)
	reqs := e.transport.signInRequests()
	assert.Empty(t, reqs[len(reqs)-1].Credentials.Password)
}

func TestLoginOfAccountBridgedForAnotherUser(t *testing.T) {
	e := newTestEnv(t)
	ul, _, first := e.mustLogin()
	storedBefore := e.credential(string(ul.ID))

	other, err := e.br.GetUserByMXID(e.ctx, "@mallory:example.org")
	require.NoError(t, err)
	e.user = other
	_, err = e.login("alice@contoso.com", "", "alice-pw")
	var re bridgev2.RespError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, ErrCodeLoginConflict, re.ErrCode)
	assert.Equal(t, http.StatusConflict, re.StatusCode)
	assert.False(t, first.isClosed(), "the owner's session keeps running")
	assert.True(t, e.transport.lastSession().isClosed(), "the intruder's session is signed out")
	assert.Equal(t, storedBefore.Token, e.credential(string(ul.ID)).Token, "the owner's credentials are untouched")
	assert.Empty(t, other.GetUserLogins())
}

// A session delivers an event while the login that signed it in is still
// running (its client does not exist yet). The session acknowledges an
// event once the handler returns, so the handler returns only after the
// client handled it: nothing acknowledged lives only in memory.
func TestEventDuringLoginAcknowledgedOnlyOnceHandled(t *testing.T) {
	e := newTestEnv(t)
	msg := sfb.MessageReceived{
		ID:           "early-1",
		Conversation: sfb.Conversation{Peer: bob},
		From:         sfb.Person{URI: bob},
		Message:      sfb.Message{Text: "are you there?"},
		Time:         time.UnixMilli(1700000000000),
	}
	entered := make(chan struct{})
	acked := make(chan int, 1)
	e.transport.afterSignIn = func(s *fakeSession) {
		inner := s.handler
		s.handler = func(ctx context.Context, evt sfb.Event) {
			close(entered)
			inner(ctx, evt)
			acked <- len(e.queuedEvents())
		}
		go s.emit(msg)
		// The login goes on only once the event is being handled.
		<-entered
	}
	ul, err := e.login("alice@contoso.com", "", "alice-pw")
	require.NoError(t, err)
	select {
	case queued := <-acked:
		assert.Equal(t, 1, queued, "the event was acknowledged before the client queued it")
	case <-time.After(waitFor):
		t.Fatal("the event is never handled")
	}
	events := e.queuedEvents()
	require.Len(t, events, 1)
	assert.Equal(t, portalKeyFor(bob, ul.ID), events[0].GetPortalKey())
}

// A login that fails after the sign-in releases an event its session is
// waiting to deliver (it is dropped, the session signed out), so that
// neither the login nor the session's event loop hangs.
func TestEventDuringFailedLoginReleased(t *testing.T) {
	e := newTestEnv(t)
	e.mustLogin()
	other, err := e.br.GetUserByMXID(e.ctx, "@mallory:example.org")
	require.NoError(t, err)
	e.user = other
	returned := make(chan struct{})
	e.transport.afterSignIn = func(s *fakeSession) {
		go func() {
			s.emit(sfb.MessageReceived{ID: "early-2", From: sfb.Person{URI: bob}, Message: sfb.Message{Text: "hi"}})
			close(returned)
		}()
	}
	_, err = e.login("alice@contoso.com", "", "alice-pw")
	var re bridgev2.RespError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, ErrCodeLoginConflict, re.ErrCode)
	select {
	case <-returned:
	case <-time.After(waitFor):
		t.Fatal("the session's handler still waits for a login that failed")
	}
	assert.Empty(t, e.queuedEvents(), "nothing of the intruder's session is bridged")
}

// TestSignInTimeoutToldFromUnreachableServer: a sign-in that timed out
// waiting inside the bridge (a connection, a request slot, the ramp) is
// not reported as an unreachable server: not to the user who logs in, not
// in bridge state while the login reconnects, not in logs and audit.
func TestSignInTimeoutToldFromUnreachableServer(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   string
		status int
		says   string
		state  status.BridgeStateErrorCode
		cause  string
	}{
		{"waited inside the bridge", fmt.Errorf("create application: wait for a connection: %w: %w", sfb.ErrLocalTimeout, context.DeadlineExceeded),
			ErrCodeBridgeBusy, http.StatusServiceUnavailable, "The bridge is busy", StateErrBridgeBusy, "timed out waiting inside the bridge"},
		{"server did not answer in time", fmt.Errorf("create application: no answer in time: %w: %w", sfb.ErrServerUnavailable, context.DeadlineExceeded),
			ErrCodeUnavailable, http.StatusServiceUnavailable, "server is not reachable", StateErrUnavailable, "server unavailable"},
		{"server refused the connection", fmt.Errorf("autodiscover: %w: connection refused", sfb.ErrServerUnavailable),
			ErrCodeUnavailable, http.StatusServiceUnavailable, "server is not reachable", StateErrUnavailable, "server unavailable"},
		{"deadline of unknown origin", fmt.Errorf("sign in: %w", context.DeadlineExceeded),
			ErrCodeTimeout, http.StatusGatewayTimeout, "took too long", StateErrConnectFailed, "timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			var re bridgev2.RespError
			require.ErrorAs(t, signInRespError("alice@contoso.com", tt.err), &re)
			assert.Equal(t, tt.code, re.ErrCode)
			assert.Equal(t, tt.status, re.StatusCode)
			// Trying again may help: the login asks for the password again,
			// saying why.
			e.transport.failWith(tt.err)
			step, err := e.loginStep("alice@contoso.com", "", "alice-pw")
			require.NoError(t, err)
			assert.Equal(t, StepIDPasswordRetry, step.StepID)
			assert.Contains(t, step.Instructions, tt.says)
			assert.NotContains(t, step.Instructions, "context deadline", "no technical text for the user")
			failed := e.logged("Sign-in failed")
			require.Len(t, failed, 1)
			assert.Equal(t, tt.cause, failed[0]["cause"])
			events, err := e.conn.db.ListAudit(e.ctx, "alice@contoso.com", 10)
			require.NoError(t, err)
			require.Len(t, events, 1, "a failed login has no state to record")
			assert.Equal(t, tt.cause, events[0].Detail)

			// The same failure while a stored login reconnects.
			ul, _, _ := e.mustLogin()
			ul.Client.Disconnect()
			e.transport.failWith(tt.err)
			mark := e.stateMark()
			ul.Client.Connect(e.ctx)
			state := e.waitStates(mark, status.StateTransientDisconnect)
			assert.Equal(t, tt.state, state.Error)
			assert.NotEmpty(t, state.Message)
			e.waitStates(mark, status.StateTransientDisconnect, status.StateConnected)
			retried := e.logged("Failed to connect to Skype for Business")
			require.Len(t, retried, 1)
			assert.Equal(t, tt.cause, retried[0]["cause"])
		})
	}
}

// TestSignInRampTimeoutIsLocal: a sign-in whose caller gives up while it
// waits for its turn on the transport's ramp has waited inside the bridge,
// and ends at once.
func TestSignInRampTimeoutIsLocal(t *testing.T) {
	e := newTestEnv(t)
	e.transport.turn = func(turn context.Context) error {
		// The ramp's next slot is far away: only the caller ends the wait,
		// as the UCWA transport's pool guard does.
		<-turn.Done()
		return fmt.Errorf("wait for a sign-in slot: %w: %w", sfb.ErrLocalTimeout, turn.Err())
	}
	req := sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: "alice@contoso.com", Password: "alice-pw"}}
	ctx, cancel := context.WithTimeout(e.ctx, 50*time.Millisecond)
	defer cancel()
	_, err := e.conn.signIn(ctx, req, func(context.Context, sfb.Event) {})
	require.ErrorIs(t, err, sfb.ErrLocalTimeout)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Empty(t, e.transport.signInRequests(), "the server was not asked")
	var re bridgev2.RespError
	require.ErrorAs(t, signInRespError("alice@contoso.com", err), &re)
	assert.Equal(t, ErrCodeBridgeBusy, re.ErrCode)
}
