// Package bridge is the mautrix bridgev2 network connector for Skype for
// Business: logins, ghosts and portals, SfB events to Matrix and Matrix
// events to SfB. It reaches SfB only through the transport-neutral sfb
// interface; the transport itself is injected (see TransportFactory).
package bridge

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/medialink"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/metrics"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/presence"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/secret"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// TransportFactory builds the SfB transport from the network configuration.
// The bridge's main package passes one for the UCWA client; tests pass a
// fake.
type TransportFactory func(cfg sfb.Config, log zerolog.Logger) (sfb.Transport, error)

// Connector is the bridgev2 network connector for Skype for Business.
type Connector struct {
	// Config is the network section of the configuration, filled by
	// mxmain before Init.
	Config Config

	br        *bridgev2.Bridge
	log       zerolog.Logger
	factory   TransportFactory
	transport sfb.Transport
	db        *database.DB
	box       *secret.Box
	validated bool
	// mediaLinks signs the links to files sent to SfB; nil when files
	// are refused.
	mediaLinks *medialink.Signer
	// homeserverUploadSize is the homeserver's upload limit, once
	// bridgev2 learnt it (SetMaxFileSize); 0 before.
	homeserverUploadSize atomic.Int64
	// started is set once Start has the transport and the database, which
	// logins need (see CreateLogin).
	started atomic.Bool

	// tokenCheckInterval is how often a connected client looks for a
	// renewed token to persist.
	tokenCheckInterval time.Duration
	// queueEvent hands remote events to bridgev2 and returns how they
	// were handled; tests replace it.
	queueEvent queueFunc
	// deliverRetryMin and deliverRetryMax bound the backoff while the
	// homeserver does not take an SfB event.
	deliverRetryMin, deliverRetryMax time.Duration
	// resumeSaveDelay is how long a client gathers handled events before
	// storing the session's resume state.
	resumeSaveDelay time.Duration
	// sessionWait is how long a Matrix message waits for the login's SfB
	// session while it is (re)connecting.
	sessionWait time.Duration
	// retryMin and retryMax bound the backoff between sign-in attempts
	// while SfB is unreachable.
	retryMin, retryMax time.Duration

	// outboxes holds each login's newest outbox. A new one waits for the
	// lanes of the one it replaces, also when that belonged to another
	// client of the login (a relogin creates a new client while the old
	// one's lanes may still be sending), so that no two lanes ever send
	// the same entry.
	outboxMu sync.Mutex
	outboxes map[networkid.UserLoginID]*outbox

	// groupMu makes matching a group message's copy exclusive (see
	// groupdedup.go).
	groupMu sync.Mutex
	// groupInviteMu makes bridging a room that a ghost was invited to
	// exclusive (see groupinvite.go).
	groupInviteMu sync.Mutex

	// matrix and txnHold are set when bridgev2's Matrix connector is
	// mautrix's appservice (not in tests); see holdTransactions.
	matrix  *matrix.Connector
	txnHold *txnHold

	// presence carries presence both ways; nil when network.presence is
	// off. presenceSet writes a ghost's presence (the appservice intent;
	// tests replace it) and bridgeUser tells the bridge's own Matrix
	// users (ghosts, bot), whose m.presence the bridge wrote itself.
	presence    *presenceEngine
	presenceSet presence.SetFunc
	bridgeUser  func(id.UserID) bool
	// matrixPresenceOf asks the homeserver for a Matrix user's presence.
	matrixPresenceOf func(context.Context, id.UserID) (*event.PresenceEventContent, error)

	// metrics counts what the bridge does (metricsources.go).
	metrics *metrics.Metrics

	// modes holds the migration modes and waves (migrationmodes.go); set
	// by Start, read by the API's handlers.
	modes atomic.Pointer[migration.Service]
	// announcer tells people whose wave started how to sign in
	// (waveannounce.go); set in Start.
	announcer *announcer
}

var (
	_ bridgev2.NetworkConnector            = (*Connector)(nil)
	_ bridgev2.ConfigValidatingNetwork     = (*Connector)(nil)
	_ bridgev2.IdentifierValidatingNetwork = (*Connector)(nil)
)

