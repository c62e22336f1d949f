package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/e2e/crash"
)

// Result is what a scenario writes: <scenario>.json and <scenario>.md.
type Result struct {
	Scenario string `json:"scenario"`
	N        int    `json:"n"`
	Command  string `json:"command"`
	Database string `json:"database"`
	// Transport is how the bridge reached SfB: ucwa, sip-per-user or
	// sip-trusted.
	Transport string        `json:"transport"`
	Started   time.Time     `json:"started"`
	Finished  time.Time     `json:"finished"`
	Machine   Machine       `json:"machine"`
	Runs      []Run         `json:"runs,omitempty"`
	Logins    *LoginRun     `json:"logins,omitempty"`
	Crash     *crash.Result `json:"crash,omitempty"`
	Presence  *PresenceRun  `json:"presence,omitempty"`
	// SIPScale and SIPPerUser measure the SIP transport alone, against the
	// simulator in a process of its own (no homeserver, no bridge).
	SIPScale   *SIPScaleRun   `json:"sip_scale,omitempty"`
	SIPPerUser *SIPPerUserRun `json:"sip_per_user,omitempty"`
	Error      string         `json:"error,omitempty"`
}

// Machine describes where a result was measured. The load averages show
// how much else ran on it.
type Machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	Memory     string `json:"memory"`
	GoVersion  string `json:"go"`
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
	KernelRel  string `json:"kernel"`
	Homeserver string `json:"homeserver"`
}

func newResult(scenario string, n int, opts options) *Result {
	db, hs := "PostgreSQL", "Synapse on SQLite, loopback, rate limits off"
	if opts.sqlite {
		db = "SQLite"
	}
	transport := opts.sfbTransport
	switch scenario {
	case "sip-scale":
		db, hs, transport = "none", "none", "sip-trusted"
	case "sip-per-user":
		db, hs, transport = "none", "none", "sip-per-user"
	}
	return &Result{
		Scenario: scenario, N: n, Command: opts.command, Database: db, Transport: transport, Started: time.Now().UTC(),
		Machine: Machine{
			CPUs:       runtime.NumCPU(),
			CPUModel:   procField("/proc/cpuinfo", "model name"),
			Memory:     procField("/proc/meminfo", "MemTotal"),
			GoVersion:  runtime.Version(),
			LoadBefore: loadavg(),
			KernelRel:  strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
			Homeserver: hs,
		},
	}
}

func (r *Result) finish() {
	r.Finished = time.Now().UTC()
	r.Machine.LoadAfter = loadavg()
}

// write stores the result as JSON and Markdown and returns the Markdown.
func (r *Result) write(dir string) (string, error) {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, r.Scenario+".json"), append(data, '\n'), 0o644); err != nil {
		return "", err
	}
	md := r.markdown()
	return md, os.WriteFile(filepath.Join(dir, r.Scenario+".md"), []byte(md), 0o644)
}

