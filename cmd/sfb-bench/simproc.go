package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/e2e/stack"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/testpki"
)

// The SIP scenarios run the simulator as a process of its own (cmd/sfb-sim)
// so that what the bench process uses is the transport's alone.

const (
	// benchApplication is the trusted application's FQDN: its client
	// certificate names it and the simulator trusts it.
	benchApplication = "bench.sfb-bench.local"
	simFQDN          = "fe.sfb-sim.local"
)

// simProcess is a running cmd/sfb-sim with its SIP listeners.
type simProcess struct {
	cmd     *exec.Cmd
	control string // base URL of the control API
	sipTCP  string // host:port of plain SIP over TCP
	sipTLS  string // host:port of SIP over TLS
	tls     tlsFiles
	log     *os.File
	exited  chan struct{}
	http    *http.Client
}

// tlsFiles are the PEM files of a test PKI: a CA, the simulator's server
// certificate and the trusted application's client certificate.
type tlsFiles struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

// simFlags are what a SIP scenario asks of the simulator.
type simFlags struct {
	users              int
	registrationExpiry time.Duration
}

// startSimProcess builds cmd/sfb-sim into dir and starts it with users
// generated, SIP over TCP and over mutual TLS, on loopback.
func startSimProcess(ctx context.Context, opts options, dir string, f simFlags) (*simProcess, error) {
	bin := filepath.Join(dir, "sfb-sim")
	build := exec.CommandContext(ctx, stack.GoCommand(), "build", "-tags", "goolm", "-o", bin, "./cmd/sfb-sim")
	build.Dir = opts.repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build cmd/sfb-sim: %w\n%s", err, out)
	}
	files, err := writeTestPKI(dir)
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "sim.log"))
	if err != nil {
		return nil, err
	}
	args := []string{"-listen", "127.0.0.1:0", "-users", fmt.Sprint(f.users), "-domain", sfbDomain,
		"-sip-listen", "127.0.0.1:0", "-sip-tls-listen", "127.0.0.1:0",
		"-sip-cert", files.ServerCert, "-sip-key", files.ServerKey, "-sip-client-ca", files.CA,
		"-sip-trusted", benchApplication, "-sip-fqdn", simFQDN,
		"-sip-registration-expiry", f.registrationExpiry.String(),
		"-log-json", "-log-level", "info"}
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start cmd/sfb-sim: %w", err)
	}
	p := &simProcess{cmd: cmd, tls: files, log: log, exited: make(chan struct{}),
		http: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 100}}}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()

	// The discovery URL is the first line on stdout; the SIP listeners'
	// addresses are in the JSON log.
	discovery := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			discovery <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	listening := make(chan [2]string, 2)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = log.Write(append(line, '\n'))
			var l struct {
				Address string `json:"sip_address"`
				TLS     bool   `json:"tls"`
			}
			if bytes.Contains(line, []byte(`"sip_address"`)) && json.Unmarshal(line, &l) == nil {
				listening <- [2]string{l.Address, fmt.Sprint(l.TLS)}
			}
		}
	}()
	deadline := time.NewTimer(2 * time.Minute) // generating 70,000 users takes a while
	defer deadline.Stop()
	for p.control == "" || p.sipTCP == "" || p.sipTLS == "" {
		select {
		case d := <-discovery:
			u, err := url.Parse(d)
			if err != nil {
				p.close()
				return nil, fmt.Errorf("cmd/sfb-sim printed %q, not its discovery URL", d)
			}
			p.control = u.Scheme + "://" + u.Host
		case l := <-listening:
			if l[1] == "true" {
				p.sipTLS = l[0]
			} else {
				p.sipTCP = l[0]
			}
		case <-p.exited:
			return nil, fmt.Errorf("cmd/sfb-sim exited: %s (log in %s)", cmd.ProcessState, log.Name())
		case <-deadline.C:
			p.close()
			return nil, fmt.Errorf("cmd/sfb-sim did not report its listeners within 2 minutes (log in %s)", log.Name())
		case <-ctx.Done():
			p.close()
			return nil, ctx.Err()
		}
	}
	return p, nil
}

func (p *simProcess) pid() int { return p.cmd.Process.Pid }

func (p *simProcess) close() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	_ = p.log.Close()
}

// call calls the simulator's control API.
func (p *simProcess) call(ctx context.Context, method, path string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, p.control+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 1<<10))
		return fmt.Errorf("%s %s: %s: %s", method, path, res.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// sendMessage has the simulated user from send text to to.
func (p *simProcess) sendMessage(ctx context.Context, from, to, text string) error {
	return p.call(ctx, http.MethodPost, "/sim/v1/users/"+url.PathEscape(from)+"/messages", map[string]string{"to": to, "text": text})
}

// setPresence sets a simulated user's availability and note.
func (p *simProcess) setPresence(ctx context.Context, user, availability, note string) error {
	return p.call(ctx, http.MethodPut, "/sim/v1/users/"+url.PathEscape(user)+"/presence",
		map[string]string{"availability": availability, "note": note})
}

// generatedUser is the address cmd/sfb-sim -users total gives user i
// (1-based), as sim.Server.GenerateUsers names them.
func generatedUser(i, total int) string {
	width := max(5, len(fmt.Sprint(total)))
	return fmt.Sprintf("user%0*d@%s", width, i, sfbDomain)
}

// writeTestPKI writes a throwaway CA, a server certificate for loopback
// and the simulator's FQDN, and a client certificate naming the bench's
// trusted application.
func writeTestPKI(dir string) (tlsFiles, error) {
	f := tlsFiles{
		CA: filepath.Join(dir, "ca.pem"), ServerCert: filepath.Join(dir, "sim-cert.pem"), ServerKey: filepath.Join(dir, "sim-key.pem"),
		ClientCert: filepath.Join(dir, "app-cert.pem"), ClientKey: filepath.Join(dir, "app-key.pem"),
	}
	ca, err := testpki.NewCA("sfb-bench CA")
	if err != nil {
		return f, err
	}
	if err := os.WriteFile(f.CA, ca.PEM, 0o644); err != nil {
		return f, err
	}
	server, err := ca.Issue(testpki.Leaf{CommonName: simFQDN, DNSNames: []string{simFQDN}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		return f, err
	}
	if err := server.WriteFiles(f.ServerCert, f.ServerKey); err != nil {
		return f, err
	}
	client, err := ca.Issue(testpki.Leaf{CommonName: benchApplication, DNSNames: []string{benchApplication}, Client: true})
	if err != nil {
		return f, err
	}
	return f, client.WriteFiles(f.ClientCert, f.ClientKey)
}

// sipObserver counts what the transport's observer sees: every answered
// request, and the reconnects.
type sipObserver struct {
	mu         sync.Mutex
	answered   uint64
	statuses   map[int]uint64
	reconnects uint64
}

func (c *sipObserver) ServerAnswered(status int, _ string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.answered++
	if c.statuses == nil {
		c.statuses = map[int]uint64{}
	}
	c.statuses[status]++
}

func (c *sipObserver) EventChannelReconnect() {
	c.mu.Lock()
	c.reconnects++
	c.mu.Unlock()
}

func (c *sipObserver) TokenRenewed(error) {}

func (c *sipObserver) read() (answered, reconnects uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.answered, c.reconnects
}
