// Package matrixapp is the Matrix side of the bridge process: it wires the
// SfB network connector into mautrix's bridge main (configuration,
// registration, appservice, provisioning API, bot commands) and runs it.
package matrixapp

import (
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
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

// ucwaTransport builds the UCWA 2.0 client, the transport of the pilots.
func ucwaTransport(cfg sfb.Config, log zerolog.Logger) (sfb.Transport, error) {
	return ucwa.New(cfg, log)
}

// New returns the bridge main for the SfB connector with the UCWA
// transport, ready to Run.
func New(build BuildInfo) *mxmain.BridgeMain {
	m := &mxmain.BridgeMain{
		Name:        Name,
		URL:         URL,
		Description: Description,
		Version:     Version,
		Connector:   bridge.NewConnector(ucwaTransport),
	}
	m.InitVersion(build.Tag, build.Commit, build.BuildTime)
	return m
}

// Main runs the bridge until SIGINT or SIGTERM and exits the process. The
// mxmain flags apply: -c config, -e writes the example config, -g writes
// the appservice registration, -r its path.
func Main(build BuildInfo) {
	New(build).Run()
}
