package ucwa

import (
	"context"
	"errors"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// errNoGroups is what the group methods answer until multi-party
// conversations are carried over UCWA.
var errNoGroups = errors.New("multi-party conversations are not carried over UCWA yet")

// SendGroupMessage implements sfb.GroupSession.
func (s *session) SendGroupMessage(ctx context.Context, g sfb.Group, msg sfb.Message) (sfb.SentMessage, error) {
	return sfb.SentMessage{}, errNoGroups
}

// AddParticipant implements sfb.GroupSession.
func (s *session) AddParticipant(ctx context.Context, g sfb.Group, uri sfb.URI) error {
	return errNoGroups
}

// LeaveGroup implements sfb.GroupSession.
func (s *session) LeaveGroup(ctx context.Context, threadID string) error { return nil }

// SetGroupTyping implements sfb.GroupSession.
func (s *session) SetGroupTyping(ctx context.Context, threadID string, typing bool) error {
	return nil
}
