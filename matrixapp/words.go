package matrixapp

import (
	"context"
	"errors"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
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

// SendMessageStatus rewords bridgev2's refusals of edits, reactions and
// deletions, and its "You're not logged in (receiver login is nil)".
func (w ownWords) SendMessageStatus(ctx context.Context, ms *bridgev2.MessageStatus, info *bridgev2.MessageStatusEventInfo) {
	reword(ms)
	w.Connector.SendMessageStatus(ctx, ms, info)
}

// refusals are bridgev2's own refusals of what SfB cannot carry (the
// connector implements no handler for them), with what the user reads.
// bridgev2 logs them at debug level and, left alone, sends no notice.
var refusals = []struct {
	err   error
	words string
}{
	{bridgev2.ErrEditsNotSupported, "Skype for Business cannot edit messages; if the message reached Skype for Business, the other person still sees the original. Send a new message instead."},
	{bridgev2.ErrEditsNotSupportedInPortal, "Skype for Business cannot edit messages; if the message reached Skype for Business, the other person still sees the original. Send a new message instead."},
	{bridgev2.ErrReactionsNotSupported, "Skype for Business has no reactions; the other person did not see it. Reply with a message instead."},
	{bridgev2.ErrRedactionsNotSupported, "Skype for Business cannot delete messages; if the message reached Skype for Business, the other person still sees it."},
}

// reword replaces bridgev2's words for an event SfB cannot carry, with
// one notice, and for an event that found no login.
func reword(ms *bridgev2.MessageStatus) {
	if ms == nil || ms.InternalError == nil {
		return
	}
	for _, r := range refusals {
		// The sentinels are MessageStatus values whose Is compares
		// their internal error, which is what bridgev2 reports.
		if errors.Is(r.err, ms.InternalError) {
			ms.Status = event.MessageStatusFail
			ms.Message = r.words
			ms.ErrorAsMessage = false
			ms.SendNotice = true
			return
		}
	}
	// bridgev2 writes "You're " followed by its error; a message it took
	// from the login's bridge state (a relogin request) is the
	// connector's own and stays.
	if errors.Is(ms.InternalError, bridgev2.ErrNotLoggedIn) && (ms.Message == "You're "+ms.InternalError.Error() || ms.Message == "") {
		ms.Message = notSignedIn
		ms.ErrorAsMessage = false
	}
}
