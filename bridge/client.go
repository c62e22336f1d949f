package bridge

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/secret"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/pool"
)

// Bridge state error codes, for the migration team's dashboards. The
// states carry their own human-readable message; the codes are not put in
// mautrix's global BridgeStateHumanErrors map, which would replace it.
const (
	StateErrBadCredentials     status.BridgeStateErrorCode = "sfb-bad-credentials"
	StateErrCredentialsNeeded  status.BridgeStateErrorCode = "sfb-relogin-required"
	StateErrUnavailable        status.BridgeStateErrorCode = "sfb-unavailable"
	StateErrBridgeBusy         status.BridgeStateErrorCode = "sfb-bridge-busy"
	StateErrConnectFailed      status.BridgeStateErrorCode = "sfb-connect-failed"
	StateErrSessionInterrupted status.BridgeStateErrorCode = "sfb-session-interrupted"
	StateErrUnreadable         status.BridgeStateErrorCode = "sfb-credentials-unreadable"
)

// Client is one login's connection to SfB: the bridgev2 NetworkAPI.
type Client struct {
	conn    *Connector
	login   *bridgev2.UserLogin
	loginID networkid.UserLoginID
	log     zerolog.Logger

	loggedIn atomic.Bool
	// lastState is the bridge state the connector last sent, for the
	// migration team's counts: bridgev2's own copy (GetPrev) is written
	// by its queue without a lock.
	lastState atomic.Pointer[status.BridgeState]

	mu sync.Mutex
	// session and router are the current SfB session and its event
	// router; nil while not connected.
	session sfb.Session
	router  *eventRouter
	// savedToken is the token last written to the database, to notice
	// renewals.
	savedToken sfb.Token
	// savedResume is the resume state last written to the database.
	savedResume string
	// resumeKick wakes resumeSaver after handled events.
	resumeKick chan struct{}
	// outbox runs the lanes that send Matrix messages (see outbox.go); a
	// new one per Connect.
	outbox *outbox
	// live holds the Matrix event IDs this process registered with
	// bridgev2 as pending (see outbox.go).
	live map[string]struct{}
	// settleMu makes recording a replayed entry's outcome (message row,
	// then deleting the entry) and storing a new entry (no message row,
	// then adding it) exclusive, so that an event the homeserver pushes
	// again meanwhile finds one or the other (see addOutbox).
	settleMu sync.Mutex
	// heardNames holds the display names that SfB events gave for
	// senders, for those the directory does not know (see GetUserInfo).
	heardNames map[sfb.URI]string
	// runCtx lives from Connect to Disconnect; the reconnect loop and
	// the token watcher run in it.
	runCtx context.Context
	stop   context.CancelFunc
	// states records changes of the login's state in the audit log.
	states stateAudit
}

var (
	_ bridgev2.NetworkAPI                    = (*Client)(nil)
	_ bridgev2.NetworkAPIWithUserID          = (*Client)(nil)
	_ bridgev2.TypingHandlingNetworkAPI      = (*Client)(nil)
	_ bridgev2.IdentifierResolvingNetworkAPI = (*Client)(nil)
	_ bridgev2.PollHandlingNetworkAPI        = (*Client)(nil)
)

func (c *Connector) newClient(login *bridgev2.UserLogin) *Client {
	client := &Client{
		conn:       c,
		login:      login,
		loginID:    login.ID,
		log:        login.Log.With().Str("component", "sfb client").Logger(),
		resumeKick: make(chan struct{}, 1),
		live:       map[string]struct{}{},
	}
	// A login in the database had valid credentials when it was made;
	// Connect finds out whether they still are.
	client.loggedIn.Store(true)
	return client
}

// adopt takes over the session that the login flow signed in with, so
// that a new login does not sign in twice. The login flow attaches r once
// bridgev2 has the login.
func (c *Client) adopt(s sfb.Session, r *eventRouter) {
	c.mu.Lock()
	c.session = s
	c.router = r
	c.savedToken = s.Token()
	c.mu.Unlock()
}

