// Package metrics holds the bridge's Prometheus collectors in a registry of
// their own, and a small in-process view of them (messages and presence
// updates per minute, recent errors) for the migration dashboard.
//
// Nothing personal goes into a label value: directions, results, states,
// modes, HTTP status codes, X-Ms-Diagnostics codes and the wave names the
// migration team chose. Addresses, Matrix IDs and room IDs never do.
//
// Every method is safe on a nil *Metrics, so that code paths and tests
// without metrics need no checks.
package metrics

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Directions of a bridged message or presence update.
const (
	ToMatrix = "to_matrix"
	ToSfB    = "to_sfb"
)

// Results of a message, a sign-in or a token renewal (see ResultOf).
const (
	ResultOK                   = "ok"
	ResultIgnored              = "ignored"
	ResultBadCredentials       = "bad_credentials"
	ResultCredentialsRequired  = "credentials_required"
	ResultServerUnavailable    = "server_unavailable"
	ResultRecipientUnavailable = "recipient_unavailable"
	ResultDeclined             = "declined"
	ResultDeliveryFailed       = "delivery_failed"
	ResultUnsupported          = "unsupported"
	ResultTimeout              = "timeout"
	ResultInterrupted          = "interrupted"
	ResultError                = "error"
)

// LatencyBuckets bound the bridging latency histograms, in seconds: from
// a message that takes the fast path to one that waited in the outbox
// for a reconnect.
var latencyBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// Metrics holds the collectors. Create it with New.
type Metrics struct {
	reg *prometheus.Registry
	now func() time.Time

	messages   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	signIns    *prometheus.CounterVec
	renewals   *prometheus.CounterVec
	presence   *prometheus.CounterVec
	requests   *prometheus.CounterVec
	reconnects prometheus.Counter

	mu      sync.Mutex
	sources Sources
	minutes [historyMinutes]Minute
	errs    []ErrorRecord
	errNext int
}

// Option changes a new Metrics.
type Option func(*Metrics)

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(m *Metrics) { m.now = now } }

// New returns collectors registered in a registry of their own, with the
// Go runtime's and the process's collectors beside them.
func New(opts ...Option) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), now: time.Now}
	for _, o := range opts {
		o(m)
	}
	m.messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sfb_messages_bridged_total",
		Help: "Messages the bridge carried (or failed to carry), by direction (to_matrix, to_sfb) and result.",
	}, []string{"direction", "result"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sfb_bridge_latency_seconds",
		Help:    "Time from the bridge receiving a message to the other side accepting it, by direction; successful messages only.",
		Buckets: latencyBuckets,
	}, []string{"direction"})
	m.signIns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sfb_sign_ins_total",
		Help: "Sign-ins to Skype for Business, by result.",
	}, []string{"result"})
	m.renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sfb_token_renewals_total",
		Help: "Unattended renewals of SfB tokens, by result.",
	}, []string{"result"})
	m.presence = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sfb_presence_updates_total",
		Help: "Presence changes carried, by direction: SfB people's presence to their ghosts (to_matrix), Matrix users' presence published on SfB (to_sfb).",
	}, []string{"direction"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sfb_server_requests_total",
		Help: "Requests to the SfB server, by HTTP status (\"none\": no answer) and X-Ms-Diagnostics code (\"\" when absent).",
	}, []string{"status", "diagnostic"})
	m.reconnects = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sfb_event_channel_reconnects_total",
		Help: "Times an SfB event channel failed and was asked again.",
	})
	m.reg.MustRegister(m.messages, m.latency, m.signIns, m.renewals, m.presence, m.requests, m.reconnects,
		&stateCollector{m: m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Directions and results that may not have happened yet are shown
	// as 0 rather than missing, so that rate() and alerts see them.
	for _, d := range []string{ToMatrix, ToSfB} {
		m.messages.WithLabelValues(d, ResultOK)
		m.latency.WithLabelValues(d)
		m.presence.WithLabelValues(d)
	}
	m.signIns.WithLabelValues(ResultOK)
	m.renewals.WithLabelValues(ResultOK)
	return m
}

// Registry is what the metrics listener serves.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return prometheus.NewRegistry()
	}
	return m.reg
}