// NewConnector returns a connector that reaches SfB through the transport
// that factory builds when the bridge starts.
func NewConnector(factory TransportFactory) *Connector {
	return &Connector{
		Config:             defaultConfig(),
		factory:            factory,
		tokenCheckInterval: time.Minute,
		retryMin:           2 * time.Second,
		retryMax:           5 * time.Minute,
		deliverRetryMin:    time.Second,
		deliverRetryMax:    30 * time.Second,
		resumeSaveDelay:    300 * time.Millisecond,
		sessionWait:        30 * time.Second,
		metrics:            metrics.New(),
		queueEvent: oneAtATimePerPortal(func(login *bridgev2.UserLogin, evt bridgev2.RemoteEvent) bridgev2.EventHandlingResult {
			return login.Bridge.QueueRemoteEvent(login, evt)
		}),
	}
}

// GetName describes the network for m.bridge events and the example
// configuration (default port, command prefix, username template sfb_{{.}}).
func (c *Connector) GetName() bridgev2.BridgeName {
	return bridgev2.BridgeName{
		DisplayName:          "Skype for Business",
		NetworkURL:           "https://www.microsoft.com/microsoft-365/skype-for-business",
		NetworkID:            "sfb",
		BeeperBridgeType:     "sfb",
		DefaultPort:          29340,
		DefaultCommandPrefix: "!sfb",
	}
}

// GetDBMetaTypes: the connector keeps its own data (credentials, audit) in
// its own tables; a login's row carries only its presence option, a
// message row what a meeting notice showed (see MessageMetadata).
func (c *Connector) GetDBMetaTypes() mxdb.MetaTypes {
	return mxdb.MetaTypes{
		UserLogin: func() any { return &LoginMetadata{} },
		Message:   func() any { return &MessageMetadata{} },
	}
}

// GetCapabilities describes what the connector does beyond a room.
func (c *Connector) GetCapabilities() *bridgev2.NetworkGeneralCapabilities {
	return &bridgev2.NetworkGeneralCapabilities{
		Provisioning: bridgev2.ProvisioningCapabilities{
			ResolveIdentifier: bridgev2.ResolveIdentifierCapabilities{
				CreateDM: true,
				// SIP addresses look like e-mail addresses and usually are.
				LookupEmail: true,
			},
			GroupCreation: groupCreation,
		},
	}
}

// GetBridgeInfoVersion: bump the first number when m.bridge content
// changes, the second when room capabilities change.
func (c *Connector) GetBridgeInfoVersion() (info, capabilities int) {
	return 1, 1
}

// Init keeps the bridge for later; it does no I/O.
func (c *Connector) Init(br *bridgev2.Bridge) {
	c.br = br
	c.log = br.Log.With().Str("component", "sfb").Logger()
	c.requireSynchronousPortals()
	c.requireMatrixDeduplication()
	c.requireNoticeBridging()
	c.requireMatrixLeave()
	if proc, ok := br.Commands.(*commands.Processor); ok {
		proc.AddHandlers(commandPresencePublish, commandMeet)
	}
	// A bridge with another Matrix connector (tests) has neither.
	if mc, ok := br.Matrix.(*matrix.Connector); ok {
		c.matrix = mc
		c.txnHold = holdTransactions(mc, c.log)
		mc.EventProcessor.On(event.StateMember, c.handleGhostGroupInvite)
		replaceDiscardMegolmSession(br, mc)
		c.presenceSet = ghostPresenceSetter(mc)
		c.bridgeUser = func(user id.UserID) bool {
			_, ghost := mc.ParseGhostMXID(user)
			return ghost || user == mc.Bot.UserID
		}
		mc.AS.Middleware = append(mc.AS.Middleware, dropOwnPresence(c.bridgeUser))
		c.matrixPresenceOf = func(ctx context.Context, user id.UserID) (*event.PresenceEventContent, error) {
			resp, err := mc.Bot.GetPresence(ctx, user)
			if err != nil {
				return nil, err
			}
			return &event.PresenceEventContent{Presence: resp.Presence, StatusMessage: resp.StatusMsg}, nil
		}
		// bridgev2 has no presence API: m.presence reaches the connector
		// only through the appservice's event processor.
		mc.EventProcessor.On(event.EphemeralEventPresence, c.handleMatrixPresence)
		// Nor has it one for widgets: Jitsi meetings started in portal
		// rooms come the same way (see widget.go).
		mc.EventProcessor.On(widgetEventType, c.handleMatrixWidget)
	}
}

