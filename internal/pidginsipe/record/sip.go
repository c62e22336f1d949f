package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// message is one SIP message as it came off (or went onto) the wire: the
// raw bytes are kept for the fixtures, the parsed parts for answering.
type message struct {
	raw     []byte
	start   string
	headers [][2]string
	body    []byte
}

func (m *message) isRequest() bool { return !strings.HasPrefix(m.start, "SIP/2.0 ") }

// method is the request's method, or the CSeq method of a response.
func (m *message) method() string {
	if m.isRequest() {
		method, _, _ := strings.Cut(m.start, " ")
		return method
	}
	_, method, _ := strings.Cut(m.get("CSeq"), " ")
	return strings.TrimSpace(method)
}

func (m *message) status() int {
	if m.isRequest() {
		return 0
	}
	code, _ := strconv.Atoi(strings.Fields(m.start)[1])
	return code
}

var compact = map[string]string{"i": "call-id", "f": "from", "t": "to", "v": "via", "m": "contact", "l": "content-length", "c": "content-type", "k": "supported", "o": "event"}

func canonical(name string) string {
	n := strings.ToLower(name)
	if long, ok := compact[n]; ok {
		return long
	}
	return n
}

// get returns the first value of a header (compact forms included).
func (m *message) get(name string) string {
	want := canonical(name)
	for _, h := range m.headers {
		if canonical(h[0]) == want {
			return h[1]
		}
	}
	return ""
}

func (m *message) all(name string) []string {
	var vals []string
	want := canonical(name)
	for _, h := range m.headers {
		if canonical(h[0]) == want {
			vals = append(vals, h[1])
		}
	}
	return vals
}

// readMessage reads one message, skipping the CRLF keep-alives between
// messages.
func readMessage(r *bufio.Reader) (*message, error) {
	var head bytes.Buffer
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if head.Len() == 0 && strings.TrimSpace(line) == "" {
			continue
		}
		head.WriteString(line)
		if line == "\r\n" || line == "\n" {
			break
		}
	}
	m := &message{}
	lines := strings.Split(strings.TrimRight(head.String(), "\r\n"), "\r\n")
	m.start = lines[0]
	for _, l := range lines[1:] {
		if (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) && len(m.headers) > 0 {
			m.headers[len(m.headers)-1][1] += " " + strings.TrimSpace(l)
			continue
		}
		name, val, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("header line %q", l)
		}
		m.headers = append(m.headers, [2]string{strings.TrimSpace(name), strings.TrimSpace(val)})
	}
	n, _ := strconv.Atoi(m.get("Content-Length"))
	if n > 0 {
		m.body = make([]byte, n)
		if _, err := io.ReadFull(r, m.body); err != nil {
			return nil, err
		}
	}
	m.raw = append(head.Bytes(), m.body...)
	return m, nil
}

// build formats a message from its parts, setting Content-Length.
func build(start string, headers [][2]string, body []byte) *message {
	var b bytes.Buffer
	b.WriteString(start + "\r\n")
	for _, h := range headers {
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	b.Write(body)
	return &message{raw: b.Bytes(), start: start, headers: append(headers, [2]string{"Content-Length", strconv.Itoa(len(body))}), body: body}
}

// param returns a ;name=value parameter of a header value.
func param(v, name string) string {
	for _, p := range strings.Split(v, ";")[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, name) {
			return strings.Trim(val, `"`)
		}
	}
	return ""
}
