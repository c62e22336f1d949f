package dashboard

import "time"

// Activity is where the page reads messages and presence updates per
// minute (the bridge's metrics keep them, bridge/metrics Minutes).
type Activity interface {
	// Minutes returns up to n whole minutes, oldest first.
	Minutes(n int) []Minute
}

// ActivityFunc is an Activity.
type ActivityFunc func(n int) []Minute

// Minutes implements Activity.
func (f ActivityFunc) Minutes(n int) []Minute { return f(n) }

// Minute is what the bridge carried in one minute.
type Minute struct {
	Start           time.Time
	Messages        uint64
	PresenceUpdates uint64
}
