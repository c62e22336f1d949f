package bridge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
)

// txnHoldRig is an appservice in miniature: next queues one message event
// per transaction and answers at once, as mautrix's PutTransaction does;
// the dispatcher handles events one at a time, a message only once
// release is closed.
type txnHoldRig struct {
	hold     *txnHold
	handler  http.Handler
	events   chan *event.Event
	release  chan struct{}
	handled  atomic.Int32
	nextRuns atomic.Int32
}

func newTxnHoldRig(t *testing.T) *txnHoldRig {
	rig := &txnHoldRig{events: make(chan *event.Event, 16), release: make(chan struct{})}
	h := newTxnHold(rig.events, zerolog.Nop())
	rig.hold = h
	h.running.Store(true)
	rig.handler = h.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rig.nextRuns.Add(1)
		rig.events <- &event.Event{Type: event.EventMessage, ID: "$msg"}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("{}"))
	}))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case evt := <-rig.events:
				if evt.Type == handledMarker {
					h.reached(ctx, evt)
					continue
				}
				select {
				case <-rig.release:
				case <-ctx.Done():
					return
				}
				rig.handled.Add(1)
			}
		}
	}()
	return rig
}

// put sends a transaction and returns a channel with the answer.
func (rig *txnHoldRig) put(path string) <-chan *httptest.ResponseRecorder {
	answered := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		rec := httptest.NewRecorder()
		rig.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, path, nil))
		answered <- rec
	}()
	return answered
}

func TestTxnHoldAnswersAfterHandling(t *testing.T) {
	rig := newTxnHoldRig(t)
	answered := rig.put(transactionPath + "txn1")
	assert.Never(t, func() bool { return len(answered) > 0 }, 200*time.Millisecond, 10*time.Millisecond,
		"the transaction was answered before its event was handled")

	close(rig.release)
	var rec *httptest.ResponseRecorder
	select {
	case rec = <-answered:
	case <-time.After(5 * time.Second):
		t.Fatal("the transaction was never answered")
	}
	assert.Equal(t, int32(1), rig.handled.Load(), "answered after the event was handled")
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "{}", rec.Body.String())
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
}

func TestTxnHoldRepeatWaitsForTheFirst(t *testing.T) {
	rig := newTxnHoldRig(t)
	first := rig.put(transactionPath + "txn1")
	require.Eventually(t, func() bool { return rig.nextRuns.Load() == 1 }, 5*time.Second, time.Millisecond)
	// The homeserver timed out and sends the transaction again; mautrix
	// would answer it at once as already processed.
	repeat := rig.put(transactionPath + "txn1")
	assert.Never(t, func() bool { return len(repeat) > 0 || len(first) > 0 }, 200*time.Millisecond, 10*time.Millisecond)
	close(rig.release)
	for _, ch := range []<-chan *httptest.ResponseRecorder{first, repeat} {
		select {
		case rec := <-ch:
			assert.Equal(t, http.StatusOK, rec.Code)
		case <-time.After(5 * time.Second):
			t.Fatal("not answered")
		}
	}
}

func TestTxnHoldPassesOtherRequests(t *testing.T) {
	rig := newTxnHoldRig(t)
	close(rig.release)
	for _, path := range []string{"/_matrix/mau/ready", "/_matrix/app/v1/users/x", transactionPath} {
		rec := httptest.NewRecorder()
		rig.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		assert.Equal(t, http.StatusOK, rec.Code, path)
	}
	assert.Equal(t, int32(3), rig.nextRuns.Load())
}

// Before the event processor runs, a transaction is refused at once: held,
// it would make the homeserver's answer to mautrix's start-up ping fail.
func TestTxnHoldRefusesBeforeTheProcessorRuns(t *testing.T) {
	rig := newTxnHoldRig(t)
	rig.hold.running.Store(false)
	close(rig.release)
	rec := httptest.NewRecorder()
	rig.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, transactionPath+"txn1", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Zero(t, rig.nextRuns.Load(), "nothing queued: the homeserver sends the transaction again")

	rec = httptest.NewRecorder()
	rig.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/_matrix/app/v1/ping", nil))
	assert.Equal(t, http.StatusOK, rec.Code, "the ping passes")

	rig.hold.running.Store(true)
	select {
	case rec := <-rig.put(transactionPath + "txn1"):
		assert.Equal(t, http.StatusOK, rec.Code)
	case <-time.After(5 * time.Second):
		t.Fatal("not answered")
	}
}
