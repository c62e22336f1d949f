package pgtest

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestStartSharesOneServer(t *testing.T) {
	a := Start(t)
	b := Start(t)
	assert.Same(t, a, b)
	assert.NotZero(t, a.Port())
}

func TestDatabasesAreSeparateAndUsable(t *testing.T) {
	srv := Start(t)
	dsn1 := srv.NewDatabase(t)
	dsn2 := srv.NewDatabase(t)
	require.NotEqual(t, dsn1, dsn2)

	db1 := openDB(t, dsn1)
	db2 := openDB(t, dsn2)
	_, err := db1.Exec(`CREATE TABLE only_here (x INT)`)
	require.NoError(t, err)
	_, err = db2.Exec(`SELECT x FROM only_here`)
	require.Error(t, err, "table leaked into another database")

	var version int
	require.NoError(t, db1.QueryRow(`SELECT current_setting('server_version_num')::int`).Scan(&version))
	assert.GreaterOrEqual(t, version, 130000)
	var fsync string
	require.NoError(t, db1.QueryRow(`SHOW fsync`).Scan(&fsync))
	assert.Equal(t, "off", fsync)
}

func TestCreateDatabaseDropsOnCleanup(t *testing.T) {
	srv := Start(t)
	var name string
	t.Run("inner", func(t *testing.T) {
		name = "pgtest_cleanup_check"
		dsn := srv.CreateDatabase(t, name)
		assert.Contains(t, dsn, "/"+name+"?")
	})
	var exists bool
	require.NoError(t, srv.admin.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists))
	assert.False(t, exists, "database survived its test")
}

func TestCreateDatabaseRejectsBadNames(t *testing.T) {
	srv := Start(t)
	for _, name := range []string{"", "Upper", "a-b", "x; DROP DATABASE postgres", strings.Repeat("a", 64), "1abc"} {
		_, err := srv.CreateDatabaseContext(context.Background(), name)
		assert.Errorf(t, err, "name %q accepted", name)
	}
}

func TestServerDoesNotRunAsRoot(t *testing.T) {
	srv := Start(t)
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(srv.cmd.Process.Pid), "status"))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "Uid:") {
			fields := strings.Fields(line)
			require.GreaterOrEqual(t, len(fields), 2)
			assert.NotEqual(t, "0", fields[1], "postgres runs as root")
			return
		}
	}
	t.Fatal("no Uid line in /proc status")
}

// launch starts a server of the test's own, for tests that stop it.
func launch(t *testing.T) *Server {
	t.Helper()
	NeedBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := Launch(ctx, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	return srv
}

func TestLaunchAndStopRemovesEverything(t *testing.T) {
	srv := launch(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := openDB(t, srv.DSN("postgres"))
	require.NoError(t, db.PingContext(ctx))
	require.NoError(t, db.Close())

	require.NoError(t, srv.Stop())
	require.NoError(t, srv.Stop(), "second Stop")
	assert.True(t, srv.hasExited())
	_, err := os.Stat(srv.dir)
	assert.True(t, os.IsNotExist(err), "directory %s left behind", srv.dir)
}

func TestFindBinDirHonoursEnv(t *testing.T) {
	t.Setenv(EnvBinDir, t.TempDir())
	_, err := FindBinDir()
	require.ErrorIs(t, err, ErrNotInstalled)
	assert.Contains(t, err.Error(), EnvBinDir)
}

func TestLaunchRemovesStaleDirectories(t *testing.T) {
	// A directory left by a process that no longer exists, one by a live
	// process (this one), and one without an owner.
	stale, err := os.MkdirTemp("", dirPrefix)
	require.NoError(t, err)
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	require.NoError(t, os.WriteFile(filepath.Join(stale, ownerFile), []byte(strconv.Itoa(dead.Process.Pid)), 0o644))
	live, err := os.MkdirTemp("", dirPrefix)
	require.NoError(t, err)
	defer os.RemoveAll(live)
	require.NoError(t, os.WriteFile(filepath.Join(live, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644))
	unowned, err := os.MkdirTemp("", dirPrefix)
	require.NoError(t, err)
	defer os.RemoveAll(unowned)

	removeStaleDirs()
	_, err = os.Stat(stale)
	assert.True(t, os.IsNotExist(err), "stale directory kept")
	assert.DirExists(t, live)
	assert.DirExists(t, unowned)
}

func TestShutdownAndRestartKeepData(t *testing.T) {
	srv := launch(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn, err := srv.CreateDatabaseContext(ctx, "kept")
	require.NoError(t, err)
	db := openDB(t, dsn)
	_, err = db.ExecContext(ctx, "CREATE TABLE t (v text); INSERT INTO t VALUES ('before')")
	require.NoError(t, err)

	require.NoError(t, srv.Shutdown())
	assert.Error(t, db.PingContext(ctx), "the server is down")
	require.NoError(t, srv.Restart(ctx))

	var v string
	require.NoError(t, db.QueryRowContext(ctx, "SELECT v FROM t").Scan(&v), "same port, same data")
	assert.Equal(t, "before", v)
	_, err = srv.CreateDatabaseContext(ctx, "after_restart")
	assert.NoError(t, err, "the admin connection works again")
}

func TestProxyPartitionsSilently(t *testing.T) {
	srv := Start(t)
	proxy := srv.NewProxy(t)
	dsn, err := proxy.Through(srv.NewDatabase(t))
	require.NoError(t, err)
	db := openDB(t, dsn)
	db.SetMaxOpenConns(1)
	var pid int
	require.NoError(t, db.QueryRow("SELECT pg_backend_pid()").Scan(&pid), "through the proxy")
	admin := openDB(t, srv.DSN("postgres"))
	alive := func() bool {
		var n int
		require.NoError(t, admin.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n))
		return n == 1
	}

	proxy.Partition()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	answered := make(chan error, 1)
	go func() { answered <- db.QueryRowContext(ctx, "SELECT 1").Scan(new(int)) }()
	assert.Never(t, func() bool { return len(answered) > 0 }, 500*time.Millisecond, 50*time.Millisecond, "a query crossed the partition")
	assert.True(t, alive(), "the server still has the session")

	proxy.DropServerSide()
	assert.Eventually(t, func() bool { return !alive() }, 10*time.Second, 50*time.Millisecond, "the server kept the session")
}
