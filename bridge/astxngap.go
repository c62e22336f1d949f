package bridge

import (
	"strconv"
	"sync"
	"time"
)

// Synapse (1.163) can strand an appservice transaction. While it considers
// the appservice down (a push failed: the bridge was killed, or refused a
// transaction while starting), every new event goes into a transaction
// that only the appservice's recoverer sends, oldest first; the recoverer,
// finding none left, marks the service up. An event whose push read
// "down" before that mark and stored its transaction after the
// recoverer's last look stays in the table with the service up: nothing
// sends it until a push fails again, which may be never, or after later
// events (synapse/appservice/scheduler.py: _TransactionController.send,
// _Recoverer.retry). The crash test lost Matrix messages to SfB that way
// under load, and got one late, after the next, at the following kill.
//
// Synapse numbers transactions from one sequence, shared by all its
// appservices, and sends an appservice's transactions one at a time, in
// order. A transaction numbered more than one above the last one taken may
// therefore have one of ours stranded before it. gapWatch has it refused
// (503): Synapse marks the service down and starts a recoverer, which
// sends the stranded transaction first and the refused one after it, so
// nothing is lost and the order is kept; the bridge pings the homeserver
// so that the recoverer runs at once. The gap may as well be another
// appservice's transaction; the refused one then comes back next and is
// taken. A refusal costs a recovery round trip, so the watch refuses only
// while a transaction can be stranded: for a while after the process
// started and after the homeserver gave up on a held answer (both mean a
// recovery), a bounded number of times each.

const (
	// gapWatchArmed is how long after a recovery began gaps are refused.
	gapWatchArmed = 2 * time.Minute
	// gapWatchRefusals bounds the refusals per recovery.
	gapWatchRefusals = 5
	// gapWatchAfterRefusal keeps the watch armed after a refusal, whose
	// own recovery can strand a transaction too.
	gapWatchAfterRefusal = 10 * time.Second
)

// gapWatch decides, from the numbers of Synapse's transactions, which one
// to refuse so that a stranded one before it is sent first.
type gapWatch struct {
	now func() time.Time

	mu sync.Mutex
	// last is the highest transaction number taken; 0 before the first.
	last uint64
	// refused is the number last refused for a gap: when it comes back
	// first, nothing of ours was before it.
	refused    uint64
	armedUntil time.Time
	refusals   int
}

func newGapWatch(now func() time.Time) *gapWatch {
	g := &gapWatch{now: now}
	g.arm()
	return g
}

// arm notes that the homeserver may be recovering the appservice.
func (g *gapWatch) arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if until := g.now().Add(gapWatchArmed); until.After(g.armedUntil) {
		g.armedUntil = until
	}
	g.refusals = gapWatchRefusals
}

// admit reports whether the transaction txnID is taken; if not, it is to
// be refused, and after is the last number taken. An ID that is not a
// number (not Synapse's) is always taken.
func (g *gapWatch) admit(txnID string) (ok bool, after uint64) {
	n, err := strconv.ParseUint(txnID, 10, 64)
	if err != nil {
		return true, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	gap := g.last != 0 && n > g.last+1 && n != g.refused
	if gap && g.refusals > 0 && now.Before(g.armedUntil) {
		g.refused = n
		g.refusals--
		if until := now.Add(gapWatchAfterRefusal); until.After(g.armedUntil) {
			g.armedUntil = until
		}
		return false, g.last
	}
	g.last = max(g.last, n)
	return true, g.last
}