// requireNoticeBridging sets bridge.bridge_notices. An m.notice is text,
// and SfB carries it like any other; without the setting bridgev2 drops
// it without a word to the sender, which this bridge never does.
func (c *Connector) requireNoticeBridging() {
	if c.br.Config == nil || c.br.Config.BridgeNotices {
		return
	}
	c.log.Info().Msg("Setting bridge.bridge_notices to true: a Matrix notice is text and goes to Skype for Business like any message, rather than being dropped without a word")
	c.br.Config.BridgeNotices = true
}

// requireMatrixLeave sets bridge.bridge_matrix_leave: a migrated user who
// leaves a group room leaves the SfB conversation (HandleMatrixMembership),
// rather than staying in it unseen. In 1:1 rooms a leave changes nothing
// on SfB.
func (c *Connector) requireMatrixLeave() {
	if c.br.Config == nil || c.br.Config.BridgeMatrixLeave {
		return
	}
	c.log.Info().Msg("Setting bridge.bridge_matrix_leave to true: leaving a group room leaves the Skype for Business conversation")
	c.br.Config.BridgeMatrixLeave = true
}

// requireMatrixDeduplication sets bridge.deduplicate_matrix_messages. A
// Matrix message leaves sfb_outbox once SfB took it, and the outbox keeps
// no memory of it; when Synapse pushes the transaction again (the bridge
// died before answering it), only bridgev2's message table, which has the
// settled event's row, keeps the message from going to SfB a second time.
// The price is one indexed lookup per Matrix message.
func (c *Connector) requireMatrixDeduplication() {
	if c.br.Config == nil || c.br.Config.DeduplicateMatrixMessages {
		return
	}
	c.log.Info().Msg("Setting bridge.deduplicate_matrix_messages to true: a Matrix message that Synapse pushes again after it reached Skype for Business is not sent twice")
	c.br.Config.DeduplicateMatrixMessages = true
}

// requireSynchronousPortals sets bridge.portal_event_buffer to 0. With a
// buffer, QueueRemoteEvent returns once the event is queued in memory, the
// SfB session acknowledges it to the server, and a crash before the
// portal sent it to Matrix loses it. Without, QueueRemoteEvent returns
// after the homeserver accepted the message (or refused it), which is what
// the connector waits for before the session acknowledges anything.
// Portals still run in parallel; only one portal's events wait for each
// other, which bridge.async_events: false already implies.
func (c *Connector) requireSynchronousPortals() {
	if c.br.Config == nil || c.br.Config.PortalEventBuffer == 0 {
		return
	}
	c.log.Info().Int("configured", c.br.Config.PortalEventBuffer).
		Msg("Setting bridge.portal_event_buffer to 0: SfB events are acknowledged only after Matrix accepted them, so that a crash loses none")
	c.br.Config.PortalEventBuffer = 0
}

// Start creates the transport and brings the connector's own tables up to
// date in the bridge's database.
func (c *Connector) Start(ctx context.Context) error {
	if !c.validated {
		if err := c.ValidateConfig(); err != nil {
			return fmt.Errorf("network configuration: %w", err)
		}
	}
	if c.box == nil {
		c.log.Warn().Msg("No secret key configured and keep_password is off: tokens are not kept across restarts, users must log in again after each restart, and Matrix messages waiting for SfB are stored unencrypted")
	}
	if c.factory == nil {
		return fmt.Errorf("start SfB connector: no transport factory")
	}
	transport, err := c.factory(c.Config.Config, c.log.With().Str("transport", c.Config.Transport).Logger())
	if err != nil {
		return fmt.Errorf("create SfB transport %q: %w", c.Config.Transport, err)
	}
	c.transport = transport

	dialect, err := database.DialectFromDBUtil(c.br.DB.Dialect.String())
	if err != nil {
		return fmt.Errorf("open connector database: %w", err)
	}
	db, err := database.New(c.br.DB.RawDB, dialect, c.log)
	if err != nil {
		return fmt.Errorf("open connector database: %w", err)
	}
	if err := db.Upgrade(ctx); err != nil {
		return bridgev2.DBUpgradeError{Err: err, Section: "sfb"}
	}
	c.db = db
	c.startMigration(ctx, db)
	c.pruneGroupCopies(ctx)
	go c.watchWaveErrors(c.backgroundCtx(), c.Config.AdminNotices)
	c.metrics.SetSources(c.metricSources())
	if c.Config.Presence.Enabled && c.presenceSet != nil {
		c.presence = newPresenceEngine(c, c.presenceSet)
		go c.presence.writer.Run(c.backgroundCtx())
	}
	c.started.Store(true)
	// bridgev2 starts the network connector after the Matrix connector,
	// whose event processor runs by now.
	if c.txnHold != nil {
		c.txnHold.processorRunning(c.backgroundCtx(), c.matrix, c.log)
	}
	return nil
}

