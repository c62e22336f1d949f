package main

import (
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/ucwa"
)

func main() {
	c := bridge.NewConnector(func(cfg sfb.Config, log zerolog.Logger) (sfb.Transport, error) {
		return ucwa.New(cfg, log)
	})
	m := mxmain.BridgeMain{Name: "sfb-matrix-bridge", Description: "tmp", Version: "0.0.0", Connector: c}
	m.InitVersion("", "", "")
	m.Run()
}
