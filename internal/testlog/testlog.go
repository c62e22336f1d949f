// Package testlog writes a test's log to the test until its cleanups ran:
// a goroutine the test did not wait for may still log after that, which
// testing reports as a data race (or a panic) of the test that follows.
package testlog

import (
	"io"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// Writer writes to t's log until t's cleanups ran, and drops what comes
// later. Call it before registering cleanups that still log: cleanups run
// last-registered first.
func Writer(t testing.TB) io.Writer {
	w := &untilDone{w: zerolog.NewTestWriter(t)}
	t.Cleanup(w.stop)
	return w
}

type untilDone struct {
	mu   sync.Mutex
	done bool
	w    io.Writer
}

func (u *untilDone) Write(p []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return len(p), nil
	}
	return u.w.Write(p)
}

func (u *untilDone) stop() {
	u.mu.Lock()
	u.done = true
	u.mu.Unlock()
}
