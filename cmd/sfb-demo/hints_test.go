package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

func TestDemoOnBusyPortFailsAtOnceWithHint(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	start := time.Now()
	err = demo(ctx, options{port: port, dir: t.TempDir(), bridgeBin: "/nonexistent"}, &printer{w: &out, start: start})
	require.Error(t, err)
	assert.Less(t, time.Since(start), 5*time.Second, "fails within seconds, before starting anything")
	assert.Contains(t, err.Error(), "port "+strconv.Itoa(port)+" is already in use")
	assert.Contains(t, err.Error(), "make demo DEMOFLAGS=-port=0")
}

func TestCheckPortFree(t *testing.T) {
	assert.NoError(t, checkPort(0))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	assert.NoError(t, checkPort(port))
}

// The control API example the demo prints works against the simulator as
// printed: the colleague's message arrives.
func TestControlExampleWorks(t *testing.T) {
	s, err := sim.New(sim.Options{Colleague: colleagueSfB, Users: []sim.User{{URI: demoSfB, DisplayName: "Demo", Password: "pw"}}})
	require.NoError(t, err)
	defer s.Close()
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	s.SetBaseURL(hs.URL)

	ex := newControlExample(s.BaseURL())
	assert.Contains(t, ex.curl(), ex.URL)
	assert.Contains(t, ex.curl(), "-d '"+ex.Body+"'")
	resp, err := http.Post(ex.URL, "application/json", strings.NewReader(ex.Body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	got := s.Received(demoSfB)
	require.Len(t, got, 1)
	assert.Equal(t, colleagueSfB, got[0].From)
	assert.Equal(t, "Hello from Skype for Business", got[0].Message.Text)
}
