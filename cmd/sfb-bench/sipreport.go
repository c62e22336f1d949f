package main

import (
	"fmt"
	"strings"
)

func sipScaleMarkdown(b *strings.Builder, r *SIPScaleRun) {
	fmt.Fprintf(b, "Trusted mode: %d shared connections (mutual TLS), register rate %g/s, registration expiry %.0fs.\n\n",
		r.Connections, r.RegisterRate, r.RegistrationExpiry)
	b.WriteString("| side | registered | failed | s to all registered | registrations/s | peak/s | p50 ms | p95 ms | p99 ms | CPU s | simulator CPU s |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range []struct {
		name string
		r    SIPRegistrations
	}{{"bare client (baseline)", r.Baseline}, {"transport, from cold start", r.Transport}} {
		fmt.Fprintf(b, "| %s | %d | %d | %.1f | %.1f | %d | %.0f | %.0f | %.0f | %.2f | %.2f |\n",
			s.name, s.r.Registered, s.r.Failed, s.r.Seconds, s.r.Rate, s.r.PeakRate, s.r.P50, s.r.P95, s.r.P99, s.r.CPU, s.r.SimCPU)
	}
	fmt.Fprintf(b, "\nRegistrations/s, transport / bare client: %.2f. Cold start to all registered: %.1f s %s.\n",
		r.RateRatio, r.Transport.Seconds, verdict(r.Transport.Registered == r.Endpoints && r.Transport.Seconds <= 120))
	i := r.Idle
	b.WriteString("\n| idle endpoints | RSS before / after MiB | RSS per endpoint KiB (goal <= 32) | live heap per endpoint KiB | goroutines | open files |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(b, "| %d | %.1f / %.1f | %.1f %s | %.1f | %d | %d |\n", r.Transport.Registered, i.RSSBeforeMiB, i.RSSAfterMiB,
		i.RSSPerEndpointKiB, verdict(i.RSSPerEndpointKiB > 0 && i.RSSPerEndpointKiB <= 32), i.HeapPerEndpointKiB, i.Goroutines, i.OpenFiles)
	f := r.Refresh
	b.WriteString("\n| first refresh wave s | refreshed | peak/s | CPU s | CPU ms per refresh | simulator CPU s | reconnects |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(b, "| %.0f | %d/%d | %d | %.2f | %.3f | %.2f | %d |\n", f.Seconds, f.Refreshed, r.Endpoints, f.PeakPerSec, f.CPUSeconds, f.CPUPerRefreshMs, f.SimCPUSeconds, f.Reconnects)
	fmt.Fprintf(b, "\nSteady state, derived from the measured cost per refresh (refreshes at 60-85%% of the lifetime): %.1f refreshes/s and %.1f%% of a core at this run's %.0f s lifetime; %.1f refreshes/s and %.2f%% of a core at SfB's 7200 s.\n",
		f.SteadyPerSec, f.SteadyCPUPercent, r.RegistrationExpiry, f.SteadyPerSecAt7200, f.SteadyCPUPercentAt72)
	fmt.Fprintf(b, "\nLive check on %d random endpoints:\n\n| what | sent | arrived | p50 ms | p95 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|\n", r.Live.Sample)
	for _, c := range []struct {
		name string
		l    LiveCheck
	}{{"message", r.Live.Messages}, {"presence change", r.Live.Presence}} {
		fmt.Fprintf(b, "| %s | %d | %d | %.0f | %.0f | %.0f | %.0f |\n", c.name, c.l.Sent, c.l.Arrived, c.l.P50, c.l.P95, c.l.P99, c.l.Max)
	}
	for _, c := range []struct {
		name string
		l    LiveCheck
	}{{"messages", r.Live.Messages}, {"presence", r.Live.Presence}} {
		if c.l.Error != "" {
			fmt.Fprintf(b, "\nLive %s: %s\n", c.name, c.l.Error)
		}
	}
	for _, s := range []struct {
		name string
		r    SIPRegistrations
	}{{"bare client", r.Baseline}, {"transport", r.Transport}} {
		if s.r.FirstError != "" {
			fmt.Fprintf(b, "\n%s, first error: %s\n", s.name, s.r.FirstError)
		}
	}
}

func sipPerUserMarkdown(b *strings.Builder, r *SIPPerUserRun) {
	fmt.Fprintf(b, "Per-user mode: one TCP connection and one NTLM handshake (three REGISTERs) per user; %d sign-ins at a time.\n\n", r.Concurrency)
	b.WriteString("| side | sign-in rate | users | signed in | failed | s to all | sign-ins/s | peak/s | p50 ms | p95 ms | p99 ms | CPU s | simulator CPU s |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	type row struct {
		name, rate string
		users      int
		r          SIPRegistrations
	}
	var rows []row
	if r.RampUsers > 0 {
		rows = append(rows, row{"transport at the default rate", fmt.Sprintf("%g/s", r.SignInRate), r.RampUsers, r.Ramp})
	}
	rows = append(rows, row{"bare client (baseline)", "none", r.Users, r.Baseline})
	if r.LiftedRate > 0 {
		rows = append(rows, row{"transport, rate lifted", fmt.Sprintf("%g/s", r.LiftedRate), r.Users, r.Lifted})
	}
	for _, s := range rows {
		fmt.Fprintf(b, "| %s | %s | %d | %d | %d | %.1f | %.1f | %d | %.0f | %.0f | %.0f | %.2f | %.2f |\n",
			s.name, s.rate, s.users, s.r.Registered, s.r.Failed, s.r.Seconds, s.r.Rate, s.r.PeakRate, s.r.P50, s.r.P95, s.r.P99, s.r.CPU, s.r.SimCPU)
	}
	if r.RampUsers > 0 {
		fmt.Fprintf(b, "\nThe default rate honoured (sustained sign-ins/s after the first at most %g): %.2f/s %s.\n", r.SignInRate, r.Ramp.SustainedRate,
			verdict(r.Ramp.Registered == r.RampUsers && r.Ramp.SustainedRate <= r.SignInRate*1.05))
	}
	if r.LiftedRate > 0 {
		fmt.Fprintf(b, "\nSign-ins/s with the rate lifted (goal >= 100): %.1f %s; transport / bare client: %.2f.\n",
			r.Lifted.Rate, verdict(r.Lifted.Registered == r.Users && r.Lifted.Rate >= 100), r.RateRatio)
	}
	for _, s := range rows {
		if s.r.FirstError != "" {
			first, _, _ := strings.Cut(s.r.FirstError, "\n")
			fmt.Fprintf(b, "\n%s, first error: %s\n", s.name, first)
		}
	}
}
