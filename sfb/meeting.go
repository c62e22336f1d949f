package sfb

import (
	"context"
	"time"
)

// MeetingSession carries online meetings and audio/video calls as far as
// the bridge can: it never carries media, it tells people where to meet.
type MeetingSession interface {
	// CreateMeeting schedules an SfB online meeting organised by the
	// signed-in user and returns it with its join URL.
	CreateMeeting(ctx context.Context, req MeetingRequest) (Meeting, error)
	// DeclineCall declines the ringing call callID (CallRinging.ID) with
	// reason. It does nothing when the call no longer rings.
	DeclineCall(ctx context.Context, callID string, reason CallDeclineReason) error
}

// MeetingRequest is what CreateMeeting needs.
type MeetingRequest struct {
	Subject string
	// Attendees are invited to the meeting; may be empty.
	Attendees []URI
	// Expires is when the server may delete the meeting; zero for the
	// server's default.
	Expires time.Time
}

// Meeting is an SfB online meeting as far as an invitee needs to know it.
type Meeting struct {
	// URI is the meeting's SIP URI (onlineMeetingUri), stable for the
	// meeting's life: invitations, updates and cancellations of the same
	// meeting carry the same URI.
	URI URI
	// JoinURL opens the meeting in a browser or the SfB client (the
	// meet. URL with the conference's ID); empty when the server gave
	// none.
	JoinURL string
	Subject string
	// Organizer is empty when unknown.
	Organizer Person
	// Start and End are zero when unknown (an ad hoc meeting).
	Start, End time.Time
	// ConferenceID is the dial-in conference ID, empty when none.
	ConferenceID string
	// DialIn lists the dial-in numbers, empty when none.
	DialIn []DialInNumber
}

// DialInNumber is one phone number to join a meeting by.
type DialInNumber struct {
	Region string
	Number string
}

// CallDeclineReason is why a call was declined, as the reference's
// CallDeclineReason names it.
type CallDeclineReason string

const (
	// CallDeclineLocal declines on the bridge's endpoint only: the user's
	// other endpoints (their SfB client) keep ringing.
	CallDeclineLocal CallDeclineReason = "Local"
	// CallDeclineGlobal declines on all of the user's endpoints.
	CallDeclineGlobal CallDeclineReason = "Global"
)

// MeetingInvited reports an online-meeting invitation: an ad hoc meeting,
// a conversation escalated to a meeting, or a scheduled meeting forwarded
// in a conversation. Updates and the cancellation of the same meeting come
// as further MeetingInvited events with the same Meeting.URI.
type MeetingInvited struct {
	// ID identifies this event for deduplication, as MessageReceived.ID.
	ID           string
	Conversation Conversation
	From         Person
	Meeting      Meeting
	// Cancelled is set when the invitation was withdrawn or the meeting
	// cancelled.
	Cancelled bool
	Time      time.Time
}

// CallRinging reports an incoming audio or audio/video call to the
// signed-in user. It rings until DeclineCall, or until CallEnded.
type CallRinging struct {
	// ID names the call for DeclineCall and CallEnded.
	ID           string
	Conversation Conversation
	From         Person
	Video        bool
	Time         time.Time
}

// CallEnded reports that a ringing call stopped ringing without the
// bridge's endpoint answering: the caller hung up, another endpoint of the
// user answered or declined, or it timed out.
type CallEnded struct {
	ID           string
	Conversation Conversation
	From         Person
	// Missed is set when nobody answered it on any of the user's
	// endpoints.
	Missed bool
	Time   time.Time
}

func (MeetingInvited) sfbEvent() {}
func (CallRinging) sfbEvent()    {}
func (CallEnded) sfbEvent()      {}
