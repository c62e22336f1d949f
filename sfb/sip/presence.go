package sip

import (
	"context"
	"fmt"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// presenceState is what a session keeps for presence (its subscriptions,
// its own publication versions). Owned by this file; keep an idle
// session's share small (see Session).
//
//lint:ignore U1000 filled as this file grows
type presenceState struct{}

// Watch implements sfb.PresenceSession.
func (s *Session) Watch(ctx context.Context, people []sfb.URI) ([]sfb.URI, error) {
	return nil, fmt.Errorf("watch presence over SIP: %w: %w", ErrNotCarried, sfb.ErrWatchLimit)
}

// Unwatch implements sfb.PresenceSession.
func (s *Session) Unwatch(ctx context.Context, people []sfb.URI) error { return nil }

// WatchCapacity implements sfb.PresenceSession.
func (s *Session) WatchCapacity() int { return 0 }

// Contacts implements sfb.PresenceSession.
func (s *Session) Contacts(ctx context.Context) ([]sfb.Person, error) {
	return nil, fmt.Errorf("contact list over SIP: %w", ErrNotCarried)
}

// Publish implements sfb.PresenceSession.
func (s *Session) Publish(ctx context.Context, p sfb.Publication) error {
	return fmt.Errorf("publish presence over SIP: %w", ErrNotCarried)
}

// ReportActivity implements sfb.PresenceSession.
func (s *Session) ReportActivity(ctx context.Context) error { return nil }

// handlePresence handles the server's NOTIFY and BENOTIFY for the endpoint
// (presence, vnd-microsoft-roaming-self, vnd-microsoft-roaming-contacts,
// ...; registration-notify is register.go's), in arrival order (see
// Session). It answers a NOTIFY exactly once with s.respond, after
// emitting what it brought; a BENOTIFY gets no answer.
func (s *Session) handlePresence(ctx context.Context, req *sipmsg.Request) {
	if req.Method == sipmsg.NOTIFY {
		_ = s.respond(req, 200, "OK", nil)
	}
}

// presenceReregistered is called when the endpoint registered anew (after
// a reconnect or a deregistration), before the handler hears of it: the
// server ended the endpoint's subscriptions with its registration.
func (s *Session) presenceReregistered() {}