// Connect signs in from the stored credentials in the background and
// returns at once: bridgev2 connects logins one after another at startup,
// and thousands of them must not wait for each other.
func (c *Client) Connect(ctx context.Context) {
	c.mu.Lock()
	if c.stop != nil {
		c.mu.Unlock()
		return
	}
	c.runCtx, c.stop = context.WithCancel(c.log.WithContext(c.conn.backgroundCtx()))
	runCtx := c.runCtx
	session := c.session
	box := newOutbox(runCtx, c)
	c.outbox = box
	prev := c.conn.replaceOutbox(c.loginID, box)
	c.mu.Unlock()

	go box.start(prev)
	go c.watchToken(runCtx)
	go c.resumeSaver(runCtx)
	if session != nil {
		c.connected(runCtx, session)
		return
	}
	c.sendState(status.BridgeState{StateEvent: status.StateConnecting})
	go c.connectLoop(runCtx)
}

// connectLoop signs in until it succeeds, the credentials turn out to be
// unusable, or Disconnect stops it, backing off while SfB is unreachable.
func (c *Client) connectLoop(ctx context.Context) {
	backoff := c.conn.retryMin
	for {
		err := c.signIn(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		if needsRelogin(err) {
			c.requireRelogin(ctx, err)
			return
		}
		c.log.Warn().Err(err).Str("cause", signInCause(err)).Stringer("retry_in", backoff).Msg("Failed to connect to Skype for Business")
		c.sendState(connectFailedState(err))
		// Jitter spreads the retries of many logins after an outage.
		if !ctxtime.Sleep(ctx, pool.Jitter(backoff)) {
			return
		}
		backoff = pool.NextBackoff(backoff, c.conn.retryMin, c.conn.retryMax)
	}
}

// connectFailedState is the bridge state while connectLoop retries after
// err. A wait inside the bridge gets its own code and message: it is the
// bridge that is overloaded, not the server that is down.
func connectFailedState(err error) status.BridgeState {
	state := status.BridgeState{StateEvent: status.StateTransientDisconnect, Error: StateErrConnectFailed, Message: err.Error()}
	switch {
	case errors.Is(err, sfb.ErrLocalTimeout):
		state.Error = StateErrBridgeBusy
		state.Message = "The bridge is busy signing in many people and will connect you to Skype for Business shortly."
		state.Info = map[string]any{"error": err.Error()}
	case errors.Is(err, sfb.ErrServerUnavailable):
		state.Error = StateErrUnavailable
		state.Message = "The Skype for Business server is not reachable right now; the bridge keeps trying."
		state.Info = map[string]any{"error": err.Error()}
	}
	return state
}

func (c *Client) signIn(ctx context.Context) error {
	req, err := c.conn.loadSignInRequest(ctx, c.loginID)
	if err != nil {
		return err
	}
	router := newEventRouter()
	router.attach(c)
	session, err := c.conn.signIn(ctx, req, router.handle)
	if err != nil {
		router.detach()
		return err
	}
	c.mu.Lock()
	if ctx.Err() != nil {
		// Disconnect came while signing in.
		c.mu.Unlock()
		router.detach()
		closeSession(c.log, session)
		return ctx.Err()
	}
	c.session = session
	c.router = router
	c.mu.Unlock()
	c.connected(ctx, session)
	return nil
}

// connected records a usable session: the token for restarts, the user's
// current display name, the CONNECTED state.
func (c *Client) connected(ctx context.Context, session sfb.Session) {
	c.loggedIn.Store(true)
	c.saveTokenIfRenewed(ctx)
	c.saveResume(ctx, session)
	if name := session.Self().DisplayName; name != "" && name != c.login.RemoteName {
		c.login.RemoteName = name
		c.login.RemoteProfile.Name = name
		if err := c.login.Save(ctx); err != nil {
			c.log.Warn().Err(err).Msg("Failed to save new display name of the login")
		}
	}
	c.sendState(status.BridgeState{StateEvent: status.StateConnected})
	if e := c.conn.presence; e != nil {
		// The Matrix user's presence counts for the login from now on;
		// watching involves SfB requests and happens in the background.
		e.noteUser(c)
		go e.loginUp(ctx, c, session)
	}
}

// wakeOutbox makes the outbox send what was stored for a lane (see
// outbox.lanes).
func (c *Client) wakeOutbox(peer string) {
	c.mu.Lock()
	box := c.outbox
	c.mu.Unlock()
	if box != nil {
		box.wake(peer)
	}
}

// needsRelogin reports whether only the user can fix err, by logging in
// again.
func needsRelogin(err error) bool {
	return errors.Is(err, sfb.ErrBadCredentials) || errors.Is(err, sfb.ErrCredentialsRequired)
}

// requireRelogin puts the login in BAD_CREDENTIALS with a RELOGIN action
// and records why in the audit log.
func (c *Client) requireRelogin(ctx context.Context, cause error) {
	c.loggedIn.Store(false)
	state := status.BridgeState{
		StateEvent: status.StateBadCredentials,
		UserAction: status.UserActionRelogin,
		Error:      StateErrCredentialsNeeded,
		Message:    "Your Skype for Business sign-in expired and the bridge keeps no password to renew it. Log in again.",
	}
	detail := "token expired, no password kept"
	switch {
	case errors.Is(cause, errUnreadableCredentials):
		state.Error = StateErrUnreadable
		state.Message = "The bridge cannot read your stored Skype for Business credentials (the secret key changed). Log in again."
		detail = "stored credentials unreadable"
	case errors.Is(cause, sfb.ErrBadCredentials):
		state.Error = StateErrBadCredentials
		state.Message = "Skype for Business rejected the stored password (it was probably changed). Log in again."
		detail = "password rejected"
	}
	c.log.Warn().Err(cause).Msg("Login needs a new sign-in")
	c.sendState(state)
	c.conn.audit(ctx, c.loginID, c.login.UserMXID, database.AuditReloginRequired, detail)
}

// queue hands an event that may be lost (typing) to bridgev2.
func (c *Client) queue(evt bridgev2.RemoteEvent) {
	c.conn.queueEvent(c.login, evt)
}

func (c *Client) sendState(state status.BridgeState) {
	c.lastState.Store(&state)
	c.login.BridgeState.Send(state)
	c.auditState(state)
}

// watchToken persists renewed tokens, so that a restart uses the newest
// token and needs no password.
func (c *Client) watchToken(ctx context.Context) {
	t := time.NewTicker(c.conn.tokenCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.saveTokenIfRenewed(ctx)
			c.saveResume(ctx, c.currentSession())
		}
	}
}

