package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/ptr"
	"maunium.net/go/mautrix/bridgev2"
	mxdb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Multi-party conversations (docs/groups.md).
//
// A multi-party conversation is one portal, keyed by its SfB thread ID
// with the prefix "group:" (no SIP address has the scheme "group", so the
// key never meets a 1:1 key, which is the peer's address) and no receiver:
// every login in the conversation shares the room, so that a message is
// shown once however many migrated users receive it (see groupdedup.go).
// SfB ends an IM conference when everybody left and continues it with new
// conference IDs under the same thread ID, so the key, and the room, stay.
//
// The connector keeps the subject and the participants of each thread
// (sfb_group): the room's name comes from them, and a message sent after
// the conference ended starts it again with the same people.

// groupPortalPrefix starts the portal ID of a multi-party conversation,
// and the outbox lane of its messages.
const groupPortalPrefix = "group:"

// groupPortalKey keys the portal of the multi-party conversation thread.
// It is shared by all logins, except with bridgev2's split portals, where
// every key needs a receiver: then each login has its own room.
func (c *Client) groupPortalKey(thread string) networkid.PortalKey {
	key := networkid.PortalKey{ID: networkid.PortalID(groupPortalPrefix + thread)}
	if c.splitPortals() {
		key.Receiver = c.loginID
	}
	return key
}

func (c *Client) splitPortals() bool {
	br := c.conn.br
	return br != nil && br.Config != nil && br.Config.SplitPortals
}

// groupThread returns the thread ID of a group portal ID or outbox lane.
func groupThread[T ~string](id T) (string, bool) {
	return strings.CutPrefix(string(id), groupPortalPrefix)
}

// loginOf returns the login of a person who uses the bridge, or nil.
func (c *Client) loginOf(uri sfb.URI) *bridgev2.UserLogin {
	if c.conn.br == nil {
		return nil
	}
	return c.conn.br.GetCachedUserLoginByID(loginIDFor(uri))
}

// groupSender says who sent something in a group: the user themselves,
// another user of the bridge (shown as their Matrix account when they have
// double puppeting, else as their ghost), or an SfB ghost.
func (c *Client) groupSender(from sfb.URI) bridgev2.EventSender {
	switch {
	case from == c.selfURI():
		return bridgev2.EventSender{IsFromMe: true, SenderLogin: c.loginID, Sender: userIDFor(from)}
	case c.loginOf(from) != nil:
		return bridgev2.EventSender{SenderLogin: loginIDFor(from), Sender: userIDFor(from)}
	default:
		return bridgev2.EventSender{Sender: userIDFor(from)}
	}
}

// groupMember is uri as a member of a group room: the bridge's users by
// their Matrix accounts (without a Sender, which would also bring in
// their SfB ghosts), everyone else as a ghost.
func (c *Client) groupMember(uri sfb.URI, membership event.Membership) bridgev2.ChatMember {
	switch {
	case uri == c.selfURI():
		return bridgev2.ChatMember{EventSender: bridgev2.EventSender{IsFromMe: true, SenderLogin: c.loginID}, Membership: membership}
	case c.loginOf(uri) != nil:
		return bridgev2.ChatMember{EventSender: bridgev2.EventSender{SenderLogin: loginIDFor(uri)}, Membership: membership}
	default:
		return bridgev2.ChatMember{EventSender: bridgev2.EventSender{Sender: userIDFor(uri)}, Membership: membership}
	}
}

// retryDB runs fn until it succeeds, fails for good or ctx ends: an SfB
// event is acknowledged once its handler returns, so giving up on a
// database that is only unavailable would lose it.
func (c *Client) retryDB(ctx context.Context, what string, fn func() error) bool {
	stopped, err := c.retryTransient(ctx, what, fn)
	if err != nil && !stopped {
		zerolog.Ctx(ctx).Err(err).Str("action", what).Msg("Database step of an SfB event failed, giving up on the event")
	}
	return err == nil
}

