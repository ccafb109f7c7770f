// Package recording is behind nlmcast record and nlmcast replay.
//
// Record writes what a receiver.Receiver gets to a pcapng file (package
// capture): each event's netlink message as a LINKTYPE_NETLINK packet,
// which Wireshark dissects, with the frame's header in the packet's
// comment (Meta); control frames and the receiver's notices are notes.
//
// Replay reads such files, or any LINKTYPE_NETLINK capture (tcpdump -i
// nlmon0), and feeds their messages to real bridges
// (netlinkbridge.NewWithSource), one per netlink family, each reading a
// source that yields the recorded messages at their pace: what receivers
// get is what a live bridge sends, under a fresh epoch. Injections add
// what is hard to record: gaps, overruns, restarts.
package recording
