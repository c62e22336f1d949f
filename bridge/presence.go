package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/metrics"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/presence"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// LoginMetadata is what the connector keeps in bridgev2's user_login row.
type LoginMetadata struct {
	// PublishPresence overrides network.presence.publish for the login;
	// nil follows the configuration.
	PublishPresence *bool `json:"publish_presence,omitempty"`
}

// activityEvery bounds how often Matrix activity of one login becomes a
// ReportActivity (the transport limits what it sends further): SfB turns
// a user Away after minutes, not seconds.
const activityEvery = 30 * time.Second

// presenceEngine carries presence both ways. SfB -> Matrix: it decides who
// is watched (presence.Spread), maps what the watches report and writes it
// to the ghosts (presence.Writer), refreshing only ghosts a present Matrix
// user can see. Matrix -> SfB: it takes the m.presence of logged-in users,
// debounces it and publishes it for logins that publish.
type presenceEngine struct {
	conn   *Connector
	cfg    PresenceConfig
	log    zerolog.Logger
	spread *presence.Spread
	writer *presence.Writer
	// afterFunc runs f after d; tests replace it to fire by hand.
	afterFunc func(d time.Duration, f func()) stopper
	now       func() time.Time

	mu sync.Mutex
	// rooms: person -> logins with a room with them.
	rooms map[sfb.URI]map[networkid.UserLoginID]struct{}
	// contacts: login -> the people of its SfB contact list.
	contacts map[networkid.UserLoginID]map[sfb.URI]struct{}
	// users: login -> its Matrix user.
	users map[networkid.UserLoginID]id.UserID
	// present: Matrix user -> their last m.presence; a user not in it
	// has not been heard of and counts as present, so that a restart
	// does not let ghosts decay until every user sent presence.
	present map[id.UserID]pubState
	// publish: login -> whether it publishes (publishesPresence, read
	// once; the presence-publish command and mode changes change it here
	// too).
	publish    map[networkid.UserLoginID]bool
	publishers map[networkid.UserLoginID]*publisher
	activity   map[networkid.UserLoginID]time.Time
}

type stopper interface{ Stop() bool }

func newPresenceEngine(c *Connector, set presence.SetFunc) *presenceEngine {
	e := &presenceEngine{
		conn:       c,
		cfg:        c.Config.Presence,
		log:        c.log.With().Str("component", "presence").Logger(),
		afterFunc:  func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) },
		now:        time.Now,
		rooms:      map[sfb.URI]map[networkid.UserLoginID]struct{}{},
		contacts:   map[networkid.UserLoginID]map[sfb.URI]struct{}{},
		users:      map[networkid.UserLoginID]id.UserID{},
		present:    map[id.UserID]pubState{},
		publish:    map[networkid.UserLoginID]bool{},
		publishers: map[networkid.UserLoginID]*publisher{},
		activity:   map[networkid.UserLoginID]time.Time{},
	}
	e.writer = presence.NewWriter(set, presence.WriterOptions{
		Rate:            e.cfg.WriteRate,
		Workers:         16,
		RefreshInterval: e.cfg.RefreshInterval,
		Visible:         e.visible,
	}, e.log)
	e.spread = presence.NewSpread(e.log, e.writer.Forget)
	return e
}

// ghostPresenceSetter writes presence through each ghost's appservice
// intent (bridgev2 has no presence API).
func ghostPresenceSetter(mc *matrix.Connector) presence.SetFunc {
	return func(ctx context.Context, person sfb.URI, state presence.MatrixState) error {
		api := mc.GhostIntent(userIDFor(person))
		intent, ok := api.(*matrix.ASIntent)
		if !ok {
			return fmt.Errorf("write presence of %s: ghost intent is a %T, not the appservice's", person.Address(), api)
		}
		if err := intent.Matrix.EnsureRegistered(ctx); err != nil {
			return fmt.Errorf("register ghost of %s: %w", person.Address(), err)
		}
		return intent.Matrix.SetPresence(ctx, mautrix.ReqPresence{Presence: state.Presence, StatusMsg: state.StatusMsg})
	}
}