// groupIncoming is incoming for a multi-party conversation: the group
// portal, the sender, and the ID that every login's copy of the event
// shares (groupdedup.go); content identifies the event's text. ok is
// false for an event without thread or sender, and for a login's copy of
// a message a migrated user wrote in Matrix: it is in the room since it
// was written, and handing it to bridgev2 could even show it twice, as
// its message row is stored only when the sender's outbox reports the
// delivery, which may come after this copy.
func (c *Client) groupIncoming(ctx context.Context, what, id string, conv sfb.Conversation, fromPerson sfb.Person, when time.Time, content sfb.Message) (meta simplevent.EventMeta, msgID networkid.MessageID, ok bool) {
	log := zerolog.Ctx(ctx)
	thread, from := conv.ThreadID, fromPerson.URI
	if thread == "" || from == "" {
		log.Warn().Str("sfb_event_kind", what).Str("thread_id", thread).Str("from", from.Address()).Msg("Dropping SfB group event without thread or sender")
		return meta, "", false
	}
	c.hearName(fromPerson)
	id = eventIDOf(ctx, what, id, from, when, content.Text)
	var canonical string
	if !c.retryDB(ctx, "match an SfB group "+what, func() error {
		if err := c.noteGroup(ctx, thread, conv.Subject, from); err != nil {
			return err
		}
		if c.splitPortals() {
			// Every login has a room of its own: nothing to match.
			canonical = string(c.loginID) + "/" + id
			return nil
		}
		var err error
		canonical, err = c.conn.matchGroupCopy(ctx, c.loginID, id, thread, from, content, when)
		return err
	}) {
		return meta, "", false
	}
	if strings.HasPrefix(canonical, matrixMessagePrefix) {
		log.Debug().Str("sfb_event_kind", what).Str("bridged_id", canonical).Msg("SfB group event is a copy of a Matrix message, not bridged")
		return meta, "", false
	}
	return simplevent.EventMeta{
		Type:         bridgev2.RemoteEventMessage,
		PortalKey:    c.groupPortalKey(thread),
		Sender:       c.groupSender(from),
		CreatePortal: true,
		Timestamp:    when,
		LogContext: func(lc zerolog.Context) zerolog.Context {
			return lc.Str("sfb_message_id", id).Str("sfb_thread_id", thread).Str("bridged_id", canonical)
		},
	}, networkid.MessageID(canonical), true
}

// noteGroup records the conversation and a participant it showed.
func (c *Client) noteGroup(ctx context.Context, thread, subject string, who sfb.URI) error {
	if _, err := c.conn.db.EnsureGroup(ctx, thread, subject); err != nil {
		return err
	}
	_, err := c.conn.db.AddGroupParticipant(ctx, thread, string(who))
	return err
}

func (c *Client) handleParticipantJoined(ctx context.Context, evt sfb.ParticipantJoined) {
	thread, uri := evt.Conversation.ThreadID, evt.Person.URI
	if thread == "" || uri == "" {
		zerolog.Ctx(ctx).Warn().Msg("Dropping SfB participant event without thread or person")
		return
	}
	c.hearName(evt.Person)
	if !c.retryDB(ctx, "record an SfB participant", func() error {
		return c.noteGroup(ctx, thread, evt.Conversation.Subject, uri)
	}) {
		return
	}
	c.queueMembership(ctx, thread, uri, event.MembershipJoin, true)
}

// handleParticipantLeft takes someone who left out of the room. The user's
// own leave is not shown: the conference may just have ended, which SfB
// reports alike, and the room outlives conferences. A migrated user who
// leaves is taken out of the room when another login in the conversation
// reports it.
func (c *Client) handleParticipantLeft(ctx context.Context, evt sfb.ParticipantLeft) {
	thread, uri := evt.Conversation.ThreadID, evt.URI
	if thread == "" || uri == "" {
		zerolog.Ctx(ctx).Warn().Msg("Dropping SfB participant event without thread or person")
		return
	}
	if uri == c.selfURI() {
		zerolog.Ctx(ctx).Debug().Str("thread_id", thread).Msg("No longer in the SfB group conversation")
		return
	}
	if !c.retryDB(ctx, "forget an SfB participant", func() error {
		_, err := c.conn.db.RemoveGroupParticipant(ctx, thread, string(uri))
		return err
	}) {
		return
	}
	c.queueMembership(ctx, thread, uri, event.MembershipLeave, false)
}

// queueMembership puts uri in or out of the group room; the name follows
// when it comes from the participants.
func (c *Client) queueMembership(ctx context.Context, thread string, uri sfb.URI, membership event.Membership, create bool) {
	info := &bridgev2.ChatInfo{}
	if g, err := c.conn.db.GetGroup(ctx, thread); err == nil && g.Subject == "" {
		info.Name = ptr.Ptr(c.groupName(ctx, g))
	}
	c.queueReliably(ctx, &simplevent.ChatInfoChange{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventChatInfoChange,
			PortalKey:    c.groupPortalKey(thread),
			Sender:       c.groupSender(uri),
			CreatePortal: create,
			LogContext: func(lc zerolog.Context) zerolog.Context {
				return lc.Str("sfb_thread_id", thread).Str("participant", uri.Address()).Str("membership", string(membership))
			},
		},
		ChatInfoChange: &bridgev2.ChatInfoChange{
			ChatInfo: info,
			MemberChanges: &bridgev2.ChatMemberList{
				MemberMap: bridgev2.ChatMemberMap{userIDFor(uri): c.groupMember(uri, membership)},
			},
		},
	})
}

