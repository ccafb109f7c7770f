#!/usr/bin/env python3
"""Receive nlmcast frames with the Python standard library only.

    nlmcast_recv.py [-x] [OPTIONS] GROUP:PORT [GROUP:PORT...]   raw frames, one line each
    nlmcast_recv.py --json [OPTIONS] GROUP:PORT [...]           JSON frames: stream, seq, nsid, summary
    nlmcast_recv.py --decode [--key FILE --dest GROUP:PORT]     decode hex datagrams from stdin
    nlmcast_recv.py --decode --private FILE --dest GROUP:PORT   open sealed hex datagrams from stdin
    nlmcast_recv.py --decode-json --key FILE --dest GROUP:PORT  check JSON datagrams from stdin
    nlmcast_recv.py --reassemble                                reassemble hex fragments from stdin

OPTIONS: --key FILE, --private FILE, --source-port N (the bridge's, default
1021), --insecure.

Raw frames print in the line format of PROTOCOL.md's test vectors (-x adds
the payload in hex); a message sent in fragments (kind 7) is printed once,
whole, as an event. Like every nlmcast receiver it binds each group's own
address with SO_REUSEADDR, turns IP_MULTICAST_ALL off, joins on 127.0.0.1,
and drops datagrams that are not from 127.0.0.1 and the bridge's port.
That proves the bridge sent them only where no other user can bind that
port, below net.ipv4.ip_unprivileged_port_start (container runtimes set it
to 0). Where it is not, it refuses to start, unless --insecure (then it
warns) or --key: with the bridge's key file (nlmcast keygen) it accepts
only frames whose authentication trailer verifies (PROTOCOL.md,
Authenticated frames), whoever sent them.

Private streams (proc, conntrack, other namespaces' events...) are sealed:
encrypted and authenticated under a key only their readers hold (PROTOCOL.md,
Sealed frames). --private FILE opens them with that key file; the groups
given are then private, and a frame on them that is not sealed is refused.
Opening needs AES-GCM, which the standard library lacks: it takes the
`cryptography` package (Debian: python3-cryptography), imported only then.
Without --private, a sealed frame prints as "sealed" with its header alone.
"""
import hashlib
import hmac
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time

HEADER = struct.Struct(">4sBBHHHIQQqII")  # 48 bytes, network byte order
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def describe(b, show_hex=True):
    """Return the PROTOCOL.md line for one datagram."""
    if len(b) < HEADER.size:
        return "error short"
    magic, version, kind, flags, hdrlen, family, group, epoch, seq, time_ns, plen, nsid = HEADER.unpack_from(b)
    if magic != b"NLMC":
        return "error magic"
    if version != 1:
        return "error version"
    if hdrlen < HEADER.size or hdrlen > len(b):
        return "error header-length"
    # SEALED (32) or AUTH (1): a trailer follows the payload
    end = len(b) - (SEALED_TRAILER if flags & 32 else TRAILER if flags & 1 else 0)
    if end < hdrlen or plen != end - hdrlen:
        return "error length"
    payload = b[hdrlen:end].hex() if show_hex else ""
    # NSID (4): from a peer network namespace, whose signed id is at offset 44.
    peer = f" nsid={nsid - (1 << 32) if nsid >= 1 << 31 else nsid}" if flags & 4 else ""
    return (f"ok kind={kind} flags={flags}{peer} family={family} group={group} epoch={epoch:016x} "
            f"seq={seq} time_ns={time_ns} len={plen} payload={payload}")


TRAILER = 20  # key id (4 bytes), then a 16-byte tag


def load_keys(path):
    """Reads a key file: {key id: secret}. Refuses one others may read or write."""
    if os.stat(path).st_mode & 0o027:
        sys.exit(f"{path}: others can read or write it; anyone who can read it can forge frames (chmod 0640 {path})")
    keys = {}
    with open(path) as f:
        for line in f:
            fields = line.split()
            if fields and not fields[0].startswith("#"):
                keys[int(fields[0], 16)] = bytes.fromhex(fields[2])
    return keys


