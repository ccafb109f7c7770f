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

// Close unsubscribes (PROC_CN_MCAST_IGNORE) and closes the socket.
func (s *ProcSocket) Close() error {
	if s.closed.Load() {
		return nil
	}
	_ = procControl(s.Socket, procMcastOff, 0)
	return s.Socket.Close()
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
