package ucwaref

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Resource is one JSON object in a sample that represents a UCWA resource.
type Resource struct {
	File string
	Line int
	// Path locates the object inside its body, e.g.
	// "sender[0].events[1]._embedded.messagingInvitation".
	Path string
	// Object is the decoded object; JSON is it encoded again, ready for the
	// client's types.
	Object map[string]any
	JSON   json.RawMessage
	// Body is the body the object came from (for its repairs).
	Body *Body
	// Event is the event entry around an embedded resource (with "type",
	// "status", "link"), or nil.
	Event map[string]any
}

// Repaired reports whether the body needed repairs.
func (r Resource) Repaired() bool { return len(r.Body.Repaired) > 0 }

// EventsRel is the pseudo-rel under which Resources returns event-channel
// bodies (the top-level object with "sender" or a next/resync/resume link).
const EventsRel = "events"

// Resources returns every object in every JSON body of the corpus whose
// "rel" is rel: top-level resources and those embedded anywhere, including
// in events. Links ({"rel":..,"href":..} in "link", "in" and sender
// entries) are not resources and are left out. For rel == EventsRel it
// returns event-channel bodies.
func (c *Corpus) Resources(rel string) []Resource {
	var out []Resource
	for _, t := range c.Transcripts {
		for _, b := range t.Bodies() {
			if !b.IsJSON() {
				continue
			}
			walk(b.JSON, "", nil, false, func(path string, obj map[string]any, evt map[string]any) {
				if rel == EventsRel {
					if path != "" || !isEventsBody(obj) {
						return
					}
				} else if s, _ := obj["rel"].(string); s != rel {
					return
				}
				raw, err := json.Marshal(obj)
				if err != nil {
					panic(fmt.Sprintf("re-encode decoded JSON: %v", err)) // cannot happen
				}
				out = append(out, Resource{File: t.File, Line: t.Line, Path: path, Object: obj, JSON: raw, Body: b, Event: evt})
			})
		}
	}
	return out
}

// Rels counts the resources by rel over the corpus, for reports.
func (c *Corpus) Rels() map[string]int {
	counts := map[string]int{}
	for _, t := range c.Transcripts {
		for _, b := range t.Bodies() {
			if !b.IsJSON() {
				continue
			}
			walk(b.JSON, "", nil, false, func(path string, obj map[string]any, _ map[string]any) {
				if s, ok := obj["rel"].(string); ok {
					counts[s]++
				}
				if path == "" && isEventsBody(obj) {
					counts[EventsRel]++
				}
			})
		}
	}
	return counts
}

func isEventsBody(obj map[string]any) bool {
	if _, ok := obj["sender"]; ok {
		return true
	}
	links, _ := obj["_links"].(map[string]any)
	for _, k := range []string{"next", "resync", "resume"} {
		if l, ok := links[k].(map[string]any); ok {
			if h, _ := l["href"].(string); strings.Contains(h, "/events") {
				return true
			}
		}
	}
	return false
}

// walk visits every object that can be a resource. link marks positions
// that hold links, whose objects are skipped (but not their children).
func walk(v any, path string, evt map[string]any, link bool, visit func(string, map[string]any, map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		if !link {
			visit(path, x, evt)
		}
		if _, isEvt := x["type"]; isEvt && x["link"] != nil {
			evt = x
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			childLink := k == "link" || k == "in" || k == "_links" || k == "sender" || strings.HasSuffix(path, "_links")
			walk(x[k], p, evt, childLink, visit)
		}
	case []any:
		for i, e := range x {
			walk(e, fmt.Sprintf("%s[%d]", path, i), evt, link, visit)
		}
	}
}

// EventEntry is one event inside an event-channel body.
type EventEntry struct {
	File       string
	Line       int
	SenderRel  string
	SenderHref string
	// Event is the entry ({"link":..,"type":..,"_embedded":..}); JSON is it
	// encoded again.
	Event map[string]any
	JSON  json.RawMessage
}

// Events returns every event entry of every event-channel body, in order.
func (c *Corpus) Events() []EventEntry {
	var out []EventEntry
	for _, r := range c.Resources(EventsRel) {
		senders, _ := r.Object["sender"].([]any)
		for _, s := range senders {
			sm, _ := s.(map[string]any)
			evts, _ := sm["events"].([]any)
			for _, e := range evts {
				em, ok := e.(map[string]any)
				if !ok {
					continue
				}
				raw, _ := json.Marshal(em)
				rel, _ := sm["rel"].(string)
				href, _ := sm["href"].(string)
				out = append(out, EventEntry{File: r.File, Line: r.Line, SenderRel: rel, SenderHref: href, Event: em, JSON: raw})
			}
		}
	}
	return out
}
