// Package pgtest runs a throwaway PostgreSQL server for tests from the
// machine's own PostgreSQL binaries.
//
// What must be installed: the server binaries `initdb` and `postgres`, on
// Debian and Ubuntu the package `postgresql-15` (any version from 13 on
// works; 15 is what CI uses). They are looked up in this order:
//
//  1. the directory in the environment variable SFB_PG_BINDIR,
//  2. `pg_config --bindir`,
//  3. /usr/lib/postgresql/15/bin, then the newest /usr/lib/postgresql/*/bin.
//
// When they are missing, [Start] fails the test if the environment variable
// CI is set and skips it otherwise, saying why.
//
// PostgreSQL refuses to run as root, and CI runs as root. When the test
// process is root, initdb and postgres are started with the credentials of
// the `postgres` system user (created by the Debian package), or of `nobody`
// when that user does not exist. The child's uid and gid are set directly by
// the kernel at exec (syscall.Credential), so neither runuser, su, sudo nor
// setpriv is needed. The data directory is a fresh directory under the
// system temporary directory owned by that user; its parent must be
// traversable by it (the default /tmp is).
//
// The server listens on a free port on 127.0.0.1 and on a unix socket in its
// own directory, with fsync, synchronous_commit and full_page_writes off: it
// is fast and loses everything on a crash, which is what a test wants.
//
// One server is shared by all tests of a test binary:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.Start(t).NewDatabase(t)
//		db, err := sql.Open("postgres", dsn)
//		...
//	}
//
// Programs (a demo, a load test) that want their own server use [Launch] and
// [Server.Stop].
package pgtest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq" // the "postgres" database/sql driver
)

// EnvBinDir names the environment variable that points at the directory
// holding initdb and postgres.
const EnvBinDir = "SFB_PG_BINDIR"

// Superuser is the name of the superuser of a server started here; it
// connects without a password (trust authentication on loopback only).
const Superuser = "postgres"

// ErrNotInstalled is returned (wrapped) by [FindBinDir] and [Launch] when no
// PostgreSQL server binaries were found.
var ErrNotInstalled = errors.New("PostgreSQL server binaries (initdb, postgres) not found; install the Debian package postgresql-15 or set " + EnvBinDir)

// Options configure [Launch].
type Options struct {
	// BinDir holds initdb and postgres; empty means [FindBinDir].
	BinDir string
	// StartTimeout bounds initdb plus startup; zero means one minute.
	StartTimeout time.Duration
}

// Server is a running throwaway PostgreSQL server.
type Server struct {
	dir     string // removed by Stop
	dataDir string
	binDir  string
	cred    *syscall.Credential
	logPath string
	port    int
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the postmaster has exited
	waitErr error         // valid after exited is closed
	admin   *sql.DB
	dbSeq   atomic.Int64

	stopOnce sync.Once
	stopErr  error
}

// FindBinDir returns the directory holding initdb and postgres.
func FindBinDir() (string, error) {
	var candidates []string
	if dir := os.Getenv(EnvBinDir); dir != "" {
		// An explicit setting that is wrong must not silently fall back.
		if err := checkBinDir(dir); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBinDir, dir, err)
		}
		return dir, nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	candidates = append(candidates, "/usr/lib/postgresql/15/bin")
	if matches, err := filepath.Glob("/usr/lib/postgresql/*/bin"); err == nil {
		sort.Slice(matches, func(i, j int) bool { return versionOf(matches[i]) > versionOf(matches[j]) })
		candidates = append(candidates, matches...)
	}
	for _, dir := range candidates {
		if checkBinDir(dir) == nil {
			return dir, nil
		}
	}
	return "", ErrNotInstalled
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func checkBinDir(dir string) error {
	for _, name := range []string{"initdb", "postgres"} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("%w: %s", ErrNotInstalled, err)
		}
		if info.IsDir() || info.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%w: %s is not executable", ErrNotInstalled, filepath.Join(dir, name))
		}
	}
	return nil
}

// runAs returns the credentials to run PostgreSQL with: nil when the process
// is not root, else those of the postgres (or nobody) user.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			errs = append(errs, fmt.Errorf("user %s has unusable uid %q gid %q", name, u.Uid, u.Gid))
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, fmt.Errorf("running as root and no non-root user to run PostgreSQL as: %w", errors.Join(errs...))
}

// Launch initialises and starts a new server. The caller must Stop it.
func Launch(ctx context.Context, opts Options) (*Server, error) {
	binDir := opts.BinDir
	if binDir == "" {
		var err error
		if binDir, err = FindBinDir(); err != nil {
			return nil, err
		}
	} else if err := checkBinDir(binDir); err != nil {
		return nil, err
	}
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	removeStaleDirs()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("create PostgreSQL directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("mark PostgreSQL directory: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("hand %s to uid %d: %w", dir, cred.Uid, err)
		}
	}
	s := &Server{dir: dir, dataDir: filepath.Join(dir, "data"), binDir: binDir, cred: cred, logPath: filepath.Join(dir, "postgres.log")}
	if err := s.initdb(ctx); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	// The port is picked by binding and releasing it, so another process can
	// take it in between; postgres then exits at once and we try another.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			_ = s.Stop()
			return nil, err
		}
		err = s.start(ctx, port)
		if err == nil {
			return s, nil
		}
		if attempt == attempts || ctx.Err() != nil || !s.hasExited() {
			_ = s.Stop()
			return nil, err
		}
	}
}

