package presence

import (
	"bytes"
	"fmt"
	"strings"
)

// DefaultCategories are the categories a watcher asks for, as pidgin-sipe
// does (MS-PRES's example adds "services").
var DefaultCategories = []string{"calendarData", "contactCard", "note", "state"}

// Batch subscription actions (MS-PRES 2.2.2.4.1): subscribe adds the
// resources to the subscription of the dialog, unsubscribe removes them.
const (
	ActionSubscribe   = "subscribe"
	ActionUnsubscribe = "unsubscribe"
)

// BatchSubscribe is the body of a batched category SUBSCRIBE
// (application/msrtc-adrl-categorylist+xml), sent to the subscriber's own
// URI with "Require: adhoclist, categoryList".
type BatchSubscribe struct {
	// URI is the subscriber, with its sip: scheme.
	URI    string
	Action string
	// ID identifies the action; pidgin-sipe and Communicator send
	// 63792024.
	ID         string
	Resources  []Resource
	Categories []string
}

// Resource is a presentity of a batch subscription.
type Resource struct {
	URI string
	// Context asks the server for the first notification of a contact
	// just added to the contact list (pidgin-sipe's <context/>).
	Context bool
}

// Marshal writes the batch subscription.
func (s BatchSubscribe) Marshal() []byte {
	action, id := s.Action, s.ID
	if action == "" {
		action = ActionSubscribe
	}
	if id == "" {
		id = "63792024"
	}
	var b bytes.Buffer
	b.WriteString(`<batchSub xmlns="` + nsBatchSub + `" uri="`)
	escape(&b, s.URI)
	b.WriteString(`" name=""><action name="`)
	escape(&b, action)
	b.WriteString(`" id="`)
	escape(&b, id)
	b.WriteString(`"><adhocList>`)
	for _, r := range s.Resources {
		b.WriteString(`<resource uri="`)
		escape(&b, r.URI)
		if r.Context {
			b.WriteString(`"><context/></resource>`)
		} else {
			b.WriteString(`"/>`)
		}
	}
	b.WriteString(`</adhocList>`)
	if len(s.Categories) > 0 {
		b.WriteString(`<categoryList xmlns="` + nsCategoryList + `">`)
		for _, c := range s.Categories {
			b.WriteString(`<category name="`)
			escape(&b, c)
			b.WriteString(`"/>`)
		}
		b.WriteString(`</categoryList>`)
	}
	b.WriteString(`</action></batchSub>`)
	return b.Bytes()
}

// ParseBatchSubscribe reads a batch subscription. It takes the first
// action, the only one clients send.
func ParseBatchSubscribe(body []byte) (BatchSubscribe, error) {
	if err := checkSize("parse batch subscription", body); err != nil {
		return BatchSubscribe{}, err
	}
	var doc struct {
		URI     string `xml:"uri,attr"`
		Actions []struct {
			Name      string `xml:"name,attr"`
			ID        string `xml:"id,attr"`
			Resources []struct {
				URI     string    `xml:"uri,attr"`
				Context *struct{} `xml:"context"`
			} `xml:"adhocList>resource"`
			Categories []struct {
				Name string `xml:"name,attr"`
			} `xml:"categoryList>category"`
		} `xml:"action"`
	}
	if err := decodeRoot(body, "batchSub", &doc); err != nil {
		return BatchSubscribe{}, fmt.Errorf("parse batch subscription: %w", err)
	}
	if len(doc.Actions) == 0 {
		return BatchSubscribe{}, fmt.Errorf("parse batch subscription of %q: no action", truncate(doc.URI, 100))
	}
	a := doc.Actions[0]
	if a.Name != ActionSubscribe && a.Name != ActionUnsubscribe {
		return BatchSubscribe{}, fmt.Errorf("parse batch subscription of %q: unknown action %q", truncate(doc.URI, 100), truncate(a.Name, 40))
	}
	if len(a.Resources) > MaxResources {
		return BatchSubscribe{}, fmt.Errorf("parse batch subscription of %q: %d resources: %w (limit %d)", truncate(doc.URI, 100), len(a.Resources), ErrTooLarge, MaxResources)
	}
	if len(a.Categories) > MaxCategories {
		return BatchSubscribe{}, fmt.Errorf("parse batch subscription of %q: %d categories: %w (limit %d)", truncate(doc.URI, 100), len(a.Categories), ErrTooLarge, MaxCategories)
	}
	out := BatchSubscribe{URI: strings.TrimSpace(doc.URI), Action: a.Name, ID: a.ID}
	for i, r := range a.Resources {
		uri := strings.TrimSpace(r.URI)
		if uri == "" {
			return BatchSubscribe{}, fmt.Errorf("parse batch subscription of %q: resource %d has no uri", truncate(doc.URI, 100), i+1)
		}
		out.Resources = append(out.Resources, Resource{URI: uri, Context: r.Context != nil})
	}
	for _, c := range a.Categories {
		if c.Name != "" {
			out.Categories = append(out.Categories, c.Name)
		}
	}
	return out, nil
}
