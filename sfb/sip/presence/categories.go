package presence

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Categories is a categories document (application/msrtc-event-categories+xml):
// the category instances of one presentity that a watcher may see, or the
// categories part of a roaming-self document.
type Categories struct {
	// URI is the presentity, with its sip: scheme as the server writes it.
	URI        string
	Categories []Category
}

// Category is one category instance. A category with no content clears
// what it named: a name alone clears the category, a name and a container
// clear that container's instances (pidgin-sipe's roaming-self handling).
type Category struct {
	Name string
	// Instance, Container and Version are absent (nil / -1 / 0) where the
	// document leaves them out.
	Instance    *uint32
	Container   int
	Version     uint32
	PublishTime time.Time
	ExpireType  string

	State       *State
	Note        *Note
	ContactCard *ContactCard
	// Raw is the category's content as received, for the categories this
	// package does not model (calendarData, device, services, ...).
	Raw []byte
}

// NoContainer is Category.Container when the document names none.
const NoContainer = -1

// State is a state category's content.
type State struct {
	// Type is its xsi:type: aggregateState, userState, machineState,
	// calendarState, phoneState, aggregateMachineState.
	Type         string
	Manual       bool
	Availability int
	// Activity is the activity token, CustomActivity the free text that
	// replaces its standard text.
	Activity       string
	CustomActivity string
	Device         string
	LastActive     time.Time
	// EndpointLocation is written as an empty element when set, as
	// pidgin-sipe publishes machine and user states.
	EndpointLocation bool
}

// Note is a note category's content: the personal note or the
// out-of-office note (Type "OOF", from Exchange).
type Note struct {
	// Type is "personal" or "OOF".
	Type       string
	Text       string
	Start, End time.Time
}

// Note types: the personal note and the out-of-office note.
const (
	NotePersonal = "personal"
	NoteOOF      = "OOF"
)

// ContactCard is the part of a contactCard category the bridge uses.
type ContactCard struct {
	DisplayName string
	Email       string
	Title       string
	Company     string
	// Automaton is set for a presentity whose presence never changes (a
	// response group, a bot): pidgin-sipe does not subscribe to it.
	Automaton bool
}

// Time formats of publishTime, lastActive and the note's times: the server
// writes UTC with milliseconds and no zone ("2008-01-22T23:41:05.450"),
// clients write RFC 3339.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05"}