const (
	dirPrefix = "pgtest-"
	ownerFile = "owner.pid" // the pid of the process that launched the server
)

// removeStaleDirs deletes the directories of servers whose launching process
// is gone: a test binary that panics or times out never runs Stop (its
// server dies with it through Pdeathsig, but the directory stays).
// Directories of live processes, or without an owner file, are left alone.
func removeStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}

func (s *Server) initdb(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, "initdb"),
		"--pgdata="+s.dataDir,
		"--username="+Superuser,
		"--auth=trust",
		"--encoding=UTF8",
		"--locale=C",
		"--no-sync",
	)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb in %s: %w\n%s", s.dataDir, err, tail(out, 2000))
	}
	return nil
}

func (s *Server) start(ctx context.Context, port int) error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open PostgreSQL log: %w", err)
	}
	defer logFile.Close() // the child keeps its own descriptor
	cmd := exec.Command(filepath.Join(s.binDir, "postgres"),
		"-D", s.dataDir,
		"-p", strconv.Itoa(port),
		"-k", s.dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "logging_collector=off",
	)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Pdeathsig takes the server down if the test binary dies without
	// running Stop (a panic, a timeout); SIGINT is PostgreSQL's fast shutdown.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGINT}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd = cmd
	s.port = port
	s.exited = make(chan struct{})
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()

	admin, err := sql.Open("postgres", s.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("open admin connection: %w", err)
	}
	if err := s.waitReady(ctx, admin); err != nil {
		_ = admin.Close()
		return err
	}
	s.admin = admin
	return nil
}

func (s *Server) waitReady(ctx context.Context, admin *sql.DB) error {
	ticker := time.NewTicker(25 * time.Millisecond)
	defer ticker.Stop()
	var lastErr error
	for {
		pingCtx, cancel := context.WithTimeout(ctx, time.Second)
		lastErr = admin.PingContext(pingCtx)
		cancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("postgres on port %d exited during startup (%v):\n%s", s.port, s.waitErr, s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("postgres on port %d not ready: %w (last error: %v):\n%s", s.port, ctx.Err(), lastErr, s.logTail())
		case <-ticker.C:
		}
	}
}

func (s *Server) hasExited() bool {
	if s.exited == nil {
		return false
	}
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) logTail() string {
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tail(data, 4000)
}

func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Shutdown stops the server as an operator would (fast shutdown: every
// session ends) and keeps its data; Restart starts it again. Tests use the
// pair for a database outage.
func (s *Server) Shutdown() error {
	if s.hasExited() {
		return nil
	}
	if s.admin != nil {
		_ = s.admin.Close()
		s.admin = nil
	}
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal postgres: %w", err)
	}
	select {
	case <-s.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("postgres did not shut down within 10s; killed")
	}
}

// Restart starts a server stopped by Shutdown again, on the same port and
// data, and waits until it accepts connections.
func (s *Server) Restart(ctx context.Context) error {
	if !s.hasExited() {
		return errors.New("pgtest: Restart needs a server stopped by Shutdown")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return s.start(ctx, s.port)
}

// Port is the TCP port the server listens on (on 127.0.0.1).
func (s *Server) Port() int { return s.port }

// SocketDir is the directory holding the server's unix socket.
func (s *Server) SocketDir() string { return s.dir }

// DSN returns a lib/pq URL for the superuser and the named database.
func (s *Server) DSN(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(Superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

var dbNamePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// CreateDatabaseContext creates an empty database and returns its DSN. The
// name must be a plain lower-case identifier.
func (s *Server) CreateDatabaseContext(ctx context.Context, name string) (string, error) {
	if !dbNamePattern.MatchString(name) {
		return "", fmt.Errorf("database name %q: want lower-case letters, digits and _ (at most 63)", name)
	}
	// Identifiers cannot be bound as parameters; the pattern above makes
	// the name safe to splice.
	if _, err := s.admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.DSN(name), nil
}

// DropDatabaseContext drops a database, closing the connections still open
// to it.
func (s *Server) DropDatabaseContext(ctx context.Context, name string) error {
	if !dbNamePattern.MatchString(name) {
		return fmt.Errorf("database name %q: want lower-case letters, digits and _ (at most 63)", name)
	}
	if _, err := s.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// CreateDatabase creates the named database for the test, drops it when the
// test ends, and returns its DSN.
func (s *Server) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := s.CreateDatabaseContext(ctx, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.DropDatabaseContext(ctx, name); err != nil {
			t.Logf("pgtest: %v", err)
		}
	})
	return dsn
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// NewDatabase creates a database with a name unique on this server, derived
// from the test's name, and returns its DSN; it is dropped when the test
// ends.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	base := nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_")
	suffix := "_" + strconv.FormatInt(s.dbSeq.Add(1), 10)
	if max := 63 - len(suffix) - 1; len(base) > max {
		base = base[:max]
	}
	return s.CreateDatabase(t, "t"+base+suffix)
}

// Stop shuts the server down (fast shutdown, then kill after ten seconds)
// and removes its directory. It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		var errs []error
		if s.admin != nil {
			_ = s.admin.Close()
		}
		if s.cmd != nil && s.cmd.Process != nil && !s.hasExited() {
			if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
				errs = append(errs, fmt.Errorf("signal postgres: %w", err))
			}
			select {
			case <-s.exited:
			case <-time.After(10 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.exited
				errs = append(errs, errors.New("postgres did not shut down within 10s; killed"))
			}
		}
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", s.dir, err))
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}
