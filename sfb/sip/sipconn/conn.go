// Package sipconn carries SIP over one reliable stream (TLS, or TCP towards
// loopback): framing, sipgo's message model, client transactions matched
// to their responses, requests from the peer handed to a handler, and the
// keep-alive SfB endpoints use. Both the transport (sfb/sip) and the
// simulator's SIP front end use it: one Conn per connection, whoever dialled.
//
// It knows nothing of registrations, authentication or dialogs: a caller
// builds and signs each request (the signature does not cover Via, which
// Conn adds) and verifies what arrives.
//
// The framing is the package's own (frame.go says why sipgo's stream parser
// could not keep a stream going past a malformed message); each framed
// message is parsed by sipgo's sip.Parser into its message model.
//
// A Conn costs one goroutine (its reader) and a 4 KiB read buffer while
// idle; transactions are entries in a map, waited for by the goroutine that
// called Do. Writes are queued and written by a goroutine that lives only
// while the queue is not empty, so the reader (and a handler answering on
// it) never blocks on a peer that is slow to read.
package sipconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
)

// ErrClosed is returned by a Conn that is closed or whose stream ended.
var ErrClosed = errors.New("sip connection closed")

// ErrTimeout means no final response came within the transaction timeout
// (RFC 3261 Timer B/F, 64*T1 = 32 s by default).
var ErrTimeout = errors.New("sip transaction timed out")

// ErrMalformedResponse (an addition to the first API) is returned by Do when
// the response that matches the transaction (by its top Via branch and CSeq
// method, read from the raw message) could not be parsed.
var ErrMalformedResponse = errors.New("malformed sip response")

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
	// WriteTimeout (an addition to the first API) bounds one write to the
	// stream; a peer that reads nothing for that long has its connection
	// closed. Default 15 s.
	WriteTimeout time.Duration
}

const (
	defaultTransactionTimeout = 64 * 500 * time.Millisecond
	defaultMaxMessageSize     = 1 << 20
	defaultWriteTimeout       = 15 * time.Second
)

var (
	crlfPing = []byte("\r\n\r\n")
	crlfPong = []byte("\r\n")
)

// Conn is one SIP connection. All methods are safe for concurrent use.
type Conn struct {
	nc        net.Conn
	opts      Options
	log       zerolog.Logger
	parser    *sip.Parser
	transport string
	viaHost   string
	viaPort   int
	slots     chan struct{}

	mu     sync.Mutex
	txs    map[txKey]*transaction
	closed bool
	err    error

	wmu      sync.Mutex
	queue    [][]byte
	flushing bool

	lastTraffic atomic.Int64 // unix nanoseconds
	keepAlive   *time.Timer
	stopCtx     func() bool
	done        chan struct{}
}

type txKey struct {
	branch string
	method string
}

type transaction struct {
	result chan txResult // buffered 1
}

type txResult struct {
	res *sip.Response
	err error
}

// New starts reading nc. A request that cannot be parsed but whose framing
// holds (start line, Via, CSeq and Content-Length readable) is answered 400
// and the stream goes on; the connection is closed only when the framing
// itself is lost.
func New(ctx context.Context, nc net.Conn, opts Options) *Conn {
	if opts.TransactionTimeout <= 0 {
		opts.TransactionTimeout = defaultTransactionTimeout
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = defaultMaxMessageSize
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = defaultWriteTimeout
	}
	c := &Conn{
		nc:        nc,
		opts:      opts,
		log:       opts.Logger.With().Str("remote", nc.RemoteAddr().String()).Logger(),
		transport: "TCP",
		txs:       make(map[txKey]*transaction),
		done:      make(chan struct{}),
	}
	c.parser = sip.NewParser()
	c.parser.MaxMessageLength = opts.MaxMessageSize
	if _, ok := nc.(interface{ ConnectionState() tls.ConnectionState }); ok {
		c.transport = "TLS"
	}
	c.viaHost = nc.LocalAddr().String()
	if host, port, err := net.SplitHostPort(c.viaHost); err == nil {
		c.viaHost = host
		c.viaPort, _ = strconv.Atoi(port)
	}
	if opts.MaxOutstanding > 0 {
		c.slots = make(chan struct{}, opts.MaxOutstanding)
	}
	c.touch()
	// Under mu: both callbacks may run before New returns, and fail and
	// ping read these fields.
	c.mu.Lock()
	c.stopCtx = context.AfterFunc(ctx, func() {
		c.fail(fmt.Errorf("%w: %w", ErrClosed, context.Cause(ctx)))
	})
	if opts.KeepAlive > 0 {
		c.keepAlive = time.AfterFunc(opts.KeepAlive, c.ping)
	}
	c.mu.Unlock()
	go c.read()
	return c
}

