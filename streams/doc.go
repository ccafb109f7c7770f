// Package streams is the catalog of nlmcast streams and the map from a
// stream to its loopback multicast addresses.
//
// A Stream is one kernel netlink multicast group that the bridge re-emits:
// its name (as nlmcast groups lists it), netlink family and group, ID in
// the address block, and whether it can be resynced or is privileged.
// Lookup, Resolve and All read the catalog; Genl gives the stream of any
// generic netlink group, in the catalog or not. A Map turns a Stream and
// an Encoding (Raw or JSON) into a group address and port, and back.
//
// The bridge (package netlinkbridge) and every receiver (package receiver,
// or a program in another language that follows PROTOCOL.md) must agree on
// both, so both use this package. It sits beside the path of an event,
// kernel -> decode -> frame -> mcast -> receiver, rather than on it.
//
// Layer rule (ARCHITECTURE.md): streams imports no other package of this
// module and no netlink library. It knows the names and numbers of kernel
// netlink groups but nothing of how to read them, and opens no socket.
package streams
