package matrixapp

import (
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge"
)

// derivedTxnIDs is the Matrix connector the bridge runs with (ownWords)
// whose ghosts send new messages with transaction IDs derived from the SfB
// message (bridge.WithDerivedTxnIDs): Synapse then drops the repeat of a
// message the bridge sends again after a crash between the homeserver
// accepting it and the bridge recording it. It embeds ownWords, and so the
// concrete connector with every optional interface bridgev2 looks for.
type derivedTxnIDs struct {
	ownWords
}

// GhostIntent implements bridgev2.MatrixConnector.
func (m derivedTxnIDs) GhostIntent(userID networkid.UserID) bridgev2.MatrixAPI {
	return bridge.WithDerivedTxnIDs(m.ownWords.GhostIntent(userID))
}
