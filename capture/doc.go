// Package capture writes and reads netlink captures in the pcapng format
// (and reads the older pcap format), as Wireshark and tcpdump do for an
// nlmon device: every netlink message is a LINKTYPE_NETLINK (253) packet,
// a 16-byte cooked header (SLL-style: packet type, ARPHRD_NETLINK, the
// netlink family) followed by the message exactly as the kernel sent it.
//
// A Writer puts one interface block per netlink family in the file, with
// nanosecond timestamps, and may attach a comment to each packet (the
// pcapng opt_comment option), which nlmcast uses for a frame's metadata
// (PROTOCOL.md, Recordings). Packets that carry no netlink message (control
// frames and receiver notices) go on an interface of their own, of link
// type LINKTYPE_USER0, with no data and a comment.
//
// Each block is written with one Write call, so that a file cut short (a
// recorder killed with SIGKILL) holds whole blocks but perhaps the last; a
// Reader returns every whole block, then an error wrapping ErrTruncated.
//
// The package writes the few pcapng blocks itself (section header,
// interface description, enhanced packet): gopacket's pcapgo writer has no
// way to give a packet options, such as a comment, and pulls in a large
// module for a few hundred lines.
package capture
