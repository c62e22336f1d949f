package sim

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// The contact list as a SIP client changes it: SOAP requests in SERVICE
// (application/SOAP+xml, pidgin-sipe's sip-soap.c): addGroup, modifyGroup,
// deleteGroup, setContact and deleteContact. They change the same list as
// SetContacts, so UCWA applications and roaming-contacts subscribers hear
// of them. Groups are numbered by position, as myGroups numbers them.

const contentTypeSOAP = "application/soap+xml"

// maxSOAPBody bounds a contact-list request.
const maxSOAPBody = 64 << 10

// soapOperation is the element in a SOAP body: its name is the operation,
// its children the arguments pidgin-sipe writes.
type soapOperation struct {
	XMLName     xml.Name
	Name        string `xml:"name"`
	GroupID     string `xml:"groupID"`
	DisplayName string `xml:"displayName"`
	Groups      string `xml:"groups"`
	URI         string `xml:"URI"`
}

// sipContactListRequest applies a SOAP contact-list request of ep's user.
// The caller does not hold s.mu.
func (s *Server) sipContactListRequest(ep *sipPresenceEP, req *sip.Request) sipAnswer {
	op, err := parseSOAP(req.Body())
	if err != nil {
		s.log.Debug().Err(err).Stringer("user", ep.user.uri).Msg("SIP contact-list request refused")
		return s.sipRefusal(400, "Bad Request", 1000, "Unreadable SOAP request")
	}
	s.mu.Lock()
	groups := slices.Clone(ep.user.state().groups)
	for i := range groups {
		groups[i].Members = slices.Clone(groups[i].Members)
	}
	s.mu.Unlock()
	groups, reply, err := applySOAP(groups, op)
	if err == nil {
		err = s.SetContacts(ep.user.uri, groups)
	}
	if err != nil {
		s.log.Debug().Err(err).Stringer("user", ep.user.uri).Str("operation", op.XMLName.Local).Msg("SIP contact-list request refused")
		return s.sipRefusal(400, "Bad Request", 1000, err.Error())
	}
	a := sipAnswer{status: 200, reason: "OK"}
	if reply != "" {
		a.body = []byte(`<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body>` + reply + `</SOAP-ENV:Body></SOAP-ENV:Envelope>`)
		a.headers = []sip.Header{sip.NewHeader("Content-Type", "application/SOAP+xml")}
	}
	return a
}

func parseSOAP(body []byte) (soapOperation, error) {
	if len(body) > maxSOAPBody {
		return soapOperation{}, fmt.Errorf("SOAP request of %d bytes (limit %d)", len(body), maxSOAPBody)
	}
	var env struct {
		XMLName xml.Name
		Body    struct {
			Operations []soapOperation `xml:",any"`
		} `xml:"Body"`
	}
	if err := xml.NewDecoder(bytes.NewReader(body)).Decode(&env); err != nil {
		return soapOperation{}, fmt.Errorf("SOAP request: %w", err)
	}
	if env.XMLName.Local != "Envelope" || len(env.Body.Operations) != 1 {
		return soapOperation{}, errors.New("SOAP request: want an Envelope with one operation in its Body")
	}
	return env.Body.Operations[0], nil
}

// applySOAP is groups after op, and the operation's reply element.
func applySOAP(groups []ContactGroup, op soapOperation) ([]ContactGroup, string, error) {
	group := func() (int, error) {
		i, err := strconv.Atoi(strings.TrimSpace(op.GroupID))
		if err != nil || i < 1 || i > len(groups) {
			return 0, fmt.Errorf("%s: no group %q", op.XMLName.Local, op.GroupID)
		}
		return i - 1, nil
	}
	switch op.XMLName.Local {
	case "addGroup":
		name := strings.TrimSpace(op.Name)
		if i := slices.IndexFunc(groups, func(g ContactGroup) bool { return g.Name == name }); i >= 0 {
			return groups, addGroupReply(i), nil
		}
		groups = append(groups, ContactGroup{Name: name})
		return groups, addGroupReply(len(groups) - 1), nil
	case "modifyGroup":
		i, err := group()
		if err != nil {
			return nil, "", err
		}
		groups[i].Name = strings.TrimSpace(op.Name)
	case "deleteGroup":
		i, err := group()
		if err != nil {
			return nil, "", err
		}
		groups = slices.Delete(groups, i, i+1)
	case "setContact", "deleteContact":
		uri, err := sfb.ParseURI(strings.TrimSpace(op.URI))
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", op.XMLName.Local, err)
		}
		in := map[int]bool{}
		if op.XMLName.Local == "setContact" {
			for _, id := range strings.Fields(op.Groups) {
				op.GroupID = id
				i, err := group()
				if err != nil {
					return nil, "", err
				}
				in[i] = true
			}
		}
		for i := range groups {
			has := slices.Contains(groups[i].Members, uri)
			switch {
			case in[i] && !has:
				groups[i].Members = append(groups[i].Members, uri)
			case !in[i] && has:
				groups[i].Members = slices.DeleteFunc(groups[i].Members, func(m sfb.URI) bool { return m == uri })
			}
		}
	default:
		return nil, "", fmt.Errorf("unknown SOAP operation %q", op.XMLName.Local)
	}
	return groups, "", nil
}

func addGroupReply(i int) string {
	return `<m:addGroup xmlns:m="http://schemas.microsoft.com/winrtc/2002/11/sip"><m:groupID>` + strconv.Itoa(i+1) + `</m:groupID></m:addGroup>`
}
