// Package sipconn carries SIP over one reliable stream (TLS, or TCP towards
// loopback): framing with sipgo's stream parser, client transactions matched
// to their responses, requests from the peer handed to a handler, and the
// keep-alive SfB endpoints use. Both the transport (sfb/sip) and the
// simulator's SIP front end use it: one Conn per connection, whoever dialled.
//
// It knows nothing of registrations, authentication or dialogs: a caller
// builds and signs each request (the signature does not cover Via, which
// Conn adds) and verifies what arrives.
package sipconn

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
)

// ErrClosed is returned by a Conn that is closed or whose stream ended.
var ErrClosed = errors.New("sip connection closed")

// ErrTimeout means no final response came within the transaction timeout
// (RFC 3261 Timer B/F, 64*T1 = 32 s by default).
var ErrTimeout = errors.New("sip transaction timed out")

// Handler receives a request from the peer. It is called from the
// connection's reader, one request at a time in the order they arrived, so
// it must not block: it answers at once or hands the request to a queue of
// its own (per endpoint, to keep each endpoint's order) and answers later
// with Conn.Respond. Every request but ACK must get exactly one final
// response.
type Handler func(c *Conn, req *sip.Request)

// Options configure a Conn. Zero values take the defaults given.
type Options struct {
	Logger  zerolog.Logger
	Handler Handler
	// MaxOutstanding bounds the client transactions in flight; Do waits
	// for a slot. 0 means no bound. SfB per-user endpoints use 20.
	MaxOutstanding int
	// KeepAlive, when set, sends a CRLFCRLF ping (RFC 5626) after that
	// long without traffic, as SfB clients do; a peer's ping is always
	// answered with CRLF.
	KeepAlive time.Duration
	// TransactionTimeout is how long Do waits for a final response;
	// default 32 s.
	TransactionTimeout time.Duration
	// MaxMessageSize refuses larger messages (answered 513 when they are
	// requests, the stream dropped when the framing cannot be trusted);
	// default 1 MiB.
	MaxMessageSize int
}

// Conn is one SIP connection. All methods are safe for concurrent use.
type Conn struct {
	nc   net.Conn
	opts Options
}

// New starts reading nc. A request that cannot be parsed but whose framing
// holds (start line, Via, CSeq and Content-Length readable) is answered 400
// and the stream goes on; the connection is closed only when the framing
// itself is lost.
func New(ctx context.Context, nc net.Conn, opts Options) *Conn {
	panic("sipconn: not implemented yet")
}

// Do sends req as a client transaction and returns its final response.
// When req has no Via, Do adds one with this connection's local address, its
// transport (TLS or TCP) and a fresh branch; provisional responses are
// skipped. ACK is not a transaction: use Send.
func (c *Conn) Do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	panic("sipconn: not implemented yet")
}

// Send writes a message without waiting for anything: an ACK, or a
// response built by the caller.
func (c *Conn) Send(msg sip.Message) error {
	panic("sipconn: not implemented yet")
}

// Respond answers a request the handler received.
func (c *Conn) Respond(req *sip.Request, status int, reason string, body []byte, headers ...sip.Header) error {
	panic("sipconn: not implemented yet")
}

// Transport is "TLS" or "TCP", as Via writes it.
func (c *Conn) Transport() string { panic("sipconn: not implemented yet") }

// LocalAddr and RemoteAddr are the stream's addresses.
func (c *Conn) LocalAddr() net.Addr  { return c.nc.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Done is closed when the connection ended; Err then says why.
func (c *Conn) Done() <-chan struct{} { panic("sipconn: not implemented yet") }
func (c *Conn) Err() error            { panic("sipconn: not implemented yet") }

// Close ends the connection; transactions in flight fail with ErrClosed.
func (c *Conn) Close() error { panic("sipconn: not implemented yet") }
