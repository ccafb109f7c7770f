#!/usr/bin/env python3
"""Receive nlmcast frames with the Python standard library only.

    nlmcast_recv.py [-x] [OPTIONS] GROUP:PORT [GROUP:PORT...]   raw frames, one line each
    nlmcast_recv.py --json [OPTIONS] GROUP:PORT [...]           JSON frames: stream, seq, summary
    nlmcast_recv.py --decode                          decode hex datagrams from stdin
    nlmcast_recv.py --reassemble                      reassemble hex fragments from stdin

OPTIONS: --source-port N (the bridge's, default 1021), --insecure.

Raw frames print in the line format of PROTOCOL.md's test vectors (-x adds
the payload in hex); a message sent in fragments (kind 7) is printed once,
whole, as an event. Like every nlmcast receiver it binds each group's own
address with SO_REUSEADDR, turns IP_MULTICAST_ALL off, joins on 127.0.0.1,
and drops datagrams that are not from 127.0.0.1 and the bridge's port.
That proves the bridge sent them only where no other user can bind that
port, below net.ipv4.ip_unprivileged_port_start (container runtimes set it
to 0). Where it is not, it refuses to start, unless --insecure; then it
warns.
"""
import json
import selectors
import signal
import socket
import struct
import sys

HEADER = struct.Struct(">4sBBHHHIQQqII")  # 48 bytes, network byte order
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def describe(b, show_hex=True):
    """Return the PROTOCOL.md line for one datagram."""
    if len(b) < HEADER.size:
        return "error short"
    magic, version, kind, flags, hdrlen, family, group, epoch, seq, time_ns, plen, _ = HEADER.unpack_from(b)
    if magic != b"NLMC":
        return "error magic"
    if version != 1:
        return "error version"
    if hdrlen < HEADER.size or hdrlen > len(b):
        return "error header-length"
    if flags & 1:
        return "error auth"
    if plen != len(b) - hdrlen:
        return "error length"
    payload = b[hdrlen:].hex() if show_hex else ""
    return (f"ok kind={kind} flags={flags} family={family} group={group} epoch={epoch:016x} "
            f"seq={seq} time_ns={time_ns} len={plen} payload={payload}")


FRAG = struct.Struct(">IIHH")  # total, offset, index, count


class Reassembler:
    """Rebuilds one stream's fragmented messages (PROTOCOL.md, Fragments)."""

    def __init__(self, limit=(1 << 20) + (64 << 10)):  # the largest raw message a bridge sends
        self.limit, self.key = limit, None

    def add(self, epoch, seq, flags, payload):
        """Returns the whole message when this fragment completes it, else None."""
        if len(payload) < FRAG.size:
            return None
        total, off, index, count = FRAG.unpack_from(payload)
        piece = payload[FRAG.size:]
        last = index == count - 1
        if count == 0 or index >= count or off + len(piece) > total or total > self.limit:
            return None
        if self.key != (epoch, seq, flags, total, count):  # a new message abandons the old one
            self.key, self.buf, self.seen, self.piece = (epoch, seq, flags, total, count), bytearray(total), set(), None
        p = (off // index if index and off % index == 0 else None) if last else len(piece)
        if (last and off + len(piece) != total) or (index == 0 and off != 0) or \
           (index and p is None) or (p is not None and p * index != off) or \
           (self.piece is not None and p is not None and p != self.piece) or index in self.seen:
            return None
        if p is not None and not (last and index == 0):
            self.piece = p
        self.buf[off:off + len(piece)] = piece
        self.seen.add(index)
        if len(self.seen) < count:
            return None
        self.key = None
        return bytes(self.buf)


def untrusted_port(port, insecure):
    """Says why, and returns True, unless only root can send from port."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            start = int(f.read())
    except (OSError, ValueError):
        start = None
    if start is not None and start > port:
        return False
    why = (f"net.ipv4.ip_unprivileged_port_start is {start} in this network namespace, so any user can send from port {port}"
           if start is not None else
           f"cannot read net.ipv4.ip_unprivileged_port_start, so cannot tell whether only root can send from port {port}")
    if insecure:
        print(f"nlmcast_recv.py: warning: {why}: the source check proves nothing, and frames are not authenticated (--insecure)",
              file=sys.stderr)
    else:
        print(f"nlmcast_recv.py: {why}: the source check proves nothing. Give the receiver the bridge's key "
              "(frames are then authenticated) or, knowing the risk, use --insecure", file=sys.stderr)
    return True


def open_group(spec):
    addr, _, port = spec.rpartition(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s.bind((addr, int(port)))
    mreq = socket.inet_aton(addr) + socket.inet_aton("127.0.0.1")  # group, then interface
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    s.setblocking(False)
    return s


def main(argv):
    if argv[:1] == ["--decode"]:
        for line in sys.stdin:
            print(describe(bytes.fromhex(line.strip())), flush=True)
        return 0
    if argv[:1] == ["--reassemble"]:
        r = Reassembler()
        for line in sys.stdin:
            b = bytes.fromhex(line.strip())
            if describe(b).startswith("ok kind=7 "):
                _, _, _, flags, hdrlen, _, _, epoch, seq, _, _, _ = HEADER.unpack_from(b)
                msg = r.add(epoch, seq, flags, b[hdrlen:])
                if msg is not None:
                    print("message " + msg.hex(), flush=True)
        return 0
    show_hex = as_json = insecure = False
    port = 1021
    while argv and argv[0] in ("-x", "--json", "--insecure", "--source-port"):
        show_hex |= argv[0] == "-x"
        as_json |= argv[0] == "--json"
        insecure |= argv[0] == "--insecure"
        if argv[0] == "--source-port":
            argv = argv[1:]
            port = int(argv[0]) if argv and argv[0].isdigit() else 0
        argv = argv[1:]
    if not argv or argv[0].startswith("-") or not 0 < port < 65536:
        print(__doc__, file=sys.stderr)
        return 2
    if untrusted_port(port, insecure) and not insecure:
        return 1
    sel = selectors.DefaultSelector()
    for spec in argv:
        sel.register(open_group(spec), selectors.EVENT_READ)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", file=sys.stderr, flush=True)
    dropped = 0
    lo_index = socket.if_nametoindex("lo")
    reasm = {}  # one Reassembler per group
    try:
        while True:
            for key, _ in sel.select():
                try:
                    data, anc, _, (src, sport) = key.fileobj.recvmsg(65536, socket.CMSG_SPACE(12))
                except BlockingIOError:
                    continue
                ifindex = next((struct.unpack_from("i", d)[0] for lvl, typ, d in anc
                                if lvl == socket.IPPROTO_IP and typ == IP_PKTINFO), -1)
                if ifindex != lo_index or src != "127.0.0.1" or sport != port:
                    dropped += 1
                    continue
                if as_json:
                    f = json.loads(data)
                    print(f"[{f['stream']}] #{f['seq']} {f.get('summary', '')}", flush=True)
                elif describe(data, False).startswith("ok kind=7 "):
                    _, _, _, flags, hdrlen, _, _, epoch, seq, time_ns, _, _ = HEADER.unpack_from(data)
                    msg = reasm.setdefault(key.fileobj, Reassembler()).add(epoch, seq, flags, data[hdrlen:])
                    if msg is not None:  # print it as the event it is
                        whole = HEADER.pack(b"NLMC", 1, 1, flags, 48, *HEADER.unpack_from(data)[5:9], time_ns, len(msg), 0)
                        print(describe(whole + msg, show_hex), flush=True)
                else:
                    print(describe(data, show_hex), flush=True)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        print(f"dropped: {dropped} from a wrong source or interface", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
