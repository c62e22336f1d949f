package ucwa

import (
	"context"
	"errors"
	"fmt"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Presence over UCWA is being built (issue 7); until then a session watches
// nobody and publishes nothing.

var errPresenceNotBuilt = fmt.Errorf("presence over UCWA: %w", errors.ErrUnsupported)

func (s *session) Watch(ctx context.Context, people []sfb.URI) ([]sfb.URI, error) {
	return nil, errPresenceNotBuilt
}

func (s *session) Unwatch(ctx context.Context, people []sfb.URI) error { return nil }

func (s *session) WatchCapacity() int { return 0 }

func (s *session) Contacts(ctx context.Context) ([]sfb.Person, error) {
	return nil, errPresenceNotBuilt
}

func (s *session) Publish(ctx context.Context, p sfb.Publication) error { return errPresenceNotBuilt }

func (s *session) ReportActivity(ctx context.Context) error { return nil }
