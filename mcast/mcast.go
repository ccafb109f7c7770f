package mcast

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Defaults shared by Sender and Receiver.
const (
	// DefaultInterface is the interface multicast is sent and joined on.
	DefaultInterface = "lo"
	// DefaultSourcePort is the privileged port the Sender sends from
	// (1021 is assigned to experiments, RFC 4727).
	DefaultSourcePort = 1021
	// DefaultReadBuffer is the receive buffer a Receiver asks for per group.
	DefaultReadBuffer = 4 << 20
	// DefaultBatch is how many datagrams one system call moves at most.
	DefaultBatch = 64
	// MaxDatagram is the largest UDP payload on IPv4.
	MaxDatagram = 65507
)

// LoopbackSource is the address a loopback Sender sends from.
var LoopbackSource = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// ErrClosed is returned by operations on a closed Sender or Receiver.
var ErrClosed = net.ErrClosed

// ErrNotLoopback is wrapped by the error for a non-loopback interface.
var ErrNotLoopback = errors.New("interface is not a loopback interface")

// lookupInterface finds the multicast interface and enforces the loopback
// rule.
func lookupInterface(name string, allowNonLoopback bool) (*net.Interface, error) {
	if name == "" {
		name = DefaultInterface
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("mcast: interface %q: %w", name, err)
	}
	if ifi.Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("mcast: interface %q is down; bring it up with: ip link set %s up", name, name)
	}
	if ifi.Flags&net.FlagLoopback == 0 && !allowNonLoopback {
		return nil, fmt.Errorf("mcast: %q: %w; multicast would leave the host, so it must be allowed explicitly", name, ErrNotLoopback)
	}
	return ifi, nil
}

func checkGroup(g netip.AddrPort) error {
	if !g.Addr().Is4() || !g.Addr().IsMulticast() {
		return fmt.Errorf("mcast: %s is not an IPv4 multicast group", g)
	}
	if g.Port() == 0 {
		return fmt.Errorf("mcast: %s: group needs a port", g)
	}
	return nil
}
