// Package ucwa is the Skype for Business transport over UCWA 2.0, Microsoft's
// REST API: autodiscovery, MsRtcOAuth sign-in, one UCWA application per
// signed-in user, the event channel (pending GET), and 1:1 instant messaging.
//
// The wire types here follow Microsoft's reference
// (../shared/reference/ucwa); conformance_test.go decodes every sample of
// the resources the client uses with them.
package ucwa

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Link is a UCWA web link. Title carries a display name on participant
// links.
type Link struct {
	Rel   string `json:"rel,omitempty"`
	Href  string `json:"href"`
	Title string `json:"title,omitempty"`
}

// Links is a resource's "_links": a rel maps to one link or, for a few
// relations (failedDeliveryParticipant), to an array of links.
type Links map[string][]Link

// UnmarshalJSON accepts both shapes of a link value.
func (l *Links) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("decode _links: %w", err)
	}
	out := make(Links, len(raw))
	for rel, v := range raw {
		v = bytes.TrimSpace(v)
		switch {
		case len(v) > 0 && v[0] == '[':
			var arr []Link
			if err := json.Unmarshal(v, &arr); err != nil {
				return fmt.Errorf("decode _links.%s: %w", rel, err)
			}
			out[rel] = arr
		default:
			var one Link
			if err := json.Unmarshal(v, &one); err != nil {
				return fmt.Errorf("decode _links.%s: %w", rel, err)
			}
			out[rel] = []Link{one}
		}
	}
	*l = out
	return nil
}

// Href returns the first link of rel, or "".
func (l Links) Href(rel string) string {
	if v := l[rel]; len(v) > 0 {
		return v[0].Href
	}
	return ""
}

// Get returns the first link of rel.
func (l Links) Get(rel string) (Link, bool) {
	if v := l[rel]; len(v) > 0 {
		return v[0], true
	}
	return Link{}, false
}

// Embedded is a resource's "_embedded": rel to the raw resource (an object,
// or an array for collections).
type Embedded map[string]json.RawMessage

// Resource is what every UCWA resource has.
type Resource struct {
	Rel      string   `json:"rel,omitempty"`
	Links    Links    `json:"_links,omitempty"`
	Embedded Embedded `json:"_embedded,omitempty"`
}

// Self is the resource's own href.
func (r Resource) Self() string { return r.Links.Href("self") }

// Discovery is the autodiscover root or user resource.
type Discovery struct {
	Resource
}

// Application is the application resource (application_ref.md).
type Application struct {
	Resource
	Culture   string `json:"culture"`
	UserAgent string `json:"userAgent"`
}

// Me is the signed-in user (me_ref.md).
type Me struct {
	Resource
	Name           string   `json:"name"`
	URI            string   `json:"uri"`
	EmailAddresses []string `json:"emailAddresses,omitempty"`
}

// Communication is the communication resource (communication_ref.md).
type Communication struct {
	Resource
	SupportedModalities     []string `json:"supportedModalities"`
	SupportedMessageFormats []string `json:"supportedMessageFormats"`
}

// Conversation is a conversation (conversation_ref.md).
type Conversation struct {
	Resource
	State            string   `json:"state"`
	ThreadID         string   `json:"threadId"`
	Subject          string   `json:"subject"`
	ActiveModalities []string `json:"activeModalities"`
	ParticipantCount int      `json:"participantCount"`
}

// Messaging is the messaging modality of a conversation (messaging_ref.md).
type Messaging struct {
	Resource
	State                    string   `json:"state"`
	NegotiatedMessageFormats []string `json:"negotiatedMessageFormats"`
}

// MessagingInvitation is an incoming or outgoing invitation to messaging
// (messagingInvitation_ref.md). The first message is the data URI in
// _links.message; the sender is _embedded.from or _links.from.
type MessagingInvitation struct {
	Resource
	Direction   string `json:"direction"`
	Importance  string `json:"importance"`
	OperationID string `json:"operationId"`
	State       string `json:"state"`
	Subject     string `json:"subject"`
	ThreadID    string `json:"threadId"`
	To          string `json:"to"`
}

// Message is one instant message (message_ref.md). Its text is the data URI
// in _links.plainMessage or _links.htmlMessage.
type Message struct {
	Resource
	Direction   string    `json:"direction"`
	OperationID string    `json:"operationId"`
	Status      string    `json:"status"`
	TimeStamp   Timestamp `json:"timeStamp"`
}

