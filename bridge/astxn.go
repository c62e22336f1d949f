package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/ctxtime"
)

// Synapse pushes Matrix events to the bridge in appservice transactions
// and sends a transaction again until the bridge answers it with 200.
// mautrix's appservice answers as soon as the events are in its in-memory
// channel, before anything handled them: a crash then loses them, a
// Matrix message among them never reaches the outbox, and Synapse, which
// got its 200, does not send it again. holdTransactions makes the answer
// wait until the event processor has handled every event of the
// transaction (HandleMatrixMessage stored the message in the outbox), so
// that a crash before that makes Synapse send the transaction again.
//
// mautrix starts the event processor only after the homeserver answered
// its appservice ping. A transaction held until then makes the ping fail:
// Synapse (1.163) retries transactions of an appservice it found down in
// a scheduled "recoverer" call, and the ping, once the bridge answered it,
// cancels that call, which Twisted refuses while the call is running
// (502 "AlreadyCalled" to the bridge, which gives up after seven). So
// until the event processor runs (the network connector's Start), a
// transaction is refused with 503, and Start pings the homeserver, which
// makes Synapse send it again at once.

// transactionPath is where the homeserver PUTs transactions.
const transactionPath = "/_matrix/app/v1/transactions/"

// handledMarker is an event type only the bridge itself queues, behind a
// transaction's events: the event processor dispatches events one at a
// time and in order, so when it reaches the marker, everything before
// it was handled.
var handledMarker = event.Type{Type: "net.sfb.bridge.transaction_handled", Class: event.MessageEventType}

// holdTransactions installs the answer-after-handling middleware on the
// appservice of mc, which must dispatch events synchronously.
func holdTransactions(mc *matrix.Connector, log zerolog.Logger) *txnHold {
	if mc.EventProcessor.ExecMode != appservice.Sync {
		log.Info().Msg("Setting appservice.async_transactions to false: a transaction is answered after its events were handled, so that a crash loses none")
		mc.EventProcessor.ExecMode = appservice.Sync
	}
	h := newTxnHold(mc.AS.Events, log)
	mc.EventProcessor.On(handledMarker, h.reached)
	mc.AS.Middleware = append(mc.AS.Middleware, h.middleware)
	return h
}

// processorRunning lets transactions in and asks the homeserver to send
// what it holds back (its appservice ping makes Synapse retry at once).
func (h *txnHold) processorRunning(ctx context.Context, mc *matrix.Connector, log zerolog.Logger) {
	ping := func(why string) {
		txnID := "sfb-" + why + "-" + strconv.FormatInt(time.Now().UnixNano(), 10)
		if _, err := mc.AS.BotClient().AppservicePing(ctx, mc.AS.Registration.ID, txnID); err != nil {
			log.Debug().Err(err).Str("after", why).Msg("Appservice ping failed; the homeserver sends held transactions on its own schedule")
		}
	}
	// Synapse starts the recoverer in the background after the refusal;
	// a ping before that has nothing to hurry.
	h.pingAfterRefusal = func() {
		if ctxtime.Sleep(ctx, refusalPingDelay) {
			ping("gap-refused")
		}
	}
	h.running.Store(true)
	go ping("processor-running")
}

// refusalPingDelay is how long after refusing a transaction for a gap the
// homeserver is pinged.
const refusalPingDelay = 200 * time.Millisecond

// txnHold delays the answers to transactions until their events were
// handled.
type txnHold struct {
	events chan<- *event.Event
	log    zerolog.Logger
	next   atomic.Uint64
	// running is set once the event processor runs.
	running atomic.Bool
	// gaps refuses a transaction that may have a stranded one before it
	// (astxngap.go); pingAfterRefusal, set before running, hurries the
	// homeserver's recovery then.
	gaps             *gapWatch
	pingAfterRefusal func()

	mu sync.Mutex
	// markers holds, per marker event ID, the channel closed when the
	// event processor reaches it.
	markers map[id.EventID]chan struct{}
	// inFlight holds, per transaction ID, the channel closed when its
	// first delivery was answered: a repeat that arrives meanwhile (the
	// homeserver's request timed out) waits for it too, because
	// mautrix answers it at once as already processed.
	inFlight map[string]chan struct{}
}

