package im

import (
	"fmt"
	"strings"
)

// HeaderEndPoints lists the parties of an IM session in its INVITE, the
// inviter first (pidgin-sipe's get_end_points):
//
//	EndPoints: <sip:alice@contoso.com>, <sip:bob@contoso.com>;epid=ebca82d94d
//
// A 1:1 session has two; more make it a multiparty one.
const HeaderEndPoints = "EndPoints"

// HeaderConversationID names the conversation an IM session belongs to;
// pidgin-sipe sends a random number, SfB clients a GUID-like string.
const HeaderConversationID = "Ms-Conversation-ID"

// maxEndPoints bounds the parties read from one header.
const maxEndPoints = 64

// Endpoint is one party of EndPoints.
type Endpoint struct {
	// URI is the party's address with its scheme ("sip:bob@contoso.com").
	URI string
	// EPID is its endpoint id when given.
	EPID string
}

// ParseEndPoints reads an EndPoints value.
func ParseEndPoints(v string) ([]Endpoint, error) {
	if len(v) > MaxHeaderSize {
		return nil, fmt.Errorf("EndPoints of %d bytes: %w", len(v), ErrMalformed)
	}
	var eps []Endpoint
	rest := v
	for strings.TrimSpace(rest) != "" {
		open := strings.IndexByte(rest, '<')
		if open < 0 {
			return nil, fmt.Errorf("EndPoints entry %q without <uri>: %w", truncate(rest), ErrMalformed)
		}
		end := strings.IndexByte(rest[open:], '>')
		if end < 0 {
			return nil, fmt.Errorf("EndPoints entry %q: unterminated <uri>: %w", truncate(rest[open:]), ErrMalformed)
		}
		uri := strings.TrimSpace(rest[open+1 : open+end])
		if !strings.HasPrefix(strings.ToLower(uri), "sip:") || len(uri) == len("sip:") {
			return nil, fmt.Errorf("EndPoints URI %q: %w", truncate(uri), ErrMalformed)
		}
		rest = rest[open+end+1:]
		params, next, _ := strings.Cut(rest, ",")
		rest = next
		ep := Endpoint{URI: uri}
		for p := range strings.SplitSeq(params, ";") {
			name, value, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(name, "epid") {
				ep.EPID = strings.Trim(value, `"`)
			}
		}
		if len(eps) == maxEndPoints {
			return nil, fmt.Errorf("EndPoints with more than %d parties: %w", maxEndPoints, ErrMalformed)
		}
		eps = append(eps, ep)
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("empty EndPoints: %w", ErrMalformed)
	}
	return eps, nil
}

// FormatEndPoints writes an EndPoints value.
func FormatEndPoints(eps []Endpoint) string {
	parts := make([]string, len(eps))
	for i, ep := range eps {
		parts[i] = "<" + ep.URI + ">"
		if ep.EPID != "" {
			parts[i] += ";epid=" + ep.EPID
		}
	}
	return strings.Join(parts, ", ")
}
