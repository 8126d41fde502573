package main

import (
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// histogram records latencies in log-linear buckets: 16 per power of two of
// microseconds, so a quantile is within about 6%. Each receiver keeps its
// own and they are merged at the end: no sharing on the hot path.
type histogram struct {
	counts [64 * 16]uint64
	max    time.Duration
	n      uint64
}

func bucketOf(us uint64) int {
	if us < 16 {
		return int(us)
	}
	exp := bits.Len64(us) - 5 // us >> exp is in [16, 32)
	return (exp+1)*16 + int(us>>uint(exp)) - 16
}

func lowerBound(b int) time.Duration {
	if b < 16 {
		return time.Duration(b) * time.Microsecond
	}
	exp := b/16 - 1
	return time.Duration(uint64(16+b%16)<<uint(exp)) * time.Microsecond
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d/time.Microsecond))]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	target := uint64(q * float64(h.n))
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen > target {
			return lowerBound(b)
		}
	}
	return h.max
}

// procStat is a process's memory and CPU as /proc reports them.
type procStat struct {
	rss int64         // resident bytes
	cpu time.Duration // user + system
}

// readProcs sums readProc over several processes (a cluster's nodes).
func readProcs(pids []int) (procStat, error) {
	var sum procStat
	for _, pid := range pids {
		st, err := readProc(pid)
		if err != nil {
			return sum, err
		}
		sum.rss += st.rss
		sum.cpu += st.cpu
	}
	return sum, nil
}

func readProc(pid int) (procStat, error) {
	var st procStat
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, fmt.Errorf("read server status: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			st.rss = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, fmt.Errorf("read server stat: %w", err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(fields) > 12 {
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		st.cpu = time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
	}
	return st, nil
}

// selfCPU is this process's user + system CPU so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