func (c *Client) currentSession() sfb.Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

func (c *Client) saveTokenIfRenewed(ctx context.Context) {
	c.mu.Lock()
	s, saved := c.session, c.savedToken
	c.mu.Unlock()
	if s == nil {
		return
	}
	tok := s.Token()
	if tok.Value == "" || (secret.Equal(tok.Value, saved.Value) && tok.ExpiresAt.Equal(saved.ExpiresAt)) {
		return
	}
	if err := c.conn.saveToken(ctx, c.loginID, tok); err != nil {
		c.log.Err(err).Msg("Failed to store renewed token")
		return
	}
	c.mu.Lock()
	c.savedToken = tok
	c.mu.Unlock()
	if saved.Value != "" {
		c.log.Debug().Time("expires_at", tok.ExpiresAt).Msg("Stored renewed token")
		c.conn.audit(ctx, c.loginID, c.login.UserMXID, database.AuditTokenRenewed, "expires "+tok.ExpiresAt.UTC().Format(time.RFC3339))
	}
}

// Disconnect stops reconnecting and detaches the session: SfB keeps the
// application, and what arrives for the user until the bridge is back,
// for the next start to resume. The token and the resume state are kept.
func (c *Client) Disconnect() { c.disconnect(false) }

// disconnect stops the client; signOut also ends the session on the
// server (logout), else it stays for a later resume.
func (c *Client) disconnect(signOut bool) {
	c.mu.Lock()
	stop, session, router := c.stop, c.session, c.router
	c.stop, c.session, c.router = nil, nil, nil
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	if e := c.conn.presence; e != nil {
		// Before the session ends: at logout its people move to other
		// logins while it still reports, so that no ghost shows a gap.
		// At shutdown (Disconnect) every login goes: nobody moves.
		mode := loginDetached
		if signOut {
			mode = loginLoggedOut
		}
		ctx, cancel := context.WithTimeout(c.log.WithContext(context.Background()), 30*time.Second)
		e.loginDown(ctx, c.loginID, mode)
		cancel()
	}
	if session != nil {
		// Stop the session before the router drops events: an event the
		// router dropped would otherwise count as handled.
		ctx, cancel := context.WithTimeout(c.log.WithContext(context.Background()), 10*time.Second)
		if signOut {
			closeSession(c.log, session)
		} else if err := session.Detach(ctx); err != nil {
			c.log.Warn().Err(err).Msg("Failed to detach from Skype for Business")
		}
		if err := c.conn.saveToken(ctx, c.loginID, session.Token()); err != nil {
			c.log.Err(err).Msg("Failed to store token before disconnecting")
		}
		if !signOut {
			c.saveResume(ctx, session)
		}
		cancel()
	}
	if router != nil {
		router.detach()
	}
}

