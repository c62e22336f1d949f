// Package stack runs the whole bridge for end-to-end tests and the demo: a
// throwaway Synapse (internal/synapse), the bridge binary built from this
// repository with a generated configuration and registration, pointed at an
// SfB server (normally the simulator) that the caller runs.
package stack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/secret"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/synapse"
)

// Options configure Start.
type Options struct {
	// Dir holds the bridge's configuration, registration, database (SQLite)
	// and logs, and Synapse's directory. Required.
	Dir string
	// RepoRoot is the module root the bridge is built from when
	// BridgeBinary is empty.
	RepoRoot string
	// BridgeBinary is a prebuilt cmd/sfb-matrix-bridge; empty means build
	// one into Dir.
	BridgeBinary string
	// Race builds the bridge with the race detector.
	Race bool
	// ServerName of the homeserver; default "localhost".
	ServerName string
	// SynapsePort is the homeserver's client port; 0 picks a free one.
	SynapsePort int
	// SynapseVenv is passed to synapse.Options.Venv.
	SynapseVenv string
	// DatabaseURI is a PostgreSQL URI for the bridge; empty means SQLite in
	// Dir.
	DatabaseURI string
	// DiscoveryURL is the SfB autodiscovery URL (the simulator's).
	DiscoveryURL string
	// SIP, when set, puts the bridge on the SIP transport towards the
	// simulator's SIP listener instead of UCWA.
	SIP *SIP
	// Permissions is bridge.permissions; default: every user of ServerName
	// may log in ("user").
	Permissions map[string]string
	// Network is merged over the generated config's network section.
	Network map[string]any
	// MediaLinks turns on links to files sent from Matrix: the bridge's
	// own listener is network.media.public_url, the key a random one.
	MediaLinks bool
	// Config sets further options of the generated config by dotted path
	// ("provisioning.debug_endpoints"), after everything else.
	Config map[string]any
	// LogLevel is the bridge's minimum log level: "debug" (the default) or
	// "info"; Start reads the bridge's log to know when it has started.
	LogLevel string
	// SynapseConfig is passed to synapse.Options.ExtraConfig.
	SynapseConfig map[string]any
	// OtherAppServices are registration files of further application
	// services the homeserver loads beside the bridge.
	OtherAppServices []string
	// Env is added to the bridge process's environment, after a generated
	// secret key (SFB_BRIDGE_SECRET_KEY), which an entry here replaces.
	Env []string
	// StatusEndpoint is homeserver.status_endpoint: where the bridge
	// pushes its bridge states.
	StatusEndpoint string
	// DoublePuppet installs a second application service whose as_token
	// may act as any local user, and gives it to the bridge as
	// double_puppet.secrets, as docs/operator-guide.md tells operators
	// to: messages a user sent from their own SfB client appear in Matrix
	// as sent by their own account.
	DoublePuppet bool
}

// Stack is a running homeserver plus bridge.
type Stack struct {
	HS     *synapse.Server
	Bridge *Bridge
	// Bot is the bridge bot's Matrix ID.
	Bot id.UserID
	// UsernameTemplate is appservice.username_template, e.g. "sfb_{{.}}".
	UsernameTemplate string
	// ProvisioningSecret authenticates to the provisioning API (and the
	// debug endpoints, when enabled).
	ProvisioningSecret string
	// ProvisioningClient makes the provisioning API calls; nil means
	// http.DefaultClient, which keeps only two idle connections: many
	// logins at once want more.
	ProvisioningClient *http.Client
	// ASToken is the registration's as_token: what the bridge (or anyone
	// acting as the appservice) authenticates to the homeserver with.
	ASToken string
	// ConfigPath and RegistrationPath are the generated files.
	ConfigPath, RegistrationPath string
}

// BuildBridge compiles cmd/sfb-matrix-bridge from repoRoot into out.
func BuildBridge(ctx context.Context, repoRoot, out string, race bool) error {
	args := []string{"build", "-tags", "goolm", "-o", out}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/sfb-matrix-bridge")
	cmd := exec.CommandContext(ctx, GoCommand(), args...)
	cmd.Dir = repoRoot
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build bridge (go %s): %w\n%s", strings.Join(args, " "), err, output.String())
	}
	return nil
}