func parseTime(v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q is not an xs:dateTime", truncate(v, 40))
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// xmlCategories and the types below read the documents without regard to
// their namespaces' prefixes, as pidgin-sipe does.
type xmlCategories struct {
	URI        string        `xml:"uri,attr"`
	Categories []xmlCategory `xml:"category"`
}

type xmlCategory struct {
	Name        string    `xml:"name,attr"`
	Instance    string    `xml:"instance,attr"`
	Container   string    `xml:"container,attr"`
	Version     string    `xml:"version,attr"`
	PublishTime string    `xml:"publishTime,attr"`
	ExpireType  string    `xml:"expireType,attr"`
	State       *xmlState `xml:"state"`
	Note        *xmlNote  `xml:"note"`
	ContactCard *xmlCard  `xml:"contactCard"`
	Inner       []byte    `xml:",innerxml"`
}

type xmlState struct {
	Type         string `xml:"type,attr"`
	Manual       string `xml:"manual,attr"`
	LastActive   string `xml:"lastActive,attr"`
	Availability string `xml:"availability"`
	Activity     *struct {
		Token  string `xml:"token,attr"`
		Custom []struct {
			Text string `xml:",chardata"`
		} `xml:"custom"`
	} `xml:"activity"`
	Device           string    `xml:"device"`
	EndpointLocation *struct{} `xml:"endpointLocation"`
}

type xmlNote struct {
	Bodies []struct {
		Type      string `xml:"type,attr"`
		StartTime string `xml:"startTime,attr"`
		EndTime   string `xml:"endTime,attr"`
		Text      string `xml:",chardata"`
	} `xml:"body"`
}

type xmlCard struct {
	Identity struct {
		Name struct {
			DisplayName string `xml:"displayName"`
		} `xml:"name"`
		Email string `xml:"email"`
	} `xml:"identity"`
	Email     string `xml:"email"`
	Title     string `xml:"title"`
	Company   string `xml:"company"`
	Automaton string `xml:"automaton"`
}

// ParseCategories reads a categories document.
func ParseCategories(body []byte) (Categories, error) {
	if err := checkSize("parse categories", body); err != nil {
		return Categories{}, err
	}
	var doc xmlCategories
	if err := decodeRoot(body, "categories", &doc); err != nil {
		return Categories{}, fmt.Errorf("parse categories: %w", err)
	}
	return doc.convert()
}

func (doc xmlCategories) convert() (Categories, error) {
	if len(doc.Categories) > MaxCategories {
		return Categories{}, fmt.Errorf("parse categories of %q: %d categories: %w (limit %d)", truncate(doc.URI, 100), len(doc.Categories), ErrTooLarge, MaxCategories)
	}
	out := Categories{URI: strings.TrimSpace(doc.URI)}
	for i, c := range doc.Categories {
		cat, err := c.convert()
		if err != nil {
			return Categories{}, fmt.Errorf("parse categories of %q: category %d (%q): %w", truncate(out.URI, 100), i+1, truncate(c.Name, 40), err)
		}
		out.Categories = append(out.Categories, cat)
	}
	return out, nil
}

func (c xmlCategory) convert() (Category, error) {
	cat := Category{Name: c.Name, Container: NoContainer, ExpireType: c.ExpireType}
	if c.Name == "" {
		return cat, fmt.Errorf("category without a name")
	}
	if c.Instance != "" {
		n, err := strconv.ParseUint(strings.TrimSpace(c.Instance), 10, 32)
		if err != nil {
			return cat, fmt.Errorf("instance %q: %w", truncate(c.Instance, 20), err)
		}
		v := uint32(n)
		cat.Instance = &v
	}
	if c.Container != "" {
		n, err := strconv.ParseUint(strings.TrimSpace(c.Container), 10, 31)
		if err != nil {
			return cat, fmt.Errorf("container %q: %w", truncate(c.Container, 20), err)
		}
		cat.Container = int(n)
	}
	if c.Version != "" {
		n, err := strconv.ParseUint(strings.TrimSpace(c.Version), 10, 32)
		if err != nil {
			return cat, fmt.Errorf("version %q: %w", truncate(c.Version, 20), err)
		}
		cat.Version = uint32(n)
	}
	var err error
	if cat.PublishTime, err = parseTime(c.PublishTime); err != nil {
		return cat, fmt.Errorf("publishTime: %w", err)
	}
	switch {
	case c.State != nil && c.Name == "state":
		if cat.State, err = c.State.convert(); err != nil {
			return cat, err
		}
	case c.Note != nil && c.Name == "note":
		if cat.Note, err = c.Note.convert(); err != nil {
			return cat, err
		}
	case c.ContactCard != nil && c.Name == "contactCard":
		cat.ContactCard = c.ContactCard.convert()
	default:
		if raw := bytes.TrimSpace(c.Inner); len(raw) > 0 {
			cat.Raw = raw
		}
	}
	return cat, nil
}

func (s *xmlState) convert() (*State, error) {
	st := &State{Type: s.Type, Device: strings.TrimSpace(s.Device), EndpointLocation: s.EndpointLocation != nil}
	st.Manual, _ = strconv.ParseBool(strings.TrimSpace(s.Manual))
	if v := strings.TrimSpace(s.Availability); v != "" {
		n, err := strconv.ParseUint(v, 10, 31)
		if err != nil {
			return nil, fmt.Errorf("state availability %q: %w", truncate(v, 20), err)
		}
		st.Availability = int(n)
	}
	if s.Activity != nil {
		st.Activity = strings.TrimSpace(s.Activity.Token)
		for _, c := range s.Activity.Custom {
			if t := strings.TrimSpace(c.Text); t != "" {
				st.CustomActivity = t
				break
			}
		}
	}
	var err error
	if st.LastActive, err = parseTime(s.LastActive); err != nil {
		return nil, fmt.Errorf("state lastActive: %w", err)
	}
	return st, nil
}

func (n *xmlNote) convert() (*Note, error) {
	if len(n.Bodies) == 0 {
		return &Note{}, nil
	}
	b := n.Bodies[0]
	note := &Note{Type: strings.TrimSpace(b.Type), Text: strings.TrimSpace(b.Text)}
	var err error
	if note.Start, err = parseTime(b.StartTime); err != nil {
		return nil, fmt.Errorf("note startTime: %w", err)
	}
	if note.End, err = parseTime(b.EndTime); err != nil {
		return nil, fmt.Errorf("note endTime: %w", err)
	}
	return note, nil
}

func (c *xmlCard) convert() *ContactCard {
	email := c.Identity.Email
	if email == "" {
		email = c.Email
	}
	auto, _ := strconv.ParseBool(strings.TrimSpace(c.Automaton))
	return &ContactCard{DisplayName: strings.TrimSpace(c.Identity.Name.DisplayName), Email: strings.TrimSpace(email),
		Title: strings.TrimSpace(c.Title), Company: strings.TrimSpace(c.Company), Automaton: auto}
}

// Marshal writes the categories document.
func (c Categories) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(`<categories xmlns="` + nsCategories + `" uri="`)
	escape(&b, c.URI)
	b.WriteString(`">`)
	for _, cat := range c.Categories {
		cat.write(&b, "category", "name")
	}
	b.WriteString(`</categories>`)
	return b.Bytes()
}

