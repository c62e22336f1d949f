package ucwa

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// AudioVideoInvitation is an invitation to an audio or audio/video call
// (audioVideoInvitation_ref.md). Whether it offers video is in the SDP
// of _links.mediaOffer.
type AudioVideoInvitation struct {
	Resource
	Direction   string `json:"direction"`
	Importance  string `json:"importance"`
	OperationID string `json:"operationId"`
	State       string `json:"state"`
	Subject     string `json:"subject"`
	ThreadID    string `json:"threadId"`
	To          string `json:"to"`
}

// ringingCall is an incoming call the session reported as ringing.
type ringingCall struct {
	ev      sfb.CallRinging
	decline string
	// declined: this session declined it; its completion is not
	// reported.
	declined bool
}

// onCallInvitation handles an audioVideoInvitation event: an incoming
// one that starts becomes CallRinging, its completion CallEnded.
func (s *session) onCallInvitation(e Event) error {
	href := s.abs(e.Link.Href)
	var inv AudioVideoInvitation
	ok, err := decodeEmbedded(e.Embedded, "audioVideoInvitation", &inv)
	if err != nil {
		return err
	}
	if e.Type == "completed" {
		return s.callCompleted(href, e, ok, &inv)
	}
	if !ok {
		if err := s.fetch(e.Link.Href, &inv); err != nil {
			return fmt.Errorf("fetch call invitation: %w", err)
		}
	}
	if !strings.EqualFold(inv.Direction, "Incoming") || !strings.EqualFold(inv.State, "Connecting") {
		return nil
	}
	s.meetings.mu.Lock()
	_, known := s.meetings.calls[href]
	s.meetings.mu.Unlock()
	if known {
		return nil
	}
	from, err := s.invitationSender(&MessagingInvitation{Resource: inv.Resource})
	if err != nil {
		return fmt.Errorf("call invitation %s: %w", href, err)
	}
	ev := sfb.CallRinging{ID: href, Conversation: sfb.Conversation{ThreadID: cleanThreadID(inv.ThreadID), Peer: from.URI},
		From: from, Video: offersVideo(inv.Links.Href("mediaOffer")), Time: s.t.now()}
	s.meetings.mu.Lock()
	evictOne(s.meetings.calls)
	s.meetings.calls[href] = &ringingCall{ev: ev, decline: s.abs(inv.Links.Href("decline"))}
	s.meetings.mu.Unlock()
	s.emit(ev)
	return nil
}

// offersVideo reports whether an SDP offer (a data URI) has a video
// media line. An offer that cannot be read is taken for audio only.
func offersVideo(mediaOffer string) bool {
	if mediaOffer == "" {
		return false
	}
	d, err := ParseDataURI(mediaOffer)
	if err != nil {
		return false
	}
	for _, line := range bytes.Split(d.Data, []byte("\n")) {
		if bytes.HasPrefix(bytes.TrimSpace(line), []byte("m=video ")) {
			return true
		}
	}
	return false
}

// callCompleted reports the end of a call that rang, unless this session
// declined it.
func (s *session) callCompleted(href string, e Event, embedded bool, inv *AudioVideoInvitation) error {
	s.meetings.mu.Lock()
	c := s.meetings.calls[href]
	delete(s.meetings.calls, href)
	s.meetings.mu.Unlock()
	if c != nil && c.declined && e.Reason != nil && strings.EqualFold(e.Reason.Subcode, "Declined") {
		// This session's own decline.
		return nil
	}
	if strings.EqualFold(e.Status, "Success") {
		// Answered here: the bridge never does.
		return nil
	}
	var ended sfb.CallEnded
	switch {
	case c != nil:
		ended = sfb.CallEnded{ID: href, Conversation: c.ev.Conversation, From: c.ev.From}
	case embedded && strings.EqualFold(inv.Direction, "Incoming"):
		// A completion without the start (it came before the session,
		// or the start could not be read).
		from, err := s.invitationSender(&MessagingInvitation{Resource: inv.Resource})
		if err != nil {
			return fmt.Errorf("completed call invitation %s: %w", href, err)
		}
		ended = sfb.CallEnded{ID: href, Conversation: sfb.Conversation{ThreadID: cleanThreadID(inv.ThreadID), Peer: from.URI}, From: from}
	default:
		return nil
	}
	ended.Missed = isMissed(e)
	ended.Time = s.t.now()
	s.emit(ended)
	return nil
}

