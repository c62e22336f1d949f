package sip

import (
	"context"
	"fmt"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// What SIP does not carry yet: multi-party conversations (SfB IM
// conferences through the focus, MS-CONFIM) and online meetings
// (MS-CONFBAS). The methods that would start something fail with
// ErrNotCarried (sfb.ErrUnsupported: the bridge tells people, it does not
// retry); those that act on something the session is in do nothing, since
// a SIP session is never in a group conversation nor rings.

// SendGroupMessage implements sfb.GroupSession.
func (s *Session) SendGroupMessage(_ context.Context, g sfb.Group, _ sfb.Message) (sfb.SentMessage, error) {
	return sfb.SentMessage{}, fmt.Errorf("send to group conversation %s: %w", g.ThreadID, ErrNotCarried)
}

// AddParticipant implements sfb.GroupSession.
func (s *Session) AddParticipant(_ context.Context, g sfb.Group, uri sfb.URI) error {
	return fmt.Errorf("add %s to group conversation %s: %w", uri, g.ThreadID, ErrNotCarried)
}

// LeaveGroup implements sfb.GroupSession: the session is in no group
// conversation.
func (s *Session) LeaveGroup(context.Context, string) error { return nil }

// SetGroupTyping implements sfb.GroupSession: the session is in no group
// conversation.
func (s *Session) SetGroupTyping(context.Context, string, bool) error { return nil }

// CreateMeeting implements sfb.MeetingSession.
func (s *Session) CreateMeeting(context.Context, sfb.MeetingRequest) (sfb.Meeting, error) {
	return sfb.Meeting{}, fmt.Errorf("create meeting: %w", ErrNotCarried)
}

// DeclineCall implements sfb.MeetingSession: no call rings on a SIP
// session (it reports none).
func (s *Session) DeclineCall(context.Context, string, sfb.CallDeclineReason) error { return nil }
