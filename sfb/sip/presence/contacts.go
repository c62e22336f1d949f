package presence

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// ContactList is a roaming contacts document
// (application/vnd-microsoft-roaming-contacts+xml) of the
// vnd-microsoft-roaming-contacts self-subscription: the whole list
// (<contactList>, Delta false) or a change to it (<contactDelta>, Delta
// true), as pidgin-sipe's sipe_process_roaming_contacts reads them.
type ContactList struct {
	Delta bool
	// DeltaNum numbers the list's versions (never 0 per MS-SIP);
	// PrevDeltaNum is the version a delta applies to.
	DeltaNum, PrevDeltaNum uint32
	// UCSMode is set by Lync 2013 and later: "migrated" means the list
	// lives in Exchange's Unified Contact Store and this one is empty.
	UCSMode string

	// A whole list has Groups and Contacts; a delta the Added, Modified
	// and Deleted ones.
	Groups, AddedGroups, ModifiedGroups, DeletedGroups         []Group
	Contacts, AddedContacts, ModifiedContacts, DeletedContacts []Contact
}

// Group is a contact group; the one named "~" is the default group
// (Other Contacts).
type Group struct {
	ID   string
	Name string
}

// Contact is a contact of the list.
type Contact struct {
	// URI is as the server writes it: with or without the sip: scheme.
	URI string
	// Name is the alias the user gave the contact; empty for none.
	Name string
	// Groups are the IDs of its groups.
	Groups     []string
	Subscribed bool
}

type xmlGroup struct {
	ID   string `xml:"id,attr"`
	Name string `xml:"name,attr"`
}

type xmlContact struct {
	URI        string `xml:"uri,attr"`
	Name       string `xml:"name,attr"`
	Groups     string `xml:"groups,attr"`
	Subscribed string `xml:"subscribed,attr"`
}

// ParseContactList reads a roaming contacts document.
func ParseContactList(body []byte) (ContactList, error) {
	if err := checkSize("parse contact list", body); err != nil {
		return ContactList{}, err
	}
	var doc struct {
		DeltaNum         string       `xml:"deltaNum,attr"`
		PrevDeltaNum     string       `xml:"prevDeltaNum,attr"`
		UCSMode          string       `xml:"ucsmode,attr"`
		Groups           []xmlGroup   `xml:"group"`
		AddedGroups      []xmlGroup   `xml:"addedGroup"`
		ModifiedGroups   []xmlGroup   `xml:"modifiedGroup"`
		DeletedGroups    []xmlGroup   `xml:"deletedGroup"`
		Contacts         []xmlContact `xml:"contact"`
		AddedContacts    []xmlContact `xml:"addedContact"`
		ModifiedContacts []xmlContact `xml:"modifiedContact"`
		DeletedContacts  []xmlContact `xml:"deletedContact"`
	}
	root, err := rootName(body)
	if err != nil {
		return ContactList{}, fmt.Errorf("parse contact list: %w", err)
	}
	if root != "contactList" && root != "contactDelta" {
		return ContactList{}, fmt.Errorf("parse contact list: root element is <%s>, want <contactList> or <contactDelta>", truncate(root, 40))
	}
	if err := decodeRoot(body, root, &doc); err != nil {
		return ContactList{}, fmt.Errorf("parse contact list: %w", err)
	}
	n := len(doc.Groups) + len(doc.AddedGroups) + len(doc.ModifiedGroups) + len(doc.DeletedGroups) +
		len(doc.Contacts) + len(doc.AddedContacts) + len(doc.ModifiedContacts) + len(doc.DeletedContacts)
	if n > 2*MaxResources {
		return ContactList{}, fmt.Errorf("parse contact list: %d groups and contacts: %w (limit %d)", n, ErrTooLarge, 2*MaxResources)
	}
	l := ContactList{Delta: root == "contactDelta", UCSMode: strings.TrimSpace(doc.UCSMode)}
	for _, f := range []struct {
		name string
		v    string
		dst  *uint32
	}{{"deltaNum", doc.DeltaNum, &l.DeltaNum}, {"prevDeltaNum", doc.PrevDeltaNum, &l.PrevDeltaNum}} {
		if v := strings.TrimSpace(f.v); v != "" {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return ContactList{}, fmt.Errorf("parse contact list: %s %q: %w", f.name, truncate(v, 20), err)
			}
			*f.dst = uint32(n)
		}
	}
	groups := func(xs []xmlGroup) []Group {
		var out []Group
		for _, g := range xs {
			out = append(out, Group{ID: strings.TrimSpace(g.ID), Name: g.Name})
		}
		return out
	}
	contacts := func(xs []xmlContact) []Contact {
		var out []Contact
		for _, c := range xs {
			if strings.TrimSpace(c.URI) == "" {
				continue
			}
			sub, _ := strconv.ParseBool(strings.TrimSpace(c.Subscribed))
			var groups []string
			if ids := strings.Fields(c.Groups); len(ids) > 0 {
				groups = ids
			}
			out = append(out, Contact{URI: strings.TrimSpace(c.URI), Name: c.Name, Groups: groups, Subscribed: sub})
		}
		return out
	}
	l.Groups, l.AddedGroups, l.ModifiedGroups, l.DeletedGroups = groups(doc.Groups), groups(doc.AddedGroups), groups(doc.ModifiedGroups), groups(doc.DeletedGroups)
	l.Contacts, l.AddedContacts, l.ModifiedContacts, l.DeletedContacts = contacts(doc.Contacts), contacts(doc.AddedContacts), contacts(doc.ModifiedContacts), contacts(doc.DeletedContacts)
	return l, nil
}

// Marshal writes the roaming contacts document.
func (l ContactList) Marshal() []byte {
	var b bytes.Buffer
	root := "contactList"
	if l.Delta {
		root = "contactDelta"
	}
	b.WriteString("<" + root + ` deltaNum="` + strconv.FormatUint(uint64(l.DeltaNum), 10) + `"`)
	if l.Delta {
		b.WriteString(` prevDeltaNum="` + strconv.FormatUint(uint64(l.PrevDeltaNum), 10) + `"`)
	}
	if l.UCSMode != "" {
		b.WriteString(` ucsmode="`)
		escape(&b, l.UCSMode)
		b.WriteString(`"`)
	}
	b.WriteString(">")
	for _, gs := range []struct {
		el string
		gs []Group
	}{{"group", l.Groups}, {"addedGroup", l.AddedGroups}, {"modifiedGroup", l.ModifiedGroups}, {"deletedGroup", l.DeletedGroups}} {
		for _, g := range gs.gs {
			b.WriteString("<" + gs.el + ` id="`)
			escape(&b, g.ID)
			b.WriteString(`" name="`)
			escape(&b, g.Name)
			b.WriteString(`" externalURI=""/>`)
		}
	}
	for _, cs := range []struct {
		el string
		cs []Contact
	}{{"contact", l.Contacts}, {"addedContact", l.AddedContacts}, {"modifiedContact", l.ModifiedContacts}, {"deletedContact", l.DeletedContacts}} {
		for _, c := range cs.cs {
			b.WriteString("<" + cs.el + ` uri="`)
			escape(&b, c.URI)
			b.WriteString(`" name="`)
			escape(&b, c.Name)
			b.WriteString(`" groups="`)
			escape(&b, strings.Join(c.Groups, " "))
			fmt.Fprintf(&b, `" subscribed="%t" externalURI=""/>`, c.Subscribed)
		}
	}
	b.WriteString("</" + root + ">")
	return b.Bytes()
}