// Do sends req as a client transaction and returns its final response.
// When req has no Via, Do adds one with this connection's local address, its
// transport (TLS or TCP) and a fresh branch; provisional responses are
// skipped. ACK is not a transaction: use Send.
//
// A Via the caller set is kept; Do adds a branch to it when it has none.
// The transaction is matched by the top Via's branch and the CSeq method,
// so a request may be sent again (say, with credentials) only with a new
// branch.
func (c *Conn) Do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	if req.IsAck() {
		return nil, errors.New("sipconn: ACK is not a transaction; use Send")
	}
	cseq := req.CSeq()
	if cseq == nil {
		return nil, fmt.Errorf("sipconn: %s request without CSeq", req.Method)
	}
	if c.slots != nil {
		select {
		case c.slots <- struct{}{}:
			defer func() { <-c.slots }()
		case <-ctx.Done():
			return nil, fmt.Errorf("sipconn: waiting for a transaction slot for %s: %w", req.Method, ctx.Err())
		case <-c.done:
			return nil, c.Err()
		}
	}
	via := req.Via()
	if via == nil {
		via = &sip.ViaHeader{
			ProtocolName:    "SIP",
			ProtocolVersion: "2.0",
			Transport:       c.transport,
			Host:            c.viaHost,
			Port:            c.viaPort,
			Params:          sip.NewParams(),
		}
		req.PrependHeader(via)
	}
	branch, ok := via.Params.Get("branch")
	if !ok || branch == "" {
		branch = sip.GenerateBranch()
		via.Params.Add("branch", branch)
	}
	key := txKey{branch: branch, method: string(cseq.MethodName)}
	tx := &transaction{result: make(chan txResult, 1)}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, c.Err()
	}
	if _, dup := c.txs[key]; dup {
		c.mu.Unlock()
		return nil, fmt.Errorf("sipconn: a %s transaction with branch %s is already in flight", key.method, branch)
	}
	c.txs[key] = tx
	c.mu.Unlock()
	defer c.forget(key, tx)

	if err := c.Send(req); err != nil {
		return nil, err
	}
	timer := time.NewTimer(c.opts.TransactionTimeout)
	defer timer.Stop()
	select {
	case r := <-tx.result:
		return r.res, r.err
	case <-timer.C:
		return nil, fmt.Errorf("sipconn: %s (Call-ID %s): no final response within %s: %w",
			req.Method, callID(req), c.opts.TransactionTimeout, ErrTimeout)
	case <-ctx.Done():
		return nil, fmt.Errorf("sipconn: waiting for the response to %s: %w", req.Method, ctx.Err())
	case <-c.done:
		select {
		case r := <-tx.result:
			return r.res, r.err
		default:
			return nil, c.Err()
		}
	}
}

func (c *Conn) forget(key txKey, tx *transaction) {
	c.mu.Lock()
	if c.txs[key] == tx {
		delete(c.txs, key)
	}
	c.mu.Unlock()
}

