package sfb

import (
	"context"
	"errors"
	"time"
)

// Availability is an SfB user's availability: the eight values of UCWA's
// Availability (and of SIP's enhanced presence aggregate states), or
// AvailabilityUnknown for a value the bridge does not know or was not told.
type Availability string

const (
	AvailabilityUnknown      Availability = ""
	AvailabilityOnline       Availability = "Online"
	AvailabilityIdleOnline   Availability = "IdleOnline"
	AvailabilityBusy         Availability = "Busy"
	AvailabilityIdleBusy     Availability = "IdleBusy"
	AvailabilityDoNotDisturb Availability = "DoNotDisturb"
	AvailabilityBeRightBack  Availability = "BeRightBack"
	AvailabilityAway         Availability = "Away"
	AvailabilityOffline      Availability = "Offline"
)

// Well-known activity tokens (contactPresence.activity): a server sends one
// of these, or text already localized for the application's culture.
const (
	ActivityInAMeeting              = "in-a-meeting"
	ActivityInAConference           = "in-a-conference"
	ActivityOnThePhone              = "on-the-phone"
	ActivityPresenting              = "presenting"
	ActivityUrgentInterruptionsOnly = "urgent-interruptions-only"
	ActivityOffWork                 = "off-work"
)

// DeviceType is the kind of device a contact is using, when the server says.
type DeviceType string

const (
	DeviceUnknown   DeviceType = ""
	DevicePC        DeviceType = "PC"
	DeviceMobile    DeviceType = "Mobile"
	DeviceWeb       DeviceType = "Web"
	DeviceDeskPhone DeviceType = "DeskPhone"
)

// Presence is what an SfB user shows to colleagues.
type Presence struct {
	Availability Availability
	// Activity is a well-known token (ActivityInAMeeting, ...), free text
	// the server localized, or empty.
	Activity string
	// Note is the personal note; empty when none.
	Note string
	// OutOfOffice is the out-of-office note (from Exchange) when the user
	// has one set, else nil.
	OutOfOffice *OutOfOffice
	Device      DeviceType
	// LastActive is when the user last used a device; zero when unknown.
	LastActive time.Time
	// Changed is when the transport learned of this state.
	Changed time.Time
}

// Same reports whether p and q show a watcher the same presence: when
// they were learnt (Changed) and the last-active time do not count.
// Transports compare with it before telling a change.
func (p Presence) Same(q Presence) bool {
	p.Changed, q.Changed = time.Time{}, time.Time{}
	p.LastActive, q.LastActive = time.Time{}, time.Time{}
	if (p.OutOfOffice == nil) != (q.OutOfOffice == nil) || p.OutOfOffice != nil && *p.OutOfOffice != *q.OutOfOffice {
		return false
	}
	p.OutOfOffice, q.OutOfOffice = nil, nil
	return p == q
}

// OutOfOffice is an out-of-office note.
type OutOfOffice struct {
	Message string
	// Until is when the absence ends; zero when the server does not say.
	Until time.Time
}

// Publication is what the bridge publishes as a signed-in user's own
// presence. A nil field leaves that part unchanged.
type Publication struct {
	// Availability to publish: one of Online, Busy, DoNotDisturb,
	// BeRightBack, Away or Offline (what a user can choose in an SfB
	// client; the Idle states are the server's to set, a transport sends
	// their active form). A transport that cannot appear offline
	// publishes the nearest it has: UCWA's Offwork, shown as Away with
	// the off-work activity.
	Availability *Availability
	// Note is the personal note; a pointer to "" clears it.
	Note *string
}

// ErrWatchLimit means a session cannot watch more people: the server refused
// more (LimitExceeded) or the session is at its capacity. The caller moves
// the rest to another session.
var ErrWatchLimit = errors.New("presence watch limit reached")

// PresenceSession is the presence part of Session.
type PresenceSession interface {
	// Watch starts delivering PresenceChanged events for people, the
	// current state of each first: asynchronously, once the server has
	// told it (UCWA: within the server's event aggregation, seconds). It
	// returns the people it took on, in order; when it could not take all of them, err wraps ErrWatchLimit
	// and the caller gives the rest to another session. The session keeps
	// the watch alive (renewal before expiry, re-creation when the server
	// drops it) until Unwatch or the session ends.
	Watch(ctx context.Context, people []URI) (taken []URI, err error)
	// Unwatch stops watching people. Unknown people are ignored.
	Unwatch(ctx context.Context, people []URI) error
	// WatchCapacity is how many people the session can watch at most.
	WatchCapacity() int
	// Contacts lists the people in the user's SfB contact list (every
	// group, each person once).
	Contacts(ctx context.Context) ([]Person, error)
	// Publish sets the user's own availability and note on SfB.
	Publish(ctx context.Context, p Publication) error
	// ReportActivity tells the server the user is active, so that SfB does
	// not turn them Away; the transport rate-limits what it sends.
	ReportActivity(ctx context.Context) error
}

// PresenceChanged reports the presence of a watched person: the current
// state when the watch starts, then every change. Presence is the whole
// state (not a delta); a state equal to the last one delivered is not
// delivered again.
type PresenceChanged struct {
	Person   URI
	Presence Presence
}

// ContactsChanged reports that the user's contact list changed; Contacts
// returns the new list.
type ContactsChanged struct{}

func (PresenceChanged) sfbEvent() {}
func (ContactsChanged) sfbEvent() {}
