package sip

import (
	"context"
	"crypto/tls"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// BenchmarkTrustedIdleEndpoints registers endpoints in trusted mode
// against the fake pool in this process and reports the heap each idle
// endpoint holds (client and fake pool together, so an upper bound of the
// client's share; the goal is 32 KiB) and the registrations per second.
func BenchmarkTrustedIdleEndpoints(b *testing.B) {
	const endpoints = 5000
	p := newFakePool(b, func(p *fakePool) { p.trusted = true })
	cfg := testConfig(p.server())
	cfg.SIP.Mode, cfg.SIP.Connections, cfg.SIP.RegisterRate, cfg.SIP.ApplicationFQDN = sfb.SIPModeTrusted, 4, 1e6, "bridge.contoso.com"
	cert, _ := selfSigned(b, "bridge.contoso.com")
	tr := newTransport(b, cfg, WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}))
	noop := func(context.Context, sfb.Event) {}
	for range b.N {
		var sessions sync.Map
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1)
					if i > endpoints {
						return
					}
					s, err := tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: fmt.Sprintf("u%d@contoso.com", i)}}, noop)
					require.NoError(b, err)
					sessions.Store(i, s)
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/endpoints, "heap-B/endpoint")
		b.ReportMetric(float64(after.NumGC-before.NumGC), "gcs")
		b.ReportMetric(endpoints/elapsed.Seconds(), "registrations/s")
		b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
		sessions.Range(func(_, v any) bool {
			_ = v.(sfb.Session).Close(context.Background())
			return true
		})
	}
}

// An idle trusted-mode endpoint holds no goroutine: 300 endpoints on two
// shared connections leave the count where a handful of endpoints left it.
func TestTrustedIdleEndpointsHoldNoGoroutine(t *testing.T) {
	p := newFakePool(t, func(p *fakePool) { p.trusted = true })
	cfg := testConfig(p.server())
	cfg.SIP.Mode, cfg.SIP.Connections, cfg.SIP.RegisterRate = sfb.SIPModeTrusted, 2, 1e6
	cert, _ := selfSigned(t, "bridge.contoso.com")
	tr := newTransport(t, cfg, WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}))
	noop := func(context.Context, sfb.Event) {}
	signInN := func(from, to int) {
		for i := from; i < to; i++ {
			s, err := tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: fmt.Sprintf("u%d@contoso.com", i)}}, noop)
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close(context.Background()) })
		}
	}
	signInN(0, 5)
	base := runtime.NumGoroutine()
	signInN(5, 305)
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= base+5 }, 5*time.Second, 10*time.Millisecond,
		"goroutines: %d with 5 endpoints, %d with 305", base, runtime.NumGoroutine())
	require.Equal(t, 305, tr.refresh.len())
}

// BenchmarkPerUserSignIn signs users in per user (TCP, NTLM handshake,
// signed REGISTER) against the fake pool in this process, 32 at a time,
// and reports sign-ins per second (client and pool share the CPU).
func BenchmarkPerUserSignIn(b *testing.B) {
	const users = 500
	p := newFakePool(b, func(p *fakePool) {
		for i := range users {
			p.users[fmt.Sprintf("u%d@contoso.com", i)] = "pw"
		}
	})
	cfg := testConfig(p.server())
	cfg.SignInRate, cfg.SimulatorSignInRate = 1e6, true
	tr := newTransport(b, cfg)
	noop := func(context.Context, sfb.Event) {}
	for range b.N {
		var sessions sync.Map
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= users {
						return
					}
					s, err := tr.SignIn(context.Background(), sfb.SignInRequest{Credentials: sfb.Credentials{SignInAddress: fmt.Sprintf("u%d@contoso.com", i), Password: "pw"}}, noop)
					require.NoError(b, err)
					sessions.Store(i, s)
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(users/time.Since(start).Seconds(), "sign-ins/s")
		sessions.Range(func(_, v any) bool {
			_ = v.(sfb.Session).Close(context.Background())
			return true
		})
	}
}
