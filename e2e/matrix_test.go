package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/internal/synapse"
)

// matrixUser is a Matrix user driven by the test: a mautrix client with a
// sync loop that records every timeline and invite event it sees, in order.
type matrixUser struct {
	t      testing.TB
	Client *mautrix.Client
	ID     id.UserID

	mu     sync.Mutex
	events []*event.Event
	// presence holds the m.presence events of the sync responses, apart
	// from the timeline: what Element shows next to people's names.
	presence []*event.Event
	// typing holds the m.typing events of the joined rooms, in order:
	// who Element shows as typing.
	typing  []*event.Event
	changed chan struct{} // closed and replaced whenever events, presence or typing grow
	// stopSync ends the running sync loop and waits for it.
	stopSync func()
}

func newMatrixUser(t testing.TB, hs *synapse.Server, acct synapse.Account) *matrixUser {
	t.Helper()
	u := matrixUserOf(t, hs, acct)
	u.Client.Syncer = u
	u.startSync()
	t.Cleanup(func() { u.stopSync() })
	return u
}

// matrixUserOf is acct's user with a client that does not sync yet.
func matrixUserOf(t testing.TB, hs *synapse.Server, acct synapse.Account) *matrixUser {
	t.Helper()
	client, err := mautrix.NewClient(hs.URL, acct.UserID, acct.AccessToken)
	require.NoError(t, err)
	client.DeviceID = acct.DeviceID
	return &matrixUser{t: t, Client: client, ID: acct.UserID, changed: make(chan struct{})}
}

func (u *matrixUser) startSync() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := u.Client.SyncWithContext(ctx); err != nil && ctx.Err() == nil {
				u.t.Logf("%s: sync stopped: %v; restarting", u.ID, err)
			}
		}
	}()
	u.stopSync = func() {
		cancel()
		<-done
	}
}

// setSyncPresence makes the client sync with set_presence=p from now on,
// as Element does when its user goes idle: a client that keeps syncing as
// online would turn its user online again right after a PUT of
// unavailable. The sync loop restarts from where it was.
func (u *matrixUser) setSyncPresence(p event.Presence) {
	u.stopSync()
	u.Client.SyncPresence = p
	u.startSync()
}

// ProcessResponse implements mautrix.Syncer.
func (u *matrixUser) ProcessResponse(_ context.Context, resp *mautrix.RespSync, _ string) error {
	var batch []*event.Event
	for roomID, room := range resp.Rooms.Invite {
		for _, evt := range room.State.Events {
			batch = append(batch, prepare(evt, roomID))
		}
	}
	var typing []*event.Event
	for roomID, room := range resp.Rooms.Join {
		for _, evt := range room.Timeline.Events {
			batch = append(batch, prepare(evt, roomID))
		}
		for _, evt := range room.Ephemeral.Events {
			if evt.Type.Type == event.EphemeralEventTyping.Type {
				evt.RoomID = roomID
				evt.Type.Class = event.EphemeralEventType
				_ = evt.Content.ParseRaw(evt.Type)
				typing = append(typing, evt)
			}
		}
	}
	for _, evt := range resp.Presence.Events {
		evt.Type.Class = event.EphemeralEventType
		_ = evt.Content.ParseRaw(evt.Type)
	}
	if len(batch) == 0 && len(resp.Presence.Events) == 0 && len(typing) == 0 {
		return nil
	}
	u.mu.Lock()
	u.events = append(u.events, batch...)
	u.presence = append(u.presence, resp.Presence.Events...)
	u.typing = append(u.typing, typing...)
	close(u.changed)
	u.changed = make(chan struct{})
	u.mu.Unlock()
	return nil
}

// OnFailedSync implements mautrix.Syncer: retry soon, the homeserver may be
// busy.
func (u *matrixUser) OnFailedSync(_ *mautrix.RespSync, err error) (time.Duration, error) {
	if errors.Is(err, context.Canceled) {
		return 0, err
	}
	return 200 * time.Millisecond, nil
}

// GetFilterJSON implements mautrix.Syncer. A large timeline limit so a burst
// of messages between two syncs is not cut into a "limited" timeline.
func (u *matrixUser) GetFilterJSON(id.UserID) *mautrix.Filter {
	return &mautrix.Filter{Room: &mautrix.RoomFilter{Timeline: &mautrix.FilterPart{Limit: 1000}}}
}