// MessageBridged counts a message in direction with result; took (from
// the bridge receiving it to the other side accepting it) goes to the
// latency histogram when it succeeded.
func (m *Metrics) MessageBridged(direction, result string, took time.Duration) {
	if m == nil {
		return
	}
	m.messages.WithLabelValues(direction, result).Inc()
	if result == ResultOK {
		m.latency.WithLabelValues(direction).Observe(took.Seconds())
	}
	m.count(func(b *Minute) {
		switch {
		case result != ResultOK && result != ResultIgnored:
			b.MessagesFailed++
		case result == ResultIgnored:
		case direction == ToMatrix:
			b.MessagesToMatrix++
		default:
			b.MessagesToSfB++
		}
	})
}

// SignedIn counts a sign-in that ended with err.
func (m *Metrics) SignedIn(err error) {
	if m == nil {
		return
	}
	m.signIns.WithLabelValues(ResultOf(err)).Inc()
	if err != nil && !errors.Is(err, context.Canceled) {
		m.Error("sign-in", err)
	}
}

// PresenceUpdate counts a presence change carried in direction.
func (m *Metrics) PresenceUpdate(direction string) {
	if m == nil {
		return
	}
	m.presence.WithLabelValues(direction).Inc()
	m.count(func(b *Minute) {
		if direction == ToMatrix {
			b.PresenceToMatrix++
		} else {
			b.PresenceToSfB++
		}
	})
}

var _ sfb.Observer = (*Metrics)(nil)

// ServerAnswered implements sfb.Observer: status 0 is a request that got no
// answer.
func (m *Metrics) ServerAnswered(status int, diagnostics string) {
	if m == nil {
		return
	}
	s := "none"
	if status > 0 {
		s = strconv.Itoa(status)
	}
	m.requests.WithLabelValues(s, DiagnosticCode(diagnostics)).Inc()
}

// EventChannelReconnect implements sfb.Observer.
func (m *Metrics) EventChannelReconnect() {
	if m == nil {
		return
	}
	m.reconnects.Inc()
}

// TokenRenewed implements sfb.Observer.
func (m *Metrics) TokenRenewed(err error) {
	if m == nil {
		return
	}
	m.renewals.WithLabelValues(ResultOf(err)).Inc()
	if err != nil {
		m.Error("token renewal", err)
	}
}

// DiagnosticCode is the numeric code that starts an X-Ms-Diagnostics
// header ("1000;reason=..."), or "" without one. The reason text is left
// out: it may name people, and the code says the same.
func DiagnosticCode(header string) string {
	code, _, _ := strings.Cut(header, ";")
	code = strings.TrimSpace(code)
	if code == "" || len(code) > 6 {
		return ""
	}
	for _, r := range code {
		if r < '0' || r > '9' {
			return ""
		}
	}
	return code
}

// ResultOf names the outcome of an SfB operation for a label.
func ResultOf(err error) string {
	switch {
	case err == nil:
		return ResultOK
	case errors.Is(err, sfb.ErrBadCredentials):
		return ResultBadCredentials
	case errors.Is(err, sfb.ErrCredentialsRequired):
		return ResultCredentialsRequired
	case errors.Is(err, sfb.ErrRecipientUnavailable):
		return ResultRecipientUnavailable
	case errors.Is(err, sfb.ErrDeclined):
		return ResultDeclined
	case errors.Is(err, sfb.ErrDeliveryFailed):
		return ResultDeliveryFailed
	case errors.Is(err, sfb.ErrUnsupported):
		return ResultUnsupported
	case errors.Is(err, sfb.ErrLocalTimeout), errors.Is(err, context.DeadlineExceeded):
		return ResultTimeout
	case errors.Is(err, sfb.ErrServerUnavailable):
		return ResultServerUnavailable
	case errors.Is(err, context.Canceled):
		// The bridge stopped or the login went away meanwhile.
		return ResultInterrupted
	}
	return ResultError
}