// IsLoggedIn reports what the last sign-in attempt found; no I/O.
func (c *Client) IsLoggedIn() bool { return c.loggedIn.Load() }

// LogoutRemote signs out and forgets the stored credentials.
func (c *Client) LogoutRemote(ctx context.Context) {
	c.disconnect(true)
	c.loggedIn.Store(false)
	if c.conn.db != nil {
		c.dropOutbox(ctx)
		if err := c.conn.db.DeleteResumeState(ctx, string(c.loginID)); err != nil {
			c.log.Err(err).Msg("Failed to delete stored resume state")
		}
		if err := c.conn.db.DeleteCredential(ctx, string(c.loginID)); err != nil {
			c.log.Err(err).Msg("Failed to delete stored credentials")
		} else {
			c.conn.audit(ctx, c.loginID, c.login.UserMXID, database.AuditCredentialsDeleted, "logout")
		}
	}
	c.conn.audit(ctx, c.loginID, c.login.UserMXID, database.AuditLogout, "")
}

// logoutLaneWait bounds how long logout waits for the outbox lanes to
// finish reporting what they already sent.
const logoutLaneWait = 10 * time.Second

// dropOutbox deletes the Matrix messages the login had not sent yet and
// tells each sender in the room (message status and notice) that SfB did
// not get it: a logout must not swallow queued messages silently.
func (c *Client) dropOutbox(ctx context.Context) {
	// A lane that already had SfB's answer reports it and deletes its
	// entry; wait for it, so that such a message is not also reported
	// as dropped.
	c.mu.Lock()
	box := c.outbox
	c.mu.Unlock()
	if box != nil {
		done := make(chan struct{})
		go func() {
			box.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
			// Only now: a box whose lane is still busy stays, so that
			// the next login's lanes wait for it.
			c.conn.forgetOutbox(c.loginID, box)
		case <-time.After(logoutLaneWait):
			c.log.Warn().Msg("Outbox lanes still busy at logout, dropping their messages anyway")
		}
	}
	entries, err := c.conn.db.DeleteOutboxOfLogin(ctx, string(c.loginID))
	if err != nil {
		c.log.Err(err).Msg("Failed to delete the outbox")
		return
	}
	if len(entries) == 0 {
		return
	}
	c.log.Warn().Int("messages", len(entries)).Msg("Dropped Matrix messages not yet sent to Skype for Business (logout)")
	for _, entry := range entries {
		c.takeLive(entry.EventID)
		ms := bridgev2.WrapErrorInStatus(errors.New("logged out of Skype for Business before the message was sent")).
			WithStatus(event.MessageStatusFail).
			WithErrorReason(event.MessageStatusBridgeUnavailable).
			WithIsCertain(true).
			WithSendNotice(true).
			WithMessage("You logged out of Skype for Business before this message was sent; it was not delivered.")
		c.sendEntryStatus(ctx, entry, ms)
	}
}

// IsThisUser: the login's own SfB address.
func (c *Client) IsThisUser(ctx context.Context, userID networkid.UserID) bool {
	return string(userID) == string(c.loginID)
}

// GetUserID is the login's own ghost ID.
func (c *Client) GetUserID() networkid.UserID { return networkid.UserID(c.loginID) }

func (c *Client) selfURI() sfb.URI { return sfb.URI("sip:" + string(c.loginID)) }

// selfName is how IMs to SfB name the user: the SfB name of the login,
// else its address.
func (c *Client) selfName() string {
	if c.login.RemoteName != "" {
		return c.login.RemoteName
	}
	return c.selfURI().Address()
}
