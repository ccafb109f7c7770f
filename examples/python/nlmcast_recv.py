#!/usr/bin/env python3
"""Receive nlmcast frames with the Python standard library only.

    nlmcast_recv.py [-x] GROUP:PORT [GROUP:PORT...]   raw frames, one line each
    nlmcast_recv.py --json GROUP:PORT [...]           JSON frames: stream, seq, summary
    nlmcast_recv.py --decode                          decode hex datagrams from stdin

Raw frames print in the line format of PROTOCOL.md's test vectors (-x adds
the payload in hex). Like every nlmcast receiver it binds each group's own
address with SO_REUSEADDR, turns IP_MULTICAST_ALL off, joins on 127.0.0.1,
and drops datagrams that are not from 127.0.0.1 and a privileged port.
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
    show_hex = as_json = False
    while argv and argv[0] in ("-x", "--json"):
        show_hex |= argv[0] == "-x"
        as_json |= argv[0] == "--json"
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    sel = selectors.DefaultSelector()
    for spec in argv:
        sel.register(open_group(spec), selectors.EVENT_READ)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", file=sys.stderr, flush=True)
    dropped = 0
    lo_index = socket.if_nametoindex("lo")
    try:
        while True:
            for key, _ in sel.select():
                try:
                    data, anc, _, (src, sport) = key.fileobj.recvmsg(65536, socket.CMSG_SPACE(12))
                except BlockingIOError:
                    continue
                ifindex = next((struct.unpack_from("i", d)[0] for lvl, typ, d in anc
                                if lvl == socket.IPPROTO_IP and typ == IP_PKTINFO), -1)
                if ifindex != lo_index or src != "127.0.0.1" or sport >= 1024:
                    dropped += 1
                    continue
                if as_json:
                    f = json.loads(data)
                    print(f"[{f['stream']}] #{f['seq']} {f.get('summary', '')}", flush=True)
                else:
                    print(describe(data, show_hex), flush=True)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        print(f"dropped: {dropped} from a wrong source or interface", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