def tag(secret, group, port, encoding, data):
    """The first 16 bytes of HMAC-SHA256 over the context, then the data."""
    ctx = socket.inet_aton(group) + struct.pack(">HB", port, encoding)
    return hmac.new(secret, ctx + data, hashlib.sha256).digest()[:16]


def verify_raw(b, keys, group, port):
    """None if the raw datagram b's trailer verifies, else the reason word."""
    if len(b) < HEADER.size + TRAILER or not b[7] & 1:  # the AUTH flag
        return "unauthenticated"
    kid = struct.unpack_from(">I", b, len(b) - TRAILER)[0]
    if kid not in keys:
        return "unknown-key"
    ok = hmac.compare_digest(tag(keys[kid], group, port, 0, b[:-16]), b[-16:])
    return None if ok else "bad-tag"


def verify_json(b, keys, group, port):
    """None if the JSON datagram b ends in a good "auth" member, else the reason word."""
    tail = b[-53:]
    if len(b) < 54 or not tail.startswith(b',"auth":"') or not b.endswith(b'"}\n') or tail[17:18] != b":":
        return "unauthenticated"
    kid = int(tail[9:17], 16)
    if kid not in keys:
        return "unknown-key"
    ok = hmac.compare_digest(tag(keys[kid], group, port, 1, b[:-35]).hex().encode(), tail[18:50])
    return None if ok else "bad-tag"


SEALED_TRAILER = 32  # key id (4 bytes), nonce (12), tag (16)
SEAL_SALT = b"nlmcast sealed frames v1"


class Opener:
    """Opens sealed frames with the keys of one key file (PROTOCOL.md, Sealed frames)."""

    def __init__(self, keys):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        self.keys, self.cache = keys, {}
        self.subkey = lambda secret, epoch: AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=SEAL_SALT,
                                                        info=struct.pack(">Q", epoch)).derive(secret))

    def open(self, b, group, port):
        """(None, b with its payload decrypted) if the raw datagram b opens, else (reason word, None)."""
        from cryptography.exceptions import InvalidTag
        if len(b) < HEADER.size or b[:4] != b"NLMC" or not b[7] & 32:  # the SEALED flag
            return "not-sealed", None
        hdrlen, = struct.unpack_from(">H", b, 8)
        epoch, = struct.unpack_from(">Q", b, 16)
        plen, = struct.unpack_from(">I", b, 40)
        if hdrlen < HEADER.size or len(b) != hdrlen + plen + SEALED_TRAILER:
            return "bad-seal", None
        kid, = struct.unpack_from(">I", b, len(b) - SEALED_TRAILER)
        if kid not in self.keys:
            return "unknown-key", None
        if (kid, epoch) not in self.cache:  # one subkey per key and epoch
            if len(self.cache) >= 16:
                self.cache.clear()
            self.cache[kid, epoch] = self.subkey(self.keys[kid], epoch)
        ad = socket.inet_aton(group) + struct.pack(">HB", port, 0) + b[:hdrlen]  # the context, then the header
        try:
            plain = self.cache[kid, epoch].decrypt(b[-28:-16], b[hdrlen:hdrlen + plen] + b[-16:], ad)
        except InvalidTag:
            return "bad-seal", None
        return None, b[:hdrlen] + plain + b[-SEALED_TRAILER:]


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


def split_addr(spec):
    addr, _, port = spec.rpartition(":")
    return addr, int(port)


