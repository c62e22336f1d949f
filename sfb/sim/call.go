package sim

import (
	"context"
	"fmt"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// call is an audio or audio/video call from a user on a native SfB
// client to another user, ringing on each available application of the
// callee (an audioVideoInvitation each) and on the callee's native
// client.
type call struct {
	id       string
	from, to *user
	video    bool
	subject  string
	threadID string
	started  time.Time
	// state is the caller's view, an InvitationState: Connecting while it
	// rings, then Connected, Declined, Cancelled or Failed (nobody
	// answered).
	state string
	// declines are the reasons applications declined with, in order.
	declines []string
	forks    []*mview
	// native is whether the callee's native client rings too.
	native bool
}

// CallResult is how a call went, for tests and the control API.
type CallResult struct {
	From, To sfb.URI
	Video    bool
	// State is the caller's InvitationState: Connecting (ringing),
	// Connected (answered), Declined, Cancelled (the caller hung up) or
	// Failed (nobody answered in time).
	State string
	// DeclineReasons are the CallDeclineReasons the callee's applications
	// declined with, in order.
	DeclineReasons []string
}

// Reasons an incoming call's invitation completes with
// (ErrorSubcode_ref.md).
var (
	reasonCallCanceled = reason{"RemoteFailure", "Canceled", "The caller hung up."}
	reasonCallMissed   = reason{"Timeout", "Missed", "The call was not answered."}
	reasonCallDeclined = reason{"RemoteFailure", "Declined", "The call was declined on another endpoint."}
)

// Call rings to from from's native client: every available UCWA
// application of to gets an incoming audioVideoInvitation (started) and
// its conversation (added); the native client of to rings as well. It
// returns the call's ID for CancelCall, AnswerCall and CallResult. The
// call stops ringing when an endpoint answers or declines it globally,
// when the caller cancels, or after Options.InvitationTimeout.
func (s *Server) Call(ctx context.Context, from, to sfb.URI, video bool) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	from, to = canonical(from), canonical(to)
	s.mu.Lock()
	defer s.mu.Unlock()
	fu, tu := s.users[from], s.users[to]
	if fu == nil || tu == nil {
		return "", fmt.Errorf("call %s from %s: %w", to, from, sfb.ErrNotFound)
	}
	if from == to {
		return "", fmt.Errorf("call %s from itself: %w", to, sfb.ErrUnsupported)
	}
	apps := availableApps(tu)
	native := tu.st == nil || !tu.st.nativeSignedOut
	if len(apps) == 0 && !native {
		return "", fmt.Errorf("call %s: %w", to, deliveryError{reasonUnreachable})
	}
	c := &call{id: randomHex(8), from: fu, to: tu, video: video, threadID: newThreadID(), started: s.now(), state: "Connecting", native: native}
	s.meetings.calls[c.id] = c
	for _, a := range apps {
		v := s.newMView(a, fu, nil, c)
		c.forks = append(c.forks, v)
		comm := a.base() + "/communication"
		s.emit(a, "communication", comm, prioHigh, meetingEvent(v, "started", s.callInvitation(v)))
		s.emit(a, "communication", comm, prioHigh, ev("conversation", v.convHref(), "", "added", s.mviewConversation(v)))
		s.emit(a, "conversation", v.convHref(), prioHigh, ev("audioVideo", v.convHref()+"/audioVideo", "", "updated", s.audioVideo(v)))
	}
	s.log.Debug().Stringer("from", from).Stringer("to", to).Str("call", c.id).Bool("video", video).Int("applications", len(apps)).Msg("call ringing")
	return c.id, nil
}

// CancelCall is the caller hanging up before anyone answered: every
// endpoint still ringing stops (Failure, Canceled).
func (s *Server) CancelCall(ctx context.Context, id string) error {
	return s.onRinging(ctx, id, "cancel", func(c *call) { s.endCall(c, "Cancelled", reasonCallCanceled) })
}

// AnswerCall is the callee answering on their native client: the
// applications' invitations complete with Failure, ConnectedElsewhere.
func (s *Server) AnswerCall(ctx context.Context, id string) error {
	return s.onRinging(ctx, id, "answer", func(c *call) { s.answerCall(c, nil) })
}

// DeclineCallNative is the callee declining on their native client: the
// call is declined everywhere.
func (s *Server) DeclineCallNative(ctx context.Context, id string) error {
	return s.onRinging(ctx, id, "decline", func(c *call) { s.endCall(c, "Declined", reasonCallDeclined) })
}

func (s *Server) onRinging(ctx context.Context, id, what string, f func(*call)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.meetings.calls[id]
	if c == nil {
		return fmt.Errorf("%s call %s: %w", what, id, sfb.ErrNotFound)
	}
	if c.state != "Connecting" {
		return fmt.Errorf("%s call %s: it is %s, not ringing: %w", what, id, c.state, sfb.ErrUnsupported)
	}
	f(c)
	return nil
}

