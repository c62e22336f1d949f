package pgtest

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards TCP connections to a server, and can cut the path the
// way a network partition does: nothing arrives any more, nothing is
// closed. Tests use it for a client that loses its database without
// noticing.
type Proxy struct {
	srv         *Server
	ln          net.Listener
	partitioned atomic.Bool

	mu      sync.Mutex
	clients []net.Conn
	servers []net.Conn
	pipes   sync.WaitGroup
}

// NewProxy starts a proxy in front of s, closed when the test ends.
func (s *Server) NewProxy(t testing.TB) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: proxy: %v", err)
	}
	p := &Proxy{srv: s, ln: ln}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Through returns dsn, a URL DSN of the server, going through the proxy.
func (p *Proxy) Through(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("pgtest: proxy: parse DSN: %w", err)
	}
	u.Host = p.ln.Addr().String()
	return u.String(), nil
}

// Partition stops forwarding, in both directions and for connections made
// later, without closing anything.
func (p *Proxy) Partition() { p.partitioned.Store(true) }

// DropServerSide closes the proxy's connections to the server, so that the
// server ends their sessions, as it does when its keepalive probes go
// unanswered across a partition. The clients' side stays open and silent.
func (p *Proxy) DropServerSide() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.servers {
		c.Close()
	}
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.clients = append(p.clients, client)
		p.mu.Unlock()
		if p.partitioned.Load() {
			continue // a black hole: connected, never answered
		}
		server, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.srv.Port())))
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.servers = append(p.servers, server)
		p.mu.Unlock()
		p.pipes.Add(2)
		go p.pipe(client, server)
		go p.pipe(server, client)
	}
}

func (p *Proxy) pipe(from, to net.Conn) {
	defer p.pipes.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if p.partitioned.Load() {
			if err != nil {
				return // the other side stays as it is: silent
			}
			continue
		}
		if n > 0 {
			if _, werr := to.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			to.Close()
			return
		}
	}
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range append(p.clients, p.servers...) {
		c.Close()
	}
	p.mu.Unlock()
	p.pipes.Wait()
}
