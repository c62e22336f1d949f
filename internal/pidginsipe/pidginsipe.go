// Package pidginsipe runs a real Skype for Business client, pidgin-sipe in
// finch (libpurple's terminal client) under tmux, and drives it through
// the D-Bus API libpurple exports: sign in, add a contact, send IMs and
// typing notifications, change one's own status, read a contact's presence
// and receive IMs. The simulator's and the bridge's interop tests use it to
// show that what we serve is what a real SfB client speaks, and the
// recorder (./record) to capture what it sends as fixtures.
//
// Everything comes from Debian's packages (scripts/ensure-sipe.sh installs
// them): pidgin-sipe, finch, tmux, and dbus-daemon, dbus-send and
// dbus-monitor. Each Client has its own HOME, D-Bus session bus and tmux
// server, so clients run side by side and leave nothing behind.
package pidginsipe

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Programs are the executables a Client needs (cc builds the XML shim).
var Programs = []string{"finch", "tmux", "dbus-daemon", "dbus-send", "dbus-monitor", "cc"}

// xmlShim is preloaded into finch: without it Debian 12's pidgin-sipe
// parses no XML at all (shim/xmlsax1.c says why), and shows neither
// contacts nor presence.
//
//go:embed shim/xmlsax1.c
var xmlShim []byte

// buildShim compiles the shim into dir, which the client's Close leaves
// to its owner to remove with the rest.
func buildShim(ctx context.Context, dir string) (string, error) {
	src := filepath.Join(dir, "xmlsax1.c")
	if err := os.WriteFile(src, xmlShim, 0o600); err != nil {
		return "", fmt.Errorf("writing the libxml2 shim: %w", err)
	}
	lib := filepath.Join(dir, "xmlsax1.so")
	out, err := exec.CommandContext(ctx, "cc", "-shared", "-fPIC", "-O2", "-I/usr/include/libxml2", src, "-o", lib, "-ldl", "-lxml2").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building the libxml2 shim for pidgin-sipe (needs libxml2-dev): %w: %s", err, out)
	}
	return lib, nil
}

// ErrNotInstalled means one of Programs or the sipe plugin is missing.
var ErrNotInstalled = errors.New("pidgin-sipe, finch, tmux or D-Bus tools are not installed (scripts/ensure-sipe.sh installs them)")

// pluginPath is where Debian's pidgin-sipe puts the libpurple plugin.
const pluginPath = "/usr/lib/purple-2/libsipe.so"

// Installed reports whether everything a Client runs is there.
func Installed() error {
	for _, p := range Programs {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%w: %s not found", ErrNotInstalled, p)
		}
	}
	if _, err := os.Stat(pluginPath); err != nil {
		return fmt.Errorf("%w: %s", ErrNotInstalled, pluginPath)
	}
	return nil
}

// Account is the SfB account pidgin-sipe signs in with.
type Account struct {
	// SignIn is the SIP address, alice@contoso.com.
	SignIn string
	// Login is the NTLM login, CONTOSO\alice; empty means SignIn.
	Login    string
	Password string
	// Server is host:port of the Front End (no DNS discovery).
	Server string
	// TLS selects SIP over TLS; otherwise TCP, which pidgin-sipe offers
	// for loopback and test servers.
	TLS bool
	// ServerCertPEM is the server's certificate, trusted by placing it
	// where libpurple keeps the peers it accepted
	// (~/.purple/certificates/x509/tls_peers/<host>).
	ServerCertPEM []byte
}

// username is libpurple's account name for sipe: "<sign-in>,<login>".
func (a Account) username() string {
	if a.Login == "" {
		return a.SignIn
	}
	return a.SignIn + "," + a.Login
}

// IM is an instant message pidgin-sipe received.
type IM struct {
	// From is the sender as libpurple names the buddy, sip:bob@contoso.com.
	From string
	// HTML is the message as libpurple hands it to the UI.
	HTML string
}

// Text is the message without markup.
func (m IM) Text() string {
	return strings.TrimSpace(html.UnescapeString(tagRE.ReplaceAllString(m.HTML, "")))
}

var tagRE = regexp.MustCompile(`<[^>]*>`)

// Client is one running finch with pidgin-sipe.
type Client struct {
	// Dir holds the client's HOME and logs: finch.log is libpurple's debug
	// log, with every SIP message pidgin-sipe sent and received.
	Dir     string
	account Account
	bus     string
	tmux    string // tmux server socket name (-L)
	dbus    *exec.Cmd
	monitor *exec.Cmd
	acct    int32

	mu   sync.Mutex
	ims  []IM
	news chan struct{}
}