func (r *Result) markdown() string {
	var b strings.Builder
	if strings.HasPrefix(r.Scenario, "sip-") {
		fmt.Fprintf(&b, "### %s, N = %d (the SIP transport alone; the simulator in a process of its own)\n\n", r.Scenario, r.N)
	} else {
		fmt.Fprintf(&b, "### %s, N = %d (bridge on %s, SfB over %s)\n\n", r.Scenario, r.N, r.Database, r.Transport)
	}
	fmt.Fprintf(&b, "`%s`, %s to %s; %d CPUs (%s), %s; load average before %s, after %s.\n\n",
		r.Command, r.Started.Format("2006-01-02 15:04"), r.Finished.Format("15:04 MST"),
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.Memory, r.Machine.LoadBefore, r.Machine.LoadAfter)
	if len(r.Runs) > 0 {
		b.WriteString("| mode | side | arrived | doubled | p50 ms | p95 ms | p99 ms | max ms | msg/s | bridge CPU s | bridge peak RSS MiB | Synapse CPU s |\n")
		b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, run := range r.Runs {
			for _, s := range []struct {
				name string
				m    Measure
			}{{"baseline", run.Baseline}, {"bridge", run.Bridge}} {
				fmt.Fprintf(&b, "| %s | %s | %d/%d | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.1f | %.2f |\n",
					run.Mode, s.name, s.m.Arrived, s.m.Sent, s.m.Doubled, s.m.P50, s.m.P95, s.m.P99, s.m.Max,
					s.m.Throughput, s.m.BridgeCPU, s.m.BridgePeakRSS, s.m.SynapseCPU)
			}
		}
		b.WriteString("\n| mode | p99 bridge / baseline (goal <= 1.10) | throughput bridge / baseline (goal >= 0.90) |\n|---|---:|---:|\n")
		for _, run := range r.Runs {
			fmt.Fprintf(&b, "| %s | %.2f %s | %.2f %s |\n", run.Mode,
				run.P99Ratio, verdict(run.P99Ratio <= 1.10), run.ThroughputRatio, verdict(run.ThroughputRatio >= 0.90))
		}
		for _, run := range r.Runs {
			for _, m := range []Measure{run.Baseline, run.Bridge} {
				if m.Error != "" {
					fmt.Fprintf(&b, "\n%s: %s\n", run.Mode, m.Error)
				}
			}
		}
	}
	if l := r.Logins; l != nil {
		fmt.Fprintf(&b, "%d provisioning calls at a time.\n\n", l.Concurrency)
		b.WriteString("| side | sign-in rate | connected | failed | s to all connected | sign-ins/s | peak/s | p50 ms | p95 ms | p99 ms | bridge CPU s |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		type row struct {
			name, rate string
			l          Logins
		}
		ramped := l.Ramp.Connected+l.Ramp.Failed > 0
		var rows []row
		if ramped {
			rows = append(rows, row{"bridge at its ramp", fmt.Sprintf("%g/s", l.SignInRate), l.Ramp})
		}
		rows = append(rows, row{"bare UCWA client (baseline)", "none", l.Baseline})
		lifted := l.LiftedRate > 0 && l.Lifted.Connected+l.Lifted.Failed > 0
		if lifted {
			rows = append(rows, row{"bridge, ramp lifted", fmt.Sprintf("%g/s", l.LiftedRate), l.Lifted})
		}
		for _, s := range rows {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %.1f | %.1f | %d | %.0f | %.0f | %.0f | %.2f |\n",
				s.name, s.rate, s.l.Connected, s.l.Failed, s.l.Seconds, s.l.Rate, s.l.PeakRate, s.l.P50, s.l.P95, s.l.P99, s.l.BridgeCPU)
		}
		if lifted {
			fmt.Fprintf(&b, "\nSign-ins/s, bridge with the ramp lifted / bare client: %.2f.\n", l.RateRatio)
		} else if l.LiftedRate > 0 {
			first, _, _ := strings.Cut(l.Lifted.FirstError, "\n")
			fmt.Fprintf(&b, "\nThe bridge with the ramp lifted (%g/s) did not run: %s\n", l.LiftedRate, first)
		}
		if i := l.Idle; ramped {
			b.WriteString("\n| idle logins | seconds counted | bridge RSS before / after MiB | RSS per login KiB | bridge open files | bridge CPU s | event channel req/s | reportMyActivity/s | other req/s |\n")
			b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
			fmt.Fprintf(&b, "| %d | %.0f | %.1f / %.1f | %.1f | %d | %.2f | %.2f | %.2f | %.2f |\n",
				l.Ramp.Connected, i.Seconds, i.RSSBeforeMiB, i.RSSAfterMiB, i.RSSPerLoginKiB, i.OpenFiles, i.BridgeCPU, i.EventsPerSec, i.ActivityPerSec, i.OtherPerSec)
		}
		for _, s := range rows {
			if s.l.Failed > 0 && s.l.FirstError != "" {
				first, _, _ := strings.Cut(s.l.FirstError, "\n")
				fmt.Fprintf(&b, "\n%s, first error: %s\n", s.name, first)
			}
		}
	}
	if r.Crash != nil {
		crashMarkdown(&b, r.Crash)
	}
	if r.Presence != nil {
		presenceMarkdown(&b, r.Presence)
	}
	if r.SIPScale != nil {
		sipScaleMarkdown(&b, r.SIPScale)
	}
	if r.SIPPerUser != nil {
		sipPerUserMarkdown(&b, r.SIPPerUser)
	}
	if r.Error != "" {
		fmt.Fprintf(&b, "\nThe scenario stopped early: %s\n", r.Error)
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "(met)"
	}
	return "(missed)"
}

func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func loadavg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func readFile(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b)
}