func newTxnHold(events chan<- *event.Event, log zerolog.Logger) *txnHold {
	return &txnHold{events: events, log: log, gaps: newGapWatch(time.Now),
		markers: map[id.EventID]chan struct{}{}, inFlight: map[string]chan struct{}{}}
}

func (h *txnHold) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		txnID, ok := strings.CutPrefix(r.URL.Path, transactionPath)
		if r.Method != http.MethodPut || !ok || txnID == "" || strings.Contains(txnID, "/") {
			next.ServeHTTP(w, r)
			return
		}
		if !h.running.Load() {
			mautrix.MUnknown.WithStatus(http.StatusServiceUnavailable).WithMessage("The bridge is starting").Write(w)
			return
		}
		log := h.log.With().Str("txn_id", txnID).Logger()
		if ok, after := h.gaps.admit(txnID); !ok {
			log.Info().Uint64("last_txn_id", after).
				Msg("Refusing an appservice transaction that skips numbers during a recovery, so that the homeserver first sends one it may have held back")
			mautrix.MUnknown.WithStatus(http.StatusServiceUnavailable).
				WithMessage("The bridge missed a transaction before this one; send it first").Write(w)
			if h.pingAfterRefusal != nil {
				go h.pingAfterRefusal()
			}
			return
		}
		logTransaction(log, r)
		h.mu.Lock()
		earlier := h.inFlight[txnID]
		done := make(chan struct{})
		if earlier == nil {
			h.inFlight[txnID] = done
		}
		h.mu.Unlock()
		if earlier != nil {
			if !wait(r.Context(), earlier) {
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		defer func() {
			h.mu.Lock()
			delete(h.inFlight, txnID)
			h.mu.Unlock()
			close(done)
		}()

		start := time.Now()
		rec := &heldResponse{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		if rec.status == http.StatusOK && !wait(r.Context(), h.mark()) {
			// The homeserver gave up on this request and sends the
			// transaction again, as part of a recovery; the events are
			// still being handled.
			log.Warn().Stringer("held", time.Since(start)).Msg("Homeserver gave up waiting for the answer to a transaction; it will send it again")
			h.gaps.arm()
			return
		}
		rec.copyTo(w)
		log.Debug().Int("status", rec.status).Dur("held_ms", time.Since(start)).Msg("Answered appservice transaction")
	})
}

// logTransaction logs, at debug level, the events of the transaction r
// carries, so that the log shows whether and when an event reached the
// bridge. The body is left for the handler.
func logTransaction(log zerolog.Logger, r *http.Request) {
	if log.GetLevel() > zerolog.DebugLevel || r.Body == nil {
		return
	}
	body, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return
	}
	var txn struct {
		Events []struct {
			ID   id.EventID `json:"event_id"`
			Type string     `json:"type"`
		} `json:"events"`
	}
	if json.Unmarshal(body, &txn) != nil {
		return
	}
	arr := zerolog.Arr()
	for _, evt := range txn.Events {
		arr.Str(evt.Type + " " + evt.ID.String())
	}
	log.Debug().Array("events", arr).Msg("Appservice transaction received")
}

// mark queues a marker behind the events queued so far and returns the
// channel closed when the event processor reaches it.
func (h *txnHold) mark() <-chan struct{} {
	markerID := id.EventID("$sfb-handled-" + strconv.FormatUint(h.next.Add(1), 10))
	reached := make(chan struct{})
	h.mu.Lock()
	h.markers[markerID] = reached
	h.mu.Unlock()
	h.events <- &event.Event{Type: handledMarker, ID: markerID}
	return reached
}

// reached is the event processor's handler of markers.
func (h *txnHold) reached(_ context.Context, evt *event.Event) {
	h.mu.Lock()
	reached := h.markers[evt.ID]
	delete(h.markers, evt.ID)
	h.mu.Unlock()
	if reached != nil {
		close(reached)
	}
}

func wait(ctx context.Context, ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// heldResponse records an answer to send later.
type heldResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *heldResponse) Header() http.Header         { return r.header }
func (r *heldResponse) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *heldResponse) WriteHeader(status int)      { r.status = status }

func (r *heldResponse) copyTo(w http.ResponseWriter) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body.Bytes())
}
