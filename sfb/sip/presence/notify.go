package presence

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strconv"
	"strings"
)

// Notify is what a presence NOTIFY or BENOTIFY (or the 200 to a SUBSCRIBE
// carrying ms-piggyback-first-notify) says.
type Notify struct {
	// List is the rlmi part: the state of each resource's subscription;
	// nil when the body has none.
	List *List
	// Documents are the categories parts, one per presentity.
	Documents []Categories
	// PartErrors are the parts that could not be read: the others are
	// still good (one bad part never drops its batch).
	PartErrors []error
}

// List is an rlmi list (RFC 4662, MS-PRES 3.4.5.1.3): the resources of a
// batch subscription and the state of each.
type List struct {
	URI       string
	Version   uint32
	FullState bool
	Resources []ListResource
}

// Resource subscription states of an rlmi instance. "resubscribe" asks the
// watcher to subscribe to the resource again, on its own (with a single
// category SUBSCRIBE to the resource's URI) or at PoolFQDN when given.
const (
	InstanceActive      = "active"
	InstancePending     = "pending"
	InstanceTerminated  = "terminated"
	InstanceResubscribe = "resubscribe"
)

// ListResource is one resource of an rlmi list with its first instance.
type ListResource struct {
	URI  string
	Name string
	// State is the instance's state; Reason why it was terminated
	// (rejected, noresource, deactivated, ...).
	State    string
	Reason   string
	PoolFQDN string
	// CID is the Content-ID of the resource's categories part.
	CID string
}

// ParseList reads an rlmi list.
func ParseList(body []byte) (List, error) {
	if err := checkSize("parse rlmi list", body); err != nil {
		return List{}, err
	}
	var doc struct {
		URI       string `xml:"uri,attr"`
		Version   string `xml:"version,attr"`
		FullState string `xml:"fullState,attr"`
		Resources []struct {
			URI       string `xml:"uri,attr"`
			Name      string `xml:"name"`
			Instances []struct {
				State    string `xml:"state,attr"`
				Reason   string `xml:"reason,attr"`
				PoolFQDN string `xml:"poolFqdn,attr"`
				CID      string `xml:"cid,attr"`
			} `xml:"instance"`
		} `xml:"resource"`
	}
	if err := decodeRoot(body, "list", &doc); err != nil {
		return List{}, fmt.Errorf("parse rlmi list: %w", err)
	}
	if len(doc.Resources) > MaxResources {
		return List{}, fmt.Errorf("parse rlmi list of %q: %d resources: %w (limit %d)", truncate(doc.URI, 100), len(doc.Resources), ErrTooLarge, MaxResources)
	}
	l := List{URI: strings.TrimSpace(doc.URI)}
	l.FullState, _ = strconv.ParseBool(strings.TrimSpace(doc.FullState))
	if v := strings.TrimSpace(doc.Version); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return List{}, fmt.Errorf("parse rlmi list of %q: version %q: %w", truncate(doc.URI, 100), truncate(v, 20), err)
		}
		l.Version = uint32(n)
	}
	for _, r := range doc.Resources {
		lr := ListResource{URI: strings.TrimSpace(r.URI), Name: strings.TrimSpace(r.Name)}
		if lr.URI == "" {
			continue
		}
		if len(r.Instances) > 0 {
			in := r.Instances[0]
			lr.State, lr.Reason, lr.PoolFQDN, lr.CID = strings.TrimSpace(in.State), strings.TrimSpace(in.Reason), strings.TrimSpace(in.PoolFQDN), strings.TrimSpace(in.CID)
		}
		l.Resources = append(l.Resources, lr)
	}
	return l, nil
}

// Marshal writes the rlmi list.
func (l List) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(`<list xmlns="` + nsRLMI + `" uri="`)
	escape(&b, l.URI)
	fmt.Fprintf(&b, `" version="%d" fullState="%t">`, l.Version, l.FullState)
	for _, r := range l.Resources {
		b.WriteString(`<resource uri="`)
		escape(&b, r.URI)
		b.WriteString(`">`)
		if r.Name != "" {
			b.WriteString(`<name>`)
			escape(&b, r.Name)
			b.WriteString(`</name>`)
		}
		if r.State != "" || r.Reason != "" || r.PoolFQDN != "" || r.CID != "" {
			b.WriteString(`<instance id="0"`)
			for _, a := range []struct{ name, v string }{{"state", r.State}, {"reason", r.Reason}, {"poolFqdn", r.PoolFQDN}, {"cid", r.CID}} {
				if a.v != "" {
					b.WriteString(" " + a.name + `="`)
					escape(&b, a.v)
					b.WriteString(`"`)
				}
			}
			b.WriteString(`/>`)
		}
		b.WriteString(`</resource>`)
	}
	b.WriteString(`</list>`)
	return b.Bytes()
}