// clients numbers the clients of this process, for their tmux servers'
// names.
var clients atomic.Int64

// Start writes the account into a fresh HOME under dir, starts a D-Bus
// session bus, finch in a detached tmux session on it, and enables the
// account, which signs in. Close ends all of it.
func Start(ctx context.Context, dir string, acct Account) (_ *Client, err error) {
	if err := Installed(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	preload, err := buildShim(ctx, dir)
	if err != nil {
		return nil, err
	}
	home := filepath.Join(dir, "home")
	if err := writeHome(home, acct); err != nil {
		return nil, err
	}
	// A tmux server of its own: Close ends it with everything in it.
	name := fmt.Sprintf("sipe-%d-%d", os.Getpid(), clients.Add(1))
	c := &Client{Dir: dir, account: acct, tmux: name, news: make(chan struct{}, 1)}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if err := c.startBus(ctx); err != nil {
		return nil, err
	}
	if err := c.startMonitor(); err != nil {
		return nil, err
	}
	// finch's debug output (-d) goes to stderr, into the log; its screen
	// lives in tmux.
	script := `exec finch -d 2>"$0"`
	cmd := exec.CommandContext(ctx, "tmux", "-L", c.tmux, "-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "48",
		"-e", "HOME="+home, "-e", "DBUS_SESSION_BUS_ADDRESS="+c.bus, "-e", "TERM=screen", "-e", "LD_PRELOAD="+preload,
		"sh", "-c", script, filepath.Join(dir, "finch.log"))
	cmd.Env = append(os.Environ(), "TMUX=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("starting finch in tmux: %w: %s", err, out)
	}
	// finch exports its D-Bus object once libpurple is up; the account
	// is there as soon as the object is.
	err = poll(ctx, 30*time.Second, func() (bool, error) {
		id, err := c.callInt(ctx, "PurpleAccountsFind", "string:"+acct.username(), "string:prpl-sipe")
		if err != nil {
			return false, nil
		}
		c.acct = id
		return id != 0, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for finch's account on D-Bus: %w (log %s)", err, filepath.Join(dir, "finch.log"))
	}
	if _, err := c.call(ctx, "PurpleAccountSetEnabled", int32Arg(c.acct), "string:gnt-purple", "int32:1"); err != nil {
		return nil, fmt.Errorf("enabling the account: %w", err)
	}
	return c, nil
}

// writeHome writes ~/.purple/accounts.xml (and the trusted certificate)
// for one sipe account: NTLM, the given server, TCP or TLS.
func writeHome(home string, acct Account) error {
	purple := filepath.Join(home, ".purple")
	if err := os.MkdirAll(purple, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", purple, err)
	}
	transport := "tcp"
	if acct.TLS {
		transport = "tls"
	}
	// Enabled later through D-Bus, so that the D-Bus object is there
	// before the first SIP message goes out.
	accounts := `<?xml version='1.0' encoding='UTF-8' ?>
<account version='1.0'>
 <account>
  <protocol>prpl-sipe</protocol>
  <name>` + xmlText(acct.username()) + `</name>
  <password>` + xmlText(acct.Password) + `</password>
  <settings>
   <setting name='server' type='string'>` + xmlText(acct.Server) + `</setting>
   <setting name='transport' type='string'>` + transport + `</setting>
   <setting name='authentication' type='string'>ntlm</setting>
   <setting name='dont-publish' type='bool'>1</setting>
  </settings>
  <settings ui='gnt-purple'>
   <setting name='auto-login' type='bool'>0</setting>
  </settings>
 </account>
</account>
`
	if err := os.WriteFile(filepath.Join(purple, "accounts.xml"), []byte(accounts), 0o600); err != nil {
		return fmt.Errorf("writing accounts.xml: %w", err)
	}
	if len(acct.ServerCertPEM) > 0 {
		host, _, err := net.SplitHostPort(acct.Server)
		if err != nil {
			host = acct.Server
		}
		peers := filepath.Join(purple, "certificates", "x509", "tls_peers")
		if err := os.MkdirAll(peers, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", peers, err)
		}
		if err := os.WriteFile(filepath.Join(peers, host), acct.ServerCertPEM, 0o600); err != nil {
			return fmt.Errorf("trusting the server certificate: %w", err)
		}
	}
	return nil
}

func xmlText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '\'':
			b.WriteString("&apos;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (c *Client) startBus(ctx context.Context) error {
	c.dbus = exec.Command("dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1")
	out, err := c.dbus.StdoutPipe()
	if err != nil {
		return err
	}
	c.dbus.Stderr = nil
	setParentDeathSignal(c.dbus)
	if err := c.dbus.Start(); err != nil {
		return fmt.Errorf("starting dbus-daemon: %w", err)
	}
	line := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		s, _ := r.ReadString('\n')
		line <- strings.TrimSpace(s)
		_, _ = io.Copy(io.Discard, r)
	}()
	select {
	case c.bus = <-line:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("dbus-daemon printed no address")
	case <-ctx.Done():
		return ctx.Err()
	}
	if c.bus == "" {
		return fmt.Errorf("dbus-daemon printed no address")
	}
	return nil
}

// startMonitor follows the signals of libpurple's D-Bus object and keeps
// the IMs received.
func (c *Client) startMonitor() error {
	c.monitor = exec.Command("dbus-monitor", "--address", c.bus,
		"type='signal',interface='im.pidgin.purple.PurpleInterface',member='ReceivedImMsg'")
	out, err := c.monitor.StdoutPipe()
	if err != nil {
		return err
	}
	setParentDeathSignal(c.monitor)
	if err := c.monitor.Start(); err != nil {
		return fmt.Errorf("starting dbus-monitor: %w", err)
	}
	// A copy of what the monitor saw, for diagnosis.
	copyTo, err := os.Create(filepath.Join(c.Dir, "dbus-monitor.log"))
	if err != nil {
		return err
	}
	go func() {
		defer copyTo.Close()
		c.readSignals(io.TeeReader(out, copyTo))
	}()
	return nil
}

// readSignals parses dbus-monitor's output: a "signal ..." line, then one
// indented line per argument (a string may span lines). ReceivedImMsg
// has five (account, sender, message, conversation, flags): the message
// is taken once the last has arrived, without waiting for the next signal.
func (c *Client) readSignals(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	var block []string
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "signal ") || strings.HasPrefix(line, "method ") || strings.HasPrefix(line, "error ") {
			block = block[:0]
		}
		block = append(block, line)
		if !strings.Contains(block[0], "member=ReceivedImMsg") {
			continue
		}
		if args := parseArgs(strings.Join(block[1:], "\n")); len(args) >= 5 {
			c.mu.Lock()
			c.ims = append(c.ims, IM{From: args[1], HTML: args[2]})
			c.mu.Unlock()
			select {
			case c.news <- struct{}{}:
			default:
			}
			block = append(block[:0], "")
		}
	}
}

