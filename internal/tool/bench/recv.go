package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/fleet"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/sys/epollwait"
	"github.com/nlmcast/nlmcast/internal/sys/procstat"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// Modes of a receiving process.
const (
	ModeNetlink = "netlink" // the kernel's ipv4-ifaddr group, directly
	ModeBridge  = "bridge"  // the bridge's raw ipv4-ifaddr stream, with package receiver
	ModeJSON    = "json"    // the bridge's JSON ipv4-ifaddr stream, with package receiver: joining it turns the bridge's JSON encoding on
	ModeRaw     = "raw"     // plain datagrams on Group, with package mcast
	ModeBare    = "bare"    // plain datagrams on Group, one blocking recvfrom each: no library at all
	ModeRelay   = "relay"   // the reference relay's netlink messages on Group, with package mcast
	ModeFleet   = "fleet"   // the bridge's raw ipv4-ifaddr stream through NATS JetStream (package fleet), with package receiver
)

// RecvConfig configures one receiving process of a benchmark.
type RecvConfig struct {
	Mode       string
	Group      netip.AddrPort // ModeRaw: the group to join
	Map        streams.Map    // ModeBridge: the bridge's map
	Count      int            // stop after this many records
	Out        string         // file the records are written to
	ReadBuffer int            // socket receive buffer; zero: the mode's default
	Batch      int            // ModeBridge, ModeRaw: datagrams per read; zero: mcast's default
	NoCoalesce bool           // ModeBridge, ModeRaw: read runs datagram by datagram (mcast.ReceiverConfig)
	KeyFile    string         // ModeBridge: the bridge's key file (receiver.Config)
	// PrivateKeyFile is, in ModeBridge, the key file the stream is sealed
	// under (receiver.Config.Private). Zero: sent in the clear.
	PrivateKeyFile string
	// NATS and Host are, in ModeFleet, the NATS server's URL and the host
	// whose frames to read (fleet.SourceConfig).
	NATS, Host string
}

// RecvResult is what a receiving process reports on stdout, as JSON.
type RecvResult struct {
	Received    int    `json:"received"`
	MsgBytes    int    `json:"msg_bytes"`    // size of the first message (datagram in raw mode)
	Overruns    int    `json:"overruns"`     // netlink: ENOBUFS
	Gaps        uint64 `json:"gaps"`         // bridge: frames missing, by the receiver's notices
	SocketDrops uint64 `json:"socket_drops"` // datagrams the kernel dropped at our sockets
	Coalesced   uint64 `json:"coalesced"`    // datagrams that arrived in coalesced runs (UDP_GRO)
	Notices     int    `json:"notices"`
	Reads       int    `json:"reads"`  // read calls that returned something
	CPUNS       int64  `json:"cpu_ns"` // the process's CPU time from ready to the last record
	SysNS       int64  `json:"sys_ns"` // the kernel's share of it
	Waits       int64  `json:"waits"`  // voluntary context switches meanwhile: its wake-ups
}

// A record is one event's key (the netlink sequence number of the request
// that caused it, or the raw datagram's number) and arrival time
// (procstat.Monotonic), 12 bytes little-endian in the records file.
type record struct {
	key uint32
	at  int64
}

const recordLen = 12

// Recv receives until Count records or ctx is done, calls ready once
// subscribed, and writes the records file.
func Recv(ctx context.Context, cfg RecvConfig, ready func()) (RecvResult, error) {
	var res RecvResult
	recs := make([]record, cfg.Count)
	// Touch every page now: faulting them in while events arrive would
	// charge the measured run with the bench's own bookkeeping.
	clear(recs)
	recs = recs[:0]
	var start procstat.Snapshot
	ready0 := ready
	ready = func() { start = procstat.Take(); ready0() }
	var err error
	switch cfg.Mode {
	case ModeNetlink:
		err = recvNetlink(ctx, cfg, ready, &res, &recs)
	case ModeBridge, ModeJSON, ModeFleet:
		err = recvBridge(ctx, cfg, ready, &res, &recs)
	case ModeRaw, ModeRelay:
		err = recvRaw(ctx, cfg, ready, &res, &recs)
	case ModeBare:
		err = recvBare(ctx, cfg, ready, &res, &recs)
	default:
		return res, fmt.Errorf("bench: unknown receiver mode %q", cfg.Mode)
	}
	end := procstat.Take()
	res.CPUNS, res.SysNS, res.Waits = end.CPU()-start.CPU(), end.SystemNS-start.SystemNS, end.Waits-start.Waits
	res.Received = len(recs)
	if werr := writeRecords(cfg.Out, recs); err == nil {
		err = werr
	}
	return res, err
}