def main(argv):
    opts = {}
    args = []
    while argv:
        a, argv = argv[0], argv[1:]
        if a in ("--key", "--dest", "--private") and argv:
            opts[a], argv = argv[0], argv[1:]
        else:
            args.append(a)
    keys = load_keys(opts["--key"]) if "--key" in opts else None
    opener = Opener(load_keys(opts["--private"])) if "--private" in opts else None
    dest = split_addr(opts["--dest"]) if "--dest" in opts else None
    argv = args
    if argv[:1] == ["--decode"]:
        for line in sys.stdin:
            b = bytes.fromhex(line.strip())
            out = describe(b)
            if opener is not None and out.startswith("ok"):
                why, opened = opener.open(b, *dest)
                out = "error " + why if why else describe(opened)
            elif keys is not None and out.startswith("ok"):
                why = verify_raw(b, keys, *dest)
                out = "error " + why if why else out
            print(out, flush=True)
        return 0
    if argv[:1] == ["--decode-json"]:
        for line in sys.stdin.buffer:
            try:
                f = json.loads(line)
            except ValueError:
                print("error json", flush=True)
                continue
            why = verify_json(line, keys, *dest)
            print("error " + why if why else f"ok kind={f['kind']} stream={f['stream']} seq={f['seq']}", flush=True)
        return 0
    if argv[:1] == ["--reassemble"]:
        r = Reassembler()
        for line in sys.stdin:
            b = bytes.fromhex(line.strip())
            if describe(b).startswith("ok kind=7 "):
                _, _, _, flags, hdrlen, _, _, epoch, seq, _, plen, _ = HEADER.unpack_from(b)
                msg = r.add(epoch, seq, flags, b[hdrlen:hdrlen + plen])
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
    if as_json and opener is not None:
        print("nlmcast_recv.py: private streams are sealed raw frames only; drop --json", file=sys.stderr)
        return 2
    if keys is None and opener is None and untrusted_port(port, insecure) and not insecure:  # a key makes the port check moot
        return 1
    sel = selectors.DefaultSelector()
    for spec in argv:
        sel.register(open_group(spec), selectors.EVENT_READ, split_addr(spec))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", file=sys.stderr, flush=True)
    dropped = refused = sealed = 0
    lo_index = socket.if_nametoindex("lo")
    reasm = {}  # one Reassembler per group
    key_stamp = next_check = None
    try:
        while True:
            if keys is not None and time.monotonic() >= (next_check or 0):  # a rotated key file
                next_check = time.monotonic() + 1
                st = os.stat(opts["--key"])
                if key_stamp not in (None, (st.st_ino, st.st_mtime_ns, st.st_size)):
                    keys = load_keys(opts["--key"])
                key_stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            for key, _ in sel.select(timeout=1):
                try:
                    data, anc, _, (src, sport) = key.fileobj.recvmsg(65536, socket.CMSG_SPACE(12))
                except BlockingIOError:
                    continue
                ifindex = next((struct.unpack_from("i", d)[0] for lvl, typ, d in anc
                                if lvl == socket.IPPROTO_IP and typ == IP_PKTINFO), -1)
                if ifindex != lo_index or src != "127.0.0.1" or sport != port:
                    dropped += 1
                    continue
                if opener is not None:
                    why, data = opener.open(data, *key.data)
                    if why:
                        refused += 1
                        continue
                elif keys is not None and (verify_json if as_json else verify_raw)(data, keys, *key.data):
                    refused += 1
                    continue
                elif not as_json and len(data) >= HEADER.size and data[7] & 32:
                    if not sealed:
                        print(f"nlmcast_recv.py: {key.data[0]}:{key.data[1]} is a private stream: its frames are sealed; "
                              "open them with --private KEYFILE", file=sys.stderr, flush=True)
                    sealed += 1
                    print("sealed " + describe(data, False), flush=True)
                    continue
                if as_json:
                    f = json.loads(data)
                    peer = f"nsid {f['nsid']} " if "nsid" in f else ""  # from a peer network namespace
                    print(f"[{f['stream']}] #{f['seq']} {peer}{f.get('summary', '')}", flush=True)
                elif describe(data, False).startswith("ok kind=7 "):
                    _, _, _, flags, hdrlen, _, _, epoch, seq, time_ns, plen, nsid = HEADER.unpack_from(data)
                    msg = reasm.setdefault(key.fileobj, Reassembler()).add(epoch, seq, flags, data[hdrlen:hdrlen + plen])
                    if msg is not None:  # print it as the event it is (the trailer checked, not kept)
                        whole = HEADER.pack(b"NLMC", 1, 1, flags & ~33, 48, *HEADER.unpack_from(data)[5:9], time_ns, len(msg), nsid)
                        print(describe(whole + msg, show_hex), flush=True)
                else:
                    print(describe(data, show_hex), flush=True)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        print(f"dropped: {dropped} from a wrong source or interface, {refused} not authenticated or not opened, "
              f"{sealed} sealed without --private", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
