// Package receiver reads nlmcast streams. It needs no privilege and knows
// nothing of netlink sockets.
//
// On the path of an event, kernel -> decode -> frame -> mcast -> receiver,
// it is the last step, the one a program that wants kernel events uses. A
// Receiver (New, Config) joins the multicast groups of the chosen streams
// (package streams gives their addresses, package mcast the sockets),
// checks and decodes every frame (package frame), reassembles fragmented
// messages, follows each stream's sequence numbers, and hands back Events
// from ReadBatch. An Event is either a frame or a Notice of something the
// receiver saw: a gap, a duplicate, reordering, a bridge restart, socket
// drops, silence, a lost fragment, a frame rejected as not the bridge's,
// frames disowned. Held to the rules of PROTOCOL.md (Trusting a frame), no
// single frame that passes the source check can blind the tracking of a
// stream, restart it or replay an earlier run. A frame's Payload is the netlink
// message in the raw encoding (package decode turns it into typed
// fields), or the JSON datagram, also parsed into JSON, in the JSON
// encoding. RequestResync asks the bridge for the current state of
// streams.
//
// The source check (package mcast) proves that the bridge sent a frame
// only where no other user can bind its port. Where any user can
// (net.ipv4.ip_unprivileged_port_start at or below it, as container
// runtimes set it), New and NewMirror refuse to start with a
// *PortTrustError that says why, unless Config.Insecure; Warnings then
// holds what to tell the user.
//
// Mirror, built on a Receiver, keeps a live copy of the kernel's tables:
// it applies events, replaces a table with each resync's dump, and asks
// for a resync whenever it may have missed something or applied a frame
// that was not the bridge's. StateKey names the
// table entry an rtnetlink message is about; a peer namespace's entries
// (frames with frame.FlagNSID) are kept apart under PeerKey.
//
// Layer rule (ARCHITECTURE.md): receiver may import only frame, streams,
// mcast and internal/sys of this module, and no netlink library, so that a
// receiving program carries no netlink code.
package receiver
