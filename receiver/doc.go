// Package receiver reads nlmcast streams. It needs no privilege and knows
// nothing of netlink sockets.
//
// On the path of an event, kernel -> decode -> frame -> mcast -> receiver,
// it is the last step, the one a program that wants kernel events uses. A
// Receiver (New, Config) joins the multicast groups of the chosen streams
// (package streams gives their addresses, package mcast the sockets),
// checks and decodes every frame (package frame), reassembles fragmented
// messages, follows each stream's sequence numbers, and hands back Events
// from ReadBatch. An Event is either a frame (Header, and Payload: the
// netlink message, or the JSON datagram with JSON decoded) or a Notice of
// something the receiver saw: a gap, a duplicate, reordering, a bridge
// restart, socket drops, silence, a lost fragment. RequestResync asks the
// bridge for the current state of streams. Package decode turns a raw
// event's netlink message into typed fields.
//
// Mirror, built on a Receiver, keeps a live copy of the kernel's tables:
// it applies events, replaces a table with each resync's dump, and asks
// for a resync whenever it may have missed something. StateKey names the
// table entry an rtnetlink message is about.
//
// Layer rule: receiver imports frame, mcast and streams of this module;
// it must not import kernel or netlinkbridge, so that a receiving program
// carries no netlink socket code.
package receiver
