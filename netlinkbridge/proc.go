package netlinkbridge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The process connector (cn_proc): a NETLINK_CONNECTOR group that carries
// process events once a listener has asked for them. Every message is a
// netlink header, a cn_msg and a proc_event, all in host byte order.
const (
	cnIdxProc      = 1  // CN_IDX_PROC, also the multicast group
	cnValProc      = 1  // CN_VAL_PROC
	sizeofCnMsg    = 20 // struct cn_msg: id{idx,val}, seq, ack, len u16, flags u16
	procEventData  = 16 // offset of event_data in struct proc_event
	procMcastOn    = 1  // PROC_CN_MCAST_LISTEN
	procMcastOff   = 2  // PROC_CN_MCAST_IGNORE
	procAckTimeout = 2 * time.Second
)

// procDriver subscribes with PROC_CN_MCAST_LISTEN and unsubscribes on close.
type procDriver struct{}

// procSource is a KernelSource that says PROC_CN_MCAST_IGNORE on Close, so
// that the kernel stops making events nobody reads.
type procSource struct{ *KernelSource }

func (s procSource) Close() error {
	_ = procControl(s.KernelSource, procMcastOff, 0)
	return s.KernelSource.Close()
}

func (procDriver) open(b *Bridge, cfg *Config) (Source, error) {
	initial, err := InitialNetNS(cfg.NetNS)
	if err != nil {
		b.log.Warn("process events arrive only in the initial network namespace, and this one may not be it", "err", err)
	} else if !initial {
		return nil, errors.New("process events (stream proc) come only in the host's initial network namespace, where the kernel's " +
			"connector lives; this bridge reads from another one: bridge proc from a bridge running in the initial namespace, without --netns")
	}
	src, err := NewKernelSource(kernelConfig(b, cfg, unix.NETLINK_CONNECTOR))
	if err != nil {
		return nil, fmt.Errorf("process events: %w", err)
	}
	cookie := uint32(b.epoch) >> 1 // the kernel answers cookie+1
	if err := procControl(src, procMcastOn, cookie); err != nil {
		src.Close()
		return nil, fmt.Errorf("process events: subscribe (PROC_CN_MCAST_LISTEN): %w", err)
	}
	if err := procAwaitAck(src, cookie); err != nil {
		src.Close()
		return nil, err
	}
	return procSource{src}, nil
}

// procControl sends a PROC_CN_MCAST_* request to the connector. The
// kernel's acknowledgement carries cookie+1 in its ack field.
func procControl(src *KernelSource, op, cookie uint32) error {
	data := make([]byte, sizeofCnMsg+4)
	ne := binary.NativeEndian
	ne.PutUint32(data[0:], cnIdxProc)
	ne.PutUint32(data[4:], cnValProc)
	ne.PutUint32(data[8:], 0) // seq
	ne.PutUint32(data[12:], cookie)
	ne.PutUint16(data[16:], 4) // len of the op
	ne.PutUint32(data[sizeofCnMsg:], op)
	return src.Send(netlink.Message{Header: netlink.Header{Type: netlink.Done}, Data: data})
}

// procAwaitAck waits for the connector's answer to the listen request: a
// PROC_EVENT_NONE whose ack is cookie+1, carrying an error number. The
// kernel answers only once someone listens, so silence means the request
// was refused or ignored (it ignores requests from processes outside the
// initial user and PID namespaces).
func procAwaitAck(src *KernelSource, cookie uint32) error {
	deadline := time.Now().Add(procAckTimeout)
	_ = src.SetReadDeadline(deadline)
	defer src.SetReadDeadline(time.Time{})
	ms := make([]Message, 16)
	for {
		n, err := src.ReadBatch(ms)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("process events: the kernel did not acknowledge PROC_CN_MCAST_LISTEN within %v: "+
				"subscribing needs CAP_NET_ADMIN, and a process in the initial user and PID namespaces (run the bridge as root on the host, not in a container)", procAckTimeout)
		}
		if err != nil && !errors.Is(err, ErrOverrun) {
			return fmt.Errorf("process events: %w", err)
		}
		for _, m := range ms[:n] {
			ev, ok := parseProc(m.Data)
			if !ok || ev.what != procNone || ev.ack != cookie+1 {
				continue
			}
			if ev.ackErr != 0 {
				return fmt.Errorf("process events: the kernel refused PROC_CN_MCAST_LISTEN: %w (needs CAP_NET_ADMIN in the initial user namespace)",
					unix.Errno(ev.ackErr))
			}
			return nil
		}
	}
}

func (procDriver) watches(*Bridge, uint32) bool         { return false }
func (procDriver) observe(*Bridge, *Message)            {}
func (procDriver) decode(_ *Bridge, m *Message) Decoded { return DecodeProc(m.Data) }
