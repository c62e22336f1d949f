package matrixapp

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"
)

func TestRewordNotLoggedIn(t *testing.T) {
	nilLogin := fmt.Errorf("%w (receiver login is nil)", bridgev2.ErrNotLoggedIn)
	ms := bridgev2.WrapErrorInStatus(nilLogin).WithMessage("You're " + nilLogin.Error()).WithSendNotice(true)
	reword(&ms)
	assert.Equal(t, notSignedIn, ms.Message)
	assert.ErrorIs(t, ms.InternalError, bridgev2.ErrNotLoggedIn, "the log keeps the cause")

	// The connector's own words (a relogin request from bridge state) stay.
	own := bridgev2.WrapErrorInStatus(nilLogin).WithMessage("Skype for Business rejected the stored password. Log in again.")
	reword(&own)
	assert.Equal(t, "Skype for Business rejected the stored password. Log in again.", own.Message)

	other := bridgev2.WrapErrorInStatus(errors.New("boom")).WithMessage("You're boom")
	reword(&other)
	assert.Equal(t, "You're boom", other.Message)
}

// What SfB cannot carry gets one notice in the bridge's words.
func TestRewordRefusals(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{bridgev2.ErrEditsNotSupported, "cannot edit messages"},
		{bridgev2.ErrEditsNotSupportedInPortal, "cannot edit messages"},
		{bridgev2.ErrReactionsNotSupported, "has no reactions"},
		{bridgev2.ErrRedactionsNotSupported, "cannot delete messages"},
	} {
		// As bridgev2's sendErrorStatus makes it.
		ms := bridgev2.WrapErrorInStatus(tt.err)
		reword(&ms)
		assert.Contains(t, ms.Message, tt.want)
		assert.True(t, ms.SendNotice, tt.want)
		assert.False(t, ms.ErrorAsMessage)
		assert.Equal(t, event.MessageStatusFail, ms.Status)
	}
	other := bridgev2.WrapErrorInStatus(bridgev2.ErrIgnoringMNotice)
	reword(&other)
	assert.False(t, other.SendNotice, "other refusals stay as they are")
}
