package presence

import (
	"fmt"
	"strings"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// The availability numbers an SfB client publishes (pidgin-sipe's
// SIPE_OCS2007_AVAILABILITY_*, UCMA's PresenceAvailability) and the
// aggregate values a server computes for the Idle states.
const (
	AvailabilityOnline       = 3500
	AvailabilityIdleOnline   = 5000
	AvailabilityBusy         = 6500
	AvailabilityIdleBusy     = 8000
	AvailabilityDoNotDisturb = 9500
	AvailabilityBeRightBack  = 12500
	AvailabilityAway         = 15500
	AvailabilityOffline      = 18500
)

// AvailabilityOf maps an availability number to the model UCWA uses, by the
// ranges Communicator defines (MS-PRES, "Presence Availability State";
// pidgin-sipe's sipe_ocs2007_status_from_legacy_availability):
// 3000–4499 Online, 4500–5999 IdleOnline, 6000–7499 Busy, 7500–8999
// IdleBusy, 9000–11999 DoNotDisturb, 12000–14999 BeRightBack, 15000–17999
// Away, 18000 and above Offline. Below 3000 is no availability (UCMA's
// None): AvailabilityUnknown, as UCWA's transport maps a value it does not
// know.
func AvailabilityOf(n int) sfb.Availability {
	switch {
	case n < 3000:
		return sfb.AvailabilityUnknown
	case n < 4500:
		return sfb.AvailabilityOnline
	case n < 6000:
		return sfb.AvailabilityIdleOnline
	case n < 7500:
		return sfb.AvailabilityBusy
	case n < 9000:
		return sfb.AvailabilityIdleBusy
	case n < 12000:
		return sfb.AvailabilityDoNotDisturb
	case n < 15000:
		return sfb.AvailabilityBeRightBack
	case n < 18000:
		return sfb.AvailabilityAway
	default:
		return sfb.AvailabilityOffline
	}
}

// AggregateNumber is the aggregate availability a server shows watchers for
// a; 0 for AvailabilityUnknown or a value it does not know.
func AggregateNumber(a sfb.Availability) int {
	switch a {
	case sfb.AvailabilityOnline:
		return AvailabilityOnline
	case sfb.AvailabilityIdleOnline:
		return AvailabilityIdleOnline
	case sfb.AvailabilityBusy:
		return AvailabilityBusy
	case sfb.AvailabilityIdleBusy:
		return AvailabilityIdleBusy
	case sfb.AvailabilityDoNotDisturb:
		return AvailabilityDoNotDisturb
	case sfb.AvailabilityBeRightBack:
		return AvailabilityBeRightBack
	case sfb.AvailabilityAway:
		return AvailabilityAway
	case sfb.AvailabilityOffline:
		return AvailabilityOffline
	}
	return 0
}

// PublishNumber is the availability a client publishes as the user's state
// for a: the Idle states are the server's to compute, their active forms are
// published (as sfb.Publication says). SIP, unlike UCWA, can appear offline:
// 18500 is what Communicator publishes for "Appear Offline".
func PublishNumber(a sfb.Availability) (int, error) {
	switch a {
	case sfb.AvailabilityOnline, sfb.AvailabilityIdleOnline:
		return AvailabilityOnline, nil
	case sfb.AvailabilityBusy, sfb.AvailabilityIdleBusy:
		return AvailabilityBusy, nil
	case sfb.AvailabilityDoNotDisturb, sfb.AvailabilityBeRightBack, sfb.AvailabilityAway, sfb.AvailabilityOffline:
		return AggregateNumber(a), nil
	}
	return 0, fmt.Errorf("publish availability %q: %w", a, sfb.ErrUnsupported)
}

// Activity tokens of the state category (MS-PRES activityTokenEnum) that
// differ from UCWA's.
const (
	tokenInPresentation = "in-presentation"
	tokenOutOfOffice    = "out-of-office"
)

// ActivityOf maps a state's activity to sfb.Presence.Activity: a custom
// text wins, as SfB clients show it instead of the token's standard text;
// the well-known tokens become UCWA's tokens (in-presentation is UCWA's
// presenting); a token that only restates the availability ("Busy",
// "away", ...) is no activity; any other token is passed on.
func ActivityOf(token, custom string) string {
	if custom != "" {
		return custom
	}
	switch strings.ToLower(token) {
	case "", "available", "online", "free", "idle", "inactive", "busy", "busyidle", "idlebusy", "idleonline",
		"donotdisturb", "do-not-disturb", "berightback", "be-right-back", "away", "offline", "unknown":
		return ""
	case tokenInPresentation, sfb.ActivityPresenting:
		return sfb.ActivityPresenting
	case sfb.ActivityInAMeeting, sfb.ActivityInAConference, sfb.ActivityOnThePhone, sfb.ActivityUrgentInterruptionsOnly,
		sfb.ActivityOffWork, tokenOutOfOffice:
		return strings.ToLower(token)
	}
	return token
}

// ActivityToken is how a state carries activity a: a well-known token, or
// free text as a custom activity.
func ActivityToken(activity string) (token, custom string) {
	switch activity {
	case "":
		return "", ""
	case sfb.ActivityPresenting:
		return tokenInPresentation, ""
	case sfb.ActivityInAMeeting, sfb.ActivityInAConference, sfb.ActivityOnThePhone, sfb.ActivityUrgentInterruptionsOnly,
		sfb.ActivityOffWork, tokenOutOfOffice:
		return activity, ""
	}
	return "", activity
}

// DeviceOf maps a state's device element. MS-PRES's deviceTypeEnum names
// the kinds Communicator tells apart; the spellings of UCWA's DeviceType
// are accepted too.
func DeviceOf(v string) sfb.DeviceType {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "computer", "pc", "desktop":
		return sfb.DevicePC
	case "mobile":
		return sfb.DeviceMobile
	case "web":
		return sfb.DeviceWeb
	case "phone", "deskphone", "ipphone":
		return sfb.DeviceDeskPhone
	}
	return sfb.DeviceUnknown
}

// DeviceName is the state's device element for d; empty for an unknown one.
func DeviceName(d sfb.DeviceType) string {
	switch d {
	case sfb.DevicePC:
		return "computer"
	case sfb.DeviceMobile:
		return "mobile"
	case sfb.DeviceWeb:
		return "web"
	case sfb.DeviceDeskPhone:
		return "phone"
	}
	return ""
}

// CleanText cleans a note, an activity or a name from the server, or one
// to publish, cut to MaxTextRunes (sfb.CleanText).
func CleanText(v string) (string, bool) { return sfb.CleanText(v, MaxTextRunes) }
