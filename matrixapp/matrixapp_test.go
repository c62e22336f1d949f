package matrixapp

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/appservice"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/secret"
)

// The tests run the real binary, as an operator and the homeserver see it.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func bridgeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sfb-matrix-bridge-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "sfb-matrix-bridge")
		cmd := exec.Command("go", "build", "-tags", "goolm", "-o", binPath, "../cmd/sfb-matrix-bridge")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	require.NoError(t, buildErr, "build the bridge")
	return binPath
}

func run(t *testing.T, dir string, env []string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bridgeBinary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	return cmd.CombinedOutput()
}

// TestExampleConfigIsCurrent fails when config.example.yaml at the root of
// the repository is not what the binary writes with -e. Regenerate it
// with: go run -tags goolm ./cmd/sfb-matrix-bridge -e -c - > config.example.yaml
func TestExampleConfigIsCurrent(t *testing.T) {
	out, err := run(t, t.TempDir(), nil, "-e", "-c", "-")
	require.NoError(t, err, string(out))
	committed, err := os.ReadFile("../config.example.yaml")
	require.NoError(t, err)
	assert.Equal(t, string(out), string(committed), "config.example.yaml is stale; regenerate it with -e -c -")
	assert.Contains(t, string(out), "keep_password: true")
	assert.Contains(t, string(out), "username_template: sfb_{{.}}")
	assert.Contains(t, string(out), "command_prefix: '!sfb'")
	assert.Contains(t, string(out), "port: 29340")
	assert.Contains(t, string(out), "logging:\n    # info and above never carry message text; debug and trace do (docs/operator-guide.md).\n    min_level: info\n",
		"at debug, mautrix logs the body of every request it sends, message text included")
}

// TestDefaultLogLevelSurvivesTheConfigUpgrade: mautrix rewrites the
// configuration on its own example at every start (-g included); the
// level the file says stays.
func TestDefaultLogLevelSurvivesTheConfigUpgrade(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, nil)
	out, err := run(t, dir, nil, "-g", "-c", "config.yaml", "-r", "registration.yaml")
	require.NoError(t, err, string(out))
	cfg, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^logging:\n(\s*#.*\n)*    min_level: info$`, string(cfg))
}

// writeConfig writes the example config to dir with the homeserver set,
// and edit applied to the text.
func writeConfig(t *testing.T, dir string, edit func(string) string) string {
	t.Helper()
	out, err := run(t, dir, nil, "-e", "-c", "config.yaml")
	require.NoError(t, err, string(out))
	path := filepath.Join(dir, "config.yaml")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	text := strings.Replace(string(data), "domain: example.com", "domain: example.org", 1)
	text = strings.Replace(text, `        "example.com": user`, `        "example.org": user`, 1)
	if edit != nil {
		text = edit(text)
	}
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

func TestGenerateRegistration(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, nil)
	out, err := run(t, dir, nil, "-g", "-c", "config.yaml", "-r", "registration.yaml")
	require.NoError(t, err, string(out))

	reg, err := appservice.LoadRegistration(filepath.Join(dir, "registration.yaml"))
	require.NoError(t, err)
	assert.Equal(t, "sfb", reg.ID)
	require.NotNil(t, reg.RateLimited)
	assert.False(t, *reg.RateLimited, "the bridge's users must not be rate limited")
	assert.True(t, reg.EphemeralEvents, "presence and typing need receive_ephemeral")
	require.NotEmpty(t, reg.Namespaces.UserIDs)
	ghost := "@sfb_alice=40contoso.com:example.org"
	var ghostCovered bool
	for _, ns := range reg.Namespaces.UserIDs {
		assert.True(t, ns.Exclusive, "namespace %s must be exclusive", ns.Regex)
		re := regexp.MustCompile(ns.Regex)
		ghostCovered = ghostCovered || re.MatchString(ghost)
		assert.False(t, re.MatchString("@alice:example.org"), "real users stay outside the namespace")
	}
	assert.True(t, ghostCovered, "ghost %s is in the namespace", ghost)
	assert.Len(t, reg.AppToken, 64)

	// The tokens were written back into the configuration.
	cfg, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(cfg), reg.AppToken)
	assert.Contains(t, string(cfg), reg.ServerToken)
}

func sqliteConfig(port int, hs string) func(string) string {
	return func(text string) string {
		text = strings.Replace(text, "    type: postgres", "    type: sqlite3-fk-wal", 1)
		text = strings.Replace(text, "uri: postgres://user:password@host/database?sslmode=disable", "uri: file:bridge.db?_txlock=immediate", 1)
		text = strings.Replace(text, "address: http://example.localhost:8008", "address: "+hs, 1)
		text = strings.Replace(text, "port: 29340", "port: "+strconv.Itoa(port), 1)
		// The stub homeserver has no devices or keys for the bot.
		text = strings.Replace(text, "encryption:\n", "encryption:\n    allow: false\n", 1)
		text = strings.Replace(text, "    allow: true\n", "", 1)
		return text
	}
}