func closed(err error) bool {
	return errors.Is(err, mcast.ErrClosed) || errors.Is(err, os.ErrClosed)
}

func recvNetlink(ctx context.Context, cfg RecvConfig, ready func(), res *RecvResult, recs *[]record) error {
	buf := cfg.ReadBuffer
	if buf == 0 {
		buf = 64 << 20
	}
	addr, _ := streams.Lookup("ipv4-ifaddr")
	src, err := kernel.Open(&kernel.Config{Groups: []uint32{addr.Group}, ReadBuffer: buf, Batch: 64})
	if err != nil {
		return err
	}
	defer context.AfterFunc(ctx, func() { src.Close() })()
	defer src.Close()
	ready()
	ms := make([]kernel.Message, 128)
	for len(*recs) < cfg.Count {
		n, err := src.ReadBatch(ms)
		now := procstat.Monotonic()
		if errors.Is(err, kernel.ErrOverrun) {
			res.Overruns++
			continue
		}
		if err != nil {
			if ctx.Err() != nil || closed(err) {
				return nil
			}
			return err
		}
		res.Reads++
		for _, m := range ms[:n] {
			if res.MsgBytes == 0 {
				res.MsgBytes = len(m.Data)
			}
			*recs = append(*recs, record{binary.NativeEndian.Uint32(m.Data[8:]), now})
		}
	}
	return nil
}

func recvBridge(ctx context.Context, cfg RecvConfig, ready func(), res *RecvResult, recs *[]record) error {
	addr, _ := streams.Lookup("ipv4-ifaddr")
	var private map[string]string
	if cfg.PrivateKeyFile != "" {
		private = map[string]string{addr.Name: cfg.PrivateKeyFile}
	}
	enc := streams.Raw
	if cfg.Mode == ModeJSON {
		enc = streams.JSON
	}
	rc := &receiver.Config{
		Streams: []streams.Stream{addr}, Encoding: enc, Map: cfg.Map, NoSilentNotices: true, KeyFile: cfg.KeyFile, Private: private,
		Mcast: &mcast.ReceiverConfig{ReadBuffer: cfg.ReadBuffer, Batch: cfg.Batch, NoCoalesce: cfg.NoCoalesce},
	}
	var src *fleet.Source
	if cfg.Mode == ModeFleet {
		var err error
		if src, err = fleet.NewSource(&fleet.SourceConfig{Conn: fleet.Conn{URL: cfg.NATS, Name: "nlmcast bench-recv"}, Host: cfg.Host, Map: cfg.Map}); err != nil {
			return err
		}
		rc.Mcast, rc.Source = nil, src
	}
	r, err := receiver.New(rc)
	if err != nil {
		return err
	}
	defer context.AfterFunc(ctx, func() { r.Close() })()
	defer r.Close()
	if src != nil {
		// The consumer now, before ready: it reads what is stored from
		// here on, as nlmcast listen does.
		if err := src.Start(); err != nil {
			return err
		}
	}
	ready()
	evs := make([]receiver.Event, mcast.DefaultBatch)
	for len(*recs) < cfg.Count {
		n, err := r.ReadBatch(evs)
		now := procstat.Monotonic()
		if err != nil {
			if ctx.Err() != nil || closed(err) {
				break
			}
			return err
		}
		res.Reads++
		for i := range evs[:n] {
			ev := &evs[i]
			switch {
			case ev.IsNotice():
				res.Notices++
				if ev.Notice.Kind == receiver.Gap {
					res.Gaps += ev.Notice.Count
				}
			case ev.Header.Kind == frame.KindEvent && ev.Header.Flags&frame.FlagDump == 0 && ev.JSON != nil:
				key, ok := jsonKey(ev.JSON.Event)
				if !ok {
					continue
				}
				if res.MsgBytes == 0 {
					res.MsgBytes = len(ev.Payload)
				}
				*recs = append(*recs, record{key, now})
			case ev.Header.Kind == frame.KindEvent && ev.Header.Flags&frame.FlagDump == 0 && len(ev.Payload) >= 16:
				if res.MsgBytes == 0 {
					res.MsgBytes = len(ev.Payload)
				}
				*recs = append(*recs, record{binary.NativeEndian.Uint32(ev.Payload[8:]), now})
			}
		}
	}
	st := r.Stats().Mcast
	res.SocketDrops, res.Coalesced = st.KernelDrops, st.Coalesced
	return nil
}

