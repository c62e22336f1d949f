package sipae

import (
	"fmt"
	"strconv"
	"strings"
)

// Fields are the parts of a SIP message that MS-SIPAE signs.
type Fields struct {
	CallID      string
	CSeq        uint32
	Method      string // of the CSeq header, also in responses
	FromURI     string
	FromTag     string
	ToURI       string
	ToTag       string
	AssertedID  string // sip: URI of P-Asserted-Identity (or P-Preferred-Identity)
	AssertedTel string // tel: URI of the same header
	Expires     string // the Expires header, verbatim
	StatusCode  int    // 0 for requests
}

// compactName is RFC 3261's compact form of a signed header.
func compactName(name string) string {
	switch name {
	case "Call-ID":
		return "i"
	case "From":
		return "f"
	case "To":
		return "t"
	}
	return ""
}

// FieldsFrom reads the signed fields of a SIP message through header,
// which returns the first value of a header by its canonical name ("" when
// absent); the compact forms of Call-ID, From and To are asked for too.
// status is the response code, 0 for a request.
func FieldsFrom(header func(name string) string, status int) (Fields, error) {
	get := func(name string) string {
		if v := header(name); v != "" {
			return strings.TrimSpace(v)
		}
		if c := compactName(name); c != "" {
			return strings.TrimSpace(header(c))
		}
		return ""
	}
	f := Fields{CallID: get("Call-ID"), Expires: get("Expires"), StatusCode: status}
	if f.CallID == "" {
		return f, fmt.Errorf("sipae: signing a message without Call-ID")
	}
	num, method, ok := strings.Cut(get("CSeq"), " ")
	n, err := strconv.ParseUint(num, 10, 32)
	if !ok || err != nil {
		return f, fmt.Errorf("sipae: CSeq %q", get("CSeq"))
	}
	f.CSeq, f.Method = uint32(n), strings.TrimSpace(method)
	if f.FromURI, f.FromTag, err = nameAddr(get("From")); err != nil {
		return f, fmt.Errorf("sipae: From: %w", err)
	}
	if f.ToURI, f.ToTag, err = nameAddr(get("To")); err != nil {
		return f, fmt.Errorf("sipae: To: %w", err)
	}
	id := get("P-Asserted-Identity")
	if id == "" {
		id = get("P-Preferred-Identity")
	}
	f.AssertedID, f.AssertedTel = assertedIdentity(id)
	return f, nil
}

// nameAddr returns the URI and the tag of a From or To value, either
// `"Name" <uri>;tag=x` or `uri;tag=x`.
func nameAddr(v string) (uri, tag string, err error) {
	if v == "" {
		return "", "", fmt.Errorf("missing")
	}
	params := v
	if open := strings.IndexByte(v, '<'); open >= 0 {
		end := strings.IndexByte(v[open:], '>')
		if end < 0 {
			return "", "", fmt.Errorf("%q: no closing '>'", v)
		}
		uri, params = v[open+1:open+end], v[open+end+1:]
	} else {
		uri, params, _ = strings.Cut(v, ";")
		params = ";" + params
	}
	for _, p := range strings.Split(params, ";") {
		if name, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(name, "tag") {
			tag = val
		}
	}
	return strings.TrimSpace(uri), tag, nil
}

// assertedIdentity splits P-Asserted-Identity into its sip: and tel: URIs,
// as pidgin-sipe's sipmsg_parse_p_asserted_identity does (a bare tel: URI
// is taken whole).
func assertedIdentity(v string) (sip, tel string) {
	if len(v) >= 4 && strings.EqualFold(v[:4], "tel:") {
		return "", v
	}
	for _, part := range strings.Split(v, ",") {
		open := strings.IndexByte(part, '<')
		end := strings.IndexByte(part, '>')
		if open < 0 || end < open {
			continue
		}
		uri := part[open+1 : end]
		switch {
		case len(uri) >= 4 && strings.EqualFold(uri[:4], "sip:") && sip == "":
			sip = uri
		case len(uri) >= 4 && strings.EqualFold(uri[:4], "tel:") && tel == "":
			tel = uri
		}
	}
	return sip, tel
}

// signatureBuffer is the string MS-SIPAE signs (the
// layout of pidgin-sipe's sipmsg_breakdown_get_string in sipmsg.c):
// protocol, rand, num, realm, targetname, Call-ID, CSeq number and method,
// From URI and tag, To URI and tag (version 3 and later; before, the To tag
// only), the asserted sip: and tel: identities (version 3 and later),
// Expires, each in angle brackets, then the response code in brackets for
// responses.
func signatureBuffer(version int, protocol, rand string, num uint32, realm, target string, f Fields) []byte {
	parts := []string{protocol, rand, strconv.FormatUint(uint64(num), 10), realm, target,
		f.CallID, strconv.FormatUint(uint64(f.CSeq), 10), f.Method, f.FromURI, f.FromTag}
	if version >= 3 {
		parts = append(parts, f.ToURI, f.ToTag, f.AssertedID, f.AssertedTel)
	} else {
		parts = append(parts, f.ToTag)
	}
	parts = append(parts, f.Expires)
	var b strings.Builder
	for _, p := range parts {
		b.WriteByte('<')
		b.WriteString(p)
		b.WriteByte('>')
	}
	if f.StatusCode != 0 {
		fmt.Fprintf(&b, "<%d>", f.StatusCode)
	}
	return []byte(b.String())
}