func TestRefusesToStartWithoutSecretKey(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, sqliteConfig(freePort(t), "http://127.0.0.1:1"))
	out, err := run(t, dir, nil, "-g", "-c", "config.yaml", "-r", "registration.yaml")
	require.NoError(t, err, string(out))

	out, err = run(t, dir, []string{secret.EnvKey + "="}, "-c", "config.yaml", "-n")
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, string(out))
	assert.Equal(t, 11, exit.ExitCode(), "mxmain's configuration error exit code")
	assert.Contains(t, string(out), "SFB_BRIDGE_SECRET_KEY")
	assert.Contains(t, string(out), "keep_password")
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// stubHomeserver answers what the bridge asks at startup: spec versions and
// whoami for the bot; everything else succeeds empty.
func stubHomeserver(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/versions"):
			_ = json.NewEncoder(w).Encode(map[string]any{"versions": []string{"v1.4"}})
		case strings.HasSuffix(r.URL.Path, "/account/whoami"):
			_ = json.NewEncoder(w).Encode(map[string]any{"user_id": "@sfbbot:example.org"})
		default:
			_, _ = w.Write([]byte("{}"))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestStartsOnSQLite runs the bridge on SQLite against a stub homeserver
// until the connector has migrated its tables, then stops it with SIGTERM.
// There is no standby on SQLite: the bridge starts at once.
func TestStartsOnSQLite(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, sqliteConfig(freePort(t), stubHomeserver(t).URL))
	out, err := run(t, dir, nil, "-g", "-c", "config.yaml", "-r", "registration.yaml")
	require.NoError(t, err, string(out))

	output, _ := startOnSQLite(t, dir)
	assert.NotContains(t, output.String(), "FTL")
	assert.Contains(t, output.String(), "No standby on SQLite", "SQLite takes no active lock and says so")
}

// TestSQLiteDatabaseReadableByOwnerOnly: the database holds sealed
// credentials and who talks to whom; like the configuration and the log,
// only the bridge's user may read it. A new one is created so, one that
// exists is made so, with a log line.
func TestSQLiteDatabaseReadableByOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, sqliteConfig(freePort(t), stubHomeserver(t).URL))
	out, err := run(t, dir, nil, "-g", "-c", "config.yaml", "-r", "registration.yaml")
	require.NoError(t, err, string(out))
	dbPath := filepath.Join(dir, "bridge.db")
	modes := func() map[string]os.FileMode {
		found := map[string]os.FileMode{}
		for _, p := range []string{dbPath, dbPath + "-wal", dbPath + "-shm"} {
			if info, err := os.Stat(p); err == nil {
				found[filepath.Base(p)] = info.Mode().Perm()
			}
		}
		return found
	}

	output, stop := startOnSQLite(t, dir)
	created := modes()
	stop()
	require.Contains(t, created, "bridge.db")
	for name, mode := range created {
		assert.Equal(t, os.FileMode(0o600), mode, "%s as created", name)
	}
	assert.NotContains(t, output.String(), "readable by other users")

	// A database left world-readable by an older version.
	require.NoError(t, os.Chmod(dbPath, 0o644))
	output, stop = startOnSQLite(t, dir)
	stop()
	for name, mode := range modes() {
		assert.Equal(t, os.FileMode(0o600), mode, "%s after the start", name)
	}
	assert.Contains(t, output.String(), "The SQLite database was readable by other users; made it readable by the bridge's user only")
}

// startOnSQLite starts the bridge configured in dir and returns its output
// once it has started and the connector has migrated its tables, and a function that stops it
// (SIGTERM, wait), which the test's cleanup calls too.
func startOnSQLite(t *testing.T, dir string) (*syncBuffer, func()) {
	t.Helper()
	key, err := secret.GenerateKey()
	require.NoError(t, err)
	cmd := exec.Command(bridgeBinary(t), "-c", "config.yaml", "-n")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), secret.EnvKey+"="+secret.EncodeKey(key))
	output := &syncBuffer{}
	cmd.Stdout = output
	cmd.Stderr = output
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		})
	}
	t.Cleanup(stop)

	dbPath := filepath.Join(dir, "bridge.db")
	ok := assert.Eventually(t, func() bool {
		select {
		case err := <-exited:
			exited <- err
			return true
		default:
		}
		// The tables may be there from an earlier start; the log line says
		// that this process is past its start.
		return strings.Contains(output.String(), "Bridge started") &&
			hasTable(dbPath, "sfb_credential") && hasTable(dbPath, "user_login")
	}, 30*time.Second, 50*time.Millisecond, "bridge output:\n%s", output.String())
	if !ok {
		stop()
		t.FailNow()
	}
	select {
	case err := <-exited:
		t.Fatalf("bridge exited early (%v):\n%s", err, output.String())
	default:
	}
	return output, stop
}

func hasTable(dbPath, table string) bool {
	if _, err := os.Stat(dbPath); err != nil {
		return false
	}
	db, err := sql.Open("sqlite3", "file:"+dbPath+"?mode=ro")
	if err != nil {
		return false
	}
	defer db.Close()
	var name string
	err = db.QueryRow(`SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?`, table).Scan(&name)
	return err == nil && name == table
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