// PresenceStats are the presence counters since the start, for metrics
// and the bench (which derives rates from two readings).
type PresenceStats struct {
	presence.Stats
	// Watched is how many people logins watch, Unplaced how many wanted
	// people no login can watch now.
	Watched  int `json:"watched"`
	Unplaced int `json:"unplaced"`
}

// PresenceStats returns the presence counters; zero when presence is off
// or the connector has not started.
func (c *Connector) PresenceStats() PresenceStats {
	if c.presence == nil {
		return PresenceStats{}
	}
	st := PresenceStats{Stats: c.presence.writer.Stats(), Unplaced: c.presence.spread.Unplaced()}
	for _, n := range c.presence.spread.Watching() {
		st.Watched += n
	}
	return st
}

// visible reports whether a present Matrix user has a room with person.
func (e *presenceEngine) visible(person sfb.URI) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for login := range e.rooms[person] {
		if e.userPresentLocked(e.users[login]) {
			return true
		}
	}
	return false
}

func (e *presenceEngine) userPresentLocked(user id.UserID) bool {
	p, heard := e.present[user]
	return !heard || p.presence != event.PresenceOffline
}

// noteUser records the login's Matrix user.
func (e *presenceEngine) noteUser(c *Client) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.users[c.loginID] = c.login.UserMXID
	if _, set := e.publish[c.loginID]; !set {
		e.publish[c.loginID] = e.conn.publishesPresence(c.login)
	}
}

// learnPresence asks the homeserver for the presence of a Matrix user not
// heard of yet: Synapse sends m.presence only on changes, and a user who
// is offline when the bridge starts would count as present until then.
func (e *presenceEngine) learnPresence(ctx context.Context, user id.UserID) {
	e.mu.Lock()
	_, heard := e.present[user]
	e.mu.Unlock()
	if heard || e.conn.matrixPresenceOf == nil {
		return
	}
	p, err := e.conn.matrixPresenceOf(ctx, user)
	if err != nil {
		// The bot may share no room with the user; they count as present.
		zerolog.Ctx(ctx).Debug().Err(err).Str("user_id", user.String()).Msg("Could not read the Matrix user's presence")
		return
	}
	e.mu.Lock()
	if _, heard := e.present[user]; !heard {
		e.present[user] = pubState{presence: p.Presence, status: p.StatusMessage}
	}
	e.mu.Unlock()
}

// loginUp runs when a login has a session: its rooms and contacts become
// wanted and the session watches its share.
func (e *presenceEngine) loginUp(ctx context.Context, c *Client, s sfb.Session) {
	if c.currentSession() != s {
		return // gone again already
	}
	log := c.log.With().Str("component", "presence").Logger()
	e.learnPresence(ctx, c.login.UserMXID)
	e.republish(c)
	e.spread.AddWatcher(ctx, string(c.loginID), s)

	var want []sfb.URI
	ups, err := e.conn.br.DB.UserPortal.GetAllForLogin(ctx, c.login.UserLogin)
	if err != nil {
		log.Warn().Err(err).Msg("Failed to list the login's rooms for presence")
	}
	for _, up := range ups {
		if peer, err := uriFor(up.Portal.ID); err == nil && up.Portal.Receiver == c.loginID {
			want = append(want, peer)
		}
	}
	// Rooms that are new to the engine may show ghosts that decayed
	// while nobody present saw them.
	e.writer.RefreshNow(e.addRooms(c.loginID, want))
	contacts, err := s.Contacts(ctx)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		log.Debug().Err(err).Msg("The transport has no contact list")
	case err != nil:
		log.Warn().Err(err).Msg("Failed to list the SfB contacts for presence")
	default:
		want = append(want, e.setContacts(c, contacts)...)
	}
	e.spread.Want(ctx, string(c.loginID), want)
}

// loginGone says why a login's session went away.
type loginGone int

