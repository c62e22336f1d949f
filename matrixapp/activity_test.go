package matrixapp

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	bridgemetrics "github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/metrics"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/matrixapp/dashboard"
)

// The dashboard shows the metrics' whole minutes: messages that went
// through and presence changes, both ways, the running minute left out.
func TestActivityShowsTheMetricsWholeMinutes(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 30, 0, time.UTC)
	m := bridgemetrics.New(bridgemetrics.WithClock(func() time.Time { return now }))
	m.MessageBridged(bridgemetrics.ToMatrix, bridgemetrics.ResultOK, time.Millisecond)
	m.MessageBridged(bridgemetrics.ToSfB, bridgemetrics.ResultOK, time.Millisecond)
	m.MessageBridged(bridgemetrics.ToSfB, bridgemetrics.ResultDeclined, time.Millisecond)
	m.PresenceUpdate(bridgemetrics.ToMatrix)
	activity := activityOf(m)
	for _, b := range activity.Minutes(10) {
		assert.Zero(t, b.Messages, "09:00 is still running: not shown at %s", b.Start)
	}

	now = now.Add(time.Minute)
	m.PresenceUpdate(bridgemetrics.ToSfB)
	got := activity.Minutes(3)
	assert.Len(t, got, 3)
	assert.Equal(t, dashboard.Minute{Start: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC), Messages: 2, PresenceUpdates: 1}, got[2])
	assert.Equal(t, dashboard.Minute{Start: time.Date(2026, 12, 2, 8, 59, 0, 0, time.UTC)}, got[1])
}
