package presence

import (
	"strconv"
)

// What a client publishes about its own user (pidgin-sipe's
// sipe-ocs2007.c, Communicator's "Category Instances Published"): the user
// state it was told, its machine state, and the personal note, each in the
// containers it belongs in.

// Machine states Communicator publishes (MS-PRES "Machine States"): Active
// while the user uses the endpoint, Inactive after 5 minutes without use,
// Away 15 minutes after that.
const (
	MachineActive   = 3500
	MachineInactive = 5000
	MachineAway     = 15500
)

// InstanceUserState is the fixed instance of the user state.
const InstanceUserState = 0x20000000

// Containers: 2 and 3 are the aggregation containers the states are
// published into; 100 (external contacts), 200 (colleagues), 300
// (workgroup) and 400 (friends and family) are what watchers see, and the
// note goes into 200, 300 and 400.
var (
	StateContainers = []int{2, 3}
	NoteContainers  = []int{200, 300, 400}
)

// MachineStateInstance is the instance of the endpoint's machine state,
// derived from its epid as pidgin-sipe's sipe_get_pub_instance does:
// the epid's first 32 bits shifted right by 4, with 0x3 as first hex digit.
func MachineStateInstance(epid string) uint32 {
	n := epid
	if len(n) > 8 {
		n = n[:8]
	}
	v, _ := strconv.ParseUint(n, 16, 32)
	return uint32(v)>>4 | 0x30000000
}

// Key names one category instance of the user's: its version is kept per
// key.
type Key struct {
	Name      string
	Instance  uint32
	Container int
}

// KeyOf is c's key; a category without an instance has instance 0.
func KeyOf(c Category) Key {
	k := Key{Name: c.Name, Container: c.Container}
	if c.Instance != nil {
		k.Instance = *c.Instance
	}
	return k
}

// Versions are the versions of the user's category instances as the
// server last said; a missing key is version 0 (a new instance).
type Versions map[Key]uint32

func (v Versions) publication(name string, instance uint32, container int, expireType string) Publication {
	inst := instance
	k := Key{Name: name, Instance: instance, Container: container}
	return Publication{Category: Category{Name: name, Instance: &inst, Container: container, Version: v[k], ExpireType: expireType}}
}

// UserState is the publication of the user state availability (one of
// PublishNumber's) into both aggregation containers, manual, as
// pidgin-sipe's SIPE_PUB_XML_STATE_USER.
func (v Versions) UserState(availability int) []Publication {
	var out []Publication
	for _, c := range StateContainers {
		p := v.publication("state", InstanceUserState, c, ExpireStatic)
		p.State = &State{Type: "userState", Manual: true, Availability: availability, EndpointLocation: true}
		out = append(out, p)
	}
	return out
}

// MachineState is the publication of the endpoint's machine state
// (MachineActive, MachineInactive, MachineAway), which lasts as long as
// the endpoint (SIPE_PUB_XML_STATE_MACHINE).
func (v Versions) MachineState(instance uint32, availability int) []Publication {
	var out []Publication
	for _, c := range StateContainers {
		p := v.publication("state", instance, c, ExpireEndpoint)
		p.State = &State{Type: "machineState", Availability: availability, EndpointLocation: true}
		out = append(out, p)
	}
	return out
}

// Note is the publication of the personal note into the containers
// watchers see; an empty text removes it (expires="0", pidgin-sipe's
// SIPE_PUB_XML_PUBLICATION_CLEAR).
func (v Versions) Note(text string) []Publication {
	var out []Publication
	for _, c := range NoteContainers {
		p := v.publication("note", 0, c, ExpireStatic)
		if text == "" {
			zero := 0
			p.Expires = &zero
		} else {
			p.Note = &Note{Type: NotePersonal, Text: text}
		}
		out = append(out, p)
	}
	return out
}

// Learn takes the versions of the categories in doc (a roaming-self
// document, or the categories of a 200 to a publication).
func (v Versions) Learn(doc Categories) {
	for _, c := range doc.Categories {
		if c.Instance == nil || c.Container == NoContainer {
			continue
		}
		v[KeyOf(c)] = c.Version
	}
}

// Conflict takes the server's versions from the fault of a 409 to pub: an
// operation's index counts pub's publications from 1. It reports whether
// the fault named any of them.
func (v Versions) Conflict(pub Publish, f Fault) bool {
	named := false
	for _, op := range f.Operations {
		if op.Index < 1 || op.Index > len(pub.Publications) {
			continue
		}
		v[KeyOf(pub.Publications[op.Index-1].Category)] = op.CurVersion
		named = true
	}
	return named
}

// Published records that the server took pub: each instance is one
// version up (a removed one is gone).
func (v Versions) Published(pub Publish) {
	for _, p := range pub.Publications {
		k := KeyOf(p.Category)
		if p.Expires != nil && *p.Expires == 0 {
			delete(v, k)
			continue
		}
		v[k] = p.Version + 1
	}
}
