// Package matrixapp is the Matrix side of the bridge process: it wires the
// SfB network connector into mautrix's bridge main (configuration,
// registration, appservice, provisioning API, bot commands) and runs it.
package matrixapp

import (
	"context"
	"fmt"
	"os"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sip"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/ucwa"
)

// Identity of the program, for --version, m.bridge and the user agent.
const (
	Name        = "sfb-matrix-bridge"
	URL         = "https://github.com/sfb-matrix-bridge/sfb-matrix-bridge"
	Description = "A Matrix-Skype for Business puppeting bridge."
	// Version is the latest release; builds from other commits are shown
	// as development builds of it.
	Version = "0.1.0"
)

// BuildInfo identifies a binary; the linker fills it in the main package
// (-X main.Tag=... -X main.Commit=... -X main.BuildTime=...).
type BuildInfo struct {
	Tag       string
	Commit    string
	BuildTime string
}

// transport builds the transport network.transport names, telling observer
// how the server answers: UCWA 2.0, the transport of the pilots, or SIP,
// the one that carries the whole organisation.
func transport(observer func() sfb.Observer) bridge.TransportFactory {
	return func(cfg sfb.Config, log zerolog.Logger) (sfb.Transport, error) {
		switch cfg.Transport {
		case sfb.TransportUCWA:
			return ucwa.New(cfg, log, ucwa.WithObserver(observer()))
		case sfb.TransportSIP:
			return sip.New(cfg, log, sip.WithObserver(observer()))
		default:
			// The configuration check refuses other names first.
			return nil, fmt.Errorf("network.transport %q: no such transport", cfg.Transport)
		}
	}
}

// New returns the bridge main for the SfB connector with the transport
// the configuration names, ready to Run.
func New(build BuildInfo) *mxmain.BridgeMain {
	var conn *bridge.Connector
	conn = bridge.NewConnector(transport(func() sfb.Observer { return conn.Metrics() }))
	m := &mxmain.BridgeMain{
		Name:        Name,
		URL:         URL,
		Description: Description,
		Version:     Version,
		Connector:   conn,
	}
	m.InitVersion(build.Tag, build.Commit, build.BuildTime)
	return m
}

// Main runs the bridge until SIGINT or SIGTERM and exits the process. The
// mxmain flags apply: -c config, -e writes the example config, -g writes
// the appservice registration, -r its path.
//
// It is mxmain's Run with one step between initialising (configuration,
// logging, database handle; no I/O) and starting: on PostgreSQL the process
// waits for the active lock, so a standby process binds no listener and
// signs nobody in until the active one is gone.
func Main(build BuildInfo) {
	m := New(build)
	switch args := parseArgs(os.Args[1:]); {
	case args.example:
		writeExample(args.configPath, m.Connector)
	case args.generate:
		checkBeforeRegistration(args.configPath)
	}
	m.PreInit()
	checkConfig(m.ConfigPath, m.Config, m.Connector)
	// Before Init: that is where mautrix opens the database.
	dbFile := protectSQLiteFile(m.Config.Database)
	m.Init()
	dbFile.log(m.Log)
	m.Bridge.Matrix = derivedTxnIDs{ownWords{m.Matrix}}
	hideCommands(m.Bridge.Commands)
	addMigrationCommands(m)
	addEraseCommand(m)
	servePresenceStats(m)
	serveMediaLinks(m)
	serveMigrationAPI(m)
	// After hideCommands, which needs mautrix's own processor.
	guardLoginInput(m.Bridge)
	states := newStateReporter(m.Bridge)
	health := &dbHealth{db: m.DB.RawDB, states: states, log: m.Log.With().Str("component", "database health").Logger()}
	lock := waitForActiveLock(m, health)
	if lock != nil {
		m.Matrix.AS.Middleware = append(m.Matrix.AS.Middleware, health.gateTransactions)
	}
	waitForHomeserver(m)
	stopMetrics := serveMetrics(m)
	m.Start()
	go states.run(context.Background(), status.BridgeState{StateEvent: status.StateRunning})
	exitCode := m.WaitForInterrupt()
	m.Stop()
	stopMetrics()
	if lock != nil {
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		if err := lock.Release(ctx); err != nil {
			m.Log.Warn().Err(err).Msg("Could not release the active lock; the standby takes over when this session ends")
		}
		cancel()
	}
	os.Exit(exitCode)
}
