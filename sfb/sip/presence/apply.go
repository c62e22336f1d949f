package presence

import (
	"fmt"
	"strings"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Apply updates cur, a presentity's presence as last known, with a
// categories document about it, as pidgin-sipe's
// process_incoming_notify_rlmi does: a state category replaces the
// availability, activity, device and last-active time (the aggregate state
// when the document has one); any note category replaces both notes (a
// note category without a body clears them); other categories leave cur as
// it is. Changed is left to the caller. The warnings say what had to be
// mapped to a default or cleaned on the way.
func Apply(cur sfb.Presence, doc Categories) (sfb.Presence, []string) {
	var warnings []string
	var state *State
	var personal, oof *Category
	notes := false
	for i := range doc.Categories {
		c := &doc.Categories[i]
		switch c.Name {
		case "state":
			if c.State == nil || c.State.Availability == 0 {
				continue
			}
			if state == nil || c.State.Type == "aggregateState" && state.Type != "aggregateState" {
				state = c.State
			}
		case "note":
			notes = true
			if c.Note == nil || c.Note.Text == "" {
				continue
			}
			if strings.EqualFold(c.Note.Type, NoteOOF) {
				if oof == nil || !c.PublishTime.Before(oof.PublishTime) {
					oof = c
				}
				continue
			}
			if c.Note.Type != "" && !strings.EqualFold(c.Note.Type, NotePersonal) {
				warnings = append(warnings, fmt.Sprintf("unknown note type %q, taken as personal", truncate(c.Note.Type, 40)))
			}
			if personal == nil || !c.PublishTime.Before(personal.PublishTime) {
				personal = c
			}
		}
	}
	if state != nil {
		cur.Availability = AvailabilityOf(state.Availability)
		if cur.Availability == sfb.AvailabilityUnknown {
			warnings = append(warnings, fmt.Sprintf("availability %d is in no known range", state.Availability))
		}
		act, ok := CleanText(ActivityOf(state.Activity, state.CustomActivity))
		if !ok {
			warnings = append(warnings, "activity with control characters or too long")
		}
		cur.Activity = act
		cur.Device = DeviceOf(state.Device)
		cur.LastActive = state.LastActive
	}
	if notes {
		cur.Note, cur.OutOfOffice = "", nil
		if personal != nil {
			text, ok := CleanText(personal.Note.Text)
			if !ok {
				warnings = append(warnings, "note with control characters or too long")
			}
			cur.Note = text
		}
		if oof != nil {
			text, ok := CleanText(oof.Note.Text)
			if !ok {
				warnings = append(warnings, "out-of-office note with control characters or too long")
			}
			if text != "" {
				cur.OutOfOffice = &sfb.OutOfOffice{Message: text, Until: oof.Note.End}
			}
		}
	}
	return cur, warnings
}

// Describe is the categories document a server sends watchers of uri for
// p, the inverse of Apply (for the simulator): the aggregate state (all a
// watcher sees of the states), the personal note (empty to clear it) and
// the out-of-office note when there is one, each at version.
func Describe(uri string, p sfb.Presence, version uint32) Categories {
	zero, oofInstance := uint32(0), uint32(0x40000000)
	token, custom := ActivityToken(p.Activity)
	doc := Categories{URI: uri, Categories: []Category{{
		Name: "state", Instance: &zero, Container: NoContainer, Version: version, PublishTime: p.Changed, ExpireType: "static",
		State: &State{Type: "aggregateState", Availability: AggregateNumber(p.Availability), Activity: token,
			CustomActivity: custom, Device: DeviceName(p.Device), LastActive: p.LastActive},
	}}}
	note := Category{Name: "note", Instance: &zero, Container: NoContainer, Version: version, PublishTime: p.Changed, ExpireType: "static", Note: &Note{}}
	if p.Note != "" {
		note.Note = &Note{Type: NotePersonal, Text: p.Note}
	}
	doc.Categories = append(doc.Categories, note)
	if p.OutOfOffice != nil {
		doc.Categories = append(doc.Categories, Category{Name: "note", Instance: &oofInstance, Container: NoContainer, Version: version,
			PublishTime: p.Changed, ExpireType: "static", Note: &Note{Type: NoteOOF, Text: p.OutOfOffice.Message, End: p.OutOfOffice.Until}})
	}
	return doc
}