func (c *Client) handleSubjectChanged(ctx context.Context, evt sfb.SubjectChanged) {
	thread := evt.Conversation.ThreadID
	if thread == "" {
		zerolog.Ctx(ctx).Warn().Msg("Dropping SfB subject change without thread")
		return
	}
	subject := strings.TrimSpace(evt.Subject)
	var changed bool
	var g database.Group
	if !c.retryDB(ctx, "store an SfB subject", func() error {
		var err error
		if changed, err = c.conn.db.SetGroupSubject(ctx, thread, subject); err != nil {
			return err
		}
		g, err = c.conn.db.GetGroup(ctx, thread)
		return err
	}) || !changed {
		return
	}
	c.queueReliably(ctx, &simplevent.ChatInfoChange{
		EventMeta: simplevent.EventMeta{
			Type:      bridgev2.RemoteEventChatInfoChange,
			PortalKey: c.groupPortalKey(thread),
			LogContext: func(lc zerolog.Context) zerolog.Context {
				return lc.Str("sfb_thread_id", thread)
			},
		},
		ChatInfoChange: &bridgev2.ChatInfoChange{ChatInfo: &bridgev2.ChatInfo{Name: ptr.Ptr(c.groupName(ctx, g))}},
	})
}

// groupChatInfo describes a group portal from what the connector knows of
// its thread.
func (c *Client) groupChatInfo(ctx context.Context, thread string) (*bridgev2.ChatInfo, error) {
	g, err := c.conn.db.GetGroup(ctx, thread)
	if err != nil && !errors.Is(err, database.ErrNotFound) {
		return nil, fmt.Errorf("get SfB group %s: %w", thread, err)
	}
	members := bridgev2.ChatMemberMap{}
	for _, p := range g.Participants {
		uri := sfb.URI(p)
		members[userIDFor(uri)] = c.groupMember(uri, event.MembershipJoin)
	}
	members[c.GetUserID()] = c.groupMember(c.selfURI(), event.MembershipJoin)
	return &bridgev2.ChatInfo{
		Name: ptr.Ptr(c.groupName(ctx, g)),
		Type: ptr.Ptr(mxdb.RoomTypeDefault),
		// Not full: Matrix users without a login (relayed) are in the
		// room without being in the SfB conversation.
		Members: &bridgev2.ChatMemberList{MemberMap: members, PowerLevels: meetingPowerLevels()},
	}, nil
}

// maxNamesInRoomName bounds the participants named in a room without a
// subject.
const maxNamesInRoomName = 4

// groupName is the subject, else the participants' names.
func (c *Client) groupName(ctx context.Context, g database.Group) string {
	if s := strings.TrimSpace(g.Subject); s != "" {
		return s
	}
	var names []string
	for _, p := range g.Participants {
		names = append(names, c.participantName(ctx, sfb.URI(p)))
	}
	slices.Sort(names)
	switch n := len(names); {
	case n == 0:
		return "Skype for Business group chat"
	case n > maxNamesInRoomName:
		return fmt.Sprintf("%s and %d others", strings.Join(names[:maxNamesInRoomName-1], ", "), n-maxNamesInRoomName+1)
	default:
		return strings.Join(names, ", ")
	}
}

// participantName is how a participant is named in a room name: the SfB name
// their login or their messages gave, their ghost's, else the address.
func (c *Client) participantName(ctx context.Context, uri sfb.URI) string {
	if login := c.loginOf(uri); login != nil && login.RemoteName != "" {
		return login.RemoteName
	}
	if name := c.heardName(uri); name != "" {
		return name
	}
	if c.conn.br != nil {
		if ghost, err := c.conn.br.GetExistingGhostByID(ctx, userIDFor(uri)); err == nil && ghost != nil && ghost.Name != "" {
			return ghost.Name
		}
	}
	return uri.Address()
}

// sfbGroup is what the session needs to continue the conversation thread:
// its subject and the participants other than the user.
func (c *Client) sfbGroup(ctx context.Context, thread string) (sfb.Group, error) {
	g, err := c.conn.db.GetGroup(ctx, thread)
	if err != nil && !errors.Is(err, database.ErrNotFound) {
		return sfb.Group{}, err
	}
	out := sfb.Group{ThreadID: thread, Subject: g.Subject}
	for _, p := range g.Participants {
		if sfb.URI(p) != c.selfURI() {
			out.Participants = append(out.Participants, sfb.URI(p))
		}
	}
	return out, nil
}
