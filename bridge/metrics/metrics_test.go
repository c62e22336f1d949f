package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// clock is a settable time for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTest(t *testing.T) (*Metrics, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 3, 2, 9, 30, 10, 0, time.UTC)}
	return New(WithClock(c.now)), c
}

// series gathers m and returns the metric of name whose labels are
// exactly labels ("k=v" pairs), or nil.
func series(t *testing.T, m *Metrics, name string, labels ...string) *dto.Metric {
	t.Helper()
	families, err := m.Registry().Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, metric := range f.GetMetric() {
			if len(metric.GetLabel()) != len(labels) {
				continue
			}
			for i, l := range metric.GetLabel() {
				if l.GetName()+"="+l.GetValue() != labels[i] {
					continue next
				}
			}
			return metric
		}
	}
	return nil
}

func value(t *testing.T, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	s := series(t, m, name, labels...)
	require.NotNil(t, s, "no series %s%v", name, labels)
	switch {
	case s.Counter != nil:
		return s.Counter.GetValue()
	case s.Gauge != nil:
		return s.Gauge.GetValue()
	}
	t.Fatalf("%s is neither counter nor gauge", name)
	return 0
}

func histogramCount(t *testing.T, m *Metrics, direction string) uint64 {
	t.Helper()
	s := series(t, m, "sfb_bridge_latency_seconds", "direction="+direction)
	require.NotNil(t, s)
	return s.GetHistogram().GetSampleCount()
}

func TestMessageBridged(t *testing.T) {
	m, _ := newTest(t)
	assert.Zero(t, value(t, m, "sfb_messages_bridged_total", "direction=to_matrix", "result=ok"), "shown before the first message")

	m.MessageBridged(ToMatrix, ResultOK, 120*time.Millisecond)
	m.MessageBridged(ToMatrix, ResultOK, 3*time.Second)
	m.MessageBridged(ToSfB, ResultOK, 40*time.Millisecond)
	m.MessageBridged(ToSfB, ResultRecipientUnavailable, time.Second)

	assert.Equal(t, 2.0, value(t, m, "sfb_messages_bridged_total", "direction=to_matrix", "result=ok"))
	assert.Equal(t, 1.0, value(t, m, "sfb_messages_bridged_total", "direction=to_sfb", "result=ok"))
	assert.Equal(t, 1.0, value(t, m, "sfb_messages_bridged_total", "direction=to_sfb", "result=recipient_unavailable"))
	assert.Equal(t, uint64(2), histogramCount(t, m, ToMatrix))
	assert.Equal(t, uint64(1), histogramCount(t, m, ToSfB), "a failed message has no latency")
	h := series(t, m, "sfb_bridge_latency_seconds", "direction=to_matrix").GetHistogram()
	assert.InDelta(t, 3.12, h.GetSampleSum(), 1e-9)
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == 0.25 {
			assert.Equal(t, uint64(1), b.GetCumulativeCount(), "120 ms is under 0.25 s, 3 s is not")
		}
	}
}

func TestSignInsAndRenewals(t *testing.T) {
	m, _ := newTest(t)
	m.SignedIn(nil)
	m.SignedIn(fmt.Errorf("sign in: %w", sfb.ErrBadCredentials))
	m.SignedIn(fmt.Errorf("discover: %w: dial tcp", sfb.ErrServerUnavailable))
	m.TokenRenewed(nil)
	m.TokenRenewed(nil)
	m.TokenRenewed(fmt.Errorf("renew: %w", sfb.ErrLocalTimeout))

	assert.Equal(t, 1.0, value(t, m, "sfb_sign_ins_total", "result=ok"))
	assert.Equal(t, 1.0, value(t, m, "sfb_sign_ins_total", "result=bad_credentials"))
	assert.Equal(t, 1.0, value(t, m, "sfb_sign_ins_total", "result=server_unavailable"))
	assert.Equal(t, 2.0, value(t, m, "sfb_token_renewals_total", "result=ok"))
	assert.Equal(t, 1.0, value(t, m, "sfb_token_renewals_total", "result=timeout"))
	errs := m.RecentErrors()
	require.Len(t, errs, 3, "failed sign-ins and renewals are recent errors")
	assert.Equal(t, "token renewal", errs[0].Kind)
	assert.Equal(t, "sign-in", errs[1].Kind)
}