// isMissed: nobody answered — the caller hung up (Canceled) or the call
// timed out (Missed, Timeout). Answered or declined on another endpoint
// (ConnectedElsewhere, Declined) is not missed.
func isMissed(e Event) bool {
	if e.Reason == nil {
		return false
	}
	switch strings.ToLower(e.Reason.Subcode) {
	case "canceled", "cancelled", "missed", "timeout", "expired":
		return true
	case "":
		return strings.EqualFold(e.Reason.Code, "Timeout")
	}
	return false
}

// validDeclineReason: the members of CallDeclineReason_ref.md.
func validDeclineReason(r sfb.CallDeclineReason) bool {
	switch r {
	case "Unknown", sfb.CallDeclineLocal, sfb.CallDeclineGlobal, "MediaAllocationFailure", "EncryptionMismatch", "IPv6NotSupported",
		"MediaConnectivityFailure", "CodecMismatch", "UnsupportedMedia", "InvalidMediaOffer",
		"InsufficientBandwidth", "InsufficientBandwidthRerouteOverPstn":
		return true
	}
	return false
}

// DeclineCall implements sfb.MeetingSession: POST on the invitation's
// decline link with the reason (decline_ref.md).
func (s *session) DeclineCall(ctx context.Context, callID string, reason sfb.CallDeclineReason) error {
	if !validDeclineReason(reason) {
		return fmt.Errorf("decline call: %q is not a CallDeclineReason: %w", reason, sfb.ErrUnsupported)
	}
	s.meetings.mu.Lock()
	c := s.meetings.calls[callID]
	if c == nil || c.declined {
		s.meetings.mu.Unlock()
		// Not ringing any more, or declined already.
		return nil
	}
	href := c.decline
	if href != "" {
		c.declined = true
	}
	s.meetings.mu.Unlock()
	if href == "" {
		return fmt.Errorf("decline call %s: the invitation offers no decline link: %w", redact(callID), errors.ErrUnsupported)
	}
	body, _ := json.Marshal(map[string]string{"reason": string(reason)})
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	defer cancel()
	_, err := s.c.do(rctx, request{op: "decline call", method: http.MethodPost, url: href, body: body, contentType: "application/json"})
	var e *Error
	if errors.As(err, &e) && (e.Status == http.StatusNotFound || e.Status == http.StatusConflict) {
		// The call stopped ringing meanwhile; its completion says how.
		s.meetings.mu.Lock()
		c.declined = false
		s.meetings.mu.Unlock()
		return nil
	}
	if err != nil {
		s.meetings.mu.Lock()
		c.declined = false
		s.meetings.mu.Unlock()
		return fmt.Errorf("decline call: %w", err)
	}
	return nil
}

// recheckCalls asks the server, after the event channel resumed, about
// each call still reported as ringing: the server closed the
// conversations while we were away, and a call that stopped ringing then
// sends no completion. One that is gone, or no longer rings, is reported
// ended. Not as missed: without its completion nobody can say whether it
// was answered elsewhere or the caller gave up.
func (s *session) recheckCalls() {
	s.meetings.mu.Lock()
	hrefs := make([]string, 0, len(s.meetings.calls))
	for h := range s.meetings.calls {
		hrefs = append(hrefs, h)
	}
	s.meetings.mu.Unlock()
	for _, h := range hrefs {
		var inv AudioVideoInvitation
		err := s.fetch(h, &inv)
		switch status := statusOf(err); {
		case err == nil && strings.EqualFold(inv.State, "Connecting"):
			continue
		case err != nil && status != http.StatusNotFound && status != http.StatusGone:
			s.log.Warn().Err(err).Str("invitation", redact(h)).Msg("Could not ask whether a call still rings after the event channel resumed")
			continue
		}
		s.meetings.mu.Lock()
		c := s.meetings.calls[h]
		delete(s.meetings.calls, h)
		s.meetings.mu.Unlock()
		if c == nil || c.declined {
			continue
		}
		s.emit(sfb.CallEnded{ID: h, Conversation: c.ev.Conversation, From: c.ev.From, Time: s.t.now()})
	}
}
