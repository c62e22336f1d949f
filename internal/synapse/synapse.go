// Package synapse runs a throwaway Synapse homeserver for end-to-end tests
// and the demo: a generated configuration on SQLite in a temporary
// directory, loopback only, no federation, relaxed rate limits, and users
// registered through the shared-secret admin API.
//
// It is test infrastructure: the configuration it writes is deliberately
// unsafe for production (rate limits off, a random shared secret on disk).
package synapse

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
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
)

// Options configure a Server. The zero value starts a homeserver named
// "localhost" on a free loopback port with no application services.
type Options struct {
	// Venv is the Python virtualenv with Synapse installed. Empty means
	// $SFB_SYNAPSE_VENV, else the path printed by scripts/synapse-venv.sh
	// (which installs it on first use).
	Venv string
	// ServerName is the homeserver's name, the part after the colon in user
	// IDs. Default "localhost".
	ServerName string
	// Port is the loopback port of the client API; 0 picks a free one.
	Port int
	// Dir holds the configuration, database, media and log. Empty means a
	// new temporary directory, removed by Close.
	Dir string
	// AppServiceRegistrations are paths of application service
	// registration files to load (app_service_config_files).
	AppServiceRegistrations []string
	// ExtraConfig is merged over the generated homeserver.yaml (top-level
	// keys replace the generated ones).
	ExtraConfig map[string]any
	// StartTimeout bounds the wait for /health. Default 2 minutes: a cold
	// start on a busy 2-core machine takes well over 10 seconds.
	StartTimeout time.Duration
}

// Server is a running Synapse.
type Server struct {
	// URL is the client-server API base, http://127.0.0.1:<port>.
	URL string
	// ServerName is the homeserver's name.
	ServerName string
	// Dir holds homeserver.yaml, the SQLite database, media and the log.
	Dir string
	// LogPath is the file Synapse's stdout and stderr go to.
	LogPath string

	sharedSecret string
	removeDir    bool
	httpClient   *http.Client

	// venv, configPath and startTimeout are what Restart starts the
	// same homeserver with again.
	venv         string
	configPath   string
	startTimeout time.Duration

	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error
	stopOnce sync.Once
	stopErr  error
}

// Account is a registered Matrix user with a logged-in device.
type Account struct {
	UserID      id.UserID
	AccessToken string
	DeviceID    id.DeviceID
	Password    string
}

// Start writes a configuration and starts Synapse, returning once its
// client API answers /health. On failure the error includes the tail of the
// homeserver's log.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.ServerName == "" {
		opts.ServerName = "localhost"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	venv, err := findVenv(ctx, opts.Venv)
	if err != nil {
		return nil, err
	}
	s := &Server{
		ServerName: opts.ServerName,
		Dir:        opts.Dir,
		httpClient: &http.Client{Timeout: 30 * time.Second},
	}
	if s.Dir == "" {
		s.Dir, err = os.MkdirTemp("", "sfb-synapse-")
		if err != nil {
			return nil, fmt.Errorf("create synapse directory: %w", err)
		}
		s.removeDir = true
	} else if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create synapse directory %s: %w", s.Dir, err)
	}
	s.LogPath = filepath.Join(s.Dir, "homeserver.log")

	// A free port picked here may be taken by someone else before Synapse
	// binds it; a start that fails that way is retried with a new port.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		err = s.start(ctx, venv, opts)
		if err == nil {
			return s, nil
		}
		if opts.Port != 0 || attempt == attempts || !errors.Is(err, errAddressInUse) {
			s.cleanup()
			return nil, err
		}
	}
}

var errAddressInUse = errors.New("address already in use")

func (s *Server) start(ctx context.Context, venv string, opts Options) error {
	port := opts.Port
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			return err
		}
	}
	s.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	configPath, err := s.writeConfig(port, opts)
	if err != nil {
		return err
	}
	s.venv, s.configPath, s.startTimeout = venv, configPath, opts.StartTimeout
	if err := s.launch(ctx, os.O_TRUNC); err != nil {
		if strings.Contains(s.LogTail(200), "Address already in use") {
			return fmt.Errorf("start synapse on port %d: %w", port, errAddressInUse)
		}
		return err
	}
	return nil
}

