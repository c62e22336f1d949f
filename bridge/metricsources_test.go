package bridge

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/migration"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// gathered returns the metrics of name by their labels ("k=v,k=v").
func gathered(t *testing.T, e *testEnv, name string) map[string]*dto.Metric {
	t.Helper()
	families, err := e.conn.Metrics().Registry().Gather()
	require.NoError(t, err)
	out := map[string]*dto.Metric{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[strings.Join(labels, ",")] = m
		}
	}
	return out
}

func counter(t *testing.T, e *testEnv, name, labels string) float64 {
	t.Helper()
	m := gathered(t, e, name)[labels]
	switch {
	case m == nil:
		return 0
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return m.GetCounter().GetValue()
}

// The sites the bridge counts at: sign-in, SfB messages to Matrix,
// Matrix messages to SfB (both results), the login's state and the
// outbox; and, after all that went through it, no label names anyone.
func TestMetricsCountWhatTheBridgeDoes(t *testing.T) {
	e := newTestEnv(t)
	_, err := e.conn.Migration().Import(e.ctx, []byte("sip_address;matrix_id;wave;mode\n"+
		"alice@contoso.com;@alice:example.org;Finance: pilot;coexistence\n"+
		"bob@contoso.com;@bob:example.org;Finance: pilot;\n"), false, migration.Actor{Who: "test"})
	require.NoError(t, err)
	ul, client, session := e.mustLogin()
	assert.Equal(t, 1.0, counter(t, e, "sfb_sign_ins_total", "result=ok"))
	assert.Equal(t, 1.0, counter(t, e, "sfb_logins", "mode=coexistence,state=CONNECTED"))
	assert.Equal(t, 1.0, counter(t, e, "sfb_wave_people", "mode=coexistence,wave=Finance_ pilot"), "a wave name with ':' shown with '_'")
	assert.Equal(t, 1.0, counter(t, e, "sfb_wave_logins", "state=connected,wave=Finance_ pilot"))
	assert.Equal(t, 1.0, counter(t, e, "sfb_wave_logins", "state=none,wave=Finance_ pilot"), "bob has no login")

	session.emit(msgFromBob("m-1", "one"))
	session.emit(msgFromBob("m-2", "two"))
	e.qmu.Lock()
	e.results = []bridgev2.EventHandlingResult{failed(httpStatus(http.StatusForbidden))}
	e.qmu.Unlock()
	session.emit(msgFromBob("m-3", "three"))
	assert.Equal(t, 2.0, counter(t, e, "sfb_messages_bridged_total", "direction=to_matrix,result=ok"))
	assert.Equal(t, 1.0, counter(t, e, "sfb_messages_bridged_total", "direction=to_matrix,result=error"))
	assert.EqualValues(t, 2, gathered(t, e, "sfb_bridge_latency_seconds")["direction=to_matrix"].GetHistogram().GetSampleCount())

	portal := e.portalFor(ul.ID, bob)
	_, err = client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$m1", &event.MessageEventContent{MsgType: event.MsgText, Body: "hi"}))
	require.NoError(t, err)
	e.waitEcho("$m1")
	session.setSendErr(fmt.Errorf("%w: %w: bob@contoso.com is offline", sfb.ErrDeliveryFailed, sfb.ErrRecipientUnavailable))
	_, err = client.HandleMatrixMessage(e.ctx, matrixMessage(portal, "$m2", &event.MessageEventContent{MsgType: event.MsgText, Body: "hi"}))
	require.NoError(t, err)
	e.waitEcho("$m2")
	assert.Equal(t, 1.0, counter(t, e, "sfb_messages_bridged_total", "direction=to_sfb,result=ok"))
	assert.Equal(t, 1.0, counter(t, e, "sfb_messages_bridged_total", "direction=to_sfb,result=recipient_unavailable"))
	assert.EqualValues(t, 1, gathered(t, e, "sfb_bridge_latency_seconds")["direction=to_sfb"].GetHistogram().GetSampleCount())
	requireOutboxEmpty(t, e, ul.ID)
	assert.Equal(t, 0.0, counter(t, e, "sfb_outbox_entries", ""))

	minute := e.conn.Metrics().Minutes()[59]
	assert.Equal(t, 2, minute.MessagesToMatrix)
	assert.Equal(t, 1, minute.MessagesToSfB)
	assert.Equal(t, 2, minute.MessagesFailed)
	errs := e.conn.Metrics().RecentErrors()
	require.Len(t, errs, 2)
	assert.Equal(t, "message to_sfb", errs[0].Kind)
	assert.Contains(t, errs[0].Message, "offline")

	families, err := e.conn.Metrics().Registry().Gather()
	require.NoError(t, err)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				assert.False(t, strings.ContainsAny(l.GetValue(), "@:"), "%s{%s=%q}", f.GetName(), l.GetName(), l.GetValue())
			}
		}
	}
}

func TestMetricsCountFailedSignIns(t *testing.T) {
	e := newTestEnv(t)
	e.transport.failWith(fmt.Errorf("token: %w", sfb.ErrBadCredentials))
	_, err := e.login("alice@contoso.com", "alice@contoso.com", "wrong")
	require.Error(t, err)
	assert.Equal(t, 1.0, counter(t, e, "sfb_sign_ins_total", "result=bad_credentials"))
	assert.Equal(t, 0.0, counter(t, e, "sfb_sign_ins_total", "result=ok"))
}

func TestMetricsCountPresenceBothWays(t *testing.T) {
	g := &ghostPresence{}
	e := newTestEnv(t, withPresence(g, nil))
	ul, _, s := e.mustLogin()
	timers := &manualTimers{}
	e.conn.presence.afterFunc = timers.afterFunc
	e.messageFrom(s, bob)
	e.waitWatched(s, bob)

	s.emit(sfb.PresenceChanged{Person: bob, Presence: sfb.Presence{Availability: sfb.AvailabilityBusy}})
	require.Eventually(t, func() bool { return g.last(bob).Presence == event.PresenceUnavailable }, 5*time.Second, time.Millisecond)
	// Counted just after the writer took it, which may write it first.
	require.Eventually(t, func() bool { return counter(t, e, "sfb_presence_updates_total", "direction=to_matrix") == 1 }, 5*time.Second, time.Millisecond)

	yes := true
	require.NoError(t, e.conn.setPublishPresence(e.ctx, ul, &yes))
	e.conn.presence.matrixPresence(e.ctx, e.user.MXID, &event.PresenceEventContent{Presence: event.PresenceOnline})
	timers.fire()
	require.Len(t, s.publications(), 1)
	assert.Equal(t, 1.0, counter(t, e, "sfb_presence_updates_total", "direction=to_sfb"))
}

func TestEventResult(t *testing.T) {
	assert.Equal(t, "ok", eventResult(bridgev2.EventHandlingResultSuccess))
	assert.Equal(t, "ignored", eventResult(bridgev2.EventHandlingResultIgnored))
	assert.Equal(t, "error", eventResult(failed(errors.New("x"))))
}
