package sipconn

import (
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// An idle Conn costs its reader goroutine and a read buffer, nothing per
// transaction it ran: the per-user mode holds one per signed-in user.
func TestIdleConnMemory(t *testing.T) {
	const n = 300
	budget := 16 << 10
	if raceEnabled {
		budget *= 2
	}
	perConn, goroutines := idleConns(t, n)
	t.Logf("%d bytes per idle Conn", perConn)
	require.Less(t, perConn, budget, "bytes per idle Conn")
	// One reader each; the runtime may run a finalizer or two meanwhile.
	require.InDelta(t, n, goroutines, n/10, "goroutines left by %d Conns after their transactions", n)
}

func BenchmarkIdleConn(b *testing.B) {
	perConn, _ := idleConns(b, max(b.N, 100))
	b.ReportMetric(float64(perConn), "bytes/conn")
}

// idleConns opens n Conns over pipes, runs a transaction each way on
// every one, and returns the heap and stack they keep once idle, and the
// goroutines they keep.
func idleConns(tb testing.TB, n int) (perConn, goroutines int) {
	peers := make([]*peer, n)
	ends := make([]net.Conn, n)
	for i := range n {
		a, b := net.Pipe()
		tb.Cleanup(func() { a.Close(); b.Close() })
		ends[i] = a
		peers[i] = &peer{t: tb, nc: b, f: framer{max: 1 << 20}}
	}
	baseGoroutines := runtime.NumGoroutine()
	before := inUse()

	conns := make([]*Conn, n)
	for i := range n {
		conns[i] = newConn(tb, ends[i], Options{Logger: testOptions(tb).Logger, KeepAlive: time.Hour})
	}
	for i, c := range conns {
		done := make(chan error, 1)
		go func() {
			_, err := c.Do(tb.Context(), newRequest("OPTIONS", ""))
			done <- err
		}()
		peers[i].answer(peers[i].request(), 200)
		require.NoError(tb, <-done)
		peers[i].write(sfbMessage)
		require.Equal(tb, 501, peers[i].response().StatusCode)
	}
	// Writers that flushed end shortly after; Eventually's own goroutine
	// running the condition is the 1.
	require.Eventually(tb, func() bool { return runtime.NumGoroutine()-1-baseGoroutines < n+n/10 },
		waitFor, time.Millisecond)
	after := inUse()
	runtime.KeepAlive(conns)
	return int(after-before) / n, runtime.NumGoroutine() - baseGoroutines
}

func inUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}