// Restart starts the homeserver again on the same port, directory and
// configuration, stopping it first if it runs: users, access tokens, rooms
// and application service registrations survive, as after an operator's
// restart. For tests of a homeserver outage. The log is appended to.
func (s *Server) Restart(ctx context.Context) error {
	if s.configPath == "" {
		return errors.New("restart synapse: it was never started")
	}
	if err := s.Stop(); err != nil {
		return fmt.Errorf("restart synapse: %w", err)
	}
	if err := s.launch(ctx, os.O_APPEND); err != nil {
		return fmt.Errorf("restart synapse: %w", err)
	}
	return nil
}

// launch runs Synapse with the written configuration and waits until it is
// healthy; logMode is os.O_TRUNC for a new server, os.O_APPEND for a
// restart.
func (s *Server) launch(ctx context.Context, logMode int) error {
	logFile, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|logMode, 0o600)
	if err != nil {
		return fmt.Errorf("create synapse log: %w", err)
	}
	venv := s.venv
	cmd := exec.Command(filepath.Join(venv, "bin", "python"), "-m", "synapse.app.homeserver", "-c", s.configPath)
	cmd.Dir = s.Dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "SYNAPSE_CACHE_FACTOR=0.5")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start synapse from %s: %w", venv, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	s.stopOnce = sync.Once{}
	go func() {
		s.exitErr = cmd.Wait()
		logFile.Close()
		close(s.exited)
	}()
	if err := s.waitHealthy(ctx, s.startTimeout); err != nil {
		_ = s.Stop()
		return fmt.Errorf("start synapse: %w\n--- last lines of %s ---\n%s", err, s.LogPath, s.LogTail(60))
	}
	return nil
}

func (s *Server) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/health", nil)
		if err != nil {
			return err
		}
		resp, err := s.httpClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "OK" {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("synapse exited before it was healthy: %v", s.exitErr)
		case <-ctx.Done():
			return fmt.Errorf("synapse not healthy at %s/health after %s", s.URL, timeout)
		case <-tick.C:
		}
	}
}

// Stop terminates Synapse (SIGTERM, then SIGKILL after a grace period) and
// keeps its directory, so that Restart can start it again. It is safe to
// call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		// The whole process group: Synapse may have spawned helpers.
		pgid := -s.cmd.Process.Pid
		_ = syscall.Kill(pgid, syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(pgid, syscall.SIGKILL)
			<-s.exited
			s.stopErr = errors.New("synapse did not stop within 15s of SIGTERM; killed")
		}
	})
	return s.stopErr
}

// Close stops the server and removes its directory if Start created it.
func (s *Server) Close() error {
	err := s.Stop()
	s.cleanup()
	return err
}

func (s *Server) cleanup() {
	if s.removeDir && s.Dir != "" {
		_ = os.RemoveAll(s.Dir)
	}
}