// write writes the category as element el whose name attribute is nameAttr
// (category/name in categories, publication/categoryName in a publish).
func (c Category) write(b *bytes.Buffer, el, nameAttr string) {
	b.WriteString("<" + el + " " + nameAttr + `="`)
	escape(b, c.Name)
	b.WriteString(`"`)
	if c.Instance != nil {
		fmt.Fprintf(b, ` instance="%d"`, *c.Instance)
	}
	if !c.PublishTime.IsZero() {
		b.WriteString(` publishTime="` + formatTime(c.PublishTime) + `"`)
	}
	if c.Container != NoContainer {
		fmt.Fprintf(b, ` container="%d"`, c.Container)
	}
	if c.Instance != nil || c.Version != 0 {
		fmt.Fprintf(b, ` version="%d"`, c.Version)
	}
	if c.ExpireType != "" {
		b.WriteString(` expireType="`)
		escape(b, c.ExpireType)
		b.WriteString(`"`)
	}
	b.WriteString(">")
	c.writeContent(b)
	b.WriteString("</" + el + ">")
}

func (c Category) writeContent(b *bytes.Buffer) {
	switch {
	case c.State != nil:
		c.State.write(b)
	case c.Note != nil:
		c.Note.write(b)
	case c.ContactCard != nil:
		c.ContactCard.write(b)
	case len(c.Raw) > 0:
		b.Write(c.Raw)
	}
}

func (s *State) write(b *bytes.Buffer) {
	b.WriteString(`<state xmlns="` + nsState + `" xmlns:xsi="` + nsXSI + `"`)
	if s.Type != "" {
		b.WriteString(` xsi:type="`)
		escape(b, s.Type)
		b.WriteString(`"`)
	}
	fmt.Fprintf(b, ` manual="%t"`, s.Manual)
	if !s.LastActive.IsZero() {
		b.WriteString(` lastActive="` + formatTime(s.LastActive) + `"`)
	}
	fmt.Fprintf(b, `><availability>%d</availability>`, s.Availability)
	if s.Activity != "" || s.CustomActivity != "" {
		b.WriteString(`<activity`)
		if s.Activity != "" {
			b.WriteString(` token="`)
			escape(b, s.Activity)
			b.WriteString(`"`)
		}
		if s.CustomActivity == "" {
			b.WriteString(`/>`)
		} else {
			b.WriteString(`><custom LCID="1033" xml:space="preserve">`)
			escape(b, s.CustomActivity)
			b.WriteString(`</custom></activity>`)
		}
	}
	if s.EndpointLocation {
		b.WriteString(`<endpointLocation/>`)
	}
	if s.Device != "" {
		b.WriteString(`<device>`)
		escape(b, s.Device)
		b.WriteString(`</device>`)
	}
	b.WriteString(`</state>`)
}