// jsonKey returns the netlink sequence number of a JSON frame's decoded
// rtnetlink event (its "nlmsg" header's "seq"): the key the raw encoding's
// receivers read from the message itself.
func jsonKey(event json.RawMessage) (uint32, bool) {
	var e struct {
		Nlmsg *struct {
			Seq uint32 `json:"seq"`
		} `json:"nlmsg"`
	}
	if json.Unmarshal(event, &e) != nil || e.Nlmsg == nil {
		return 0, false
	}
	return e.Nlmsg.Seq, true
}

func recvRaw(ctx context.Context, cfg RecvConfig, ready func(), res *RecvResult, recs *[]record) error {
	r, err := mcast.NewReceiver(&mcast.ReceiverConfig{AnySource: true, ReadBuffer: cfg.ReadBuffer, Batch: cfg.Batch, NoCoalesce: cfg.NoCoalesce})
	if err != nil {
		return err
	}
	defer context.AfterFunc(ctx, func() { r.Close() })()
	defer r.Close()
	if err := r.Join(cfg.Group); err != nil {
		return err
	}
	ready()
	ds := make([]mcast.Datagram, mcast.DefaultBatch)
	for len(*recs) < cfg.Count {
		n, err := r.ReadBatch(ds)
		now := procstat.Monotonic()
		if err != nil {
			if ctx.Err() != nil || closed(err) {
				break
			}
			return err
		}
		res.Reads++
		for _, d := range ds[:n] {
			if len(d.Data) < 4 || cfg.Mode == ModeRelay && len(d.Data) < 16 {
				continue
			}
			if res.MsgBytes == 0 {
				res.MsgBytes = len(d.Data)
			}
			key := binary.BigEndian.Uint32(d.Data)
			if cfg.Mode == ModeRelay { // a netlink message: its sequence number
				key = binary.NativeEndian.Uint32(d.Data[8:])
			}
			*recs = append(*recs, record{key, now})
		}
	}
	res.SocketDrops = r.Stats().KernelDrops
	return nil
}

// recvBare is the reference receiver of the latency run: a socket bound
// to the group, joined on lo, and a blocking recvfrom per datagram, as the
// smallest C receiver would do it.
func recvBare(ctx context.Context, cfg RecvConfig, ready func(), res *RecvResult, recs *[]record) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return err
	}
	g := cfg.Group.Addr().As4()
	if err := errors.Join(
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1),
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0),
		unix.Bind(fd, &unix.SockaddrInet4{Port: int(cfg.Group.Port()), Addr: g}),
		unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, &unix.IPMreqn{Multiaddr: g, Ifindex: int32(lo.Index)}),
	); err != nil {
		return fmt.Errorf("bench: bare receiver: %w", err)
	}
	// Shutting the socket down ends a blocked recvfrom when ctx is done.
	defer context.AfterFunc(ctx, func() { unix.Shutdown(fd, unix.SHUT_RDWR) })()
	ready()
	buf := make([]byte, mcast.MaxDatagram)
	var yield epollwait.Yielder
	for len(*recs) < cfg.Count {
		// As epollwait does: a goroutine that only blocks in system calls
		// must yield now and then, or the Go runtime hands its P to other
		// threads at every call, a cost no C reader pays.
		yield.BeforeWait()
		n, _, err := unix.Recvfrom(fd, buf, 0)
		now := procstat.Monotonic()
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				continue
			}
			return os.NewSyscallError("recvfrom", err)
		}
		res.Reads++
		if n >= 4 {
			if res.MsgBytes == 0 {
				res.MsgBytes = n
			}
			*recs = append(*recs, record{binary.BigEndian.Uint32(buf), now})
		}
	}
	return nil
}

func writeRecords(file string, recs []record) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var b [recordLen]byte
	for _, r := range recs {
		binary.LittleEndian.PutUint32(b[:], r.key)
		binary.LittleEndian.PutUint64(b[4:], uint64(r.at))
		w.Write(b[:])
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
