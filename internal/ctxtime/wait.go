// Package ctxtime holds the one way the bridge waits for time to pass: bounded
// by a context, so that shutdown, logout and a caller giving up end every
// backoff and pacing pause at once.
package ctxtime

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends, and reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
