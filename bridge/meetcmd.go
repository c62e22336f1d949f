package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/jitsi"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// commandMeet starts a meeting in a portal: a Jitsi meeting in the room
// (the widget Element writes) with its link sent to SfB, or with --sfb an
// SfB online meeting through the user's login.
var commandMeet = &commands.FullHandler{
	Name: "meet",
	Help: commands.HelpMeta{
		Section: commands.HelpSectionChats,
		Description: "Start a video meeting in this chat: a Jitsi meeting at the top of the room, whose link goes to the Skype for Business side. " +
			"With --sfb (when the bridge allows it), a Skype for Business online meeting instead, posted on both sides.",
		Args: "[--sfb] [_subject_]",
	},
	RequiresPortal: true,
	RequiresLogin:  true,
	Func:           fnMeet,
}

// meetTimeout bounds creating an SfB meeting.
const meetTimeout = time.Minute

func fnMeet(ce *commands.Event) {
	conn, ok := ce.Bridge.Network.(*Connector)
	if !ok {
		return
	}
	args := ce.Args
	useSfB := len(args) > 0 && strings.EqualFold(args[0], "--sfb")
	if useSfB {
		args = args[1:]
	}
	cmd := meetCommand{
		portal:  ce.Portal,
		user:    ce.User.MXID,
		eventID: ce.EventID,
		roomID:  ce.RoomID,
		subject: strings.Join(args, " "),
		sfb:     useSfB,
	}
	reply, err := conn.meet(ce.Ctx, cmd)
	if err != nil {
		ce.Log.Warn().Err(err).Msg("meet command failed")
	}
	ce.Reply("%s", reply)
}

// meetCommand is one `meet` in a portal.
type meetCommand struct {
	portal  *bridgev2.Portal
	user    id.UserID
	eventID id.EventID
	roomID  id.RoomID
	subject string
	sfb     bool
}

// meet runs cmd and returns what to tell the user.
func (c *Connector) meet(ctx context.Context, cmd meetCommand) (string, error) {
	client, lane, err := c.portalClient(ctx, cmd.portal, cmd.user)
	if err != nil {
		return "Meetings can be started here only in your own Skype for Business chats.", err
	}
	name := client.selfName()
	// The IM goes through the outbox keyed by the command's event, like a
	// message the user sent.
	source := &event.Event{ID: cmd.eventID, RoomID: cmd.roomID, Sender: cmd.user}
	if cmd.sfb {
		return c.meetInSfB(ctx, client, lane, cmd, name, source)
	}
	widget, _, err := c.addJitsiWidget(ctx, cmd.portal, jitsi.NewConferenceID(), cleanSubject(cmd.subject))
	if err != nil {
		return "Could not start the Jitsi meeting in this room; try again, or tell your administrator if it keeps failing.", err
	}
	link, _ := jitsi.JoinURL(widget.Data.Domain, widget.Data.ConferenceID)
	if _, err := client.enqueue(ctx, lane, cmd.portal, source, string(event.MsgText), sfb.Message{Text: jitsiInvitation(name, cmd.subject, widget)}, nil); err != nil {
		return fmt.Sprintf("Started the Jitsi meeting at the top of this room, but could not send its link to Skype for Business (%s). Send them the link yourself: %s", statusMessage(err), link), err
	}
	return fmt.Sprintf("Started a Jitsi meeting at the top of this room and sent its link to Skype for Business: %s", link), nil
}

// meetInSfB creates an SfB online meeting through the user's login and
// posts its join URL on both sides.
func (c *Connector) meetInSfB(ctx context.Context, client *Client, lane string, cmd meetCommand, name string, source *event.Event) (string, error) {
	if !c.Config.Meetings.SfBMeetings {
		return "This bridge does not create Skype for Business meetings (network.meetings.sfb_meetings is off). Use `meet` without --sfb for a Jitsi meeting.", nil
	}
	if c.modeOf(client.loginID) == migration.MatrixOnly {
		return "You have moved to Matrix, so new meetings are Jitsi meetings. Use `meet` without --sfb.", nil
	}
	session := client.waitSession(ctx, c.sessionWait)
	if session == nil {
		return "You are not connected to Skype for Business right now; try again once you are.", errNotConnected()
	}
	mctx, cancel := context.WithTimeout(ctx, meetTimeout)
	defer cancel()
	subject := cleanSubject(cmd.subject)
	// The chat partner is invited; a group's participants get the link.
	var attendees []sfb.URI
	if _, group := groupThread(lane); !group {
		attendees = []sfb.URI{sfb.URI(lane)}
	}
	m, err := session.CreateMeeting(mctx, sfb.MeetingRequest{Subject: subject, Attendees: attendees})
	if err != nil {
		return "Skype for Business did not create the meeting; try again later.", fmt.Errorf("create SfB meeting: %w", err)
	}
	render := client.meetingRenderer()
	link, problem := render.safeJoinURL(m.JoinURL)
	if problem != "" {
		return "Skype for Business created the meeting but gave no usable join address (" + problem + ").", fmt.Errorf("SfB meeting %s: join URL refused: %s", m.URI, problem)
	}
	if m.Organizer.URI == "" {
		m.Organizer = sfb.Person{URI: client.selfURI(), DisplayName: client.login.RemoteName}
	}
	content, extra := render.meeting(m, false, false)
	if _, err := c.br.Bot.SendMessage(ctx, cmd.portal.MXID, event.EventMessage, &event.Content{Parsed: content, Raw: extra}, nil); err != nil {
		return "Created the Skype for Business meeting but could not post it here: " + link, fmt.Errorf("post SfB meeting: %w", err)
	}
	text := fmt.Sprintf("%s invites you to a Skype for Business meeting%s. Join: %s", name, quotedSubject(subject), link)
	if _, err := client.enqueue(ctx, lane, cmd.portal, source, string(event.MsgText), sfb.Message{Text: text}, nil); err != nil {
		return fmt.Sprintf("Created the Skype for Business meeting, but could not send its link to Skype for Business (%s). Send it yourself: %s", statusMessage(err), link), err
	}
	return "Created a Skype for Business meeting and sent its link to Skype for Business: " + link, nil
}

// statusMessage is the human part of a message status error.
func statusMessage(err error) string {
	var ms bridgev2.MessageStatus
	if errors.As(err, &ms) && ms.Message != "" {
		return strings.TrimSuffix(ms.Message, ".")
	}
	return err.Error()
}