// ParseNotify reads the body of a presence NOTIFY or BENOTIFY by its
// Content-Type: multipart/related with rlmi and categories parts, a
// categories document alone, or an rlmi list alone. Parts of other types
// (text/xml+msrtc.pidf of older servers) are skipped. The error is for a
// body that cannot be read at all; a part that cannot be read is reported
// in PartErrors and the others are kept.
func ParseNotify(contentType string, body []byte) (Notify, error) {
	if err := checkSize("parse presence notification", body); err != nil {
		return Notify{}, err
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return Notify{}, fmt.Errorf("parse presence notification: Content-Type %q: %w", truncate(contentType, 100), err)
	}
	var n Notify
	switch mt {
	case ContentTypeMultipart, "multipart/mixed":
		boundary := params["boundary"]
		if boundary == "" {
			return Notify{}, fmt.Errorf("parse presence notification: %s without a boundary", mt)
		}
		mr := multipart.NewReader(bytes.NewReader(body), boundary)
		for i := 1; ; i++ {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if i == 1 {
					return Notify{}, fmt.Errorf("parse presence notification: part %d: %w", i, err)
				}
				n.PartErrors = append(n.PartErrors, fmt.Errorf("parse presence notification: part %d: %w", i, err))
				break
			}
			if i > MaxResources+1 {
				return n, fmt.Errorf("parse presence notification: more than %d parts: %w", MaxResources+1, ErrTooLarge)
			}
			data, err := io.ReadAll(io.LimitReader(p, MaxBodySize+1))
			if err == nil {
				err = n.addPart(p.Header.Get("Content-Type"), data)
			}
			if err != nil {
				n.PartErrors = append(n.PartErrors, fmt.Errorf("part %d (Content-ID %q): %w", i, truncate(p.Header.Get("Content-ID"), 100), err))
			}
		}
	case ContentTypeEventCategories, ContentTypeRLMI:
		if err := n.addPart(mt, body); err != nil {
			return Notify{}, err
		}
	default:
		return Notify{}, fmt.Errorf("parse presence notification: unsupported Content-Type %q", truncate(mt, 100))
	}
	return n, nil
}

func (n *Notify) addPart(contentType string, data []byte) error {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("Content-Type %q: %w", truncate(contentType, 100), err)
	}
	switch mt {
	case ContentTypeRLMI:
		l, err := ParseList(data)
		if err != nil {
			return err
		}
		if n.List != nil {
			return errors.New("a second rlmi list")
		}
		n.List = &l
	case ContentTypeEventCategories:
		c, err := ParseCategories(data)
		if err != nil {
			return err
		}
		n.Documents = append(n.Documents, c)
	}
	return nil
}

// Marshal writes the notification: a categories document alone when that
// is all it holds, else multipart/related with the rlmi list first (MS-SIP
// 3.3.5.1). It returns the Content-Type to send with the body.
func (n Notify) Marshal() (contentType string, body []byte) {
	if n.List == nil && len(n.Documents) == 1 {
		return ContentTypeEventCategories, n.Documents[0].Marshal()
	}
	var rb [12]byte
	_, _ = rand.Read(rb[:])
	boundary := hex.EncodeToString(rb[:])
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	_ = w.SetBoundary(boundary)
	part := func(cid, ct string, data []byte) {
		h := textproto.MIMEHeader{}
		h.Set("Content-Transfer-Encoding", "binary")
		h.Set("Content-ID", cid)
		h.Set("Content-Type", ct)
		pw, _ := w.CreatePart(h)
		_, _ = pw.Write(data)
		// A blank line closes each part, as from SfB: libpurple's MIME
		// parser (pidgin-sipe's) drops the two bytes before the CRLF that
		// precedes the delimiter, and cut "</list>" to "</lis" without it.
		_, _ = pw.Write([]byte("\r\n"))
	}
	start := ""
	if n.List != nil {
		start = "resourceList"
		part(start, ContentTypeRLMI, n.List.Marshal())
	}
	for _, d := range n.Documents {
		part(strings.TrimPrefix(d.URI, "sip:"), ContentTypeEventCategories, d.Marshal())
	}
	_ = w.Close()
	// The boundary comes last, as in MS-SIP's example and from SfB:
	// libpurple's MIME parser, which pidgin-sipe uses, takes whatever
	// follows the last '=' of the Content-Type as the boundary (and so
	// found no part at all when mime.FormatMediaType sorted it first).
	ct := ContentTypeMultipart + `; type="` + ContentTypeEventCategories + `"`
	if start != "" {
		ct = ContentTypeMultipart + `; type="` + ContentTypeRLMI + `"; start=` + start
	}
	return ct + "; boundary=" + boundary, b.Bytes()
}