// parseArgs returns the arguments' values in order: numbers as printed,
// strings unquoted (dbus-send and dbus-monitor do not escape them, so a
// string ends at a quote closing its line before the next argument).
func parseArgs(s string) []string {
	var vals []string
	s = strings.TrimLeft(s, " \t\n")
	for s != "" {
		switch {
		case strings.HasPrefix(s, "string \""):
			rest := s[len("string \""):]
			end := -1
			for i := 0; i < len(rest); i++ {
				if rest[i] != '"' {
					continue
				}
				after := strings.TrimLeft(rest[i+1:], " \t")
				if after == "" || after[0] == '\n' && startsArg(strings.TrimLeft(after, " \t\n")) {
					end = i
					break
				}
			}
			if end < 0 {
				return append(vals, rest)
			}
			vals = append(vals, rest[:end])
			s = rest[end+1:]
		default:
			line, rest, _ := strings.Cut(s, "\n")
			if typ, val, ok := strings.Cut(strings.TrimSpace(line), " "); ok && typ != "array" && typ != "]" {
				vals = append(vals, val)
			}
			s = rest
		}
		s = strings.TrimLeft(s, " \t\n")
	}
	return vals
}

func startsArg(s string) bool {
	if s == "" {
		return true
	}
	for _, p := range []string{"int32 ", "uint32 ", "int64 ", "uint64 ", "boolean ", "byte ", "double ", "int16 ", "uint16 ", "string \"", "array [", "]"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// call invokes a libpurple D-Bus method and returns its results.
func (c *Client) call(ctx context.Context, method string, args ...string) ([]string, error) {
	argv := append([]string{"--bus=" + c.bus, "--print-reply", "--reply-timeout=10000",
		"--dest=im.pidgin.purple.PurpleService", "/im/pidgin/purple/PurpleObject",
		"im.pidgin.purple.PurpleInterface." + method}, args...)
	out, err := exec.CommandContext(ctx, "dbus-send", argv...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("D-Bus %s: %w: %s", method, err, strings.TrimSpace(string(out)))
	}
	_, body, _ := strings.Cut(string(out), "\n")
	return parseArgs(body), nil
}

func (c *Client) callInt(ctx context.Context, method string, args ...string) (int32, error) {
	vals, err := c.call(ctx, method, args...)
	if err != nil {
		return 0, err
	}
	if len(vals) != 1 {
		return 0, fmt.Errorf("D-Bus %s returned %q, want one number", method, vals)
	}
	n, err := strconv.ParseInt(vals[0], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("D-Bus %s returned %q: %w", method, vals[0], err)
	}
	return int32(n), nil
}

func (c *Client) callString(ctx context.Context, method string, args ...string) (string, error) {
	vals, err := c.call(ctx, method, args...)
	if err != nil {
		return "", err
	}
	if len(vals) != 1 {
		return "", fmt.Errorf("D-Bus %s returned %q, want one string", method, vals)
	}
	return vals[0], nil
}

func int32Arg(n int32) string { return "int32:" + strconv.Itoa(int(n)) }

// Connected reports whether the account is signed in.
func (c *Client) Connected(ctx context.Context) (bool, error) {
	n, err := c.callInt(ctx, "PurpleAccountIsConnected", int32Arg(c.acct))
	return n == 1, err
}

// WaitConnected waits until the account is signed in.
func (c *Client) WaitConnected(ctx context.Context, timeout time.Duration) error {
	err := poll(ctx, timeout, func() (bool, error) { return c.Connected(ctx) })
	if err != nil {
		return fmt.Errorf("pidgin-sipe did not sign in as %s: %w (log %s)", c.account.SignIn, err, filepath.Join(c.Dir, "finch.log"))
	}
	return nil
}

// convIM is PURPLE_CONV_TYPE_IM.
const convIM = "int32:1"

// buddyName is how pidgin-sipe names contacts: "sip:" and the address.
func buddyName(address string) string {
	if strings.HasPrefix(address, "sip:") {
		return address
	}
	return "sip:" + address
}

// AddBuddy adds a contact to the buddy list as a user does, which makes
// pidgin-sipe store it on the server and subscribe to its presence.
func (c *Client) AddBuddy(ctx context.Context, address, group string) error {
	g, err := c.callInt(ctx, "PurpleFindGroup", "string:"+group)
	if err != nil {
		return err
	}
	if g == 0 {
		if g, err = c.callInt(ctx, "PurpleGroupNew", "string:"+group); err != nil {
			return err
		}
	}
	b, err := c.callInt(ctx, "PurpleBuddyNew", int32Arg(c.acct), "string:"+buddyName(address), "string:")
	if err != nil {
		return err
	}
	if _, err := c.call(ctx, "PurpleBlistAddBuddy", int32Arg(b), "int32:0", int32Arg(g), "int32:0"); err != nil {
		return err
	}
	if _, err := c.call(ctx, "PurpleAccountAddBuddy", int32Arg(c.acct), int32Arg(b)); err != nil {
		return err
	}
	return nil
}

// BuddyStatus is the id of a contact's active status as pidgin-sipe sets
// it ("available", "away", "busy", "do-not-disturb", "offline", ...), ""
// when the contact is not on the buddy list.
func (c *Client) BuddyStatus(ctx context.Context, address string) (string, error) {
	b, err := c.callInt(ctx, "PurpleFindBuddy", int32Arg(c.acct), "string:"+buddyName(address))
	if err != nil || b == 0 {
		return "", err
	}
	p, err := c.callInt(ctx, "PurpleBuddyGetPresence", int32Arg(b))
	if err != nil {
		return "", err
	}
	s, err := c.callInt(ctx, "PurplePresenceGetActiveStatus", int32Arg(p))
	if err != nil {
		return "", err
	}
	return c.callString(ctx, "PurpleStatusGetId", int32Arg(s))
}

// conversation returns the IM conversation with address, opening it.
func (c *Client) conversation(ctx context.Context, address string) (int32, error) {
	conv, err := c.callInt(ctx, "PurpleConversationNew", convIM, int32Arg(c.acct), "string:"+buddyName(address))
	if err != nil {
		return 0, err
	}
	return c.callInt(ctx, "PurpleConvIm", int32Arg(conv))
}

// SendIM sends an instant message to address, as typing it into the
// conversation window does.
func (c *Client) SendIM(ctx context.Context, address, text string) error {
	im, err := c.conversation(ctx, address)
	if err != nil {
		return err
	}
	_, err = c.call(ctx, "PurpleConvImSend", int32Arg(im), "string:"+text)
	return err
}

// Typing tells address that the user is typing (or stopped).
func (c *Client) Typing(ctx context.Context, address string, typing bool) error {
	gc, err := c.callInt(ctx, "PurpleAccountGetConnection", int32Arg(c.acct))
	if err != nil {
		return err
	}
	state := "int32:0" // PURPLE_NOT_TYPING
	if typing {
		state = "int32:1" // PURPLE_TYPING
	}
	_, err = c.call(ctx, "ServSendTyping", int32Arg(gc), "string:"+buddyName(address), state)
	return err
}

// CloseConversation closes the conversation window with address, after
// which pidgin-sipe ends the IM dialog (BYE).
func (c *Client) CloseConversation(ctx context.Context, address string) error {
	conv, err := c.callInt(ctx, "PurpleFindConversationWithAccount", convIM, "string:"+buddyName(address), int32Arg(c.acct))
	if err != nil || conv == 0 {
		return err
	}
	_, err = c.call(ctx, "PurpleConversationDestroy", int32Arg(conv))
	return err
}

// Status kinds of libpurple's PurpleStatusPrimitive, for SetStatus.
const (
	StatusAvailable   = 2
	StatusUnavailable = 3 // busy
	StatusAway        = 5
)

// SetStatus changes the user's own status as picking it in the status box
// does, which pidgin-sipe publishes.
func (c *Client) SetStatus(ctx context.Context, kind int) error {
	saved, err := c.callInt(ctx, "PurpleSavedstatusNew", "string:", "int32:"+strconv.Itoa(kind))
	if err != nil {
		return err
	}
	_, err = c.call(ctx, "PurpleSavedstatusActivate", int32Arg(saved))
	return err
}

// IMs returns the messages received so far.
func (c *Client) IMs() []IM {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]IM(nil), c.ims...)
}

