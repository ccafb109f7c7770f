package procstat

import (
	"bytes"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// Snapshot is the process's costs so far.
type Snapshot struct {
	UserNS   int64  `json:"user_ns"`   // CPU time in user mode
	SystemNS int64  `json:"system_ns"` // CPU time in the kernel on the process's behalf
	MaxRSS   int64  `json:"max_rss"`   // peak resident set size in bytes, of this program image
	Mallocs  uint64 `json:"mallocs"`   // heap objects allocated (Go runtime)
	Heap     uint64 `json:"heap"`      // bytes of live heap objects
	// Waits counts the times a thread of the process gave up the CPU to
	// wait (voluntary context switches): roughly, its wake-ups.
	Waits int64 `json:"waits"`
}

// CPU returns user plus system time, in nanoseconds.
func (s Snapshot) CPU() int64 { return s.UserNS + s.SystemNS }

// Take returns the current costs. It stops the world briefly to read the
// allocator's counters.
func Take() Snapshot {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	peak := peakRSS()
	if peak == 0 {
		peak = ru.Maxrss * 1024 // kilobytes on Linux
	}
	return Snapshot{
		UserNS: ru.Utime.Nano(), SystemNS: ru.Stime.Nano(),
		MaxRSS: peak, Mallocs: ms.Mallocs, Heap: ms.HeapAlloc, Waits: ru.Nvcsw,
	}
}

// peakRSS returns VmHWM from /proc/self/status in bytes, or 0. Unlike
// getrusage's ru_maxrss, which carries over exec the peak of the process
// image it replaced (a forked copy of a large parent), VmHWM belongs to the
// running program alone.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	_, rest, ok := bytes.Cut(data, []byte("\nVmHWM:"))
	if !ok {
		return 0
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(line), []byte(" kB"))), 10, 64)
	if err != nil {
		return 0
	}
	return kb * 1024
}

// Monotonic returns CLOCK_MONOTONIC in nanoseconds: one clock for every
// process on the host, so that arrival times taken in different processes
// compare.
func Monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}
