package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat: 100
// on every Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds is the user plus system CPU time a process has used so far.
func cpuSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of process %d: %w", pid, err)
	}
	// The command name in parentheses may hold spaces; fields follow it.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("read CPU time of process %d: unexpected /proc stat format", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	// utime and stime are fields 14 and 15 of stat, 12 and 13 after ")".
	if len(fields) < 13 {
		return 0, fmt.Errorf("read CPU time of process %d: short /proc stat", pid)
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("read CPU time of process %d: bad utime/stime", pid)
	}
	return (utime + stime) / clockTicks, nil
}

// rssBytes is the resident set size of a process now (VmRSS).
func rssBytes(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read RSS of process %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read RSS of process %d: %w", pid, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("read RSS of process %d: no VmRSS in status", pid)
}

// usage measures what a process uses over an interval: CPU seconds, and
// the peak RSS among the samples taken.
type usage struct {
	pid      int
	cpuStart float64

	mu   sync.Mutex
	peak int64
}

func startUsage(pid int) *usage {
	u := &usage{pid: pid}
	u.cpuStart, _ = cpuSeconds(pid)
	u.sample()
	return u
}

func (u *usage) sample() {
	if rss, err := rssBytes(u.pid); err == nil {
		u.mu.Lock()
		u.peak = max(u.peak, rss)
		u.mu.Unlock()
	}
}

// stop returns the CPU seconds used since start and the peak RSS in MiB.
func (u *usage) stop() (cpu, peakMiB float64) {
	u.sample()
	end, _ := cpuSeconds(u.pid)
	u.mu.Lock()
	defer u.mu.Unlock()
	return end - u.cpuStart, float64(u.peak) / (1 << 20)
}

// openFiles is the number of file descriptors a process holds (sockets
// included).
func openFiles(pid int) (int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("count open files of process %d: %w", pid, err)
	}
	return len(entries), nil
}
