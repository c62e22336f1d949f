package matrixapp

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2/status"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// While the homeserver does not answer, the bridge says so every interval,
// naming the address and the error, in the log and the bridge state; once
// it answers, the wait ends.
func TestWaitForUnreachableHomeserver(t *testing.T) {
	// A port nothing listens on, until the homeserver comes up there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	var logs lockedBuffer
	var mu sync.Mutex
	var states []status.BridgeState
	w := &homeserverWait{
		address:  "http://" + addr,
		interval: 20 * time.Millisecond,
		client:   &http.Client{},
		log:      zerolog.New(&logs),
		report: func(_ context.Context, s status.BridgeState) {
			mu.Lock()
			states = append(states, s)
			mu.Unlock()
		},
	}
	done := make(chan error, 1)
	go func() { done <- w.wait(context.Background()) }()

	require.Eventually(t, func() bool {
		return strings.Count(logs.String(), "Cannot reach the homeserver") >= 2
	}, 5*time.Second, 5*time.Millisecond, "a log line per attempt")
	assert.Contains(t, logs.String(), `"homeserver":"http://`+addr+`"`)
	assert.Contains(t, logs.String(), "connection refused")
	mu.Lock()
	require.NotEmpty(t, states)
	assert.Equal(t, StateHomeserverUnreachable, states[0].Error)
	assert.Contains(t, states[0].Message, "http://"+addr)
	mu.Unlock()

	var answered atomic.Bool
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answered.Store(true)
		_, _ = w.Write([]byte(`{"versions":["v1.4"]}`))
	}))
	hs.Listener, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	hs.Start()
	t.Cleanup(hs.Close)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the wait did not end once the homeserver answered")
	}
	assert.True(t, answered.Load())
}