func (n *Note) write(b *bytes.Buffer) {
	b.WriteString(`<note xmlns="` + nsNote + `">`)
	if n.Text != "" || n.Type != "" || !n.Start.IsZero() || !n.End.IsZero() {
		b.WriteString(`<body`)
		if n.Type != "" {
			b.WriteString(` type="`)
			escape(b, n.Type)
			b.WriteString(`"`)
		}
		b.WriteString(` uri=""`)
		if !n.Start.IsZero() {
			b.WriteString(` startTime="` + formatTime(n.Start) + `"`)
		}
		if !n.End.IsZero() {
			b.WriteString(` endTime="` + formatTime(n.End) + `"`)
		}
		b.WriteString(`>`)
		escape(b, n.Text)
		b.WriteString(`</body>`)
	}
	b.WriteString(`</note>`)
}

func (c *ContactCard) write(b *bytes.Buffer) {
	b.WriteString(`<contactCard xmlns="` + nsContactCard + `"><identity><name><displayName>`)
	escape(b, c.DisplayName)
	b.WriteString(`</displayName></name>`)
	if c.Email != "" {
		b.WriteString(`<email>`)
		escape(b, c.Email)
		b.WriteString(`</email>`)
	}
	b.WriteString(`</identity>`)
	for _, f := range []struct{ el, v string }{{"title", c.Title}, {"company", c.Company}} {
		if f.v != "" {
			b.WriteString("<" + f.el + ">")
			escape(b, f.v)
			b.WriteString("</" + f.el + ">")
		}
	}
	if c.Automaton {
		b.WriteString(`<automaton>true</automaton>`)
	}
	b.WriteString(`</contactCard>`)
}

// RoamingSelf is the part of a roaming-self document
// (application/vnd-microsoft-roaming-self+xml) the bridge uses: the
// user's own category instances, whose versions a publication must name.
type RoamingSelf struct {
	Categories Categories
}

// ParseRoamingSelf reads a roaming-self document.
func ParseRoamingSelf(body []byte) (RoamingSelf, error) {
	if err := checkSize("parse roaming self", body); err != nil {
		return RoamingSelf{}, err
	}
	var doc struct {
		Categories *xmlCategories `xml:"categories"`
	}
	if err := decodeRoot(body, "roamingData", &doc); err != nil {
		return RoamingSelf{}, fmt.Errorf("parse roaming self: %w", err)
	}
	if doc.Categories == nil {
		return RoamingSelf{}, nil
	}
	cats, err := doc.Categories.convert()
	if err != nil {
		return RoamingSelf{}, fmt.Errorf("parse roaming self: %w", err)
	}
	return RoamingSelf{Categories: cats}, nil
}

// Marshal writes the roaming-self document with its categories.
func (r RoamingSelf) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(`<roamingData xmlns="` + nsRoamingSelf + `">`)
	b.Write(r.Categories.Marshal())
	b.WriteString(`</roamingData>`)
	return b.Bytes()
}

// decodeRoot decodes body into v after checking that its root element is
// named root.
func decodeRoot(body []byte, root string, v any) error {
	d := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := d.Token()
		if err != nil {
			return fmt.Errorf("no <%s> element: %w", root, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != root {
				return fmt.Errorf("root element is <%s>, want <%s>", truncate(se.Name.Local, 40), root)
			}
			if err := d.DecodeElement(v, &se); err != nil {
				return fmt.Errorf("<%s>: %w", root, err)
			}
			return nil
		}
	}
}

func escape(b *bytes.Buffer, s string) { _ = xml.EscapeText(b, []byte(s)) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// rootName is the local name of body's root element.
func rootName(body []byte) (string, error) {
	d := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := d.Token()
		if err != nil {
			return "", fmt.Errorf("no root element: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se.Name.Local, nil
		}
	}
}
