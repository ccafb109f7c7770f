package mcast

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// connectSource connects socket s, bound to a group, to src, the one
// sender its Receiver accepts: the kernel then delivers to s only the
// group's datagrams from src's address and port (a connected UDP socket
// takes nothing from other peers, multicast included), and drops nothing
// on its account, since it never counted s among the others' receivers.
//
// This is the kernel filter of ReceiverConfig.NoKernelFilter, and of
// PROTOCOL.md ("Dropping other senders in the kernel"). A socket filter
// (SO_ATTACH_FILTER) would drop others' datagrams too, but Linux adds each
// datagram a filter drops to the socket's drop count, which SO_RXQ_OVFL
// reports as a full buffer: any local user sending to a group would make
// its receivers report drops, and mirrors resync.
func connectSource(s int, src netip.AddrPort) error {
	if err := unix.Connect(s, &unix.SockaddrInet4{Addr: src.Addr().As4(), Port: int(src.Port())}); err != nil {
		return fmt.Errorf("connect to the source %s (ReceiverConfig.NoKernelFilter turns this off): %w", src, err)
	}
	return nil
}
