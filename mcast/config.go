package mcast

import (
	"fmt"
	"net/netip"
)

// SenderConfig configures a Sender. The zero value, or a nil
// *SenderConfig, means: interface lo, source 127.0.0.1:1021, TTL 0.
// NewSender checks it with Validate.
type SenderConfig struct {
	// Interface is the interface multicast leaves through. Zero: "lo".
	Interface string
	// AllowNonLoopback permits an Interface that is not a loopback
	// interface; multicast then leaves the host. Zero: refused.
	AllowNonLoopback bool
	// Source is the local address and port datagrams are sent from. The
	// address, if set, must be IPv4. Zero address: 127.0.0.1 on a loopback
	// interface, else any. Zero port: DefaultSourcePort. A port below
	// net.ipv4.ip_unprivileged_port_start (UnprivilegedPortStart; 1024 by
	// default) needs root or CAP_NET_BIND_SERVICE.
	Source netip.AddrPort
	// EphemeralPort sends from a port the kernel picks (unprivileged), as
	// receivers do for resync requests; Source must then have no port.
	// Zero: Source's port.
	EphemeralPort bool
	// TTL is the multicast time to live, 0 to 255. Zero: 0, which keeps
	// datagrams on the host.
	TTL int
	// WriteBuffer is the socket send buffer size in bytes, not negative.
	// Zero: the system default.
	WriteBuffer int
	// NoSegmentation turns off UDP segmentation offload. Zero: WriteBatch
	// sends each run of datagrams of one size to one group as a single
	// UDP_SEGMENT send, which the kernel takes through its stack once and
	// splits into the original datagrams for each receiver: receivers see
	// no difference, and the sender's cost per datagram drops by about
	// three. If the kernel refuses it, the Sender turns it off by itself.
	NoSegmentation bool
}

// ReceiverConfig configures a Receiver. The zero value, or a nil
// *ReceiverConfig, receives on lo and accepts only datagrams sent from
// 127.0.0.1:1021 (DefaultSourcePort), where a Sender sends from by
// default. NewReceiver checks it with Validate.
type ReceiverConfig struct {
	// Interface is the interface groups are joined on. Zero: "lo".
	Interface string
	// AllowNonLoopback permits an Interface that is not a loopback
	// interface. Zero: refused.
	AllowNonLoopback bool
	// Source is the one sender datagrams must come from: the Sender's
	// address and port. The address, if set, must be IPv4. Zero address:
	// 127.0.0.1. Zero port: DefaultSourcePort. Only a process allowed to
	// bind that port can send from it, and only while no Sender holds it:
	// a port below net.ipv4.ip_unprivileged_port_start (see
	// UnprivilegedPortStart) needs root or CAP_NET_BIND_SERVICE.
	Source netip.AddrPort
	// AnySource accepts datagrams from any address and port, whatever
	// Source says (the kernel filters nothing either). Zero: only from
	// Source.
	AnySource bool
	// NoKernelFilter leaves the filtering of senders to ReadBatch. Zero:
	// each group's socket is also connected to Source (connect(2)), so
	// that the kernel delivers to it only Source's datagrams: another
	// sender's take none of its buffer and wake no read, and are not
	// counted anywhere (ReceiverStats.WrongSource counts what ReadBatch
	// drops; it still checks). Not with AnySource.
	NoKernelFilter bool
	// ReadBuffer is the receive buffer in bytes asked for on each group's
	// socket, with SO_RCVBUFFORCE when privileged, else SO_RCVBUF (capped
	// by net.core.rmem_max); not negative. Zero: DefaultReadBuffer.
	ReadBuffer int
	// Batch is how many datagrams one ReadBatch call can return at most,
	// not negative. Zero: DefaultBatch.
	Batch int
	// NoCoalesce reads every datagram on its own. Zero: each group's socket
	// asks for UDP_GRO, so that a run a Sender sent as one UDP_SEGMENT send
	// is queued, woken for and copied once, and split back into its
	// datagrams here; the kernel's cost of delivering a run to one more
	// receiver drops from once per datagram to once per run. Datagrams are
	// returned exactly as sent either way. On a kernel without UDP_GRO
	// (before Linux 5.0) datagrams are read one by one.
	NoCoalesce bool
}

// AcceptedSource returns the sender a Receiver with this config accepts
// datagrams from, defaults applied (127.0.0.1, DefaultSourcePort); any is
// true, and src zero, when it accepts any sender (AnySource). A nil c is
// the zero config.
func (c *ReceiverConfig) AcceptedSource() (src netip.AddrPort, any bool) {
	if c == nil {
		c = &ReceiverConfig{}
	}
	if c.AnySource {
		return netip.AddrPort{}, true
	}
	addr, port := c.Source.Addr(), c.Source.Port()
	if !addr.IsValid() {
		addr = LoopbackSource
	}
	if port == 0 {
		port = DefaultSourcePort
	}
	return netip.AddrPortFrom(addr, port), false
}

// A ConfigError reports a field of a SenderConfig or ReceiverConfig that
// breaks a rule. Find it with errors.As.
type ConfigError struct {
	Config string // "SenderConfig" or "ReceiverConfig"
	Field  string // the field's name, such as "TTL"
	Value  any    // the value refused; nil when Reason says it
	Reason string // what is wrong, such as "must be from 0 to 255"
}

func (e *ConfigError) Error() string {
	if e.Value == nil {
		return fmt.Sprintf("mcast: %s.%s: %s", e.Config, e.Field, e.Reason)
	}
	return fmt.Sprintf("mcast: %s.%s %v: %s", e.Config, e.Field, e.Value, e.Reason)
}

// Validate reports the first rule c breaks, as a *ConfigError. A nil c is
// valid. It makes no system call: a missing interface or a port in use is
// found by NewSender.
func (c *SenderConfig) Validate() error {
	if c == nil {
		return nil
	}
	bad := func(field string, v any, reason string) error {
		return &ConfigError{Config: "SenderConfig", Field: field, Value: v, Reason: reason}
	}
	switch {
	case c.Source.Addr().IsValid() && !c.Source.Addr().Is4():
		return bad("Source", c.Source, "must be an IPv4 address")
	case c.EphemeralPort && c.Source.Port() != 0:
		return bad("Source", c.Source, "has a port, but EphemeralPort asks the kernel to pick one")
	case c.TTL < 0 || c.TTL > 255:
		return bad("TTL", c.TTL, "must be from 0 to 255")
	case c.WriteBuffer < 0:
		return bad("WriteBuffer", c.WriteBuffer, "must not be negative")
	}
	return nil
}

// Validate reports the first rule c breaks, as a *ConfigError. A nil c is
// valid. It makes no system call: a missing interface is found by
// NewReceiver.
func (c *ReceiverConfig) Validate() error {
	if c == nil {
		return nil
	}
	bad := func(field string, v any, reason string) error {
		return &ConfigError{Config: "ReceiverConfig", Field: field, Value: v, Reason: reason}
	}
	switch {
	case c.Source.Addr().IsValid() && !c.Source.Addr().Is4():
		return bad("Source", c.Source, "must be an IPv4 address")
	case c.ReadBuffer < 0:
		return bad("ReadBuffer", c.ReadBuffer, "must not be negative")
	case c.Batch < 0:
		return bad("Batch", c.Batch, "must not be negative")
	}
	return nil
}
