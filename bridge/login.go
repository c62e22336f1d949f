package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"maunium.net/go/mautrix/bridgev2"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// FlowPassword is the login flow: sign-in address, user name and password.
const FlowPassword = "password"

// Input field IDs of the password flow, as the provisioning API submits
// them.
const (
	FieldSignInAddress = "sign_in_address"
	FieldUsername      = "username"
	FieldPassword      = "password"
)

// Error codes the provisioning API returns for failed logins.
const (
	ErrCodeInvalidAddress  = "NET.SFB.INVALID_ADDRESS"
	ErrCodeMissingPassword = "NET.SFB.MISSING_PASSWORD"
	ErrCodeBadCredentials  = "NET.SFB.BAD_CREDENTIALS"
	ErrCodeUnavailable     = "NET.SFB.SERVER_UNAVAILABLE"
	ErrCodeBridgeBusy      = "NET.SFB.BRIDGE_BUSY"
	ErrCodeStarting        = "NET.SFB.STARTING"
	ErrCodeTimeout         = "NET.SFB.TIMEOUT"
	ErrCodeServerNotFound  = "NET.SFB.SERVER_NOT_FOUND"
	ErrCodeSignInFailed    = "NET.SFB.SIGN_IN_FAILED"
	ErrCodeLoginConflict   = "NET.SFB.LOGIN_CONFLICT"
	ErrCodeStoreFailed     = "NET.SFB.STORE_FAILED"
)

// GetLoginFlows lists the one way to log in.
func (c *Connector) GetLoginFlows() []bridgev2.LoginFlow {
	return []bridgev2.LoginFlow{{
		Name:        "Password",
		Description: "Sign in with your Skype for Business sign-in address and password.",
		ID:          FlowPassword,
	}}
}

// CreateLogin starts a login for user; the bot's login command and the
// provisioning API both come here.
func (c *Connector) CreateLogin(ctx context.Context, user *bridgev2.User, flowID string) (bridgev2.LoginProcess, error) {
	if flowID != FlowPassword {
		return nil, bridgev2.ErrInvalidLoginFlowID
	}
	// bridgev2 serves the provisioning API and the bot before it starts
	// the network connector: until then there is no transport to sign in
	// with and no database to store the login in.
	if !c.started.Load() {
		return nil, bridgev2.RespError{ErrCode: ErrCodeStarting, Err: "The bridge is still starting. Try again in a few seconds.", StatusCode: http.StatusServiceUnavailable}
	}
	return &passwordLogin{conn: c, user: user}, nil
}

type passwordLogin struct {
	conn *Connector
	user *bridgev2.User

	mu sync.Mutex
	// address and username are what the first step submitted; after a
	// rejected password the flow asks for the password alone and signs in
	// with these.
	address, username string
	// session and router are set between a successful sign-in and the
	// hand-over to the login's client; Cancel closes the session and
	// releases the events its router holds back if the login never
	// completes.
	session sfb.Session
	router  *eventRouter
}

var _ bridgev2.LoginProcessUserInput = (*passwordLogin)(nil)

func (pl *passwordLogin) Start(ctx context.Context) (*bridgev2.LoginStep, error) {
	if pl.conn.Config.TrustedApplication() {
		return trustedLoginStep(), nil
	}
	return &bridgev2.LoginStep{
		Type:         bridgev2.LoginStepTypeUserInput,
		StepID:       "net.sfb.password",
		Instructions: "Enter your Skype for Business sign-in address and password. The password is used to sign in and, if the bridge keeps passwords, stored encrypted to renew your sign-in.",
		UserInputParams: &bridgev2.LoginUserInputParams{
			Fields: []bridgev2.LoginInputDataField{addressField(), {
				Type:        bridgev2.LoginInputFieldTypeUsername,
				ID:          FieldUsername,
				Name:        "user name",
				Description: "Only if your organisation signs in with another name (e.g. CONTOSO\\alice); send `-` to use the sign-in address.",
				Validate:    validateUsername,
			}, {
				Type:     bridgev2.LoginInputFieldTypePassword,
				ID:       FieldPassword,
				Name:     "password",
				Validate: validatePassword,
			}},
		},
	}, nil
}