// WaitIM waits for a received message that match accepts.
func (c *Client) WaitIM(ctx context.Context, timeout time.Duration, match func(IM) bool) (IM, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		for _, m := range c.IMs() {
			if match(m) {
				return m, nil
			}
		}
		select {
		case <-c.news:
		case <-ctx.Done():
			return IM{}, fmt.Errorf("no matching IM among %d received: %w", len(c.IMs()), ctx.Err())
		}
	}
}

// Close signs out (libpurple quits, pidgin-sipe unregisters and drops
// its connection) and stops finch, tmux, the monitor and the bus, each by
// the process started here. finch keeps running after libpurple quit, so
// it is ended once pidgin-sipe's debug log shows the connection dropped.
func (c *Client) Close() {
	log := filepath.Join(c.Dir, "finch.log")
	if c.bus != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = c.call(ctx, "PurpleCoreQuit")
		cancel()
		_ = poll(context.Background(), 5*time.Second, func() (bool, error) {
			b, err := os.ReadFile(log)
			if err != nil || !bytes.Contains(b, []byte("sip_transport_connected")) {
				return true, nil // never connected: nothing to sign out of
			}
			return bytes.Contains(b, []byte("sip_transport_drop")), nil
		})
	}
	if out, err := exec.Command("tmux", "-L", c.tmux, "list-panes", "-F", "#{pane_pid}").Output(); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Signal(syscall.SIGTERM)
			}
		}
	}
	_ = poll(context.Background(), 2*time.Second, func() (bool, error) {
		return exec.Command("tmux", "-L", c.tmux, "has-session").Run() != nil, nil
	})
	_ = exec.Command("tmux", "-L", c.tmux, "kill-server").Run()
	for _, cmd := range []*exec.Cmd{c.monitor, c.dbus} {
		if cmd != nil && cmd.Process != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
}

// Screen is what finch shows in its terminal, for failure messages.
func (c *Client) Screen() string {
	out, _ := exec.Command("tmux", "-L", c.tmux, "capture-pane", "-p").CombinedOutput()
	return string(out)
}

// poll calls check until it reports done, an error, or the timeout passes.
func poll(ctx context.Context, timeout time.Duration, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		done, err := check()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
