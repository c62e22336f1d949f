package ucwa

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// holdServer answers /hold only when release is closed, like a pending
// GET, and everything else at once; it counts what reaches it.
type holdServer struct {
	*httptest.Server
	release chan struct{}

	mu        sync.Mutex
	holding   int
	maxHeld   int
	quickFrom map[string]int
}

func newHoldServer(t *testing.T) *holdServer {
	h := &holdServer{release: make(chan struct{}), quickFrom: map[string]int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		if r.URL.Path != "/hold" {
			h.quickFrom[r.URL.Query().Get("user")]++
			h.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.holding++
		h.maxHeld = max(h.maxHeld, h.holding)
		h.mu.Unlock()
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
		h.mu.Lock()
		h.holding--
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.Close)
	t.Cleanup(h.releaseAll)
	return h
}

func (h *holdServer) releaseAll() {
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}

func (h *holdServer) quick(user string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.quickFrom[user]
}

// held is how many requests wait at the server now, and at most so far.
func (h *holdServer) held() (now, most int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.holding, h.maxHeld
}

func newLimitTransport(t *testing.T) *Transport {
	tr, err := New(sfb.Config{AllowInsecureLoopback: true, RequestTimeout: 5 * time.Second}, zerolog.New(zerolog.NewTestWriter(t)))
	require.NoError(t, err)
	return tr
}

func get(c *conn, ctx context.Context, u string) error {
	_, err := c.do(ctx, request{op: "test", method: http.MethodGet, url: u, noAuth: true})
	return err
}

// TestOutstandingRequestsLimitedPerUser: one user never has more than
// MaxOutstandingPerUser requests at the server, across all their
// sessions, and a user at the limit holds up nobody else.
func TestOutstandingRequestsLimitedPerUser(t *testing.T) {
	h := newHoldServer(t)
	tr := newLimitTransport(t)
	alice := tr.newConn("sip:alice@contoso.com", tr.log, sfb.Credentials{SignInAddress: "alice@contoso.com"})
	var wg sync.WaitGroup
	errs := make(chan error, MaxOutstandingPerUser+5)
	for range MaxOutstandingPerUser + 5 {
		wg.Go(func() { errs <- get(alice, context.Background(), h.URL+"/hold") })
	}
	require.Eventually(t, func() bool { now, _ := h.held(); return now == MaxOutstandingPerUser }, waitFor, tick)

	// Another user is not held up by alice's full slots.
	bob := tr.newConn("sip:bob@contoso.com", tr.log, sfb.Credentials{SignInAddress: "bob@contoso.com"})
	require.NoError(t, get(bob, context.Background(), h.URL+"/quick?user=bob"))
	assert.Equal(t, 1, h.quick("bob"))

	// A second session of alice (a relogin) shares her slots: its request
	// waits and never reaches the server.
	again := tr.newConn("sip:alice@contoso.com", tr.log, sfb.Credentials{SignInAddress: "alice@contoso.com"})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := get(again, ctx, h.URL+"/quick?user=alice")
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Zero(t, h.quick("alice"))
	_, most := h.held()
	assert.Equal(t, MaxOutstandingPerUser, most)

	// Once the held requests end, the waiting ones go out, still never
	// more than the limit at a time.
	h.releaseAll()
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	_, most = h.held()
	assert.Equal(t, MaxOutstandingPerUser, most)
	require.NoError(t, get(again, context.Background(), h.URL+"/quick?user=alice"))
	assert.Equal(t, 1, h.quick("alice"))
}

// TestTimeoutInsideClientToldFromServer: a deadline that passes while a
// request waits in this process (for one of the user's slots, for a
// pooled connection) is ErrLocalTimeout; one that passes while the server
// connects or answers is ErrServerUnavailable. Both are deadlines.
func TestTimeoutInsideClientToldFromServer(t *testing.T) {
	h := newHoldServer(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan net.Conn, 8)
	go func() {
		// Accept and say nothing: a TLS handshake never completes.
		for {
			c, err := silent.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		_ = silent.Close()
		for c := range accepted {
			_ = c.Close()
		}
	})
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refusedURL := "http://" + refused.Addr().String() + "/quick"
	require.NoError(t, refused.Close())

	tr := newLimitTransport(t)
	// One connection for everybody: the pool the bridge once had, at 1.
	pooled, err := New(sfb.Config{AllowInsecureLoopback: true}, zerolog.New(zerolog.NewTestWriter(t)),
		WithHTTPClient(&http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}))
	require.NoError(t, err)
	// A dial that never completes: the server's address does not answer.
	hanging, err := New(sfb.Config{AllowInsecureLoopback: true}, zerolog.New(zerolog.NewTestWriter(t)),
		WithHTTPClient(&http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}}}))
	require.NoError(t, err)
	busy := tr.newConn("sip:busy@contoso.com", tr.log, sfb.Credentials{SignInAddress: "busy@contoso.com"})
	for range MaxOutstandingPerUser {
		go func() { _ = get(busy, context.Background(), h.URL+"/hold") }()
	}
	holder := pooled.newConn("sip:holder@contoso.com", pooled.log, sfb.Credentials{SignInAddress: "holder@contoso.com"})
	go func() { _ = get(holder, context.Background(), h.URL+"/hold") }()
	require.Eventually(t, func() bool { now, _ := h.held(); return now == MaxOutstandingPerUser+1 }, waitFor, tick)

	for _, tc := range []struct {
		name     string
		tr       *Transport
		user     string
		url      string
		local    bool
		deadline bool
	}{
		{name: "the user's request slots are all taken", tr: tr, user: "busy", url: h.URL + "/quick", local: true, deadline: true},
		{name: "the shared connection is taken", tr: pooled, user: "other", url: h.URL + "/quick", local: true, deadline: true},
		{name: "the server holds the request", tr: tr, user: "other", url: h.URL + "/hold", deadline: true},
		{name: "the server's address does not answer", tr: hanging, user: "other", url: h.URL + "/quick", deadline: true},
		{name: "the server accepts the connection but never answers", tr: tr, user: "other", url: "https://" + silent.Addr().String() + "/", deadline: true},
		{name: "the server refuses connections", tr: tr, user: "other", url: refusedURL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.tr.newConn(sfb.URI("sip:"+tc.user+"@contoso.com"), tc.tr.log, sfb.Credentials{SignInAddress: tc.user + "@contoso.com"})
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			err := get(c, ctx, tc.url)
			require.Error(t, err)
			t.Log(err)
			assert.Equal(t, tc.deadline, errors.Is(err, context.DeadlineExceeded), "deadline")
			assert.Equal(t, tc.local, errors.Is(err, sfb.ErrLocalTimeout), "ErrLocalTimeout")
			assert.Equal(t, !tc.local, errors.Is(err, sfb.ErrServerUnavailable), "ErrServerUnavailable")
		})
	}
	assert.Zero(t, h.quick(""), "no waiting request reached the server")
}