// addressField asks for the SfB sign-in address.
func addressField() bridgev2.LoginInputDataField {
	return bridgev2.LoginInputDataField{
		Type:        bridgev2.LoginInputFieldTypeEmail,
		ID:          FieldSignInAddress,
		Name:        "sign-in address",
		Description: "Your Skype for Business address, e.g. alice@contoso.com",
		Validate:    validateAddress,
	}
}

// StepIDPasswordRetry is the step that follows a sign-in that SfB refused
// or could not answer: the password alone, for the address and user name
// given before. A provisioning client sees it instead of an error and can
// submit the password again to the same login process.
const StepIDPasswordRetry = "net.sfb.password_retry"

// retryStep asks for the password again. Through the bot it keeps the flow
// in the password step, so the retyped password is taken by the flow and
// redacted like the first one rather than left in the room as an unknown
// command.
func retryStep(problem string) *bridgev2.LoginStep {
	return &bridgev2.LoginStep{
		Type:         bridgev2.LoginStepTypeUserInput,
		StepID:       StepIDPasswordRetry,
		Instructions: problem + "\n\nType your password again to try once more; the bridge removes it from this chat. To stop, send `cancel`. To use another address or user name, send `cancel` and then `login`.",
		UserInputParams: &bridgev2.LoginUserInputParams{
			Fields: []bridgev2.LoginInputDataField{{
				Type:     bridgev2.LoginInputFieldTypePassword,
				ID:       FieldPassword,
				Name:     "password",
				Validate: validatePassword,
			}},
		},
	}
}

// retryable reports whether typing the password again can help: SfB
// refused it, or the sign-in did not get an answer in time (from SfB, or
// its turn inside a busy bridge).
func retryable(err error) bool {
	return errors.Is(err, sfb.ErrBadCredentials) || errors.Is(err, sfb.ErrServerUnavailable) ||
		errors.Is(err, sfb.ErrLocalTimeout) || errors.Is(err, context.DeadlineExceeded)
}

func validateAddress(s string) (string, error) {
	uri, err := sfb.ParseURI(s)
	if err != nil {
		return "", fmt.Errorf("not a Skype for Business address (want alice@contoso.com)")
	}
	return uri.Address(), nil
}

// validateUsername maps "-" (what a chat user can type for "nothing") to
// empty, meaning the sign-in address.
func validateUsername(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "-" {
		return "", nil
	}
	if len(s) > 256 || strings.ContainsAny(s, "\r\n\x00") {
		return "", fmt.Errorf("user name must be one line of at most 256 characters")
	}
	return s, nil
}

func validatePassword(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("password is empty")
	}
	return s, nil
}

func (pl *passwordLogin) Cancel() {
	pl.mu.Lock()
	s, r := pl.session, pl.router
	pl.session, pl.router = nil, nil
	pl.mu.Unlock()
	if r != nil {
		// Before closing: a handler waiting for the client must not
		// hold up a transport whose Close waits for its event loop.
		r.detach()
	}
	if s != nil {
		closeSession(pl.conn.log, s)
	}
}