func prepare(evt *event.Event, roomID id.RoomID) *event.Event {
	evt.RoomID = roomID
	if evt.StateKey != nil {
		evt.Type.Class = event.StateEventType
	} else {
		evt.Type.Class = event.MessageEventType
	}
	// Content of unknown types stays raw; that is fine for matching.
	_ = evt.Content.ParseRaw(evt.Type)
	return evt
}

// mark is the position after the events seen so far, for waiting on what
// comes next.
func (u *matrixUser) mark() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.events)
}

// Events returns a copy of the recorded events from position from on.
func (u *matrixUser) Events(from int) []*event.Event {
	u.mu.Lock()
	defer u.mu.Unlock()
	if from > len(u.events) {
		from = len(u.events)
	}
	return append([]*event.Event(nil), u.events[from:]...)
}

// waitFor returns the first event at or after position from that matches,
// failing the test when none arrives within timeout.
func (u *matrixUser) waitFor(from int, timeout time.Duration, what string, match func(*event.Event) bool) *event.Event {
	u.t.Helper()
	evt, err := u.waitForErr(from, timeout, match)
	if err != nil {
		u.t.Fatalf("%s: waiting for %s: %v\nevents seen:\n%s", u.ID, what, err, u.describe(from))
	}
	return evt
}

func (u *matrixUser) waitForErr(from int, timeout time.Duration, match func(*event.Event) bool) (*event.Event, error) {
	return u.waitIn(&u.events, from, timeout, match)
}

// waitIn waits for a match in *list (u.events or u.presence) from
// position from on.
func (u *matrixUser) waitIn(list *[]*event.Event, from int, timeout time.Duration, match func(*event.Event) bool) (*event.Event, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		// Match outside the lock: matchers may look at other events.
		u.mu.Lock()
		events := (*list)[min(from, len(*list)):]
		changed := u.changed
		u.mu.Unlock()
		for _, evt := range events {
			if match(evt) {
				return evt, nil
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			return nil, fmt.Errorf("nothing matched within %s", timeout)
		}
	}
}

func (u *matrixUser) describe(from int) string {
	var b strings.Builder
	for _, evt := range u.Events(from) {
		fmt.Fprintf(&b, "  %s %s %s", evt.RoomID, evt.Sender, evt.Type.Type)
		if evt.StateKey != nil {
			fmt.Fprintf(&b, " state_key=%s", *evt.StateKey)
		}
		if msg := evt.Content.AsMessage(); evt.Type == event.EventMessage && msg != nil {
			fmt.Fprintf(&b, " body=%q", msg.Body)
		}
		if evt.Type == event.StateMember {
			fmt.Fprintf(&b, " membership=%s", evt.Content.AsMember().Membership)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// isMessage matches an m.room.message from sender in room (any room when
// room is empty) whose body satisfies body.
func isMessage(room id.RoomID, sender id.UserID, body func(string) bool) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.Type != event.EventMessage || evt.Sender != sender || (room != "" && evt.RoomID != room) {
			return false
		}
		msg := evt.Content.AsMessage()
		return msg != nil && body(msg.Body)
	}
}

// isInvite matches an invite of user (from anyone).
func isInvite(user id.UserID) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		return evt.Type == event.StateMember && evt.StateKey != nil && *evt.StateKey == user.String() &&
			evt.Content.AsMember().Membership == event.MembershipInvite
	}
}

// isJoin matches user joining room.
func isJoin(room id.RoomID, user id.UserID) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.StateKey != nil &&
			*evt.StateKey == user.String() && evt.Content.AsMember().Membership == event.MembershipJoin
	}
}

func equals(s string) func(string) bool { return func(b string) bool { return b == s } }

func anyBody(string) bool { return true }

// indexOf is the position of evt among the recorded events, or -1.
func (u *matrixUser) indexOf(evt *event.Event) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, e := range u.events {
		if e == evt {
			return i
		}
	}
	return -1
}

// isSpace reports whether room is a space (the bridge's personal filtering
// space), judged by its create event in the timeline or invite state.
func (u *matrixUser) isSpace(room id.RoomID) bool {
	for _, evt := range u.Events(0) {
		if evt.RoomID == room && evt.Type == event.StateCreate {
			return evt.Content.AsCreate().Type == event.RoomTypeSpace
		}
	}
	return false
}