func TestResultOf(t *testing.T) {
	for err, want := range map[error]string{
		nil:                                  ResultOK,
		sfb.ErrBadCredentials:                ResultBadCredentials,
		sfb.ErrCredentialsRequired:           ResultCredentialsRequired,
		sfb.ErrRecipientUnavailable:          ResultRecipientUnavailable,
		sfb.ErrDeclined:                      ResultDeclined,
		sfb.ErrDeliveryFailed:                ResultDeliveryFailed,
		sfb.ErrUnsupported:                   ResultUnsupported,
		sfb.ErrServerUnavailable:             ResultServerUnavailable,
		context.DeadlineExceeded:             ResultTimeout,
		context.Canceled:                     ResultInterrupted,
		errors.New("sip:bob@contoso.com"):    ResultError,
		fmt.Errorf("x: %w", sfb.ErrDeclined): ResultDeclined,
	} {
		assert.Equal(t, want, ResultOf(err), "%v", err)
	}
}

func TestPresenceUpdates(t *testing.T) {
	m, _ := newTest(t)
	m.PresenceUpdate(ToMatrix)
	m.PresenceUpdate(ToMatrix)
	m.PresenceUpdate(ToSfB)
	assert.Equal(t, 2.0, value(t, m, "sfb_presence_updates_total", "direction=to_matrix"))
	assert.Equal(t, 1.0, value(t, m, "sfb_presence_updates_total", "direction=to_sfb"))
}

func TestServerAnsweredAndReconnects(t *testing.T) {
	m, _ := newTest(t)
	var o sfb.Observer = m
	o.ServerAnswered(200, "")
	o.ServerAnswered(200, "")
	o.ServerAnswered(503, `5000;reason="Service unavailable";source="fe1.contoso.com"`)
	o.ServerAnswered(404, `4000;reason="Application not found for sip:bob@contoso.com"`)
	o.ServerAnswered(0, "")
	o.EventChannelReconnect()
	o.EventChannelReconnect()

	assert.Equal(t, 2.0, value(t, m, "sfb_server_requests_total", "diagnostic=", "status=200"))
	assert.Equal(t, 1.0, value(t, m, "sfb_server_requests_total", "diagnostic=5000", "status=503"))
	assert.Equal(t, 1.0, value(t, m, "sfb_server_requests_total", "diagnostic=4000", "status=404"))
	assert.Equal(t, 1.0, value(t, m, "sfb_server_requests_total", "diagnostic=", "status=none"))
	assert.Equal(t, 2.0, value(t, m, "sfb_event_channel_reconnects_total"))
}

func TestDiagnosticCode(t *testing.T) {
	for header, want := range map[string]string{
		"":                           "",
		"1000":                       "1000",
		` 2001 ; reason="x"`:         "2001",
		`reason="alice@contoso.com"`: "",
		"sip:alice@contoso.com;x":    "",
		"12345678;reason=too long":   "",
	} {
		assert.Equal(t, want, DiagnosticCode(header), "%q", header)
	}
}

