package sipconn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// The framing is ours rather than sip.ParserStream's: the stream parser
// cannot skip a message it failed to parse. After a bad start line or a bad
// header its state is left in the middle of the message (the next call reads
// the following header line as a start line, or the rest of the headers into
// the half-built message), and a message without Content-Length leaves its
// headers consumed and its end unknown. A stream shared by thousands of
// endpoints must answer such a message 400 and read on, so the framer finds
// each message's end itself (the blank line, then Content-Length or its
// compact form "l") and hands the whole message to sip.Parser.
//
// errFraming means the message boundaries can no longer be found; the
// connection must be closed.
var errFraming = errors.New("sip framing lost")

const (
	initialReadBuffer = 4 << 10
	// A buffer grown for a large message is given back once it is empty.
	keptReadBuffer = 64 << 10
	// Content-Length beyond 10 digits cannot be a length we would read.
	maxLengthDigits = 10
)

type frameKind int

const (
	frameNone     frameKind = iota // more bytes are needed
	framePing                      // CRLFCRLF keep-alive between messages
	frameMessage                   // raw holds one whole message
	frameTooLarge                  // raw holds the headers of a refused message; its body is skipped
)

type frame struct {
	kind frameKind
	// raw aliases the read buffer: it is valid until the next call to next
	// or fill.
	raw []byte
	// noLength: the headers carry no Content-Length; the body is taken as
	// empty, and the message is malformed on a stream (RFC 3261 18.3).
	noLength bool
}

// framer cuts a byte stream into SIP messages.
type framer struct {
	max     int
	buf     []byte
	r, w    int // buf[r:w] is unread
	scanned int // bytes of buf[r:w] already searched for the blank line
	skip    int // body bytes of a refused message still to discard
	want    int // length of the message at r once its headers are read
	noLen   bool
	crlfs   int // CRLFs seen since the last message
}

// fill reads once from rd into the buffer.
func (f *framer) fill(rd io.Reader) (int, error) {
	if f.r == f.w {
		f.r, f.w, f.scanned = 0, 0, 0
		if cap(f.buf) > keptReadBuffer {
			f.buf = nil
		}
	}
	if f.buf == nil {
		f.buf = make([]byte, initialReadBuffer)
	}
	if f.w == len(f.buf) {
		if f.r > 0 {
			n := copy(f.buf, f.buf[f.r:f.w])
			f.r, f.w = 0, n
		} else {
			// A message that has not ended yet fills the buffer: grow it,
			// bounded because next refuses headers beyond max.
			nb := make([]byte, 2*len(f.buf))
			copy(nb, f.buf[:f.w])
			f.buf = nb
		}
	}
	n, err := rd.Read(f.buf[f.w:])
	f.w += n
	return n, err
}

// reserve makes room for a message of n bytes starting at r.
func (f *framer) reserve(n int) {
	if len(f.buf)-f.r >= n {
		return
	}
	if len(f.buf) >= n {
		m := copy(f.buf, f.buf[f.r:f.w])
		f.r, f.w = 0, m
		return
	}
	nb := make([]byte, n)
	m := copy(nb, f.buf[f.r:f.w])
	f.buf, f.r, f.w = nb, 0, m
}

// next returns the next frame in the buffer, frameNone when it needs more
// bytes, or errFraming.
func (f *framer) next() (frame, error) {
	if f.skip > 0 {
		n := min(f.skip, f.w-f.r)
		f.consume(n)
		f.skip -= n
		if f.skip > 0 {
			return frame{}, nil
		}
	}
	for f.w-f.r >= 2 && f.buf[f.r] == '\r' && f.buf[f.r+1] == '\n' {
		f.consume(2)
		f.crlfs++
		if f.crlfs == 2 {
			f.crlfs = 0
			return frame{kind: framePing}, nil
		}
	}
	if f.w-f.r < 2 {
		return frame{}, nil
	}
	f.crlfs = 0
	data := f.buf[f.r:f.w]
	if f.want > 0 {
		if len(data) < f.want {
			return frame{}, nil
		}
		raw := data[:f.want]
		fr := frame{kind: frameMessage, raw: raw, noLength: f.noLen}
		f.consume(len(raw))
		return fr, nil
	}
	from := max(0, f.scanned-3)
	end := bytes.Index(data[from:], []byte("\r\n\r\n"))
	if end < 0 {
		if len(data) > f.max {
			return frame{}, fmt.Errorf("%w: no end of headers within %d bytes", errFraming, f.max)
		}
		f.scanned = len(data)
		return frame{}, nil
	}
	headerLen := from + end + 4
	length, found, err := contentLength(data[:headerLen-2])
	if err != nil {
		return frame{}, err
	}
	if headerLen+length > f.max {
		raw := data[:headerLen]
		f.consume(headerLen)
		f.skip = length
		return frame{kind: frameTooLarge, raw: raw}, nil
	}
	if len(data) < headerLen+length {
		f.reserve(headerLen + length)
		f.want, f.noLen = headerLen+length, !found
		return frame{}, nil
	}
	raw := data[:headerLen+length]
	f.consume(len(raw))
	return frame{kind: frameMessage, raw: raw, noLength: !found}, nil
}

func (f *framer) consume(n int) {
	f.r += n
	f.scanned, f.want, f.noLen = 0, 0, false
}

// contentLength reads Content-Length (or "l") from a header section. Two
// differing values, or a value that is not a number, lose the framing: a
// peer and a proxy could each pick a different one.
func contentLength(headers []byte) (length int, found bool, err error) {
	err = eachHeader(headers, func(name, value []byte) error {
		if !isHeader(name, "content-length", "l") {
			return nil
		}
		if len(value) == 0 || len(value) > maxLengthDigits {
			return fmt.Errorf("%w: Content-Length %q", errFraming, value)
		}
		n := 0
		for _, c := range value {
			if c < '0' || c > '9' {
				return fmt.Errorf("%w: Content-Length %q", errFraming, value)
			}
			n = n*10 + int(c-'0')
		}
		if found && n != length {
			return fmt.Errorf("%w: Content-Length %d and %d", errFraming, length, n)
		}
		length, found = n, true
		return nil
	})
	return length, found, err
}

// eachHeader calls fn with each header's name and value (folded lines
// joined, surrounding whitespace trimmed), skipping the start line. Lines
// without a colon are passed with an empty name.
func eachHeader(headers []byte, fn func(name, value []byte) error) error {
	lines := bytes.Split(headers, []byte("\r\n"))
	if len(lines) < 2 {
		return nil
	}
	lines = lines[1:]
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		for i+1 < len(lines) && len(lines[i+1]) > 0 && (lines[i+1][0] == ' ' || lines[i+1][0] == '\t') {
			i++
			line = append(append(bytes.Clone(line), ' '), bytes.TrimLeft(lines[i], " \t")...)
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			name, value = nil, line
		}
		if err := fn(bytes.TrimSpace(name), bytes.TrimSpace(value)); err != nil {
			return err
		}
	}
	return nil
}

func isHeader(name []byte, long, compact string) bool {
	return bytes.EqualFold(name, []byte(long)) || (compact != "" && bytes.EqualFold(name, []byte(compact)))
}
