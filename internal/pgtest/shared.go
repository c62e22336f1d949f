package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// shared is the one server of a test binary. It is package state on
// purpose: tests of one binary run in one process, and starting PostgreSQL
// once per binary instead of once per test keeps the suite fast.
var shared struct {
	mu      sync.Mutex
	inMain  bool
	started bool
	srv     *Server
	err     error
}

// Main runs the tests of a package that uses [Start] and stops the shared
// server afterwards. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()

	code := m.Run()

	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop PostgreSQL: %v\n", err)
		}
		shared.srv = nil
	}
	return code
}

// Start returns the test binary's PostgreSQL server, starting it on first
// use. Without PostgreSQL binaries it fails the test when the environment
// variable CI is set and skips it otherwise. The test binary's TestMain must
// call [Main], which stops the server.
func Start(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.inMain {
		t.Fatal("pgtest: Start needs TestMain to run the tests through pgtest.Main, which stops the server")
	}
	if !shared.started {
		shared.started = true
		shared.srv, shared.err = Launch(context.Background(), Options{})
	}
	if shared.err != nil {
		if errors.Is(shared.err, ErrNotInstalled) && !required() {
			t.Skipf("pgtest: %v", shared.err)
		}
		t.Fatalf("pgtest: start PostgreSQL: %v", shared.err)
	}
	return shared.srv
}

// NeedBinaries is for tests that launch PostgreSQL servers of their own:
// without the binaries it skips the test, saying why, or fails it in CI.
func NeedBinaries(t testing.TB) {
	t.Helper()
	if _, err := FindBinDir(); err != nil {
		if required() {
			t.Fatalf("pgtest: %v (CI needs PostgreSQL)", err)
		}
		t.Skipf("pgtest: %v", err)
	}
}

// required reports whether a missing PostgreSQL fails tests rather than
// skipping them: in CI (CI set, and not "false").
func required() bool {
	ci := os.Getenv("CI")
	return ci != "" && ci != "false"
}
