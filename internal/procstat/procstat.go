// Package procstat takes snapshots of the calling process's costs: CPU
// time, peak resident memory and heap allocations, so that a benchmark can
// divide their growth over a run by the events handled.
package procstat

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// Snapshot is the process's costs so far.
type Snapshot struct {
	UserNS   int64  `json:"user_ns"`   // CPU time in user mode
	SystemNS int64  `json:"system_ns"` // CPU time in the kernel on the process's behalf
	MaxRSS   int64  `json:"max_rss"`   // peak resident set size in bytes
	Mallocs  uint64 `json:"mallocs"`   // heap objects allocated (Go runtime)
	Heap     uint64 `json:"heap"`      // bytes of live heap objects
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
	return Snapshot{
		UserNS: ru.Utime.Nano(), SystemNS: ru.Stime.Nano(),
		MaxRSS:  ru.Maxrss * 1024, // kilobytes on Linux
		Mallocs: ms.Mallocs, Heap: ms.HeapAlloc,
	}
}

// Monotonic returns CLOCK_MONOTONIC in nanoseconds: one clock for every
// process on the host, so that arrival times taken in different processes
// compare.
func Monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}
