package sim

import (
	"net/url"
	"testing"
	"time"
)

// FuzzChannelSettings: an events query is refused, or it changes only the
// settings it carries, to values within the reference's bounds.
func FuzzChannelSettings(f *testing.F) {
	for _, q := range []string{"ack=5&medium=300&low=600&timeout=900", "medium=4", "timeout=x", "low=1800&low=5", "medium=%2B5", ""} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		before := channelSettings{medium: 7 * time.Second}
		got, err := parseChannelSettings(q, before)
		if err != nil {
			return
		}
		within := func(d time.Duration, lo, hi int, set bool, old time.Duration) {
			if !set {
				if d != old {
					t.Fatalf("%q changed a setting it does not carry: %v", raw, got)
				}
				return
			}
			if d < time.Duration(lo)*time.Second || d > time.Duration(hi)*time.Second {
				t.Fatalf("%q accepted out of bounds: %v", raw, got)
			}
		}
		within(got.medium, 5, 1800, q.Has("medium"), before.medium)
		within(got.low, 5, 1800, q.Has("low"), before.low)
		within(got.timeout, 180, 1800, q.Has("timeout"), before.timeout)
	})
}
