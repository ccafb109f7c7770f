package rtgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ChurnConfig configures address churn.
type ChurnConfig struct {
	// NetNS is the namespace to churn in. Zero: the caller's.
	NetNS int
	// Link is the interface index the addresses go on. Zero: 1 (lo).
	Link uint32
	// Events is how many requests to make, each one address event.
	Events int
	// Rate is the events per second to aim for. Zero: as fast as the
	// kernel takes them.
	Rate float64
	// Batch is how many requests go in one sendmsg. Zero: DefaultBatch.
	Batch int
	// FirstSeq is the netlink sequence number of the first request; each
	// request takes the next. The kernel's event about a request carries
	// its number, which is how a benchmark tells events apart.
	FirstSeq uint32
	// Sending, if set, is called with the first and last sequence number
	// of each batch just before it is sent (the kernel makes the events
	// while the sendmsg runs).
	Sending func(first, last uint32)
}

// DefaultBatch is how many requests one sendmsg carries by default.
const DefaultBatch = 64

// ChurnResult says what the churn did.
type ChurnResult struct {
	Requests int           // requests sent
	Failed   int           // requests the kernel refused
	Elapsed  time.Duration // from the first send to the last answer
	LastSeq  uint32        // sequence number of the last request
}

// Rate returns the requests per second.
func (r ChurnResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Churn adds Batch addresses (10.64.0.0/10, as /32s) in one sendmsg, deletes
// them in the next, and so on: the kernel's cost per request stays flat
// because the table never grows. Every request is one RTM_NEWADDR or
// RTM_DELADDR event on the ipv4-ifaddr group (and one local route event).
// Only the last request of a batch asks for an acknowledgement: waiting for
// it paces the sender to the kernel, and any refusal comes back before it.
func Churn(ctx context.Context, cfg ChurnConfig) (ChurnResult, error) {
	var res ChurnResult
	if cfg.Events <= 0 {
		return res, errors.New("rtgen: churn needs a positive number of events")
	}
	batch := cfg.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	if batch > 4096 {
		return res, fmt.Errorf("rtgen: batch %d too large (at most 4096)", batch)
	}
	link := cfg.Link
	if link == 0 {
		link = 1
	}
	conn, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: cfg.NetNS})
	if err != nil {
		return res, fmt.Errorf("rtgen: %w", err)
	}
	defer conn.Close()
	rc, err := conn.SyscallConn()
	if err != nil {
		return res, fmt.Errorf("rtgen: %w", err)
	}
	// The requests' bodies, one per address of a batch, made once.
	bodies := make([][]byte, batch)
	for i := range bodies {
		a := netip.AddrFrom4([4]byte{10, 64 + byte(i>>16), byte(i >> 8), byte(i)})
		m := rtnetlink.AddressMessage{
			Family: unix.AF_INET, PrefixLength: 32, Index: link,
			Attributes: &rtnetlink.AddressAttributes{Local: a.AsSlice(), Address: a.AsSlice()},
		}
		if bodies[i], err = m.MarshalBinary(); err != nil {
			return res, fmt.Errorf("rtgen: %w", err)
		}
	}
	buf := make([]byte, 0, batch*(unix.NLMSG_HDRLEN+len(bodies[0])))
	ack := make([]byte, 64<<10)
	seq := cfg.FirstSeq
	start := time.Now()
	for res.Requests < cfg.Events {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		typ := uint16(unix.RTM_NEWADDR)
		if (res.Requests/batch)%2 == 1 {
			typ = unix.RTM_DELADDR
		}
		n := min(batch, cfg.Events-res.Requests)
		buf = buf[:0]
		for i := range n {
			flags := uint16(unix.NLM_F_REQUEST)
			if typ == unix.RTM_NEWADDR {
				flags |= unix.NLM_F_CREATE | unix.NLM_F_EXCL
			}
			if i == n-1 {
				flags |= unix.NLM_F_ACK
			}
			buf = appendMsg(buf, typ, flags, seq, bodies[i])
			seq++
		}
		res.LastSeq = seq - 1
		if cfg.Sending != nil {
			cfg.Sending(seq-uint32(n), seq-1)
		}
		if err := write(rc, buf); err != nil {
			return res, err
		}
		failed, err := awaitAck(rc, ack, res.LastSeq)
		res.Failed += failed
		res.Requests += n
		if err != nil {
			return res, err
		}
		if cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(res.Requests) / cfg.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
	}
	res.Elapsed = time.Since(start)
	// An odd number of batches leaves addresses behind: delete them.
	if (res.Requests/batch)%2 == 1 || res.Requests%batch != 0 {
		cleanup(rc, bodies)
	}
	return res, nil
}

func appendMsg(b []byte, typ, flags uint16, seq uint32, body []byte) []byte {
	var h [unix.NLMSG_HDRLEN]byte
	binary.NativeEndian.PutUint32(h[0:], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(h[4:], typ)
	binary.NativeEndian.PutUint16(h[6:], flags)
	binary.NativeEndian.PutUint32(h[8:], seq)
	b = append(b, h[:]...)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// write sends one datagram of requests to the kernel.
func write(rc syscall.RawConn, b []byte) error {
	var serr error
	err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	})
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("rtgen: send requests: %w", err)
	}
	return nil
}

// awaitAck reads answers until the acknowledgement of seq, counting the
// refusals before it.
func awaitAck(rc syscall.RawConn, buf []byte, seq uint32) (failed int, err error) {
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		if err = errors.Join(err, rerr); err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				continue // events are not ours to read; answers are never dropped
			}
			return failed, fmt.Errorf("rtgen: read answers: %w", err)
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				break
			}
			typ := binary.NativeEndian.Uint16(b[4:])
			s := binary.NativeEndian.Uint32(b[8:])
			if typ == unix.NLMSG_ERROR && l >= unix.NLMSG_HDRLEN+4 {
				code := int32(binary.NativeEndian.Uint32(b[unix.NLMSG_HDRLEN:]))
				if code != 0 {
					failed++
				}
				if s == seq {
					return failed, nil
				}
			}
			b = b[min((l+3)&^3, len(b)):]
		}
	}
}

// cleanup deletes any churn address still present, ignoring refusals.
func cleanup(rc syscall.RawConn, bodies [][]byte) {
	var buf []byte
	for i, body := range bodies {
		buf = appendMsg(buf, unix.RTM_DELADDR, unix.NLM_F_REQUEST, uint32(i), body)
	}
	_ = write(rc, buf)
}
