package bridge

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is a time source the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestGapWatch(t *testing.T) {
	type step struct {
		txn     string
		advance time.Duration // before the transaction arrives
		arm     bool          // before the transaction arrives
		taken   bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"consecutive numbers are taken", []step{{txn: "7", taken: true}, {txn: "8", taken: true}, {txn: "9", taken: true}}},
		{"the first after the start is taken whatever its number", []step{{txn: "500", taken: true}, {txn: "501", taken: true}}},
		{"a stranded transaction is sent before the refused one", []step{
			{txn: "215", taken: true}, {txn: "216", taken: true},
			{txn: "218", taken: false}, // 217 is stranded: refused
			{txn: "217", taken: true}, {txn: "218", taken: true},
		}},
		{"another appservice's number: the refused one comes back first and is taken", []step{
			{txn: "20", taken: true}, {txn: "22", taken: false}, {txn: "22", taken: true}, {txn: "23", taken: true},
		}},
		{"a repeat of a taken transaction is taken", []step{{txn: "30", taken: true}, {txn: "31", taken: true}, {txn: "30", taken: true}}},
		{"numbers that are not Synapse's are taken", []step{{txn: "abc", taken: true}, {txn: "x9", taken: true}}},
		{"long after the start gaps are taken", []step{
			{txn: "40", taken: true}, {txn: "42", advance: gapWatchArmed + time.Second, taken: true},
		}},
		{"the homeserver giving up on an answer arms the watch again", []step{
			{txn: "40", taken: true}, {txn: "41", advance: gapWatchArmed + time.Second, taken: true},
			{txn: "43", arm: true, taken: false}, {txn: "42", taken: true}, {txn: "43", taken: true},
		}},
		{"a refusal keeps the watch armed for a while", []step{
			{txn: "50", taken: true},
			{txn: "52", advance: gapWatchArmed - time.Second, taken: false}, {txn: "51", taken: true}, {txn: "52", taken: true},
			{txn: "54", advance: gapWatchAfterRefusal / 2, taken: false},
		}},
		{"refusals are bounded per recovery", []step{
			{txn: "60", taken: true},
			{txn: "62", taken: false}, {txn: "62", taken: true},
			{txn: "64", taken: false}, {txn: "64", taken: true},
			{txn: "66", taken: false}, {txn: "66", taken: true},
			{txn: "68", taken: false}, {txn: "68", taken: true},
			{txn: "70", taken: false}, {txn: "70", taken: true},
			{txn: "72", taken: true},
			{txn: "74", arm: true, taken: false},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
			g := newGapWatch(clock.now)
			for i, s := range tc.steps {
				clock.t = clock.t.Add(s.advance)
				if s.arm {
					g.arm()
				}
				taken, _ := g.admit(s.txn)
				assert.Equal(t, s.taken, taken, "step %d: transaction %s", i, s.txn)
			}
		})
	}
}

// The middleware refuses a transaction after a gap with 503 before mautrix
// sees it (nothing is queued, the homeserver sends it again) and pings the
// homeserver so that its recovery runs at once.
func TestTxnHoldRefusesATransactionAfterAGap(t *testing.T) {
	rig := newTxnHoldRig(t)
	close(rig.release)
	pinged := make(chan struct{}, 4)
	rig.hold.pingAfterRefusal = func() { pinged <- struct{}{} }
	answer := func(txn string) int {
		t.Helper()
		select {
		case rec := <-rig.put(transactionPath + txn):
			return rec.Code
		case <-time.After(5 * time.Second):
			t.Fatalf("transaction %s not answered", txn)
			return 0
		}
	}
	require.Equal(t, http.StatusOK, answer("216"))
	assert.Equal(t, http.StatusServiceUnavailable, answer("218"))
	assert.Equal(t, int32(1), rig.nextRuns.Load(), "the refused transaction never reached mautrix")
	select {
	case <-pinged:
	case <-time.After(5 * time.Second):
		t.Fatal("the homeserver was not pinged after the refusal")
	}
	assert.Equal(t, http.StatusOK, answer("217"))
	assert.Equal(t, http.StatusOK, answer("218"))
	assert.Equal(t, int32(3), rig.handled.Load())

	rec := httptest.NewRecorder()
	rig.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/_matrix/app/v1/ping", nil))
	assert.Equal(t, http.StatusOK, rec.Code, "other requests pass")
}
