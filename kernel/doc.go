// Package kernel is nlmcast's netlink I/O: it opens the sockets that read
// kernel events and tables, and nothing else.
//
// On the path of an event, kernel -> decode -> frame -> mcast -> receiver,
// it is the first step. A Socket (Open) joins a family's multicast groups
// and reads events in batches (recvmmsg), each as a Message exactly as the
// kernel sent it; messages not sent by the kernel are dropped, and lost
// events are reported as ErrOverrun. A ProcSocket (OpenProc) is a Socket
// subscribed to the process connector. A DumpSocket (OpenDumper) reads a
// whole rtnetlink table (DumpFor names the dump that resyncs a group's
// stream), over its own socket so that answers never mix with events.
//
// Beside them: OpenNetNS and InitialNetNS for network namespaces, LinkNames
// and LinkName for interface names (and Links, which keeps one socket for
// them), GenlFamilies for generic netlink families, ProbeGenl and
// ProbeGenlGroups, which try to join generic netlink groups from a thread
// without capabilities to learn which the kernel keeps to privileged
// sockets, and Available, which says which streams this kernel can
// provide now.
//
// A Socket blocks its reading thread in recvmmsg itself, as a C program
// would, for the families that answer a request that changes nothing
// (which is how another goroutine wakes it), and in epoll_wait (internal/sys/epollwait) for the
// others: never in the Go runtime's poller, so that the kernel wakes the
// reader itself. It reads into preallocated buffers (internal/sys/mmsg).
//
// Layer rule (ARCHITECTURE.md): kernel may import only streams, decode
// (for the process connector's constants and acknowledgement) and
// internal/sys of this module: it knows nothing of frames or multicast.
package kernel
