package sipconn

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// rawHeaders are what a malformed message still tells, read from its bytes
// rather than from sipgo's model (which refused it): enough to answer a
// request statelessly (RFC 3261 8.2.6) or to find a response's transaction.
type rawHeaders struct {
	startLine  string
	isResponse bool
	vias       []string
	from, to   string
	callID     string
	cseq       string
	cseqMethod string
	branch     string // of the top Via
}

const maxLoggedStartLine = 200

func rawHeadersOf(raw []byte) rawHeaders {
	var h rawHeaders
	line, _, _ := bytes.Cut(raw, []byte("\r\n"))
	h.startLine = strings.ToValidUTF8(string(line[:min(len(line), maxLoggedStartLine)]), "?")
	h.isResponse = bytes.HasPrefix(line, []byte("SIP/"))
	headers := raw
	if end := bytes.Index(raw, []byte("\r\n\r\n")); end >= 0 {
		headers = raw[:end+2]
	}
	_ = eachHeader(headers, func(name, value []byte) error {
		if bytes.ContainsAny(value, "\r\n") {
			return nil
		}
		v := string(value)
		switch {
		case isHeader(name, "via", "v"):
			// One Via line may carry several comma-separated values; the
			// top one is the first.
			h.vias = append(h.vias, v)
		case isHeader(name, "from", "f"):
			h.from = v
		case isHeader(name, "to", "t"):
			h.to = v
		case isHeader(name, "call-id", "i"):
			h.callID = v
		case isHeader(name, "cseq", ""):
			h.cseq = v
		}
		return nil
	})
	if fields := strings.Fields(h.cseq); len(fields) == 2 {
		h.cseqMethod = strings.ToUpper(fields[1])
	}
	if len(h.vias) > 0 {
		top, _, _ := strings.Cut(h.vias[0], ",")
		for _, p := range strings.Split(top, ";")[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "branch") {
				h.branch = strings.TrimSpace(v)
			}
		}
	}
	return h
}

// response builds a stateless response to the request these headers came
// from: its Via, From, To (tagged), Call-ID and CSeq, no body.
func (h rawHeaders) response(status int, reason string) []byte {
	var b bytes.Buffer
	b.WriteString("SIP/2.0 ")
	b.WriteString(strconv.Itoa(status))
	b.WriteString(" ")
	b.WriteString(reason)
	b.WriteString("\r\n")
	for _, v := range h.vias {
		b.WriteString("Via: " + v + "\r\n")
	}
	if h.from != "" {
		b.WriteString("From: " + h.from + "\r\n")
	}
	if h.to != "" {
		to := h.to
		if !strings.Contains(strings.ToLower(to), ";tag=") {
			to += ";tag=" + sip.GenerateTagN(16)
		}
		b.WriteString("To: " + to + "\r\n")
	}
	if h.callID != "" {
		b.WriteString("Call-ID: " + h.callID + "\r\n")
	}
	b.WriteString("CSeq: " + h.cseq + "\r\n")
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.Bytes()
}