func GoCommand() string {
	if goroot := os.Getenv("GOROOT"); goroot != "" {
		if p := filepath.Join(goroot, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

// Start builds (when needed) and configures the bridge, starts Synapse with
// its registration, then the bridge, and returns once the bridge reports
// ready. Close stops everything.
func Start(ctx context.Context, opts Options) (st *Stack, err error) {
	if opts.Dir == "" {
		return nil, errors.New("stack: Options.Dir is required")
	}
	if opts.ServerName == "" {
		opts.ServerName = "localhost"
	}
	switch opts.LogLevel {
	case "":
		opts.LogLevel = "debug"
	case "debug", "info":
	default:
		return nil, fmt.Errorf("stack: log level %q: want debug or info (Start waits for an info line)", opts.LogLevel)
	}
	if opts.Permissions == nil {
		opts.Permissions = map[string]string{opts.ServerName: "user"}
	}
	bin := opts.BridgeBinary
	if bin != "" {
		// The bridge runs in Dir; a relative path must not change meaning.
		if bin, err = filepath.Abs(bin); err != nil {
			return nil, fmt.Errorf("bridge binary: %w", err)
		}
	} else {
		bin = filepath.Join(opts.Dir, "sfb-matrix-bridge")
		if err := BuildBridge(ctx, opts.RepoRoot, bin, opts.Race); err != nil {
			return nil, err
		}
	}
	hsPort := opts.SynapsePort
	if hsPort == 0 {
		if hsPort, err = synapse.FreePort(); err != nil {
			return nil, err
		}
	}
	asPort, err := synapse.FreePort()
	if err != nil {
		return nil, err
	}

	st = &Stack{
		ConfigPath:       filepath.Join(opts.Dir, "config.yaml"),
		RegistrationPath: filepath.Join(opts.Dir, "registration.yaml"),
	}
	example, err := runOutput(ctx, bin, "-e", "-c", "-")
	if err != nil {
		return nil, fmt.Errorf("print example config: %w", err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(example, &cfg); err != nil {
		return nil, fmt.Errorf("parse example config: %w", err)
	}
	dbURI := opts.DatabaseURI
	dbType := "postgres"
	if dbURI == "" {
		dbType = "sqlite3-fk-wal"
		dbURI = "file:" + filepath.Join(opts.Dir, "bridge.db") + "?_txlock=immediate"
	}
	st.ProvisioningSecret = randomString(24)
	set(cfg, []string{"homeserver", "address"}, "http://127.0.0.1:"+strconv.Itoa(hsPort))
	set(cfg, []string{"homeserver", "domain"}, opts.ServerName)
	set(cfg, []string{"appservice", "address"}, "http://127.0.0.1:"+strconv.Itoa(asPort))
	set(cfg, []string{"appservice", "hostname"}, "127.0.0.1")
	set(cfg, []string{"appservice", "port"}, asPort)
	set(cfg, []string{"database", "type"}, dbType)
	set(cfg, []string{"database", "uri"}, dbURI)
	set(cfg, []string{"bridge", "permissions"}, opts.Permissions)
	set(cfg, []string{"provisioning", "shared_secret"}, st.ProvisioningSecret)
	set(cfg, []string{"matrix", "federate_rooms"}, false)
	if opts.StatusEndpoint != "" {
		set(cfg, []string{"homeserver", "status_endpoint"}, opts.StatusEndpoint)
	}
	// The example's level is the one an operator starts with; the stack
	// logs at debug, and at that level into a file of its own.
	defaultLevel, _ := get(cfg, "logging", "min_level").(string)
	if defaultLevel == "" {
		return nil, errors.New("bridge example config has no logging.min_level")
	}
	set(cfg, []string{"logging"}, logTo(filepath.Join(opts.Dir, "bridge.log"), opts.LogLevel, defaultLevel))
	if opts.DiscoveryURL != "" {
		set(cfg, []string{"network", "discovery_url"}, opts.DiscoveryURL)
		set(cfg, []string{"network", "allow_insecure_loopback"}, true)
	}
	if opts.MediaLinks {
		set(cfg, []string{"network", "media", "public_url"}, "http://127.0.0.1:"+strconv.Itoa(asPort))
		set(cfg, []string{"network", "media", "link_key"}, randomString(secret.KeySize))
	}
	otherAppServices := opts.OtherAppServices
	if opts.DoublePuppet {
		reg := filepath.Join(opts.Dir, "doublepuppet-registration.yaml")
		token, err := WriteDoublePuppetRegistration(reg, opts.ServerName)
		if err != nil {
			return nil, err
		}
		otherAppServices = append([]string{reg}, otherAppServices...)
		set(cfg, []string{"double_puppet", "secrets"}, map[string]any{opts.ServerName: "as_token:" + token})
	}
	if opts.SIP != nil {
		network, err := opts.SIP.network()
		if err != nil {
			return nil, err
		}
		for k, v := range network {
			set(cfg, []string{"network", k}, v)
		}
	}
	for k, v := range opts.Network {
		set(cfg, []string{"network", k}, v)
	}
	for k, v := range opts.Config {
		set(cfg, strings.Split(k, "."), v)
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode bridge config: %w", err)
	}
	if err := os.WriteFile(st.ConfigPath, data, 0o600); err != nil {
		return nil, fmt.Errorf("write bridge config: %w", err)
	}
	if _, err := runOutput(ctx, bin, "-g", "-c", st.ConfigPath, "-r", st.RegistrationPath); err != nil {
		return nil, fmt.Errorf("generate registration: %w", err)
	}
	reg, err := readRegistration(st.RegistrationPath)
	if err != nil {
		return nil, err
	}
	st.ASToken = reg.ASToken
	// The registration's sender_localpart is a random placeholder; the bot
	// the bridge uses is appservice.bot.username.
	botName, _ := get(cfg, "appservice", "bot", "username").(string)
	if botName == "" {
		return nil, errors.New("bridge config has no appservice.bot.username")
	}
	st.Bot = id.NewUserID(botName, opts.ServerName)
	st.UsernameTemplate, _ = get(cfg, "appservice", "username_template").(string)

	hs, err := synapse.Start(ctx, synapse.Options{
		Venv:                    opts.SynapseVenv,
		ServerName:              opts.ServerName,
		Port:                    hsPort,
		Dir:                     filepath.Join(opts.Dir, "synapse"),
		AppServiceRegistrations: append([]string{st.RegistrationPath}, otherAppServices...),
		ExtraConfig:             opts.SynapseConfig,
	})
	if err != nil {
		return nil, err
	}
	st.HS = hs
	defer func() {
		if err != nil {
			_ = hs.Close()
		}
	}()

	key, err := secret.GenerateKey()
	if err != nil {
		return nil, err
	}
	st.Bridge = &Bridge{
		Binary:              bin,
		ConfigPath:          st.ConfigPath,
		RegPath:             st.RegistrationPath,
		Dir:                 opts.Dir,
		LogPath:             filepath.Join(opts.Dir, "bridge.log"),
		DefaultLevelLogPath: defaultLevelLog(filepath.Join(opts.Dir, "bridge.log")),
		DefaultLevel:        defaultLevel,
		OutPath:             filepath.Join(opts.Dir, "bridge.out"),
		ReadyURL:            "http://127.0.0.1:" + strconv.Itoa(asPort) + "/_matrix/mau/ready",
		Env:                 append([]string{secret.EnvKey + "=" + secret.EncodeKey(key)}, opts.Env...),
	}
	if err := st.Bridge.Start(ctx); err != nil {
		return nil, err
	}
	return st, nil
}

// Close stops the bridge, then Synapse.
func (st *Stack) Close() error {
	var errs []error
	if st.Bridge != nil {
		errs = append(errs, st.Bridge.Stop())
	}
	if st.HS != nil {
		errs = append(errs, st.HS.Stop())
	}
	return errors.Join(errs...)
}

// SecondBridge returns another bridge process (not started) with the
// stack's configuration, registration, environment and so appservice
// address; only its log files differ, named after name, and its
// database.uri when databaseURI is not empty (the same database through
// another path). On PostgreSQL it waits as the standby while the first one
// is active.
func (st *Stack) SecondBridge(name, databaseURI string) (*Bridge, error) {
	cfg, err := readConfig(st.ConfigPath)
	if err != nil {
		return nil, err
	}
	first := st.Bridge
	b := &Bridge{
		Binary:              first.Binary,
		ConfigPath:          filepath.Join(first.Dir, "config-"+name+".yaml"),
		RegPath:             first.RegPath,
		Dir:                 first.Dir,
		LogPath:             filepath.Join(first.Dir, "bridge-"+name+".log"),
		DefaultLevelLogPath: defaultLevelLog(filepath.Join(first.Dir, "bridge-"+name+".log")),
		DefaultLevel:        first.DefaultLevel,
		OutPath:             filepath.Join(first.Dir, "bridge-"+name+".out"),
		ReadyURL:            first.ReadyURL,
		Env:                 first.Env,
	}
	level, _ := get(cfg, "logging", "min_level").(string)
	set(cfg, []string{"logging"}, logTo(b.LogPath, level, b.DefaultLevel))
	if databaseURI != "" {
		set(cfg, []string{"database", "uri"}, databaseURI)
	}
	if err := writeConfig(b.ConfigPath, cfg); err != nil {
		return nil, err
	}
	return b, nil
}

// logTo is the logging section for a JSON log at level in the file at
// path, and the same log at level defaultLevel in defaultLevelLog(path).
func logTo(path, level, defaultLevel string) map[string]any {
	return map[string]any{
		"min_level": level,
		"writers": []any{map[string]any{
			"type":     "file",
			"format":   "json",
			"filename": path,
		}, map[string]any{
			"type":      "file",
			"format":    "json",
			"filename":  defaultLevelLog(path),
			"min_level": defaultLevel,
		}},
	}
}

// defaultLevelLog is where the log at the example configuration's level
// goes, beside the debug log at path.
func defaultLevelLog(path string) string {
	return strings.TrimSuffix(path, ".log") + "-default-level.log"
}

// Reconfigure sets options of the bridge's configuration file by dotted
// path ("network.sign_in_rate"); they take effect at the bridge's next
// start.
func (st *Stack) Reconfigure(changes map[string]any) error {
	cfg, err := readConfig(st.ConfigPath)
	if err != nil {
		return err
	}
	for k, v := range changes {
		set(cfg, strings.Split(k, "."), v)
	}
	return writeConfig(st.ConfigPath, cfg)
}

func readConfig(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read bridge config: %w", err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("parse bridge config %s: %w", path, err)
	}
	return cfg, nil
}

func writeConfig(path string, cfg map[string]any) error {
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode bridge config: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write bridge config: %w", err)
	}
	return nil
}

// GhostID is the Matrix ID the bridge gives the SfB user whose network
// user ID is remoteID: appservice.username_template applied to the escaped
// ID, as bridgev2 does.
func (st *Stack) GhostID(remoteID string) id.UserID {
	localpart := strings.ReplaceAll(st.UsernameTemplate, "{{.}}", id.EncodeUserLocalpart(remoteID))
	return id.NewUserID(localpart, st.HS.ServerName)
}

// Bridge is the bridge subprocess.
type Bridge struct {
	Binary, ConfigPath, RegPath, Dir string
	// LogPath is the bridge's JSON log; OutPath its stdout and stderr.
	LogPath, OutPath string
	// DefaultLevelLogPath has the same log at DefaultLevel, the level of
	// the example configuration: what an operator's log holds.
	DefaultLevelLogPath, DefaultLevel string
	ReadyURL                          string
	Env                               []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
	// logAtLaunch is the log file as it was when the process was
	// launched; nil when there was none.
	logAtLaunch os.FileInfo
}

// Start runs the bridge and waits until it is ready (WaitReady).
func (b *Bridge) Start(ctx context.Context) error {
	if err := b.Launch(); err != nil {
		return err
	}
	if err := b.WaitReady(ctx, 2*time.Minute); err != nil {
		_ = b.Stop()
		return err
	}
	return nil
}

// Launch runs the bridge without waiting for it: a standby process never
// becomes ready while another one is active.
func (b *Bridge) Launch() error {
	if b.Running() {
		return errors.New("bridge already running")
	}
	b.mu.Lock()
	out, err := os.OpenFile(b.OutPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.mu.Unlock()
		return fmt.Errorf("open bridge output: %w", err)
	}
	// What the log says from here on is this process's (unless it
	// rotates the log at start, as it does: then all of the new file is).
	b.logAtLaunch, _ = os.Stat(b.LogPath)
	cmd := exec.Command(b.Binary, "-c", b.ConfigPath, "-r", b.RegPath, "-n")
	cmd.Dir = b.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Env = append(os.Environ(), b.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	setParentDeathSignal(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		b.mu.Unlock()
		out.Close()
		return fmt.Errorf("start bridge: %w", err)
	}
	exited := make(chan struct{})
	b.cmd, b.exited = cmd, exited
	b.mu.Unlock()
	go func() {
		err := cmd.Wait()
		out.Close()
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
		close(exited)
	}()
	return nil
}

// WaitReady waits until the bridge's appservice reports ready and the
// network connector has started, failing when the bridge exits first. The
// appservice reports ready (and the provisioning API answers) before
// bridgev2 starts the network connector, and a login in between fails; the
// connector has started once bridgev2 starts the existing logins, which it
// logs ("Starting user login", or "No user logins found"). Not "Bridge
// started": that comes after every existing login connected, which takes
// as long as the sign-in ramp needs for all of them.
func (b *Bridge) WaitReady(ctx context.Context, timeout time.Duration) error {
	b.mu.Lock()
	exited, logAtLaunch := b.exited, b.logAtLaunch
	b.mu.Unlock()
	if exited == nil {
		return errors.New("bridge not started")
	}
	if err := waitReady(ctx, b.ReadyURL, b.LogPath, logAtLaunch, exited, timeout); err != nil {
		return fmt.Errorf("bridge not ready: %w\n%s", err, b.LogTail(40))
	}
	return nil
}

// ExitCode is the exit status of a bridge that exited (-1 when a signal
// ended it) and false while it runs or before it started.
func (b *Bridge) ExitCode() (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.exited == nil {
		return 0, false
	}
	select {
	case <-b.exited:
	default:
		return 0, false
	}
	var exitErr *exec.ExitError
	if errors.As(b.err, &exitErr) {
		return exitErr.ExitCode(), true
	}
	return 0, true
}

func waitReady(ctx context.Context, url, logPath string, logAtLaunch os.FileInfo, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	ready := false
	for {
		if !ready {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if resp, err := client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ready = resp.StatusCode == http.StatusOK
			}
		}
		if ready && logSays(logPath, logAtLaunch, `"message":"Starting user login"`, `"message":"No user logins found"`) {
			return nil
		}
		select {
		case <-exited:
			return errors.New("bridge exited")
		case <-ctx.Done():
			if ready {
				return fmt.Errorf("%s is OK but %s does not say the logins are starting after %s", url, logPath, timeout)
			}
			return fmt.Errorf("%s not OK after %s", url, timeout)
		case <-tick.C:
		}
	}
}

// logSays reports whether the log at path holds one of texts after what
// it held at launch (all of it when it is another file now).
func logSays(path string, atLaunch os.FileInfo, texts ...string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && atLaunch != nil && os.SameFile(info, atLaunch) {
		if _, err := f.Seek(atLaunch.Size(), io.SeekStart); err != nil {
			return false
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return false
	}
	for _, text := range texts {
		if bytes.Contains(data, []byte(text)) {
			return true
		}
	}
	return false
}

// Stop terminates the bridge (SIGTERM, SIGKILL after 20 s) and waits for it.
func (b *Bridge) Stop() error { return b.signal(syscall.SIGTERM) }

// Kill ends the bridge abruptly, as a crash would.
func (b *Bridge) Kill() error { return b.signal(syscall.SIGKILL) }

func (b *Bridge) signal(sig syscall.Signal) error {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	var err error
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		err = errors.New("bridge did not stop within 20s; killed")
	}
	b.mu.Lock()
	b.cmd = nil
	b.mu.Unlock()
	return err
}

// PID is the bridge process's ID, 0 when it is not running.
func (b *Bridge) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil || b.cmd.Process == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// URL is the base of the bridge's appservice listener (provisioning API,
// debug endpoints), http://127.0.0.1:<port>.
func (b *Bridge) URL() string {
	return strings.TrimSuffix(b.ReadyURL, "/_matrix/mau/ready")
}

// Running reports whether the bridge process is alive.
func (b *Bridge) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.exited == nil || b.cmd == nil {
		return false
	}
	select {
	case <-b.exited:
		return false
	default:
		return true
	}
}

// LogTail returns the last n lines of the bridge's log and output.
func (b *Bridge) LogTail(n int) string {
	return fmt.Sprintf("--- %s ---\n%s\n--- %s ---\n%s", b.OutPath, tailFile(b.OutPath, n), b.LogPath, tailFile(b.LogPath, n))
}

type registration struct {
	SenderLocalpart string `yaml:"sender_localpart"`
	ASToken         string `yaml:"as_token"`
}

func readRegistration(path string) (registration, error) {
	var reg registration
	data, err := os.ReadFile(path)
	if err != nil {
		return reg, fmt.Errorf("read registration: %w", err)
	}
	if err := yaml.Unmarshal(data, &reg); err != nil {
		return reg, fmt.Errorf("parse registration: %w", err)
	}
	if reg.SenderLocalpart == "" || reg.ASToken == "" {
		return reg, errors.New("registration has no sender_localpart or no as_token")
	}
	return reg, nil
}

func runOutput(ctx context.Context, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

// set puts value at path in a nested YAML map, creating maps as needed.
func set(cfg map[string]any, path []string, value any) {
	m := cfg
	for _, key := range path[:len(path)-1] {
		next, ok := m[key].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[key] = next
		}
		m = next
	}
	m[path[len(path)-1]] = value
}

func get(cfg map[string]any, path ...string) any {
	var cur any = cfg
	for _, key := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[key]
	}
	return cur
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
