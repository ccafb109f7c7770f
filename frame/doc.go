// Package frame is the nlmcast wire codec: the fixed binary header that
// precedes every raw frame, fragments of messages too large for one
// datagram, and the JSON envelope of the JSON encoding.
//
// On the path of an event, kernel -> decode -> frame -> mcast -> receiver,
// it is the one format both ends share: the bridge (package netlinkbridge)
// writes frames with Append, AppendJSON and Split, and package receiver
// reads them with ParseInto, ParseJSON and a Reassembler. Its main types
// are Header, Kind, Flags, FragmentHeader, Reassembler and JSONFrame.
//
// A raw frame is one UDP datagram:
//
//	offset size field
//	0      4    magic "NLMC"
//	4      1    version (1)
//	5      1    kind (see Kind)
//	6      2    flags (see Flags)
//	8      2    header length in bytes (48 in version 1)
//	10     2    netlink family (NETLINK_ROUTE is 0)
//	12     4    netlink multicast group
//	16     8    bridge epoch: start time in ms << 20 | 20 random bits
//	24     8    sequence number, per stream, first event is 1
//	32     8    time the bridge read the event, ns since the Unix epoch
//	40     4    payload length in bytes
//	44     4    network namespace id when FlagNSID is set, else zero
//	48     ...  payload: the netlink message exactly as the kernel sent it
//
// All integers are big-endian (network byte order). PROTOCOL.md at the
// repository root is the normative description; its test vectors are in
// testdata/vectors.json.
//
// Parse, ParseInto and Header.Put never allocate, so they are safe on the
// per-event path and against hostile input.
//
// Layer rule (ARCHITECTURE.md): frame imports no other package of this
// module and no netlink library, and opens no socket.
package frame
