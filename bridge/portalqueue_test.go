package bridge

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
)

func eventFor(key networkid.PortalKey) bridgev2.RemoteEvent {
	return &simplevent.ChatInfoChange{EventMeta: simplevent.EventMeta{
		Type: bridgev2.RemoteEventChatInfoChange, PortalKey: key, CreatePortal: true,
	}}
}

// Two logins' first events for one group portal: bridgev2 reads the
// portal's room ID (MarkInPortal) before queueing, while the other event's
// handling creates the room and writes it. The fake queue does the same;
// run with -race, the race detector sees the read and the write unordered
// unless the events are handed over one at a time.
func TestOneAtATimePerPortalOrdersHandOvers(t *testing.T) {
	var (
		roomID           string // the portal's MXID
		inFlight, maxSim atomic.Int32
		readIDs          = make(chan string, 2)
	)
	queue := oneAtATimePerPortal(func(_ *bridgev2.UserLogin, _ bridgev2.RemoteEvent) bridgev2.EventHandlingResult {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxSim.Load(); n > m && !maxSim.CompareAndSwap(m, n); m = maxSim.Load() {
		}
		readIDs <- roomID // MarkInPortal
		handled := make(chan struct{})
		go func() { // the portal's handler goroutine, awaited (buffer 0)
			defer close(handled)
			if roomID == "" {
				roomID = "!group:example.org"
			}
		}()
		<-handled
		return bridgev2.EventHandlingResult{Success: true}
	})
	key := networkid.PortalKey{ID: "group:thread"}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { queue(nil, eventFor(key)) })
	}
	wg.Wait()
	assert.EqualValues(t, 1, maxSim.Load(), "events of one portal handed over at the same time")
	assert.ElementsMatch(t, []string{"", "!group:example.org"}, []string{<-readIDs, <-readIDs},
		"the second event sees the room the first created")
}

func TestOneAtATimePerPortalLetsOtherPortalsThrough(t *testing.T) {
	busy, other := networkid.PortalKey{ID: "group:busy"}, networkid.PortalKey{ID: "group:other"}
	release := make(chan struct{})
	queue := oneAtATimePerPortal(func(_ *bridgev2.UserLogin, evt bridgev2.RemoteEvent) bridgev2.EventHandlingResult {
		if evt.GetPortalKey() == busy {
			<-release
		}
		return bridgev2.EventHandlingResult{Success: true}
	})
	busyDone := make(chan bridgev2.EventHandlingResult)
	go func() { busyDone <- queue(nil, eventFor(busy)) }()
	otherDone := make(chan bridgev2.EventHandlingResult, 1)
	go func() { otherDone <- queue(nil, eventFor(other)) }()
	require.Eventually(t, func() bool { return len(otherDone) == 1 }, 5*time.Second, time.Millisecond,
		"another portal's event waited for a busy portal")
	close(release)
	assert.True(t, (<-busyDone).Success)
}