// Participant is a conversation participant (participant_ref.md).
type Participant struct {
	Resource
	Name          string `json:"name"`
	URI           string `json:"uri"`
	SourceNetwork string `json:"sourceNetwork"`
	Anonymous     bool   `json:"anonymous"`
}

// Contact is a person in the directory (contact_ref.md).
type Contact struct {
	Resource
	Name           string   `json:"name"`
	URI            string   `json:"uri"`
	Type           string   `json:"type"`
	EmailAddresses []string `json:"emailAddresses,omitempty"`
	Company        string   `json:"company,omitempty"`
	Department     string   `json:"department,omitempty"`
	Title          string   `json:"title,omitempty"`
}

// ContactPresence is a contact's presence (contactPresence_ref.md); the
// signed-in user's own presence (presence_ref.md) has the same fields.
type ContactPresence struct {
	Resource
	Activity     string    `json:"activity"`
	Availability string    `json:"availability"`
	DeviceType   string    `json:"deviceType"`
	LastActive   Timestamp `json:"lastActive"`
}

// ContactNote is a contact's personal or out-of-office note
// (contactNote_ref.md, note_ref.md).
type ContactNote struct {
	Resource
	Message string `json:"message"`
	// Type is Personal or OutOfOffice (NoteType_ref.md).
	Type string `json:"type"`
}

// PresenceSubscription is a subscription to people's presence
// (presenceSubscription_ref.md).
type PresenceSubscription struct {
	Resource
	ID string `json:"id"`
}

// Search is the people search result (search_ref.md).
type Search struct {
	Resource
	MoreResultsAvailable bool `json:"moreResultsAvailable"`
}

// Events is one event-channel response (EventsInUCWA.md).
type Events struct {
	Links  Links         `json:"_links"`
	Sender []EventSender `json:"sender"`
}

// EventSender groups the events one resource sent.
type EventSender struct {
	Rel    string  `json:"rel"`
	Href   string  `json:"href"`
	Events []Event `json:"events"`
}

// Event is one event: its type (added/updated/deleted for resources,
// started/updated/completed for operations), the target link, optionally
// the "in" collection link, the operation status and the embedded resource.
type Event struct {
	Link     Link       `json:"link"`
	In       *Link      `json:"in,omitempty"`
	Type     string     `json:"type"`
	Status   string     `json:"status,omitempty"`
	Reason   *ErrorBody `json:"reason,omitempty"`
	Embedded Embedded   `json:"_embedded,omitempty"`
}

// ErrorBody is UCWA's error and reason structure
// (ErrorsAndInformationalMessages.md).
type ErrorBody struct {
	Code    string `json:"code"`
	Subcode string `json:"subcode,omitempty"`
	Message string `json:"message,omitempty"`
}

// TokenResponse is the WebTicket OAuth token response.
type TokenResponse struct {
	AccessToken string      `json:"access_token"`
	ExpiresIn   json.Number `json:"expires_in"`
	TokenType   string      `json:"token_type"`
}

// Timestamp decodes UCWA's "\/Date(1364327898968)\/" (milliseconds since
// the Unix epoch, optionally with an offset such as +0100).
type Timestamp struct{ time.Time }

// UnmarshalJSON accepts the /Date(ms)/ form, RFC 3339, or null.
func (t *Timestamp) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("decode timestamp: %w", err)
	}
	if s == "" {
		return nil
	}
	if v, ok := strings.CutPrefix(s, "/Date("); ok {
		v, ok = strings.CutSuffix(v, ")/")
		if !ok {
			return fmt.Errorf("decode timestamp %q: unterminated /Date(", s)
		}
		if v == "" {
			return fmt.Errorf("decode timestamp %q: no milliseconds", s)
		}
		// Drop a timezone offset: the milliseconds are UTC already.
		if i := strings.IndexAny(v[1:], "+-"); i >= 0 {
			v = v[:i+1]
		}
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("decode timestamp %q: %w", s, err)
		}
		t.Time = time.UnixMilli(ms).UTC()
		return nil
	}
	p, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("decode timestamp %q: %w", s, err)
	}
	t.Time = p
	return nil
}

// decodeEmbedded decodes _embedded[rel] into out; false when absent.
func decodeEmbedded(e Embedded, rel string, out any) (bool, error) {
	raw, ok := e[rel]
	if !ok || len(raw) == 0 || string(raw) == "null" {
		return false, nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return true, fmt.Errorf("decode embedded %s: %w", rel, err)
	}
	return true, nil
}
