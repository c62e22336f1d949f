package matrixapp

import (
	"context"
	"errors"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"
)

// notSignedIn is what a user reads when they write in a portal without a
// login (after logout): what happened and what to do, in their words.
const notSignedIn = "You are not signed in to Skype for Business. Send `login` to the bridge bot to sign in."

// ownWords is the Matrix connector with the bridge's own words in the
// message statuses (and the notices made from them) that bridgev2 words
// itself. It embeds the concrete connector, so that every optional
// interface bridgev2 looks for on it stays visible.
type ownWords struct {
	*matrix.Connector
}

// SendMessageStatus rewords bridgev2's "You're not logged in (receiver
// login is nil)" and its variants.
func (w ownWords) SendMessageStatus(ctx context.Context, ms *bridgev2.MessageStatus, info *bridgev2.MessageStatusEventInfo) {
	reword(ms)
	w.Connector.SendMessageStatus(ctx, ms, info)
}

// reword replaces bridgev2's message for an event that found no login.
// bridgev2 writes "You're " followed by its error; a message it took from
// the login's bridge state (a relogin request) is the connector's own and
// stays.
func reword(ms *bridgev2.MessageStatus) {
	if ms == nil || ms.InternalError == nil || !errors.Is(ms.InternalError, bridgev2.ErrNotLoggedIn) {
		return
	}
	if ms.Message == "You're "+ms.InternalError.Error() || ms.Message == "" {
		ms.Message = notSignedIn
		ms.ErrorAsMessage = false
	}
}