// SubmitUserInput signs in, stores the credentials and creates the login.
// Every failure comes back as a RespError whose message the bot shows and
// the provisioning API returns with a status code.
func (pl *passwordLogin) SubmitUserInput(ctx context.Context, input map[string]string) (*bridgev2.LoginStep, error) {
	c := pl.conn
	pl.mu.Lock()
	address, username := pl.address, pl.username
	pl.mu.Unlock()
	if address == "" {
		var err error
		if address, err = validateAddress(input[FieldSignInAddress]); err != nil {
			return nil, bridgev2.RespError{ErrCode: ErrCodeInvalidAddress, Err: fmt.Sprintf("Invalid sign-in address: %v.", err), StatusCode: http.StatusBadRequest}
		}
		if username, err = validateUsername(input[FieldUsername]); err != nil {
			return nil, bridgev2.RespError{ErrCode: ErrCodeInvalidAddress, Err: fmt.Sprintf("Invalid user name: %v.", err), StatusCode: http.StatusBadRequest}
		}
	}
	trusted := c.Config.TrustedApplication()
	password := input[FieldPassword]
	if trusted {
		password = ""
	} else if password == "" {
		return nil, bridgev2.RespError{ErrCode: ErrCodeMissingPassword, Err: "The password is empty.", StatusCode: http.StatusBadRequest}
	}
	uri, _ := sfb.ParseURI(address)
	loginID := loginIDFor(uri)
	log := pl.user.Log.With().Str("action", "sfb login").Str("login_id", string(loginID)).Logger()
	ctx = log.WithContext(ctx)
	if trusted {
		if err := c.checkAssigned(ctx, pl.user.MXID, uri); err != nil {
			log.Info().Err(err).Msg("Sign-in refused: the address is not assigned to this Matrix user")
			return nil, err
		}
	}
	creds := sfb.Credentials{SignInAddress: address, Username: username, Password: password}

	router := newEventRouter()
	session, err := c.signIn(ctx, sfb.SignInRequest{Credentials: creds}, router.handle)
	if err != nil {
		cause := signInCause(err)
		log.Info().Err(err).Str("cause", cause).Msg("Sign-in failed")
		c.audit(ctx, loginID, pl.user.MXID, database.AuditLoginFailed, cause)
		respErr := signInRespError(address, err)
		var re bridgev2.RespError
		if !trusted && retryable(err) && errors.As(respErr, &re) {
			pl.mu.Lock()
			pl.address, pl.username = address, username
			pl.mu.Unlock()
			return retryStep(re.Err), nil
		}
		return nil, respErr
	}
	pl.mu.Lock()
	pl.session, pl.router = session, router
	pl.mu.Unlock()
	ok := false
	defer func() {
		if !ok {
			pl.Cancel()
		}
	}()

	self := session.Self()
	if self.URI != "" && self.URI != uri {
		// The server knows the user by another address (an alias);
		// key the login by the one the server uses, which is how
		// peers will name them.
		log.Info().Str("server_address", self.URI.Address()).Msg("Server returned a different address for the user")
		uri = self.URI
		loginID = loginIDFor(uri)
	}
	remoteName := strings.TrimSpace(self.DisplayName)
	if remoteName == "" {
		remoteName = uri.Address()
	}

	// An SfB account is bridged for one Matrix user; another one knowing
	// the password does not take it over (nor overwrite its stored
	// credentials).
	existing, err := c.br.GetExistingUserLoginByID(ctx, loginID)
	if err != nil {
		log.Err(err).Msg("Failed to look up existing login")
		return nil, bridgev2.RespError{ErrCode: ErrCodeStoreFailed, Err: "Signed in, but the bridge could not check your existing logins. Try again later.", StatusCode: http.StatusInternalServerError}
	}
	if existing != nil && existing.UserMXID != pl.user.MXID {
		c.audit(ctx, loginID, pl.user.MXID, database.AuditLoginFailed, "already bridged for "+string(existing.UserMXID))
		return nil, bridgev2.RespError{ErrCode: ErrCodeLoginConflict, Err: fmt.Sprintf("%s is already bridged for another Matrix user.", uri.Address()), StatusCode: http.StatusConflict}
	}

	if err := c.saveCredentials(ctx, loginID, creds, session.Token()); err != nil {
		log.Err(err).Msg("Failed to store credentials")
		return nil, bridgev2.RespError{ErrCode: ErrCodeStoreFailed, Err: "Signed in, but the bridge could not store your login. Try again later or contact the administrators.", StatusCode: http.StatusInternalServerError}
	}

	// A login that already runs (a relogin) signs its old session out
	// before the new one takes over; the new one's resume state replaces
	// the old one's once it is connected.
	if existing != nil {
		if old, isOurs := existing.Client.(*Client); isOurs {
			old.disconnect(true)
		}
	}
	ul, err := pl.user.NewLogin(ctx, &mxdb.UserLogin{
		ID:         loginID,
		RemoteName: remoteName,
		RemoteProfile: status.RemoteProfile{
			Name:     remoteName,
			Username: uri.Address(),
		},
	}, &bridgev2.NewLoginParams{
		LoadUserLogin: func(ctx context.Context, login *bridgev2.UserLogin) error {
			client := c.newClient(login)
			client.adopt(session, router)
			login.Client = client
			return nil
		},
	})
	if err != nil {
		log.Err(err).Msg("Failed to create login")
		if strings.Contains(err.Error(), "already logged in") {
			return nil, bridgev2.RespError{ErrCode: ErrCodeLoginConflict, Err: fmt.Sprintf("%s is already bridged for another Matrix user.", uri.Address()), StatusCode: http.StatusConflict}
		}
		return nil, bridgev2.RespError{ErrCode: ErrCodeStoreFailed, Err: "Signed in, but the bridge could not save the login. Try again later or contact the administrators.", StatusCode: http.StatusInternalServerError}
	}
	ok = true
	pl.mu.Lock()
	pl.session, pl.router = nil, nil
	pl.mu.Unlock()
	// Only now that bridgev2 has the login (and its portals can refer to
	// it) do the session's events, held back since the sign-in, reach it.
	router.attach(ul.Client.(*Client))

	detail := "password kept encrypted"
	if !c.Config.KeepPassword || c.box == nil {
		detail = "password not kept"
	}
	c.audit(ctx, loginID, pl.user.MXID, database.AuditLogin, detail)
	ul.Client.Connect(ul.Log.WithContext(c.backgroundCtx()))
	return &bridgev2.LoginStep{
		Type:         bridgev2.LoginStepTypeComplete,
		StepID:       "net.sfb.complete",
		Instructions: fmt.Sprintf("Logged in to Skype for Business as %s (%s). %s", remoteName, uri.Address(), c.signInNote(loginID)),
		CompleteParams: &bridgev2.LoginCompleteParams{
			UserLoginID: ul.ID,
			UserLogin:   ul,
		},
	}, nil
}