// LoadUserLogin attaches a client to a login loaded from the database. It
// does no I/O: Connect signs in.
func (c *Connector) LoadUserLogin(ctx context.Context, login *bridgev2.UserLogin) error {
	login.Client = c.newClient(login)
	return nil
}

// replaceOutbox makes box the login's newest outbox and returns the one
// it replaces, whose lanes box must wait for.
func (c *Connector) replaceOutbox(loginID networkid.UserLoginID, box *outbox) *outbox {
	c.outboxMu.Lock()
	defer c.outboxMu.Unlock()
	if c.outboxes == nil {
		c.outboxes = map[networkid.UserLoginID]*outbox{}
	}
	prev := c.outboxes[loginID]
	c.outboxes[loginID] = box
	return prev
}

// forgetOutbox drops box once its lanes ended for good (logout), unless a
// newer one replaced it.
func (c *Connector) forgetOutbox(loginID networkid.UserLoginID, box *outbox) {
	c.outboxMu.Lock()
	defer c.outboxMu.Unlock()
	if c.outboxes[loginID] == box {
		delete(c.outboxes, loginID)
	}
}

// backgroundCtx outlives requests: sessions and reconnect loops run in it.
func (c *Connector) backgroundCtx() context.Context {
	ctx := context.Background()
	if c.br != nil && c.br.BackgroundCtx != nil {
		ctx = c.br.BackgroundCtx
	}
	return c.log.WithContext(ctx)
}

// signIn runs Transport.SignIn in the background context, so that the
// session never depends on the request that started it (a bot command, a
// provisioning call), while ctx still bounds how long the caller waits. A
// session that arrives after the caller gave up is closed. The transport
// paces sign-ins per SfB pool (sign_in_rate), since only it knows the
// pool; ctx is the sign-in's Turn, so that a caller who gives up while the
// sign-in still waits for its turn ends it at once, before it reached SfB
// (with ErrLocalTimeout for a deadline: the bridge was busy).
func (c *Connector) signIn(ctx context.Context, req sfb.SignInRequest, handler sfb.EventHandler) (_ sfb.Session, err error) {
	defer func() { c.metrics.SignedIn(err) }()
	type result struct {
		session sfb.Session
		err     error
	}
	done := make(chan result, 1)
	turned := make(chan struct{})
	req.Turn = ctx
	req.OnTurn = func() { close(turned) }
	go func() {
		s, err := c.transport.SignIn(c.backgroundCtx(), req, handler)
		done <- result{s, err}
	}()
	// Until its turn the transport ends the sign-in itself when ctx ends.
	select {
	case r := <-done:
		return r.session, r.err
	case <-turned:
	}
	select {
	case r := <-done:
		return r.session, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.session != nil {
				closeSession(c.log, r.session)
			}
		}()
		return nil, ctx.Err()
	}
}

// closeSession signs a session out, bounded in time: a dead server must not
// hold up logout or shutdown.
func closeSession(log zerolog.Logger, s sfb.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		log.Warn().Err(err).Msg("Failed to sign out of Skype for Business")
	}
}

// MediaLinks returns the signer of the links through which SfB users fetch
// files sent from Matrix, for the listener that serves them; nil when
// network.media.public_url is empty.
func (c *Connector) MediaLinks() *medialink.Signer { return c.mediaLinks }
