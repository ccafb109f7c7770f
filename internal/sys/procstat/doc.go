// Package procstat takes snapshots of the calling process's costs: CPU
// time, peak resident memory, heap allocations and voluntary context
// switches (Snapshot, Take), so that a benchmark can divide their growth
// over a run by the events handled. The bridge reports its own in its
// stats (netlinkbridge.StatsReport), which nlmcast bench reads; Monotonic
// is the clock the bench's processes stamp arrivals with.
//
// Layer rule (ARCHITECTURE.md): like every package under internal/sys, it
// is a system call primitive and may import only other packages under
// internal/sys.
package procstat
