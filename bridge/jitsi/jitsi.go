// Package jitsi builds and reads Jitsi meeting widgets the way Element
// writes them into rooms, and the plain Jitsi web links that open a
// meeting in a browser without Element.
//
// The shapes follow Element Web's WidgetUtils.addJitsiWidget and
// setRoomWidget: a room state event of type im.vector.modular.widgets,
// keyed by a random 24-character widget ID, with content {type: "jitsi"
// (the legacy name, which Element writes), url, name, data: {conferenceId,
// roomName, isAudioOnly, isVideoChannel, domain}}. The url is Element's
// jitsi.html wrapper with the conference ID in the query and the widget
// variables ($domain, $conferenceId, $matrix_user_id, ...) in the
// fragment, for the client to fill in; Element Web and Desktop render a
// Jitsi widget with their own wrapper whatever the url says.
package jitsi

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Event types and widget type as Element writes them.
const (
	WidgetEventType = "im.vector.modular.widgets"
	LayoutEventType = "io.element.widgets.layout"
	// WidgetType is the legacy type Element writes; PreferredWidgetType
	// is what newer clients may write, and is accepted when reading.
	WidgetType          = "jitsi"
	PreferredWidgetType = "m.jitsi"
)

// DefaultWidgetURL is Element Web's Jitsi wrapper URL template
// (WidgetUtils.getLocalJitsiWrapperUrl) on app.element.io, which Element
// itself falls back to when it runs from a non-https origin. Deployments
// with their own Element set network.meetings.jitsi.widget_url to their
// Element's jitsi.html with the same fragment.
const DefaultWidgetURL = "https://app.element.io/jitsi.html" +
	"#conferenceDomain=$domain&conferenceId=$conferenceId&isAudioOnly=$isAudioOnly" +
	"&isVideoChannel=$isVideoChannel&displayName=$matrix_display_name&avatarUrl=$matrix_avatar_url" +
	"&userId=$matrix_user_id&roomId=$matrix_room_id&theme=$theme&roomName=$roomName" +
	"&supportsScreensharing=true&language=$org.matrix.msc2873.client_language"

// Widget is the content of a Jitsi widget state event.
type Widget struct {
	Type string `json:"type"`
	URL  string `json:"url"`
	Name string `json:"name"`
	Data Data   `json:"data"`
}

// Data is a Jitsi widget's data, as Element's addJitsiWidget fills it.
type Data struct {
	ConferenceID   string `json:"conferenceId"`
	RoomName       string `json:"roomName,omitempty"`
	IsAudioOnly    bool   `json:"isAudioOnly"`
	IsVideoChannel bool   `json:"isVideoChannel"`
	Domain         string `json:"domain"`
	// Auth is "openidtoken-jwt" when the Jitsi server admits only Matrix
	// users; empty otherwise.
	Auth string `json:"auth,omitempty"`
}

