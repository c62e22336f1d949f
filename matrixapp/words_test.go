package matrixapp

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"maunium.net/go/mautrix/bridgev2"
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