// Send writes a message without waiting for anything: an ACK, or a
// response built by the caller. It sets Content-Length to the body's. The
// message is queued whole: bytes of two messages never interleave. An
// error writing it later closes the connection (Done, Err).
func (c *Conn) Send(msg sip.Message) error {
	msg.SetBody(msg.Body())
	var b bytes.Buffer
	msg.StringWrite(&b)
	return c.enqueue(b.Bytes())
}

// Respond answers a request the handler received.
func (c *Conn) Respond(req *sip.Request, status int, reason string, body []byte, headers ...sip.Header) error {
	res := sip.NewResponseFromRequest(req, status, reason, body)
	for _, h := range headers {
		res.AppendHeader(h)
	}
	return c.Send(res)
}

// Transport is "TLS" or "TCP", as Via writes it.
func (c *Conn) Transport() string { return c.transport }

// LocalAddr and RemoteAddr are the stream's addresses.
func (c *Conn) LocalAddr() net.Addr  { return c.nc.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Done is closed when the connection ended; Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is nil while the connection is open; afterwards it wraps ErrClosed
// and, when the stream failed, the reason.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection; transactions in flight fail with ErrClosed.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	return nil
}

// fail closes the connection once, recording why.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.err = err
	c.txs = nil
	keepAlive, stopCtx := c.keepAlive, c.stopCtx
	c.mu.Unlock()

	c.wmu.Lock()
	c.queue = nil
	c.wmu.Unlock()
	if keepAlive != nil {
		keepAlive.Stop()
	}
	stopCtx()
	_ = c.nc.Close()
	// Logged before Done: whoever waits on Done (a test's cleanup) may
	// no longer log.
	if err != ErrClosed {
		c.log.Debug().Err(err).Msg("sip connection ended")
	}
	close(c.done)
}

func (c *Conn) touch() { c.lastTraffic.Store(time.Now().UnixNano()) }

// enqueue queues one whole message and makes sure a flusher runs.
func (c *Conn) enqueue(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.done:
		return c.Err()
	default:
	}
	c.queue = append(c.queue, b)
	if !c.flushing {
		c.flushing = true
		go c.flush()
	}
	return nil
}

// flush writes the queue until it is empty, then ends.
func (c *Conn) flush() {
	for {
		c.wmu.Lock()
		batch := net.Buffers(c.queue)
		c.queue = nil
		if len(batch) == 0 {
			c.flushing = false
			c.wmu.Unlock()
			return
		}
		c.wmu.Unlock()
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
		if _, err := batch.WriteTo(c.nc); err != nil {
			c.fail(fmt.Errorf("%w: writing: %w", ErrClosed, err))
			c.wmu.Lock()
			c.flushing = false
			c.wmu.Unlock()
			return
		}
		c.touch()
	}
}

// ping sends a keep-alive when nothing went either way for KeepAlive.
func (c *Conn) ping() {
	c.mu.Lock()
	closed, timer := c.closed, c.keepAlive
	c.mu.Unlock()
	if closed {
		return
	}
	idle := time.Since(time.Unix(0, c.lastTraffic.Load()))
	if idle >= c.opts.KeepAlive {
		_ = c.enqueue(crlfPing)
		idle = 0
	}
	timer.Reset(c.opts.KeepAlive - idle)
}

// read runs the connection's reader until the stream ends.
func (c *Conn) read() {
	f := framer{max: c.opts.MaxMessageSize}
	for {
		for {
			fr, err := f.next()
			if err != nil {
				c.log.Warn().Err(err).Msg("sip stream unreadable, closing the connection")
				c.fail(fmt.Errorf("%w: %w", ErrClosed, err))
				return
			}
			if fr.kind == frameNone {
				break
			}
			c.dispatch(fr)
		}
		_, err := f.fill(c.nc)
		if err != nil {
			c.fail(fmt.Errorf("%w: reading: %w", ErrClosed, err))
			return
		}
		c.touch()
	}
}

