package sim_test

import (
	"bufio"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb/sim"
)

// BenchmarkSIPTrustedRegister registers b.N endpoints of distinct users
// from one trusted application's connection, pipelined as a UCMA
// application does at start, and reports the registrations per second
// and the simulator's heap per registered endpoint (the bench registers
// 70,000).
func BenchmarkSIPTrustedRegister(b *testing.B) {
	e := newSIPEnv(b, sim.Options{Users: []sim.User{{URI: "sip:seed@contoso.com", Password: "x"}}, SIP: sim.SIPOptions{TrustedApplications: []string{"bridge.contoso.com"}}}, true)
	users := e.sim.GenerateUsers(b.N, "contoso.com")
	app := e.dialTrusted(b, "bridge.contoso.com")
	app.mu.Lock()
	app.discard = true
	app.mu.Unlock()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	start := time.Now()
	go func() {
		w := bufio.NewWriterSize(app.nc, 64<<10)
		for i, u := range users {
			fmt.Fprintf(w, "REGISTER sip:contoso.com SIP/2.0\r\n"+
				"Via: SIP/2.0/TLS 127.0.0.1:%d;branch=z9hG4bK%d\r\n"+
				"From: <%s>;tag=t%d;epid=e%d\r\nTo: <%s>\r\nCall-ID: c%d\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n"+
				"Contact: <sip:bridge.contoso.com:5061;transport=tls>;methods=\"INVITE, MESSAGE, INFO, BYE, CANCEL, NOTIFY, ACK, BENOTIFY\";proxy=replace;+sip.instance=\"<urn:uuid:%08x-0000-0000-0000-000000000000>\"\r\n"+
				"Supported: gruu-10, adhoclist, msrtc-event-categories, com.microsoft.msrtc.presence\r\nEvent: registration\r\nContent-Length: 0\r\n\r\n",
				app.port, i, u.URI, i, i, u.URI, i, i)
		}
		_ = w.Flush()
	}()
	require.Eventually(b, func() bool { return e.sim.SIPRegistrations("") >= b.N }, 10*time.Minute, 5*time.Millisecond)
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "registrations/s")
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(b.N), "heap-B/endpoint")
}