// LayoutEntry is one widget's place in Element's layout event.
type LayoutEntry struct {
	Container string `json:"container"`
	Index     int    `json:"index"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
}

// Errors of ParseWidget and JoinURL.
var (
	ErrNotJitsi = errors.New("not a Jitsi widget")
	ErrInvalid  = errors.New("invalid Jitsi widget")
)

// maxConferenceID bounds a conference ID; Element's are 29 characters, the
// base32 of a room ID about 70.
const maxConferenceID = 256

// NewConferenceID returns a random conference ID in Element's form:
// "Jitsi", one upper-case and 23 lower-case letters.
func NewConferenceID() string {
	return "Jitsi" + randomFrom("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 1) + randomFrom("abcdefghijklmnopqrstuvwxyz", 23)
}

// NewWidgetID returns a random widget ID (state key) of 24 letters and
// digits, as Element's randomString(24).
func NewWidgetID() string {
	return randomFrom("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 24)
}

func randomFrom(alphabet string, n int) string {
	var sb strings.Builder
	limit := big.NewInt(int64(len(alphabet)))
	for range n {
		i, err := rand.Int(rand.Reader, limit)
		if err != nil {
			// crypto/rand does not fail on supported platforms.
			panic(fmt.Errorf("jitsi: read random: %w", err))
		}
		sb.WriteByte(alphabet[i.Int64()])
	}
	return sb.String()
}

// CheckWidgetURL reports whether template can be a widget URL template:
// an absolute https URL.
func CheckWidgetURL(template string) error {
	u, err := url.Parse(template)
	switch {
	case err != nil:
		return fmt.Errorf("widget URL %q: %w", template, err)
	case u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("widget URL %q: must be an absolute https:// URL", template)
	case !strings.Contains(u.Fragment, "$conferenceId") && !strings.Contains(u.Fragment, "$domain"):
		return fmt.Errorf("widget URL %q: the fragment must pass $domain and $conferenceId to the wrapper, as Element's does", template)
	}
	return nil
}

// NewWidget returns the widget content that Element's addJitsiWidget
// writes for a video meeting on domain with conference ID confID, its URL
// made from template (see DefaultWidgetURL). name is the widget's name
// (Element: "Jitsi"), roomName the room's name.
func NewWidget(template, domain, confID, name, roomName string) (Widget, error) {
	if err := CheckDomain(domain); err != nil {
		return Widget{}, err
	}
	if err := checkConferenceID(confID); err != nil {
		return Widget{}, err
	}
	if err := CheckWidgetURL(template); err != nil {
		return Widget{}, err
	}
	u, _ := url.Parse(template)
	// Element clears the query and sets confId, for mobile clients that
	// do not read data.
	q := url.Values{}
	q.Set("confId", confID)
	u.RawQuery = q.Encode()
	if name == "" {
		name = "Jitsi"
	}
	return Widget{
		Type: WidgetType,
		URL:  u.String(),
		Name: name,
		Data: Data{ConferenceID: confID, RoomName: roomName, Domain: domain},
	}, nil
}

// Layout returns the content of the io.element.widgets.layout event that
// puts widgetID at the top of the room (Element's app drawer, where a
// meeting shows), keeping the entries of the other widgets in current
// (the event's content so far, nil when there is none).
func Layout(current map[string]any, widgetID string) map[string]any {
	widgets := map[string]any{}
	if old, ok := current["widgets"].(map[string]any); ok {
		for k, v := range old {
			widgets[k] = v
		}
	}
	widgets[widgetID] = LayoutEntry{Container: "top", Index: 0, Width: 100, Height: 40}
	return map[string]any{"widgets": widgets}
}

// ParseWidget reads the content of an im.vector.modular.widgets state
// event. removed is true for empty content, which is how a widget is
// removed. For a Jitsi widget it returns the widget with its domain and
// conference ID checked (taken from the url's confId and
// conferenceDomain when data lacks them); any other widget is
// ErrNotJitsi.
func ParseWidget(raw []byte) (w Widget, removed bool, err error) {
	var generic map[string]json.RawMessage
	if err := json.Unmarshal(raw, &generic); err != nil {
		return Widget{}, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(generic) == 0 {
		return Widget{}, true, nil
	}
	if _, ok := generic["url"]; !ok {
		// A widget without url is treated as removed by Element.
		return Widget{}, true, nil
	}
	var typeOnly struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &typeOnly); err != nil {
		return Widget{}, false, fmt.Errorf("%w: type: %w", ErrInvalid, err)
	}
	if typeOnly.Type != WidgetType && typeOnly.Type != PreferredWidgetType {
		return Widget{}, false, ErrNotJitsi
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return Widget{}, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if w.URL == "" {
		return Widget{}, true, nil
	}
	if w.Data.ConferenceID == "" || w.Data.Domain == "" {
		if u, err := url.Parse(w.URL); err == nil {
			if w.Data.ConferenceID == "" {
				w.Data.ConferenceID = u.Query().Get("confId")
			}
			if w.Data.Domain == "" {
				if frag, err := url.ParseQuery(u.Fragment); err == nil && !strings.HasPrefix(frag.Get("conferenceDomain"), "$") {
					w.Data.Domain = frag.Get("conferenceDomain")
				}
			}
		}
	}
	if _, err := JoinURL(w.Data.Domain, w.Data.ConferenceID); err != nil {
		return Widget{}, false, err
	}
	return w, false, nil
}

// JoinURL is the Jitsi web link of a meeting: https://<domain>/<conference
// ID>, which opens it in a browser without Element.
func JoinURL(domain, confID string) (string, error) {
	if err := CheckDomain(domain); err != nil {
		return "", err
	}
	if err := checkConferenceID(confID); err != nil {
		return "", err
	}
	return (&url.URL{Scheme: "https", Host: strings.ToLower(domain), Path: "/" + confID}).String(), nil
}

// CheckDomain reports whether domain is a host name (with an optional
// port) that a link may point to: no scheme, path, user or IP literal
// tricks.
func CheckDomain(domain string) error {
	host := domain
	if h, port, err := net.SplitHostPort(domain); err == nil {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 || strings.Trim(port, "0123456789") != "" {
			return fmt.Errorf("%w: domain %q: bad port", ErrInvalid, domain)
		}
		host = h
	}
	if host == "" || len(host) > 253 {
		return fmt.Errorf("%w: domain %q: empty or too long", ErrInvalid, domain)
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%w: domain %q: not a host name", ErrInvalid, domain)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("%w: domain %q: not a host name", ErrInvalid, domain)
			}
		}
	}
	return nil
}

// checkConferenceID accepts what Jitsi accepts as a room name in a URL
// path and what Element generates: letters, digits, '-', '_' and '.'
// (base32 IDs are upper-case letters and digits).
func checkConferenceID(confID string) error {
	if confID == "" || len(confID) > maxConferenceID || strings.Trim(confID, ".") == "" {
		return fmt.Errorf("%w: conference ID %q: empty, dots only or too long", ErrInvalid, confID)
	}
	for _, r := range confID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%w: conference ID %q: only letters, digits, '-', '_' and '.'", ErrInvalid, confID)
		}
	}
	return nil
}
