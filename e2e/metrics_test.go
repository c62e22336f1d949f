package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/matrixapp/metrics"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// metricsToken is the bearer token of the bridge's metrics listener.
const metricsToken = "e2e-metrics-token-0123456789"

// scrape is one scrape of the bridge's /metrics, by family name.
type scrape map[string]*dto.MetricFamily

func (env *testEnv) scrapeMetrics(t *testing.T, token string) (int, scrape) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, data := bearerRequest(t, ctx, http.MethodGet, "http://"+env.metricsAddr+metrics.Path, token, "")
	if status != http.StatusOK {
		return status, nil
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(data))
	require.NoError(t, err)
	return status, families
}

// value sums the samples of name whose labels include labels ("k=v");
// for a histogram, its sample count.
func (s scrape) value(name string, labels ...string) float64 {
	f := s[name]
	if f == nil {
		return 0
	}
	sum := 0.0
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for _, want := range labels {
			k, v, _ := strings.Cut(want, "=")
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// After a run of messages both ways, a login and presence both ways, the
// bridge's /metrics (scraped over HTTP with its token, as Prometheus
// would) has counted each of them: the counters and the latency
// histograms grew by exactly the messages sent, the SfB server's answers
// and the login's state are there, and no label value names anyone.
func TestMetricsAfterARun(t *testing.T) {
	env := setup(t)
	status, _ := env.scrapeMetrics(t, "")
	assert.Equal(t, http.StatusUnauthorized, status, "no metrics without the token")
	status, _ = env.scrapeMetrics(t, "wrong-token-wrong-token")
	assert.Equal(t, http.StatusUnauthorized, status)
	_, before := env.scrapeMetrics(t, metricsToken)
	require.NotNil(t, before["sfb_messages_bridged_total"], "the series are there before anything happened")

	p := env.newPair(t, "metrik")
	room := env.openPortal(t, p, "Hello Metrik")
	ctx, cancel := context.WithTimeout(context.Background(), 4*hop)
	defer cancel()
	const each = 3 // messages each way, the first from SfB included
	for i := 2; i <= each; i++ {
		from := p.mx.mark()
		text := fmt.Sprintf("from SfB %d", i)
		require.NoError(t, env.sim.SendMessage(ctx, p.colleague.URI, p.self.URI, sfb.Message{Text: text}))
		p.mx.waitFor(from, hop, text, isMessage(room, p.ghost, equals(text)))
	}
	for i := 1; i <= each; i++ {
		text := fmt.Sprintf("from Matrix %d", i)
		_, err := p.mx.Client.SendText(ctx, room, text)
		require.NoError(t, err)
		env.waitReceived(t, p, text, func(r sim.Received) bool { return r.Message.Text == text })
	}

	// Presence: the colleague's change reaches the ghost; the user's
	// Matrix presence, once publishing is on, reaches SfB.
	mark := p.mx.presenceMark()
	require.NoError(t, env.sim.SetPresence(p.colleague.URI, sim.Presence{Availability: "Busy"}))
	p.mx.waitPresence(mark, hop, "the colleague busy", isPresence(p.ghost, event.PresenceUnavailable, "Busy"))
	env.publishPresence(t, p)
	env.setMatrixPresence(t, ctx, p, event.PresenceUnavailable, "Counting", "Away")

	// The outcome of the last Matrix message is settled after SfB took
	// it, a publication counted once SfB answered it: wait until the
	// outbox is empty again and the publication counted before comparing.
	var after scrape
	delta := func(name string, labels ...string) float64 {
		return after.value(name, labels...) - before.value(name, labels...)
	}
	require.Eventually(t, func() bool {
		_, after = env.scrapeMetrics(t, metricsToken)
		return after.value("sfb_outbox_entries") == 0 &&
			delta("sfb_messages_bridged_total", "direction=to_sfb", "result=ok") >= each &&
			delta("sfb_presence_updates_total", "direction=to_sfb") >= 1
	}, hop, 100*time.Millisecond, "the outbox settles and the publication is counted")

	for _, dir := range []string{"to_matrix", "to_sfb"} {
		assert.Equal(t, float64(each), delta("sfb_messages_bridged_total", "direction="+dir, "result=ok"), dir)
		assert.Equal(t, float64(each), delta("sfb_bridge_latency_seconds", "direction="+dir), "one latency per message %s", dir)
		assert.Zero(t, delta("sfb_messages_bridged_total", "direction="+dir, "result=error"), dir)
	}
	assert.Positive(t, after.value("sfb_bridge_latency_seconds", "direction=to_matrix"))
	assert.GreaterOrEqual(t, delta("sfb_sign_ins_total", "result=ok"), 1.0, "the login signed in")
	assert.GreaterOrEqual(t, after.value("sfb_logins", "state=CONNECTED"), 1.0)
	assert.GreaterOrEqual(t, delta("sfb_presence_updates_total", "direction=to_matrix"), 1.0)
	assert.Greater(t, delta("sfb_server_requests_total", "status=200"), float64(2*each), "the SfB server's answers")
	require.NotNil(t, after["sfb_outbox_oldest_age_seconds"])
	require.NotNil(t, after["sfb_wave_logins"], "wave progress is exported")
	require.NotNil(t, after["sfb_event_channel_reconnects_total"])
	assert.Zero(t, after.value("sfb_metrics_source_errors"), "the outbox and waves were read")

	for name, f := range after {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				assert.False(t, strings.ContainsAny(l.GetValue(), "@:"), "%s{%s=%q} names someone", name, l.GetName(), l.GetValue())
			}
		}
	}
}
