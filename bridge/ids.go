package bridge

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"maunium.net/go/mautrix/bridgev2/networkid"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// SfB users are named on the Matrix side by their lower-cased address
// (alice@contoso.com), both as ghost user IDs and as login IDs; mautrix
// escapes it into the ghost's localpart (sfb_alice=40contoso.com).

func userIDFor(uri sfb.URI) networkid.UserID { return networkid.UserID(uri.Address()) }

func loginIDFor(uri sfb.URI) networkid.UserLoginID { return networkid.UserLoginID(uri.Address()) }

// uriFor parses a ghost or login ID back into a URI.
func uriFor[T ~string](id T) (sfb.URI, error) { return sfb.ParseURI(string(id)) }

// portalKeyFor keys a 1:1 room by the pair of people (the peer and the
// login), never by SfB conversation IDs, which expire after minutes of
// idleness and come back new.
func portalKeyFor(peer sfb.URI, login networkid.UserLoginID) networkid.PortalKey {
	return networkid.PortalKey{ID: networkid.PortalID(peer.Address()), Receiver: login}
}

// ValidateUserID accepts ghost IDs that are canonical SfB addresses, so
// that Matrix users can start chats with ghosts by MXID.
func (c *Connector) ValidateUserID(id networkid.UserID) bool {
	uri, err := sfb.ParseURI(string(id))
	return err == nil && uri.Address() == string(id)
}

// stableID is prefix and a hash of parts: the same parts give the same ID
// after a restart or a redelivery, and the ID is short and carries none of
// the parts readably. The IDs are stored, so the form must not change.
func stableID(prefix string, parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return prefix + hex.EncodeToString(sum[:16])
}
