package ucwa

import (
	"context"
	"errors"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// errNoMeetings is what the meeting methods answer until online meetings
// and calls are carried over UCWA.
var errNoMeetings = errors.New("online meetings are not carried over UCWA yet")

// CreateMeeting implements sfb.MeetingSession.
func (s *session) CreateMeeting(ctx context.Context, req sfb.MeetingRequest) (sfb.Meeting, error) {
	return sfb.Meeting{}, errNoMeetings
}

// DeclineCall implements sfb.MeetingSession.
func (s *session) DeclineCall(ctx context.Context, callID string, reason sfb.CallDeclineReason) error {
	return errNoMeetings
}
