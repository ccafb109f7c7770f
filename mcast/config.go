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
	// interface, else any. Zero port: DefaultSourcePort. A port below 1024
	// needs CAP_NET_BIND_SERVICE.
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
// 127.0.0.1 from a privileged port. NewReceiver checks it with Validate.
type ReceiverConfig struct {
	// Interface is the interface groups are joined on. Zero: "lo".
	Interface string
	// AllowNonLoopback permits an Interface that is not a loopback
	// interface. Zero: refused.
	AllowNonLoopback bool
	// Source is the sender datagrams must come from. The address, if set,
	// must be IPv4. Zero address: 127.0.0.1. Zero port: any privileged port
	// (below 1024), which only root (or CAP_NET_BIND_SERVICE) can send
	// from.
	Source netip.AddrPort
	// AnySource accepts datagrams from any address and port, whatever
	// Source says. Zero: only from Source.
	AnySource bool
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