const (
	// loginSessionEnded: the session ended and the login reconnects.
	loginSessionEnded loginGone = iota
	// loginLoggedOut: the user logged out; what they wanted is dropped.
	loginLoggedOut
	// loginDetached: the bridge stops; every login goes, nobody moves.
	loginDetached
)

// loginDown runs when a login's session goes away: its people move to
// other logins, except when the bridge is stopping.
func (e *presenceEngine) loginDown(ctx context.Context, loginID networkid.UserLoginID, why loginGone) {
	if why == loginDetached {
		e.spread.DropWatcher(string(loginID))
		return
	}
	if why != loginLoggedOut {
		e.spread.RemoveWatcher(ctx, string(loginID))
		return
	}
	// What only this login wanted is dropped first, so that only people
	// others want move, into the room the rest leaves.
	e.spread.Forget(ctx, string(loginID))
	e.spread.RemoveWatcher(ctx, string(loginID))
	e.mu.Lock()
	defer e.mu.Unlock()
	for person, logins := range e.rooms {
		delete(logins, loginID)
		if len(logins) == 0 {
			delete(e.rooms, person)
		}
	}
	delete(e.contacts, loginID)
	delete(e.users, loginID)
	delete(e.publish, loginID)
	if p := e.publishers[loginID]; p != nil {
		p.stop()
		delete(e.publishers, loginID)
	}
	delete(e.activity, loginID)
}

// addRooms records rooms of login with people.
func (e *presenceEngine) addRooms(login networkid.UserLoginID, people []sfb.URI) []sfb.URI {
	e.mu.Lock()
	defer e.mu.Unlock()
	var added []sfb.URI
	for _, p := range people {
		logins := e.rooms[p]
		if logins == nil {
			logins = map[networkid.UserLoginID]struct{}{}
			e.rooms[p] = logins
		}
		if _, ok := logins[login]; !ok {
			logins[login] = struct{}{}
			added = append(added, p)
		}
	}
	return added
}

// sawPeer: the login talks to peer (a message either way), so it has a
// room with them and wants them watched.
func (e *presenceEngine) sawPeer(ctx context.Context, c *Client, peer sfb.URI) {
	if peer == "" || peer == c.selfURI() {
		return
	}
	added := e.addRooms(c.loginID, []sfb.URI{peer})
	if len(added) == 0 {
		return
	}
	// Known already through another login: the new room shows it now.
	e.writer.RefreshNow(added)
	// Watching makes SfB requests; the message does not wait for them.
	go e.spread.Want(c.log.WithContext(c.conn.backgroundCtx()), string(c.loginID), added)
}

// setContacts replaces the login's contact list and returns the people
// in it; those who left it and have no room with the login are no longer
// wanted by it.
func (e *presenceEngine) setContacts(c *Client, people []sfb.Person) []sfb.URI {
	next := map[sfb.URI]struct{}{}
	var list []sfb.URI
	for _, p := range people {
		if p.URI == "" || p.URI == c.selfURI() {
			continue
		}
		if _, dup := next[p.URI]; !dup {
			next[p.URI] = struct{}{}
			list = append(list, p.URI)
		}
	}
	e.mu.Lock()
	prev := e.contacts[c.loginID]
	e.contacts[c.loginID] = next
	var gone []sfb.URI
	for p := range prev {
		_, still := next[p]
		_, room := e.rooms[p][c.loginID]
		if !still && !room {
			gone = append(gone, p)
		}
	}
	e.mu.Unlock()
	if len(gone) > 0 {
		e.spread.Unwant(c.conn.backgroundCtx(), string(c.loginID), gone)
	}
	return list
}

// contactsChanged reloads the login's contact list.
func (e *presenceEngine) contactsChanged(ctx context.Context, c *Client, s sfb.Session) {
	contacts, err := s.Contacts(ctx)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to reload the SfB contact list")
		return
	}
	e.spread.Want(ctx, string(c.loginID), e.setContacts(c, contacts))
}