func TestStateSources(t *testing.T) {
	m, clk := newTest(t)
	assert.Nil(t, series(t, m, "sfb_outbox_entries"), "no series before the sources are set")

	oldest := clk.now().Add(-90 * time.Second)
	outboxErr := error(nil)
	m.SetSources(Sources{
		Logins: func() []LoginCount {
			return []LoginCount{
				{State: "CONNECTED", Mode: "coexistence", N: 3},
				{State: "BAD_CREDENTIALS", Mode: "matrix_only", N: 1},
				{State: "CONNECTED", Mode: "coexistence", N: 2},
			}
		},
		Outbox: func(context.Context) (OutboxState, error) {
			return OutboxState{Entries: 4, Oldest: oldest}, outboxErr
		},
		Waves: func(context.Context) ([]WaveCount, error) {
			return []WaveCount{
				{Wave: "Finance 1", ByMode: map[string]int{"coexistence": 5, "sfb_only": 1}, ByLogin: map[string]int{"connected": 4, "error": 1, "none": 1}},
				{Wave: "", ByMode: map[string]int{"sfb_only": 7}, ByLogin: map[string]int{"none": 7}},
			}, nil
		},
	})
	assert.Equal(t, 5.0, value(t, m, "sfb_logins", "mode=coexistence", "state=CONNECTED"))
	assert.Equal(t, 1.0, value(t, m, "sfb_logins", "mode=matrix_only", "state=BAD_CREDENTIALS"))
	assert.Equal(t, 4.0, value(t, m, "sfb_outbox_entries"))
	assert.Equal(t, 90.0, value(t, m, "sfb_outbox_oldest_age_seconds"))
	clk.add(30 * time.Second)
	assert.Equal(t, 120.0, value(t, m, "sfb_outbox_oldest_age_seconds"), "the age grows while the entry waits")
	assert.Equal(t, 5.0, value(t, m, "sfb_wave_people", "mode=coexistence", "wave=Finance 1"))
	assert.Equal(t, 1.0, value(t, m, "sfb_wave_logins", "state=error", "wave=Finance 1"))
	assert.Equal(t, 7.0, value(t, m, "sfb_wave_people", "mode=sfb_only", "wave=(none)"))
	assert.Equal(t, 0.0, value(t, m, "sfb_metrics_source_errors", "source=outbox"))

	outboxErr = errors.New("database is locked")
	assert.Nil(t, series(t, m, "sfb_outbox_entries"), "no made-up value when the outbox cannot be read")
	assert.Equal(t, 1.0, value(t, m, "sfb_metrics_source_errors", "source=outbox"))
	assert.Equal(t, 5.0, value(t, m, "sfb_wave_people", "mode=coexistence", "wave=Finance 1"), "the others are still there")
}

func TestOutboxEmptyHasNoAge(t *testing.T) {
	m, _ := newTest(t)
	m.SetSources(Sources{Outbox: func(context.Context) (OutboxState, error) { return OutboxState{}, nil }})
	assert.Equal(t, 0.0, value(t, m, "sfb_outbox_entries"))
	assert.Equal(t, 0.0, value(t, m, "sfb_outbox_oldest_age_seconds"))
}

// TestNoPersonalDataInLabels feeds every collector what personal data
// could reach it (addresses in errors and diagnostics, a wave name that
// looks like one) and checks that no label value carries '@' or ':'.
func TestNoPersonalDataInLabels(t *testing.T) {
	m, _ := newTest(t)
	personal := errors.New("sip:alice@contoso.com @alice:example.org !room:example.org")
	m.MessageBridged(ToMatrix, ResultOK, time.Millisecond)
	m.MessageBridged(ToSfB, ResultOf(personal), time.Millisecond)
	m.SignedIn(personal)
	m.TokenRenewed(personal)
	m.PresenceUpdate(ToMatrix)
	m.ServerAnswered(403, `2000;reason="sip:alice@contoso.com is not allowed"`)
	m.ServerAnswered(500, `sip:alice@contoso.com`)
	m.EventChannelReconnect()
	m.SetSources(Sources{
		Logins: func() []LoginCount { return []LoginCount{{State: "CONNECTED", Mode: "x:y@z", N: 1}} },
		Outbox: func(context.Context) (OutboxState, error) { return OutboxState{Entries: 1, Oldest: time.Now()}, nil },
		Waves: func(context.Context) ([]WaveCount, error) {
			return []WaveCount{{Wave: "bob@contoso.com: pilot", ByMode: map[string]int{"coexistence": 1}, ByLogin: map[string]int{"none": 1}}}, nil
		},
	})
	assertNoPersonalLabels(t, m)
	assert.Contains(t, m.RecentErrors()[0].Message, "alice@contoso.com", "the dashboard, behind authentication, still gets the whole error")
}

