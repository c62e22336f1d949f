package metrics

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sources are read at each scrape, for what is a state rather than an
// event: logins, the outbox, the waves. A nil function leaves its series
// out.
type Sources struct {
	// Logins counts the bridge's logins by state (bridgev2's state
	// event, e.g. CONNECTED, BAD_CREDENTIALS) and migration mode.
	Logins func() []LoginCount
	// Outbox reports the Matrix messages waiting for SfB.
	Outbox func(ctx context.Context) (OutboxState, error)
	// Waves reports each wave's people.
	Waves func(ctx context.Context) ([]WaveCount, error)
}

// LoginCount is the number of logins in one state and mode.
type LoginCount struct {
	State, Mode string
	N           int
}

// OutboxState is how many Matrix messages wait for SfB and since when the
// oldest does (zero when none).
type OutboxState struct {
	Entries int
	Oldest  time.Time
}

// WaveCount is a wave's people by effective mode and by login state
// (connected, connecting, error, none). Wave is "" for the people in no
// wave.
type WaveCount struct {
	Wave    string
	ByMode  map[string]int
	ByLogin map[string]int
}

// noWave is the wave label of the people in no wave. A wave the team
// named so too shares its series with them (see Collect).
const noWave = "(none)"

// scrapeTimeout bounds the database reads of one scrape.
const scrapeTimeout = 5 * time.Second

// SetSources sets what scrapes read; the connector calls it once it has
// its database.
func (m *Metrics) SetSources(s Sources) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.sources = s
	m.mu.Unlock()
}

var (
	loginsDesc = prometheus.NewDesc("sfb_logins",
		"Bridge logins by bridge state and migration mode of their person.", []string{"state", "mode"}, nil)
	outboxEntriesDesc = prometheus.NewDesc("sfb_outbox_entries",
		"Matrix messages in the outbox, not yet settled with SfB.", nil, nil)
	outboxAgeDesc = prometheus.NewDesc("sfb_outbox_oldest_age_seconds",
		"Age of the oldest message in the outbox; 0 when it is empty.", nil, nil)
	wavePeopleDesc = prometheus.NewDesc("sfb_wave_people",
		"People in a wave by effective migration mode; wave=\"(none)\" for people in no wave.", []string{"wave", "mode"}, nil)
	waveLoginsDesc = prometheus.NewDesc("sfb_wave_logins",
		"People in a wave by the state of their login: connected, connecting, error, none.", []string{"wave", "state"}, nil)
	scrapeErrorsDesc = prometheus.NewDesc("sfb_metrics_source_errors",
		"1 when a source of the last scrape (outbox, waves) could not be read.", []string{"source"}, nil)
)

// stateCollector reads the Sources at each scrape.
type stateCollector struct{ m *Metrics }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{loginsDesc, outboxEntriesDesc, outboxAgeDesc, wavePeopleDesc, waveLoginsDesc, scrapeErrorsDesc} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	src := c.m.sources
	c.m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	failed := func(source string, err error) {
		v := 0.0
		if err != nil {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(scrapeErrorsDesc, prometheus.GaugeValue, v, source)
	}
	if src.Logins != nil {
		sums := map[[2]string]int{}
		for _, l := range src.Logins() {
			sums[[2]string{safeLabel(l.State), safeLabel(l.Mode)}] += l.N
		}
		for k, n := range sums {
			ch <- prometheus.MustNewConstMetric(loginsDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
		}
	}
	if src.Outbox != nil {
		st, err := src.Outbox(ctx)
		failed("outbox", err)
		if err == nil {
			age := 0.0
			if !st.Oldest.IsZero() && st.Entries > 0 {
				age = max(c.m.now().Sub(st.Oldest).Seconds(), 0)
			}
			ch <- prometheus.MustNewConstMetric(outboxEntriesDesc, prometheus.GaugeValue, float64(st.Entries))
			ch <- prometheus.MustNewConstMetric(outboxAgeDesc, prometheus.GaugeValue, age)
		}
	}
	if src.Waves != nil {
		waves, err := src.Waves(ctx)
		failed("waves", err)
		seen := map[string]bool{}
		for _, w := range waves {
			name := noWave
			if w.Wave != "" {
				name = safeLabel(w.Wave)
			}
			// Two names that differ only in what safeLabel replaced
			// would collide; the first wins rather than failing the
			// scrape.
			if seen[name] {
				continue
			}
			seen[name] = true
			for mode, n := range w.ByMode {
				ch <- prometheus.MustNewConstMetric(wavePeopleDesc, prometheus.GaugeValue, float64(n), name, safeLabel(mode))
			}
			for state, n := range w.ByLogin {
				ch <- prometheus.MustNewConstMetric(waveLoginsDesc, prometheus.GaugeValue, float64(n), name, safeLabel(state))
			}
		}
	}
}

// safeLabel keeps a label value free of what makes addresses and Matrix
// IDs: a wave name is chosen by the migration team and names no person,
// but "@" and ":" are replaced all the same, so that no label value can
// ever look like one.
func safeLabel(s string) string {
	return strings.NewReplacer("@", "_", ":", "_").Replace(s)
}
