package im

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// The content types of typing notifications.
const (
	// TypeKeyboardActivity is the Content-Type of the INFO that SfB,
	// Lync and pidgin-sipe send in an IM dialog while the user types.
	TypeKeyboardActivity = "application/xml"
	// TypeIsComposing is RFC 3994's, sent in a MESSAGE by some clients
	// and accepted by all (pidgin-sipe reads its state "active").
	TypeIsComposing = "application/im-iscomposing+xml"
)

// maxTypingBody bounds a typing body; real ones are under 300 bytes.
const maxTypingBody = 4 << 10

// KeyboardActivity is the INFO body for typing (status "type") or having
// stopped (status "idle"), as pidgin-sipe's sipe-user.c writes it.
func KeyboardActivity(typing bool) []byte {
	status := "idle"
	if typing {
		status = "type"
	}
	return []byte(`<?xml version="1.0"?><KeyboardActivity><status status="` + status + `" /></KeyboardActivity>`)
}

// IsComposing is the RFC 3994 body for state active (with a refresh of
// refreshSeconds when positive) or idle.
func IsComposing(typing bool, refreshSeconds int) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\r\n")
	b.WriteString(`<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">`)
	if typing {
		b.WriteString("<state>active</state><contenttype>text/plain</contenttype>")
		if refreshSeconds > 0 {
			fmt.Fprintf(&b, "<refresh>%d</refresh>", refreshSeconds)
		}
	} else {
		b.WriteString("<state>idle</state>")
	}
	b.WriteString("</isComposing>")
	return []byte(b.String())
}

// IsTypingType reports whether a body of content type t (lower-case, no
// parameters) is a typing notification ParseTyping reads.
func IsTypingType(t string) bool { return t == TypeKeyboardActivity || t == TypeIsComposing }

// ParseTyping reads a typing notification of either form and reports
// whether the sender is typing.
func ParseTyping(contentType string, body []byte) (typing bool, err error) {
	ct, err := ParseContentType(contentType)
	if err != nil {
		return false, fmt.Errorf("typing: %w", err)
	}
	if len(body) > maxTypingBody {
		return false, fmt.Errorf("typing body of %d bytes, more than %d: %w", len(body), maxTypingBody, ErrMalformed)
	}
	switch ct.Type {
	case TypeKeyboardActivity:
		var ka struct {
			XMLName xml.Name `xml:"KeyboardActivity"`
			Status  struct {
				Status string `xml:"status,attr"`
			} `xml:"status"`
		}
		if err := decodeXML(body, &ka); err != nil {
			return false, fmt.Errorf("KeyboardActivity: %w", err)
		}
		switch ka.Status.Status {
		case "type":
			return true, nil
		case "idle":
			return false, nil
		}
		return false, fmt.Errorf("KeyboardActivity status %q: %w", truncate(ka.Status.Status), ErrMalformed)
	case TypeIsComposing:
		var ic struct {
			XMLName xml.Name `xml:"urn:ietf:params:xml:ns:im-iscomposing isComposing"`
			State   string   `xml:"state"`
		}
		if err := decodeXML(body, &ic); err != nil {
			return false, fmt.Errorf("isComposing: %w", err)
		}
		switch strings.TrimSpace(ic.State) {
		case "active":
			return true, nil
		case "idle":
			return false, nil
		}
		return false, fmt.Errorf("isComposing state %q: %w", truncate(ic.State), ErrMalformed)
	}
	return false, fmt.Errorf("typing of type %s: %w", ct.Type, ErrUnsupportedType)
}

// decodeXML decodes one document into v and refuses trailing elements.
func decodeXML(body []byte, v any) error {
	d := xml.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%v: %w", err, ErrMalformed)
	}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("after the document: %v: %w", err, ErrMalformed)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return fmt.Errorf("text after the document: %w", ErrMalformed)
			}
		case xml.StartElement:
			return fmt.Errorf("second element %s after the document: %w", t.Name.Local, ErrMalformed)
		}
	}
}
