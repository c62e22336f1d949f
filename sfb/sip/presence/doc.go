// Package presence encodes and decodes the bodies of Skype for Business's
// enhanced presence over SIP (MS-PRES, and what pidgin-sipe sends and
// reads): the batched category subscription
// (application/msrtc-adrl-categorylist+xml), the NOTIFY and BENOTIFY bodies
// that answer it (multipart/related with application/rlmi+xml and
// application/msrtc-event-categories+xml parts, or one categories document
// alone), category publication (application/msrtc-category-publish+xml) and
// the 409 fault that carries the current versions, the roaming-self
// categories of the self-subscription, and the roaming contact list
// (application/vnd-microsoft-roaming-contacts+xml). It also maps the
// availability numbers and activity tokens to sfb.Presence the way the UCWA
// transport maps UCWA's values.
//
// It knows nothing of the network or of dialogs: the transport (sfb/sip)
// and the simulator (sfb/sim) share it, each using both directions. Every
// parser bounds what it reads (MaxBodySize, MaxResources, MaxCategories)
// and says what it was reading when it fails.
package presence

import (
	"errors"
	"fmt"
)

// Content types of the bodies this package reads and writes.
const (
	ContentTypeCategoryList    = "application/msrtc-adrl-categorylist+xml"
	ContentTypeEventCategories = "application/msrtc-event-categories+xml"
	ContentTypeRLMI            = "application/rlmi+xml"
	ContentTypeMultipart       = "multipart/related"
	ContentTypePublish         = "application/msrtc-category-publish+xml"
	ContentTypeFault           = "application/msrtc-fault+xml"
	ContentTypeRoamingSelf     = "application/vnd-microsoft-roaming-self+xml"
	ContentTypeRoamingContacts = "application/vnd-microsoft-roaming-contacts+xml"
)

// SIP events of the subscriptions whose bodies this package reads.
const (
	EventPresence        = "presence"
	EventRoamingContacts = "vnd-microsoft-roaming-contacts"
	EventRoamingSelf     = "vnd-microsoft-roaming-self"
)

// Accept is what a presence subscriber accepts, as pidgin-sipe and
// Communicator send it for a batched category subscription.
const Accept = "application/msrtc-event-categories+xml, application/rlmi+xml, multipart/related"

// XML namespaces of the documents.
const (
	nsBatchSub     = "http://schemas.microsoft.com/2006/01/sip/batch-subscribe"
	nsCategoryList = "http://schemas.microsoft.com/2006/09/sip/categorylist"
	nsCategories   = "http://schemas.microsoft.com/2006/09/sip/categories"
	nsRLMI         = "urn:ietf:params:xml:ns:rlmi"
	nsRichPresence = "http://schemas.microsoft.com/2006/09/sip/rich-presence"
	nsState        = "http://schemas.microsoft.com/2006/09/sip/state"
	nsNote         = "http://schemas.microsoft.com/2006/09/sip/note"
	nsContactCard  = "http://schemas.microsoft.com/2006/09/sip/contactcard"
	nsRoamingSelf  = "http://schemas.microsoft.com/2006/09/sip/roaming-self"
	nsXSI          = "http://www.w3.org/2001/XMLSchema-instance"
)

// Limits on what the parsers accept. A server sends batches of at most a
// few hundred contacts (MaxContacts is 250 per user by default, 1,000 at
// most); the limits leave room and stop a hostile body early.
const (
	// MaxBodySize bounds every body and every part of a multipart one.
	MaxBodySize = 1 << 20
	// MaxResources bounds the resources of one batch subscription, rlmi
	// list or NOTIFY, and the contacts and groups of a contact list.
	MaxResources = 2000
	// MaxCategories bounds the categories of one document.
	MaxCategories = 500
	// MaxTextRunes bounds a note, an activity or a display name passed on
	// to sfb.Presence; longer ones are cut.
	MaxTextRunes = 512
)

// ErrTooLarge means a body or a list in it is over this package's limits.
var ErrTooLarge = errors.New("presence body too large")

func checkSize(what string, body []byte) error {
	if len(body) > MaxBodySize {
		return fmt.Errorf("%s: %d bytes: %w (limit %d)", what, len(body), ErrTooLarge, MaxBodySize)
	}
	return nil
}
