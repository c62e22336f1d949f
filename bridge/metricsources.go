package bridge

import (
	"context"
	"errors"
	"time"

	"maunium.net/go/mautrix/bridgev2"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/metrics"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
)

// Metrics returns the bridge's collectors, for the metrics listener, the
// dashboard and the transport's observer.
func (c *Connector) Metrics() *metrics.Metrics { return c.metrics }

// messageBridged counts a message and keeps its error for the dashboard.
func (c *Connector) messageBridged(direction, result string, err error, took time.Duration) {
	c.metrics.MessageBridged(direction, result, took)
	if result != metrics.ResultOK && result != metrics.ResultIgnored {
		c.metrics.Error("message "+direction, err)
	}
}

// eventResult names how bridgev2 handled an SfB event.
func eventResult(res bridgev2.EventHandlingResult) string {
	switch {
	case res.Ignored:
		return metrics.ResultIgnored
	case res.Success || res.Queued:
		return metrics.ResultOK
	case errors.Is(res.Error, context.Canceled):
		// The session stopped; the next one gets the event again.
		return metrics.ResultInterrupted
	}
	return metrics.ResultError
}

// metricSources are what each scrape reads: logins, the outbox, the
// waves.
func (c *Connector) metricSources() metrics.Sources {
	return metrics.Sources{
		Logins: c.loginCounts,
		Outbox: func(ctx context.Context) (metrics.OutboxState, error) {
			n, oldest, err := c.db.OutboxSummary(ctx)
			return metrics.OutboxState{Entries: n, Oldest: oldest}, err
		},
		Waves: c.waveCounts,
	}
}

// loginCounts counts the logins bridgev2 holds by their last bridge state
// and their person's mode.
func (c *Connector) loginCounts() []metrics.LoginCount {
	modes := c.Migration()
	sums := map[metrics.LoginCount]int{}
	for _, login := range c.br.GetAllCachedUserLogins() {
		state := "UNKNOWN"
		if client, ok := login.Client.(*Client); ok {
			if st := client.lastState.Load(); st != nil {
				state = string(st.StateEvent)
			}
		}
		mode := "unknown"
		if modes != nil {
			mode = string(modes.ModeOf(string(login.ID)))
		}
		sums[metrics.LoginCount{State: state, Mode: mode}]++
	}
	out := make([]metrics.LoginCount, 0, len(sums))
	for k, n := range sums {
		k.N = n
		out = append(out, k)
	}
	return out
}

// waveCounts is the migration overview as the metrics count it.
func (c *Connector) waveCounts(ctx context.Context) ([]metrics.WaveCount, error) {
	modes := c.Migration()
	if modes == nil {
		return nil, nil
	}
	o, err := modes.Overview(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]metrics.WaveCount, 0, len(o.Waves)+1)
	for _, w := range o.Waves {
		out = append(out, waveCount(w.Name, w.Counts))
	}
	return append(out, waveCount("", o.NoWave)), nil
}

func waveCount(name string, c migration.Counts) metrics.WaveCount {
	w := metrics.WaveCount{Wave: name, ByMode: map[string]int{}, ByLogin: map[string]int{
		string(migration.LoginConnected):  c.Connected,
		string(migration.LoginConnecting): c.SignedIn - c.Connected - c.InError,
		string(migration.LoginError):      c.InError,
		string(migration.LoginNone):       c.Assigned - c.SignedIn,
	}}
	for mode, n := range c.ByMode {
		w.ByMode[string(mode)] = n
	}
	return w
}
