package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/decode"
)

// Process connector requests (enum proc_cn_mcast_op).
const (
	procMcastOn    = 1 // PROC_CN_MCAST_LISTEN
	procMcastOff   = 2 // PROC_CN_MCAST_IGNORE
	procAckTimeout = 2 * time.Second
)

// ProcSocket is a Socket subscribed to process events (cn_proc): the
// kernel makes them only once a listener has asked, and Close asks it to
// stop, so that it makes no events nobody reads.
type ProcSocket struct {
	*Socket
}

// OpenProc opens a NETLINK_CONNECTOR socket for cfg (its Family is
// ignored) and subscribes it to process events with PROC_CN_MCAST_LISTEN,
// waiting for the kernel's acknowledgement, which carries cookie+1. It
// fails clearly where the kernel refuses or ignores the request.
func OpenProc(cfg *Config, cookie uint32) (*ProcSocket, error) {
	c := *cfg
	c.Family = unix.NETLINK_CONNECTOR
	s, err := Open(&c)
	if err != nil {
		return nil, fmt.Errorf("process events: %w", err)
	}
	if err := procControl(s, procMcastOn, cookie); err != nil {
		s.Close()
		return nil, fmt.Errorf("process events: subscribe (PROC_CN_MCAST_LISTEN): %w", err)
	}
	if err := procAwaitAck(s, cookie); err != nil {
		s.Close()
		return nil, err
	}
	return &ProcSocket{s}, nil
}

// Close unsubscribes (PROC_CN_MCAST_IGNORE) and closes the socket. It
// returns an error if the request could not be sent: the kernel then counts
// a listener still, and goes on making process events nobody reads.
//
// Unlike OpenProc, Close waits for no acknowledgement, for none reaches
// this socket: the kernel (cn_proc_mcast_ctl, Linux 6.18) records the
// IGNORE on the socket before it answers, and its answer (a
// PROC_EVENT_NONE whose ack is the cookie+1, errno 0: an IGNORE fails only
// with ENOMEM on a socket that never subscribed) goes to the multicast
// group, whose filter (cn_filter) passes nothing to a socket that ignores;
// with no listener left it sends none at all. Other subscribed sockets get
// it instead, before the send returns (TestProcIgnoreAnsweredToOthersOnly).
func (s *ProcSocket) Close() error {
	if s.closed.Load() {
		return nil
	}
	var err error
	if e := procControl(s.Socket, procMcastOff, 0); e != nil {
		err = fmt.Errorf("process events: unsubscribe (PROC_CN_MCAST_IGNORE): %w", e)
	}
	return errors.Join(err, s.Socket.Close())
}

// procControl sends a PROC_CN_MCAST_* request to the connector.
func procControl(s *Socket, op, cookie uint32) error {
	data := make([]byte, decode.SizeofCnMsg+4)
	ne := binary.NativeEndian
	ne.PutUint32(data[0:], decode.CnIdxProc)
	ne.PutUint32(data[4:], decode.CnValProc)
	ne.PutUint32(data[8:], 0) // seq
	ne.PutUint32(data[12:], cookie)
	ne.PutUint16(data[16:], 4) // len of the op
	ne.PutUint32(data[decode.SizeofCnMsg:], op)
	return s.Send(netlink.Message{Header: netlink.Header{Type: netlink.Done}, Data: data})
}

// procAwaitAck waits for the connector's answer to the listen request: a
// PROC_EVENT_NONE whose ack is cookie+1, carrying an error number. The
// kernel answers only once someone listens, so silence means the request
// was refused or ignored (it ignores requests from processes outside the
// initial user and PID namespaces).
func procAwaitAck(s *Socket, cookie uint32) error {
	deadline := time.Now().Add(procAckTimeout)
	_ = s.SetReadDeadline(deadline)
	defer s.SetReadDeadline(time.Time{})
	ms := make([]Message, 16)
	for {
		n, err := s.ReadBatch(ms)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("process events: the kernel did not acknowledge PROC_CN_MCAST_LISTEN within %v: "+
				"subscribing needs CAP_NET_ADMIN, and a process in the initial user and PID namespaces (run the bridge as root on the host, not in a container)", procAckTimeout)
		}
		if err != nil && !errors.Is(err, ErrOverrun) {
			return fmt.Errorf("process events: %w", err)
		}
		for _, m := range ms[:n] {
			ack, errno, ok := decode.ProcAck(m.Data)
			if !ok || ack != cookie+1 {
				continue
			}
			if errno != 0 {
				return fmt.Errorf("process events: the kernel refused PROC_CN_MCAST_LISTEN: %w (needs CAP_NET_ADMIN in the initial user namespace)",
					unix.Errno(errno))
			}
			return nil
		}
	}
}
