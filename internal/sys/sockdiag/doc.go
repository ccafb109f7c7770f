// Package sockdiag asks the kernel about the host's IPv4 UDP sockets
// through NETLINK_SOCK_DIAG (sock_diag(7)): for each socket its local and
// remote address, owner uid, inode, cookie, bound interface, receive queue
// and drops (List); who owns the sockets bound to an address (Owners); and
// it acts on them: SOCK_DESTROY (Destroy) and Detach.
//
// Listing works unprivileged: the kernel shows every socket of the caller's
// network namespace to every user. Destroy needs CAP_NET_ADMIN; Detach
// needs CAP_SYS_PTRACE over the socket's holder and CAP_NET_RAW.
//
// What SOCK_DESTROY does to a UDP socket bound to a port is little: the
// kernel sets the socket's error (its owner's next receive fails with
// ECONNABORTED once) and "disconnects" it, which leaves a bound socket
// bound, its multicast memberships joined and its receive queue charged.
// And the kernel finds the socket to destroy by its addresses, then checks
// the cookie: of several sockets bound to the same address and port (as
// every receiver of one multicast group is), it reaches only the one its
// lookup prefers, and ENOENT is the answer for the others. Detach is what
// stops a socket from receiving: see there.
//
// Every call works in the network namespace of the calling thread at the
// time the Conn is opened (List and Owners open their own).
//
// Layer rule (ARCHITECTURE.md): like every package under internal/sys, it
// is a system call primitive and may import only other packages under
// internal/sys.
package sockdiag
