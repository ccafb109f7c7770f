// Package mmsg is a reusable recvmmsg(2) batch: slots of preallocated data,
// address and control buffers that one system call fills together. The
// netlink sockets (package kernel) and the multicast receivers (package
// mcast) read with it.
//
// golang.org/x/net/ipv4's ReadBatch parses every source address into a new
// net.Addr (two allocations per datagram); this package leaves addresses and
// control messages as raw bytes so that a steady-state read allocates
// nothing. Writing has no such problem and uses x/net directly.
//
// Layer rule (ARCHITECTURE.md): like every package under internal/sys, it
// is a system call primitive and may import only other packages under
// internal/sys.
package mmsg