func (c *Conn) dispatch(fr frame) {
	switch fr.kind {
	case framePing:
		_ = c.enqueue(crlfPong)
	case frameTooLarge:
		c.refuse(fr.raw, 513, "Message Too Large", fmt.Errorf("message larger than %d bytes", c.opts.MaxMessageSize))
	case frameMessage:
		msg, err := c.parser.ParseSIP(fr.raw)
		if err == nil && fr.noLength {
			err = errors.New("no Content-Length on a stream")
		}
		if err == nil {
			err = validate(msg)
		}
		if err != nil {
			c.refuse(fr.raw, 400, "Bad Request", err)
			return
		}
		msg.SetSource(c.nc.RemoteAddr().String())
		msg.SetTransport(c.transport)
		switch m := msg.(type) {
		case *sip.Request:
			c.handleRequest(m)
		case *sip.Response:
			c.handleResponse(m)
		}
	}
}

func (c *Conn) handleRequest(req *sip.Request) {
	if c.opts.Handler == nil {
		if !req.IsAck() {
			_ = c.Respond(req, 501, "Not Implemented", nil)
		}
		return
	}
	c.opts.Handler(c, req)
}

func (c *Conn) handleResponse(res *sip.Response) {
	if res.IsProvisional() {
		return
	}
	branch, _ := res.Via().Params.Get("branch")
	if !c.complete(txKey{branch: branch, method: string(res.CSeq().MethodName)}, txResult{res: res}) {
		c.log.Warn().Int("status", res.StatusCode).Str("cseq", res.CSeq().Value()).
			Str("call_id", callID(res)).Msg("sip response matches no transaction, dropped")
	}
}

// complete hands a transaction its result; false when none is waiting.
func (c *Conn) complete(key txKey, r txResult) bool {
	c.mu.Lock()
	tx := c.txs[key]
	delete(c.txs, key)
	c.mu.Unlock()
	if tx == nil {
		return false
	}
	tx.result <- r
	return true
}

// refuse deals with a message the framing delimits but that cannot be
// taken: a request is answered with status when its Via and CSeq can be
// read, a response fails its transaction; either is logged.
func (c *Conn) refuse(raw []byte, status int, reason string, cause error) {
	h := rawHeadersOf(raw)
	ev := c.log.Warn().Err(cause).Str("start_line", h.startLine).Str("call_id", h.callID).
		Str("cseq", h.cseq).Int("size", len(raw))
	if h.isResponse {
		err := fmt.Errorf("sipconn: %w: %q: %w", ErrMalformedResponse, h.startLine, cause)
		if h.branch != "" && h.cseqMethod != "" && c.complete(txKey{branch: h.branch, method: h.cseqMethod}, txResult{err: err}) {
			ev.Msg("malformed sip response, its transaction failed")
			return
		}
		ev.Msg("malformed sip response, dropped")
		return
	}
	if len(h.vias) == 0 || h.cseq == "" || h.cseqMethod == string(sip.ACK) {
		ev.Msg("malformed sip request, dropped unanswered")
		return
	}
	ev.Int("status", status).Msg("malformed sip request, answered")
	_ = c.enqueue(h.response(status, reason))
}

// validate checks what a message needs to be routed to a transaction or a
// handler and answered.
func validate(msg sip.Message) error {
	via, cseq := msg.Via(), msg.CSeq()
	switch {
	case via == nil:
		return errors.New("no Via")
	case cseq == nil:
		return errors.New("no CSeq")
	case msg.CallID() == nil:
		return errors.New("no Call-ID")
	case msg.From() == nil:
		return errors.New("no From")
	case msg.To() == nil:
		return errors.New("no To")
	}
	switch m := msg.(type) {
	case *sip.Request:
		if cseq.MethodName != m.Method {
			return fmt.Errorf("CSeq method %s differs from the request's %s", cseq.MethodName, m.Method)
		}
	case *sip.Response:
		if b, _ := via.Params.Get("branch"); b == "" {
			return errors.New("no branch in the top Via")
		}
	}
	return nil
}

func callID(msg sip.Message) string {
	if h := msg.CallID(); h != nil {
		return h.Value()
	}
	return ""
}
