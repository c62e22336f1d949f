package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

const docsDir = "../../docs"

// exported is every series name the registry exports (a histogram's
// _bucket, _sum and _count) with the label names of its family.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	m, _ := newTest(t)
	m.SetSources(Sources{
		Logins: func() []LoginCount { return []LoginCount{{State: "CONNECTED", Mode: "coexistence", N: 1}} },
		Outbox: func(context.Context) (OutboxState, error) { return OutboxState{}, nil },
		Waves: func(context.Context) ([]WaveCount, error) {
			return []WaveCount{{Wave: "w", ByMode: map[string]int{"coexistence": 1}, ByLogin: map[string]int{"none": 1}}}, nil
		},
	})
	m.ServerAnswered(200, "")
	m.SignedIn(nil)
	families, err := m.Registry().Gather()
	require.NoError(t, err)
	out := map[string][]string{}
	for _, f := range families {
		labels := map[string]bool{}
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		names := []string{f.GetName()}
		if f.GetType().String() == "HISTOGRAM" {
			names = append(names, f.GetName()+"_bucket", f.GetName()+"_sum", f.GetName()+"_count")
			labels["le"] = true
		}
		var ls []string
		for l := range labels {
			ls = append(ls, l)
		}
		sort.Strings(ls)
		for _, n := range names {
			out[n] = ls
		}
	}
	return out
}

var (
	// seriesName finds the bridge's and the standard series in PromQL;
	// all of the bridge's start with sfb_.
	seriesName = regexp.MustCompile(`\b(?:sfb|go|process)_[a-zA-Z0-9_]+\b`)
	// selector is a series with label matchers, matcher one of them.
	selector = regexp.MustCompile(`\b((?:sfb|go|process)_[a-zA-Z0-9_]+)\s*\{([^}]*)\}`)
	matcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
)

// checkExpr fails for a series the bridge does not export or a label it
// does not have; it returns the series named.
func checkExpr(t *testing.T, where, expr string, series map[string][]string) []string {
	t.Helper()
	names := seriesName.FindAllString(expr, -1)
	assert.NotEmpty(t, names, "%s: %q names no series of the bridge", where, expr)
	for _, n := range names {
		assert.Contains(t, series, n, "%s: %q names %s, which the bridge does not export", where, expr, n)
	}
	for _, sel := range selector.FindAllStringSubmatch(expr, -1) {
		for _, m := range matcher.FindAllStringSubmatch(sel[2], -1) {
			assert.Contains(t, series[sel[1]], m[1], "%s: %s has no label %s", where, sel[1], m[1])
		}
	}
	return names
}

// TestDocsNameOnlyExportedSeries holds the Grafana dashboard, the alerting
// rules and docs/metrics.md to the series the registry exports.
func TestDocsNameOnlyExportedSeries(t *testing.T) {
	series := exported(t)

	t.Run("grafana dashboard", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(docsDir, "grafana-dashboard.json"))
		require.NoError(t, err)
		var dash map[string]any
		require.NoError(t, json.Unmarshal(data, &dash), "the dashboard is JSON")
		assert.NotEmpty(t, dash["title"])
		var exprs []string
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, x := range v {
					if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
						exprs = append(exprs, s)
					}
					walk(x)
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			}
		}
		walk(dash)
		require.Greater(t, len(exprs), 15, "the walk found the panels' queries")
		used := map[string]bool{}
		for _, e := range exprs {
			for _, n := range checkExpr(t, "dashboard", e, series) {
				used[strings.TrimSuffix(n, "_bucket")] = true
			}
		}
		for n := range series {
			if strings.HasPrefix(n, "sfb_") && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") && !strings.HasSuffix(n, "_bucket") {
				assert.True(t, used[n], "the dashboard shows nothing of %s", n)
			}
		}
	})

	t.Run("alerting rules", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(docsDir, "prometheus-rules.yml"))
		require.NoError(t, err)
		// The fields of Prometheus's rule file format; an unknown one is
		// a typo Prometheus would refuse.
		var file struct {
			Groups []struct {
				Name     string `yaml:"name"`
				Interval string `yaml:"interval"`
				Rules    []struct {
					Alert         string            `yaml:"alert"`
					Record        string            `yaml:"record"`
					Expr          string            `yaml:"expr"`
					For           string            `yaml:"for"`
					KeepFiringFor string            `yaml:"keep_firing_for"`
					Labels        map[string]string `yaml:"labels"`
					Annotations   map[string]string `yaml:"annotations"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		require.NoError(t, dec.Decode(&file))
		require.Len(t, file.Groups, 1)
		alerts := map[string]bool{}
		for _, g := range file.Groups {
			assert.NotEmpty(t, g.Name)
			for _, r := range g.Rules {
				assert.NotEmpty(t, r.Alert, "every rule is an alert")
				assert.Empty(t, r.Record)
				assert.False(t, alerts[r.Alert], "alert %s twice", r.Alert)
				alerts[r.Alert] = true
				if r.For != "" {
					_, err := model.ParseDuration(r.For)
					assert.NoError(t, err, "%s: for %q", r.Alert, r.For)
				}
				assert.NotEmpty(t, r.Labels["severity"], r.Alert)
				assert.NotEmpty(t, r.Annotations["summary"], r.Alert)
				checkExpr(t, r.Alert, r.Expr, series)
			}
		}
		for _, want := range []string{"SfBLoginsInErrorRising", "SfBOutboxGrowing", "SfBBridgeLatencyHigh", "SfBServerAnswering503"} {
			assert.True(t, alerts[want], "the issue asks for %s", want)
		}
	})

	t.Run("metrics.md", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(docsDir, "metrics.md"))
		require.NoError(t, err)
		row := regexp.MustCompile("(?m)^\\| `(sfb_[a-z0-9_]+)` \\|[^|]+\\|([^|]*)\\|")
		listed := map[string]bool{}
		for _, m := range row.FindAllStringSubmatch(string(data), -1) {
			name := m[1]
			listed[name] = true
			require.Contains(t, series, name, "metrics.md lists %s, which the bridge does not export", name)
			var labels []string
			for _, l := range strings.Split(m[2], ",") {
				if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
					labels = append(labels, l)
				}
			}
			want := series[name]
			if name == "sfb_bridge_latency_seconds" {
				want = []string{"direction"}
			}
			sort.Strings(labels)
			assert.Equal(t, want, labels, "labels of %s in metrics.md", name)
		}
		for n := range series {
			if strings.HasPrefix(n, "sfb_") && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") && !strings.HasSuffix(n, "_bucket") {
				assert.True(t, listed[n], "metrics.md does not list %s", n)
			}
		}
	})
}