// signInRespError turns a sign-in failure into what the user reads. It
// never includes the password; transport errors are expected to carry none.
func signInRespError(address string, err error) error {
	switch {
	case errors.Is(err, sfb.ErrBadCredentials):
		return bridgev2.RespError{ErrCode: ErrCodeBadCredentials, Err: fmt.Sprintf("Skype for Business rejected the user name or password for %s.", address), StatusCode: http.StatusForbidden}
	case errors.Is(err, sfb.ErrLocalTimeout):
		return bridgev2.RespError{ErrCode: ErrCodeBridgeBusy, Err: "The bridge is busy signing in many people right now, and your sign-in waited too long for its turn. Your password was not the problem. Try again in a few minutes.", StatusCode: http.StatusServiceUnavailable}
	case errors.Is(err, sfb.ErrServerUnavailable):
		return bridgev2.RespError{ErrCode: ErrCodeUnavailable, Err: "The Skype for Business server is not reachable right now. Try again in a few minutes.", StatusCode: http.StatusServiceUnavailable}
	case errors.Is(err, context.DeadlineExceeded):
		return bridgev2.RespError{ErrCode: ErrCodeTimeout, Err: "Signing in to Skype for Business took too long. Try again in a few minutes.", StatusCode: http.StatusGatewayTimeout}
	case errors.Is(err, sfb.ErrNotFound):
		return bridgev2.RespError{ErrCode: ErrCodeServerNotFound, Err: fmt.Sprintf("No Skype for Business server was found for %s. Check the address.", address), StatusCode: http.StatusNotFound}
	case errors.Is(err, context.Canceled):
		return bridgev2.RespError{ErrCode: ErrCodeSignInFailed, Err: "The sign-in was cancelled.", StatusCode: http.StatusRequestTimeout}
	default:
		return bridgev2.RespError{ErrCode: ErrCodeSignInFailed, Err: fmt.Sprintf("Signing in to Skype for Business failed: %v.", err), StatusCode: http.StatusBadGateway}
	}
}

// signInCause says in a few words why a sign-in failed, for logs and
// the audit log. A wait inside the bridge is not the server's fault: it
// says the bridge is overloaded or its limits are too tight.
func signInCause(err error) string {
	switch {
	case errors.Is(err, sfb.ErrBadCredentials):
		return "bad credentials"
	case errors.Is(err, sfb.ErrLocalTimeout):
		return "timed out waiting inside the bridge"
	case errors.Is(err, sfb.ErrServerUnavailable):
		return "server unavailable"
	case errors.Is(err, sfb.ErrNotFound):
		return "server not found"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	default:
		return err.Error()
	}
}