// CallResult reports how the call id went.
func (s *Server) CallResult(id string) (CallResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.meetings.calls[id]
	if c == nil {
		return CallResult{}, fmt.Errorf("call %s: %w", id, sfb.ErrNotFound)
	}
	return CallResult{From: c.from.uri, To: c.to.uri, Video: c.video, State: c.state, DeclineReasons: append([]string(nil), c.declines...)}, nil
}

// endCall stops a ringing call on every endpoint with r; state is the
// caller's outcome.
func (s *Server) endCall(c *call, state string, r reason) {
	c.state = state
	for _, v := range c.forks {
		if v.state == "Connecting" {
			rr := r
			s.completeMView(v, "Failed", "Failure", &rr)
		}
	}
}

// answerCall connects the call on by (nil: the native client); the other
// endpoints stop ringing.
func (s *Server) answerCall(c *call, by *mview) {
	c.state = "Connected"
	for _, v := range c.forks {
		if v != by && v.state == "Connecting" {
			elsewhere := reasonElse
			s.completeMView(v, "Failed", "Failure", &elsewhere)
		}
	}
}

// callDeclined follows an application's decline: Global declines on
// every endpoint; Local (and the media reasons) only on that one, and
// the call is declined when no endpoint rings any more.
func (s *Server) callDeclined(c *call, why string) {
	c.declines = append(c.declines, why)
	if why == "Global" {
		s.endCall(c, "Declined", reasonCallDeclined)
		return
	}
	if !c.ringing() {
		c.state = "Declined"
	}
}

// ringing reports whether an endpoint still rings.
func (c *call) ringing() bool {
	if c.native {
		return true
	}
	for _, v := range c.forks {
		if v.state == "Connecting" {
			return true
		}
	}
	return false
}

// callForkGone follows an application that went away while its fork
// rang.
func (s *Server) callForkGone(c *call) {
	if c.state == "Connecting" && !c.ringing() {
		c.state = "Failed"
	}
}

// sweepCalls ends calls nobody answered in time (missed) and forgets
// finished calls and meetings after a while.
func (s *Server) sweepCalls(now time.Time) {
	ms := &s.meetings
	for id, c := range ms.calls {
		switch {
		case c.state == "Connecting" && now.Sub(c.started) >= s.opts.InvitationTimeout:
			s.endCall(c, "Failed", reasonCallMissed)
		case c.state != "Connecting" && now.Sub(c.started) > time.Hour:
			delete(ms.calls, id)
		}
	}
	for k, m := range ms.meetings {
		if now.After(m.expiration) {
			for _, v := range m.invited {
				if v.state == "Connecting" {
					s.completeMView(v, "Failed", "Failure", &reason{"Gone", "", "The meeting expired."})
				}
			}
			delete(ms.meetings, k)
		}
	}
}

// callInvitation is an incoming audioVideoInvitation
// (audioVideoInvitation_ref.md) with the caller's SDP offer.
func (s *Server) callInvitation(v *mview) obj {
	c := v.call
	h := v.invHref()
	links := obj{
		"self":         link(h),
		"from":         titled(v.participantHref(c.from.uri), c.from.name),
		"conversation": link(v.convHref()),
		"audioVideo":   link(v.convHref() + "/audioVideo"),
		"to":           link(v.app.peopleHref(c.to.uri)),
		"mediaOffer":   link(encodeDataURI("application/sdp", sdpOffer(c), true)),
	}
	if v.state == "Connecting" {
		links["acceptWithAnswer"] = link(h + "/acceptWithAnswer")
		links["decline"] = link(h + "/decline")
	}
	return obj{
		"rel":            "audioVideoInvitation",
		"direction":      "Incoming",
		"importance":     "Normal",
		"joinAudioMuted": false,
		"joinVideoMuted": false,
		"privateLine":    false,
		"state":          v.state,
		"subject":        c.subject,
		"threadId":       c.threadID,
		"to":             string(c.to.uri),
		"_links":         links,
		"_embedded":      obj{"from": v.fromParticipant()},
	}
}

// sdpOffer is a minimal SDP offer with an audio and, for video, a video
// media line: what tells an audio call from a video call.
func sdpOffer(c *call) string {
	sdp := "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=session\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 50000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
	if c.video {
		sdp += "m=video 50002 RTP/AVP 122\r\na=rtpmap:122 X-H264UC/90000\r\n"
	}
	return sdp
}

// audioVideo is the conversation's audio/video modality (audioVideo_ref.md).
func (s *Server) audioVideo(v *mview) obj {
	state := "Connecting"
	switch v.state {
	case "Connected":
		state = "Connected"
	case "Connecting":
	default:
		state = "Disconnected"
	}
	return obj{
		"rel":    "audioVideo",
		"state":  state,
		"_links": obj{"self": link(v.convHref() + "/audioVideo"), "conversation": link(v.convHref())},
	}
}