// presenceChanged writes what a watch reported to the person's ghost.
func (e *presenceEngine) presenceChanged(ctx context.Context, c *Client, evt sfb.PresenceChanged) {
	log := zerolog.Ctx(ctx).With().Str("person", evt.Person.Address()).Logger()
	if !e.spread.Wanted(evt.Person) {
		log.Info().Str("availability", string(evt.Presence.Availability)).Msg("Ignoring presence of a person nobody watches")
		return
	}
	if !e.spread.Accepts(string(c.loginID), evt.Person) {
		// Another login watches them now; its report counts.
		log.Debug().Msg("Ignoring presence of a person another login watches")
		return
	}
	p := evt.Presence
	if !presence.Known(p.Availability) {
		log.Warn().Str("availability", string(p.Availability)).Msg("Unknown SfB availability, showing the person offline")
	}
	if _, ok := presence.ActivityLabel(p.Activity); !ok {
		log.Debug().Str("activity", p.Activity).Msg("Unknown SfB activity token, not shown")
	}
	e.writer.Update(evt.Person, presence.ToMatrix(p, e.now()))
	e.conn.metrics.PresenceUpdate(metrics.ToMatrix)
}

// matrixPresence handles the m.presence of a Matrix user.
func (e *presenceEngine) matrixPresence(ctx context.Context, user id.UserID, content *event.PresenceEventContent) {
	e.mu.Lock()
	wasPresent := e.userPresentLocked(user)
	st := pubState{presence: content.Presence, status: content.StatusMessage}
	e.present[user] = st
	isPresent := e.userPresentLocked(user)
	var logins []networkid.UserLoginID
	var seen []sfb.URI
	for login, u := range e.users {
		if u != user {
			continue
		}
		logins = append(logins, login)
		if !wasPresent && isPresent {
			for person, ls := range e.rooms {
				if _, ok := ls[login]; ok {
					seen = append(seen, person)
				}
			}
		}
	}
	e.mu.Unlock()
	// Ghosts this user sees were not refreshed while they were away and
	// may have decayed: write them again now.
	if len(seen) > 0 {
		e.writer.RefreshNow(seen)
	}
	for _, login := range logins {
		if !e.publishes(login) {
			continue
		}
		ul := e.conn.br.GetCachedUserLoginByID(login)
		if ul == nil {
			continue
		}
		c, ok := ul.Client.(*Client)
		if !ok {
			continue
		}
		e.publisher(c).update(st)
		if content.CurrentlyActive {
			e.reportActivity(ctx, c)
		}
	}
}

// publishes reports whether the login publishes its Matrix presence.
func (e *presenceEngine) publishes(login networkid.UserLoginID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.publish[login]
}

// publishSetting is the login's effective publish option: its own, else
// the configuration's.
func publishSetting(ul *bridgev2.UserLogin, cfg PresenceConfig) bool {
	if meta, ok := ul.Metadata.(*LoginMetadata); ok && meta.PublishPresence != nil {
		return *meta.PublishPresence
	}
	return cfg.Publish
}

// activity records Matrix activity of the login's user (a message, a read
// receipt, typing): SfB must not turn them Away.
func (e *presenceEngine) userActive(ctx context.Context, c *Client) {
	if !e.publishes(c.loginID) {
		return
	}
	e.reportActivity(ctx, c)
}

func (e *presenceEngine) reportActivity(ctx context.Context, c *Client) {
	now := e.now()
	e.mu.Lock()
	if last, ok := e.activity[c.loginID]; ok && now.Sub(last) < activityEvery {
		e.mu.Unlock()
		return
	}
	e.activity[c.loginID] = now
	e.mu.Unlock()
	s := c.currentSession()
	if s == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := s.ReportActivity(ctx); err != nil {
			c.log.Warn().Err(err).Msg("Failed to report activity to SfB")
		}
	}()
}

// setPublish applies a change of the login's publish option: on, the
// user's last Matrix presence is published (after the debounce); off,
// what waits is dropped.
func (e *presenceEngine) setPublish(c *Client, on bool) {
	e.mu.Lock()
	e.publish[c.loginID] = on
	p := e.publishers[c.loginID]
	last, heard := e.present[c.login.UserMXID]
	if !on && p != nil {
		p.stop()
		delete(e.publishers, c.loginID)
	}
	e.mu.Unlock()
	if on && heard {
		e.publisher(c).update(last)
	}
}

