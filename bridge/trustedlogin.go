package bridge

import (
	"context"
	"fmt"
	"net/http"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// ErrCodeNotAssigned: a trusted-application bridge signs people in without
// their passwords, so only as the address the migration table gives them.
const ErrCodeNotAssigned = "NET.SFB.NOT_ASSIGNED"

// trustedLoginStep asks for the sign-in address alone: with the transport
// signing in as a trusted application there is no password to ask for.
func trustedLoginStep() *bridgev2.LoginStep {
	return &bridgev2.LoginStep{
		Type:         bridgev2.LoginStepTypeUserInput,
		StepID:       "net.sfb.address",
		Instructions: "Enter your Skype for Business sign-in address. Your organisation's bridge signs you in without your password, as the address the migration team assigned to your Matrix account.",
		UserInputParams: &bridgev2.LoginUserInputParams{
			Fields: []bridgev2.LoginInputDataField{addressField()},
		},
	}
}

// checkAssigned lets mxid sign in as uri without a password only when the
// migration table assigns uri to mxid. Without that rule anyone the bridge
// lets log in could read and write as any colleague.
func (c *Connector) checkAssigned(ctx context.Context, mxid id.UserID, uri sfb.URI) error {
	svc := c.Migration()
	if svc == nil {
		return bridgev2.RespError{ErrCode: ErrCodeStarting, Err: "The bridge is still starting. Try again in a few seconds.", StatusCode: http.StatusServiceUnavailable}
	}
	person, err := svc.Person(ctx, uri.Address())
	if err != nil {
		return bridgev2.RespError{ErrCode: ErrCodeStoreFailed, Err: "The bridge could not look up who you are in the migration table. Try again later.", StatusCode: http.StatusInternalServerError}
	}
	if person.Assigned && person.MatrixUser == mxid {
		return nil
	}
	c.audit(ctx, loginIDFor(uri), mxid, database.AuditLoginFailed, "not assigned to this Matrix user")
	return bridgev2.RespError{
		ErrCode:    ErrCodeNotAssigned,
		Err:        fmt.Sprintf("%s is not assigned to your Matrix account. This bridge signs you in without a password, so the migration team must first assign your Skype for Business address to you.", uri.Address()),
		StatusCode: http.StatusForbidden,
	}
}
