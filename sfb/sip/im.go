package sip

import (
	"context"
	"fmt"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// imState is what a session keeps for instant messaging (its
// conversations, by peer). Owned by this file; keep an idle session's
// share small (see Session).
//
//lint:ignore U1000 filled as this file grows
type imState struct{}

// SendMessage implements sfb.Session.
func (s *Session) SendMessage(ctx context.Context, to sfb.URI, msg sfb.Message) (sfb.SentMessage, error) {
	return sfb.SentMessage{}, fmt.Errorf("send message to %s: instant messages over SIP: %w", to, ErrNotCarried)
}

// SetTyping implements sfb.Session.
func (s *Session) SetTyping(ctx context.Context, to sfb.URI, typing bool) error {
	return nil
}

// handleIM handles the server's INVITE, MESSAGE, INFO, BYE, ACK and CANCEL
// for the endpoint, in arrival order (see Session). It answers each (but
// ACK) exactly once, with s.respond, after emitting what it brought.
func (s *Session) handleIM(ctx context.Context, req *sipmsg.Request) {
	switch req.Method {
	case sipmsg.ACK:
	case sipmsg.INVITE:
		_ = s.respond(req, 488, "Not Acceptable Here", nil)
	default:
		_ = s.respond(req, 481, "Call/Transaction Does Not Exist", nil)
	}
}