// republish publishes the user's Matrix presence on a new session of a
// publishing login: the session knows nothing of what the last one
// published, and SfB makes a new endpoint Available.
func (e *presenceEngine) republish(c *Client) {
	if !e.publishes(c.loginID) {
		return
	}
	e.mu.Lock()
	last, heard := e.present[c.login.UserMXID]
	e.mu.Unlock()
	if !heard {
		return
	}
	p := e.publisher(c)
	p.mu.Lock()
	p.published = nil
	p.mu.Unlock()
	p.update(last)
}

func (e *presenceEngine) publisher(c *Client) *publisher {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.publishers[c.loginID]
	if p == nil {
		p = &publisher{e: e, c: c}
		e.publishers[c.loginID] = p
	}
	return p
}

// pubState is a Matrix presence as far as SfB carries it.
type pubState struct {
	presence event.Presence
	status   string
}

// publisher publishes one login's Matrix presence on SfB, debounced: a
// state is published once it held for publish_debounce, so that devices
// and idle timers that disagree for a moment do not make SfB flap; a state
// that comes back to what SfB shows within the window publishes nothing.
type publisher struct {
	e *presenceEngine
	c *Client

	publishing sync.Mutex
	mu         sync.Mutex
	target     pubState
	published  *pubState
	timer      stopper
	stopped    bool
}

func (p *publisher) update(st pubState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.target = st
	if p.timer != nil {
		p.timer.Stop()
	}
	p.timer = p.e.afterFunc(p.e.cfg.PublishDebounce, p.fire)
}

func (p *publisher) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	if p.timer != nil {
		p.timer.Stop()
	}
}

func (p *publisher) fire() {
	// One publication at a time, in order.
	p.publishing.Lock()
	defer p.publishing.Unlock()
	p.mu.Lock()
	target := p.target
	if p.stopped || (p.published != nil && *p.published == target) {
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	pub, ok := presence.Publication(target.presence, target.status, p.e.cfg.OfflineAs)
	if !ok {
		p.c.log.Debug().Str("presence", string(target.presence)).Msg("Matrix presence with no SfB equivalent, not published")
		return
	}
	s := p.c.currentSession()
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(p.c.conn.backgroundCtx(), 30*time.Second)
	defer cancel()
	if err := s.Publish(ctx, pub); err != nil {
		p.c.log.Warn().Err(err).Str("availability", string(*pub.Availability)).Msg("Failed to publish presence on SfB")
		return
	}
	p.mu.Lock()
	p.published = &target
	p.mu.Unlock()
	p.c.conn.metrics.PresenceUpdate(metrics.ToSfB)
	p.c.log.Debug().Str("availability", string(*pub.Availability)).Msg("Published Matrix presence on SfB")
}

// handleMatrixPresence takes m.presence from the appservice transaction.
// The bridge's own users are skipped: their presence is what the bridge
// wrote, and must not come back as a change.
func (c *Connector) handleMatrixPresence(ctx context.Context, evt *event.Event) {
	if c.presence == nil {
		return
	}
	if c.bridgeUser != nil && c.bridgeUser(evt.Sender) {
		return
	}
	content := evt.Content.AsPresence()
	if evt.Sender == "" || content == nil {
		c.log.Warn().Str("sender", evt.Sender.String()).Msg("Ignoring m.presence without sender or content")
		return
	}
	c.presence.matrixPresence(ctx, evt.Sender, content)
}

// HandleMatrixReadReceipt: a read receipt is activity of the user, which
// keeps them from turning Away on SfB; SfB has no read receipts to send.
func (c *Client) HandleMatrixReadReceipt(ctx context.Context, msg *bridgev2.MatrixReadReceipt) error {
	if e := c.conn.presence; e != nil {
		e.userActive(ctx, c)
	}
	return nil
}
