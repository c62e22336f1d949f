package presence

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Publish is a category publication (application/msrtc-category-publish+xml),
// sent in a SERVICE request to the user's own URI.
type Publish struct {
	// URI is the publisher, with its sip: scheme.
	URI          string
	Publications []Publication
}

// Publication is one category instance to publish. Its Category names it
// (Name, Instance, Container), carries the version the publisher last saw
// (0 for a new instance) and the content; Expires 0 removes the instance.
type Publication struct {
	Category
	// Expires, when not nil, is the expires attribute: 0 removes the
	// instance.
	Expires *int
}

// Expire types of a publication (MS-PRES 2.2.2.2.1).
const (
	ExpireStatic   = "static"
	ExpireEndpoint = "endpoint"
	ExpireUser     = "user"
	ExpireTime     = "time"
)

// Marshal writes the publish document as pidgin-sipe's
// send_presence_publish does.
func (p Publish) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(`<publish xmlns="` + nsRichPresence + `"><publications uri="`)
	escape(&b, p.URI)
	b.WriteString(`">`)
	for _, pub := range p.Publications {
		c := pub.Category
		b.WriteString(`<publication categoryName="`)
		escape(&b, c.Name)
		b.WriteString(`"`)
		instance := uint32(0)
		if c.Instance != nil {
			instance = *c.Instance
		}
		fmt.Fprintf(&b, ` instance="%d" container="%d" version="%d"`, instance, max(c.Container, 0), c.Version)
		if c.ExpireType != "" {
			b.WriteString(` expireType="`)
			escape(&b, c.ExpireType)
			b.WriteString(`"`)
		}
		if pub.Expires != nil {
			fmt.Fprintf(&b, ` expires="%d"`, *pub.Expires)
		}
		if pub.Expires != nil && *pub.Expires == 0 {
			b.WriteString(`/>`)
			continue
		}
		b.WriteString(`>`)
		c.writeContent(&b)
		b.WriteString(`</publication>`)
	}
	b.WriteString(`</publications></publish>`)
	return b.Bytes()
}

// ParsePublish reads a publish document.
func ParsePublish(body []byte) (Publish, error) {
	if err := checkSize("parse publication", body); err != nil {
		return Publish{}, err
	}
	var doc struct {
		Publications struct {
			URI          string `xml:"uri,attr"`
			Publications []struct {
				xmlCategory
				CategoryName string `xml:"categoryName,attr"`
				Expires      string `xml:"expires,attr"`
			} `xml:"publication"`
		} `xml:"publications"`
	}
	if err := decodeRoot(body, "publish", &doc); err != nil {
		return Publish{}, fmt.Errorf("parse publication: %w", err)
	}
	uri := strings.TrimSpace(doc.Publications.URI)
	if len(doc.Publications.Publications) > MaxCategories {
		return Publish{}, fmt.Errorf("parse publication of %q: %d publications: %w (limit %d)", truncate(uri, 100), len(doc.Publications.Publications), ErrTooLarge, MaxCategories)
	}
	out := Publish{URI: uri}
	for i, p := range doc.Publications.Publications {
		p.Name = p.CategoryName
		if p.Instance == "" || p.Container == "" || p.Version == "" {
			return Publish{}, fmt.Errorf("parse publication of %q: publication %d (%q) lacks instance, container or version", truncate(uri, 100), i+1, truncate(p.Name, 40))
		}
		cat, err := p.xmlCategory.convert()
		if err != nil {
			return Publish{}, fmt.Errorf("parse publication of %q: publication %d (%q): %w", truncate(uri, 100), i+1, truncate(p.Name, 40), err)
		}
		pub := Publication{Category: cat}
		if v := strings.TrimSpace(p.Expires); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return Publish{}, fmt.Errorf("parse publication of %q: publication %d (%q): expires %q is not a number of seconds", truncate(uri, 100), i+1, truncate(p.Name, 40), truncate(v, 20))
			}
			pub.Expires = &n
		}
		out.Publications = append(out.Publications, pub)
	}
	return out, nil
}

// FaultWrongDelta is the fault code of a 409 to a publication whose
// version is not the server's current one.
const FaultWrongDelta = "Client.BadCall.WrongDelta"

// Fault is the body of a 409 Conflict to a publication
// (application/msrtc-fault+xml).
type Fault struct {
	Code string
	// Operations are the publications that failed, with the version the
	// server holds.
	Operations []FaultOperation
}

// FaultOperation is one failed publication: Index counts the publish
// document's publications from 1.
type FaultOperation struct {
	Index      int
	Version    uint32
	CurVersion uint32
}

// ParseFault reads a fault.
func ParseFault(body []byte) (Fault, error) {
	if err := checkSize("parse publication fault", body); err != nil {
		return Fault{}, err
	}
	var doc struct {
		Code       string `xml:"Faultcode"`
		Operations []struct {
			Index      string `xml:"index,attr"`
			Version    string `xml:"version,attr"`
			CurVersion string `xml:"curVersion,attr"`
		} `xml:"details>operation"`
	}
	if err := decodeRoot(body, "Fault", &doc); err != nil {
		return Fault{}, fmt.Errorf("parse publication fault: %w", err)
	}
	if len(doc.Operations) > MaxCategories {
		return Fault{}, fmt.Errorf("parse publication fault: %d operations: %w (limit %d)", len(doc.Operations), ErrTooLarge, MaxCategories)
	}
	f := Fault{Code: strings.TrimSpace(doc.Code)}
	for i, op := range doc.Operations {
		idx, err := strconv.Atoi(strings.TrimSpace(op.Index))
		if err != nil || idx < 1 {
			return Fault{}, fmt.Errorf("parse publication fault: operation %d: index %q is not a positive number", i+1, truncate(op.Index, 20))
		}
		var ver, cur uint64
		if v := strings.TrimSpace(op.Version); v != "" {
			if ver, err = strconv.ParseUint(v, 10, 32); err != nil {
				return Fault{}, fmt.Errorf("parse publication fault: operation %d: version %q: %w", i+1, truncate(v, 20), err)
			}
		}
		if cur, err = strconv.ParseUint(strings.TrimSpace(op.CurVersion), 10, 32); err != nil {
			return Fault{}, fmt.Errorf("parse publication fault: operation %d: curVersion %q: %w", i+1, truncate(op.CurVersion, 20), err)
		}
		f.Operations = append(f.Operations, FaultOperation{Index: idx, Version: uint32(ver), CurVersion: uint32(cur)})
	}
	return f, nil
}

// Marshal writes the fault.
func (f Fault) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(`<Fault><Faultcode>`)
	escape(&b, f.Code)
	b.WriteString(`</Faultcode><details>`)
	for _, op := range f.Operations {
		fmt.Fprintf(&b, `<operation index="%d" version="%d" curVersion="%d"/>`, op.Index, op.Version, op.CurVersion)
	}
	b.WriteString(`</details></Fault>`)
	return b.Bytes()
}
