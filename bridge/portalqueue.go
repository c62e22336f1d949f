package bridge

import (
	"sync"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
)

// queueFunc hands a remote event to bridgev2 (Bridge.QueueRemoteEvent).
type queueFunc func(*bridgev2.UserLogin, bridgev2.RemoteEvent) bridgev2.EventHandlingResult

// oneAtATimePerPortal lets one remote event at a time per portal into
// queue. bridgev2 handles a portal's events one at a time itself, but only
// after QueueRemoteEvent has run UserLogin.MarkInPortal, which reads the
// portal's room ID without its lock. A group portal gets events from the
// SfB sessions of every login in the conversation: while the first one's
// event creates the room (writing the room ID), another login's first
// event would read it. Handing over one at a time orders the read after
// the write, since with portal_event_buffer 0 QueueRemoteEvent returns
// only once the event was handled. Different portals do not wait for each
// other.
func oneAtATimePerPortal(queue queueFunc) queueFunc {
	var (
		mu      sync.Mutex
		portals = map[networkid.PortalKey]*portalTurn{}
	)
	return func(login *bridgev2.UserLogin, evt bridgev2.RemoteEvent) bridgev2.EventHandlingResult {
		key := evt.GetPortalKey()
		mu.Lock()
		turn := portals[key]
		if turn == nil {
			turn = &portalTurn{}
			portals[key] = turn
		}
		turn.waiting++
		mu.Unlock()

		turn.Lock()
		defer func() {
			turn.Unlock()
			mu.Lock()
			if turn.waiting--; turn.waiting == 0 {
				delete(portals, key)
			}
			mu.Unlock()
		}()
		return queue(login, evt)
	}
}

// portalTurn is held while one event of a portal is handed over; waiting
// counts those holding or waiting for it, so that an idle portal's entry
// goes away.
type portalTurn struct {
	sync.Mutex
	waiting int
}