// PID is the Synapse process's ID (0 before Start), for measuring what the
// homeserver uses (/proc).
func (s *Server) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the Synapse process has not exited.
func (s *Server) Running() bool {
	if s.exited == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// LogTail returns up to the last n lines of Synapse's log, for failure
// messages.
func (s *Server) LogTail(n int) string {
	data, err := os.ReadFile(s.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", s.LogPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// UserID is the full Matrix ID of a local user.
func (s *Server) UserID(localpart string) id.UserID {
	return id.NewUserID(localpart, s.ServerName)
}

func (s *Server) writeConfig(port int, opts Options) (string, error) {
	signingKeyPath := filepath.Join(s.Dir, "signing.key")
	if _, err := os.Stat(signingKeyPath); errors.Is(err, os.ErrNotExist) {
		if err := writeSigningKey(signingKeyPath); err != nil {
			return "", err
		}
	}
	s.sharedSecret = randomToken(32)
	mediaPath := filepath.Join(s.Dir, "media")
	if err := os.MkdirAll(mediaPath, 0o700); err != nil {
		return "", fmt.Errorf("create media store: %w", err)
	}
	registrations := opts.AppServiceRegistrations
	if registrations == nil {
		registrations = []string{}
	}
	for i, path := range registrations {
		abs, err := filepath.Abs(path)
		if err != nil {
			return "", fmt.Errorf("appservice registration %s: %w", path, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("appservice registration: %w", err)
		}
		registrations[i] = abs
	}

	// Generous limits: tests send bursts from one user and one address.
	relaxed := map[string]any{"per_second": 1000, "burst_count": 10000}
	cfg := map[string]any{
		"server_name": s.ServerName,
		"pid_file":    filepath.Join(s.Dir, "homeserver.pid"),
		"listeners": []any{map[string]any{
			"port":           port,
			"bind_addresses": []string{"127.0.0.1"},
			"type":           "http",
			"tls":            false,
			"x_forwarded":    false,
			"resources":      []any{map[string]any{"names": []string{"client"}, "compress": false}},
		}},
		"database": map[string]any{
			"name": "sqlite3",
			"args": map[string]any{"database": filepath.Join(s.Dir, "homeserver.db")},
		},
		"media_store_path":               mediaPath,
		"signing_key_path":               signingKeyPath,
		"registration_shared_secret":     s.sharedSecret,
		"macaroon_secret_key":            randomToken(32),
		"form_secret":                    randomToken(32),
		"enable_registration":            false,
		"report_stats":                   false,
		"trusted_key_servers":            []any{},
		"suppress_key_server_warning":    true,
		"federation_domain_whitelist":    []string{},
		"url_preview_enabled":            false,
		"enable_metrics":                 false,
		"app_service_config_files":       registrations,
		"presence":                       map[string]any{"enabled": true},
		"rc_message":                     relaxed,
		"rc_registration":                relaxed,
		"rc_registration_token_validity": relaxed,
		"rc_login": map[string]any{
			"address":         relaxed,
			"account":         relaxed,
			"failed_attempts": relaxed,
		},
		"rc_admin_redaction": relaxed,
		"rc_joins":           map[string]any{"local": relaxed, "remote": relaxed},
		"rc_joins_per_room":  relaxed,
		"rc_invites": map[string]any{
			"per_room":   relaxed,
			"per_user":   relaxed,
			"per_issuer": relaxed,
		},
		"rc_3pid_validation":    relaxed,
		"rc_presence":           map[string]any{"per_user": relaxed},
		"rc_delayed_event_mgmt": relaxed,
		"rc_room_creation":      relaxed,
		"rc_reports":            relaxed,
		"rc_media_create":       relaxed,
	}
	for k, v := range opts.ExtraConfig {
		cfg[k] = v
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encode homeserver.yaml: %w", err)
	}
	path := filepath.Join(s.Dir, "homeserver.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("write homeserver.yaml: %w", err)
	}
	return path, nil
}

// writeSigningKey writes a Synapse signing key ("ed25519 <key id> <unpadded
// base64 seed>"), the format of generate_signing_key, without paying for a
// Python start-up.
func writeSigningKey(path string) error {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return fmt.Errorf("generate signing key: %w", err)
	}
	keyID := "a_" + hex.EncodeToString(seed[:2])
	line := fmt.Sprintf("ed25519 %s %s\n", keyID, base64.RawStdEncoding.EncodeToString(seed))
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		return fmt.Errorf("write signing key: %w", err)
	}
	return nil
}

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b)
}

// FreePort returns a loopback TCP port that was free a moment ago, for
// callers that must put a port into a configuration file (the appservice).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// findVenv returns the virtualenv to run Synapse from.
func findVenv(ctx context.Context, venv string) (string, error) {
	if venv == "" {
		venv = os.Getenv("SFB_SYNAPSE_VENV")
	}
	if venv == "" {
		script, err := findScript("synapse-venv.sh")
		if err != nil {
			return "", err
		}
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "bash", script)
		cmd.Stdout = &stdout
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("prepare synapse virtualenv with %s: %w\n%s", script, err, stderr.String())
		}
		venv = strings.TrimSpace(stdout.String())
	}
	python := filepath.Join(venv, "bin", "python")
	if _, err := os.Stat(python); err != nil {
		return "", fmt.Errorf("synapse virtualenv %s: %w (run scripts/synapse-venv.sh)", venv, err)
	}
	return venv, nil
}

// findScript looks for scripts/<name> in the working directory and its
// parents: tests run in their package directory, the demo at the root.
func findScript(name string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find scripts/%s: %w", name, err)
	}
	for {
		path := filepath.Join(dir, "scripts", name)
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("scripts/%s not found above the working directory; set SFB_SYNAPSE_VENV", name)
		}
		dir = parent
	}
}