func assertNoPersonalLabels(t *testing.T, m *Metrics) {
	t.Helper()
	families, err := m.Registry().Gather()
	require.NoError(t, err)
	labels := 0
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				labels++
				assert.False(t, strings.ContainsAny(l.GetValue(), "@:"), "%s{%s=%q}", f.GetName(), l.GetName(), l.GetValue())
			}
		}
	}
	assert.Greater(t, labels, 10, "the check saw labels")
}

func TestLint(t *testing.T) {
	m, _ := newTest(t)
	m.SetSources(Sources{Outbox: func(context.Context) (OutboxState, error) { return OutboxState{}, nil }})
	families, err := m.Registry().Gather()
	require.NoError(t, err)
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func TestMinutes(t *testing.T) {
	m, clk := newTest(t)
	m.MessageBridged(ToMatrix, ResultOK, time.Millisecond)
	m.MessageBridged(ToMatrix, ResultIgnored, time.Millisecond)
	m.PresenceUpdate(ToSfB)
	clk.add(time.Minute)
	m.MessageBridged(ToSfB, ResultOK, time.Millisecond)
	m.MessageBridged(ToSfB, ResultDeclined, time.Millisecond)
	m.PresenceUpdate(ToMatrix)

	minutes := m.Minutes()
	require.Len(t, minutes, historyMinutes)
	last, prev := minutes[len(minutes)-1], minutes[len(minutes)-2]
	assert.Equal(t, Minute{Start: time.Date(2026, 3, 2, 9, 31, 0, 0, time.UTC), MessagesToSfB: 1, MessagesFailed: 1, PresenceToMatrix: 1}, last)
	assert.Equal(t, Minute{Start: time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC), MessagesToMatrix: 1, PresenceToSfB: 1}, prev)

	// An hour later the bucket is reused; its old counts do not show.
	clk.add(time.Hour)
	m.PresenceUpdate(ToMatrix)
	minutes = m.Minutes()
	assert.Equal(t, Minute{Start: time.Date(2026, 3, 2, 10, 31, 0, 0, time.UTC), PresenceToMatrix: 1}, minutes[len(minutes)-1])
	for _, b := range minutes[:len(minutes)-1] {
		assert.Equal(t, Minute{Start: b.Start}, b, "nothing happened at %s", b.Start)
	}
}

func TestRecentErrors(t *testing.T) {
	m, clk := newTest(t)
	for i := range maxErrors + 5 {
		m.Error("sign-in", fmt.Errorf("error %d", i))
		clk.add(time.Second)
	}
	m.Error("sign-in", nil)
	errs := m.RecentErrors()
	require.Len(t, errs, maxErrors)
	assert.Equal(t, fmt.Sprintf("error %d", maxErrors+4), errs[0].Message, "newest first")
	assert.Equal(t, "error 5", errs[maxErrors-1].Message, "the oldest ones are gone")
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.MessageBridged(ToMatrix, ResultOK, time.Second)
	m.SignedIn(nil)
	m.PresenceUpdate(ToSfB)
	m.ServerAnswered(200, "")
	m.EventChannelReconnect()
	m.TokenRenewed(nil)
	m.Error("x", errors.New("y"))
	m.SetSources(Sources{})
	assert.Nil(t, m.Minutes())
	assert.Nil(t, m.RecentErrors())
	families, err := m.Registry().Gather()
	require.NoError(t, err)
	assert.Empty(t, families)
}
