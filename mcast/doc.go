// Package mcast is a one-to-many IPC transport over IPv4 multicast on the
// loopback interface: a Sender writes datagrams to multicast groups on lo,
// and every Receiver on the host that joined a group gets its own copy.
//
// On the path of an event, kernel -> decode -> frame -> mcast -> receiver,
// it carries the bridge's frames from one process to many. It knows
// nothing of netlink or of nlmcast's frames; it moves datagrams. Its main
// types are Sender (NewSender, SenderConfig) and Receiver (NewReceiver,
// ReceiverConfig, Datagram); Members reads which groups someone has joined.
//
// Defaults keep traffic on the host: the multicast interface is lo (picked
// by name, since lo has no MULTICAST flag), TTL is 0, loopback delivery is
// on, and a non-loopback interface is refused unless explicitly allowed.
// The Sender sends from a fixed privileged source port, which it holds
// alone (without SO_REUSEADDR or SO_REUSEPORT), and a Receiver by default
// accepts datagrams from that address and port only: the kernel delivers
// it no other (its sockets are connected to the source), and it checks
// again as it reads. So a local user who sends to the same group cannot
// impersonate the root-run sender, where the port is privileged:
// UnprivilegedPortStart tells.
//
// A Receiver binds each group's own address (never INADDR_ANY), sets
// SO_REUSEADDR so that any number of receivers share it, turns
// IP_MULTICAST_ALL off, and uses one socket per group, so the kernel's
// limit of memberships per socket (igmp_max_memberships, 20 by default)
// never applies. Both sides move datagrams in batches (sendmmsg,
// recvmmsg); a Sender sends runs of equal-size datagrams to one group as
// one UDP_SEGMENT send, and a Receiver takes such runs whole (UDP_GRO) and
// splits them again, so receivers see the datagrams as sent either way.
//
// Layer rule (ARCHITECTURE.md): mcast may import only internal/sys of this
// module (epollwait, mmsg), and no netlink library.
package mcast
