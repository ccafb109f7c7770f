// Package decode turns kernel netlink messages into the events of the JSON
// encoding: for each message a Result, a one-line Summary in the spirit of
// ip monitor and an Event, a JSON object.
//
// On the path of an event, kernel -> decode -> frame -> mcast -> receiver,
// the bridge calls it to make the JSON encoding of an event. Any Go
// program that holds netlink messages (from a raw stream, a socket or a
// file) can call it as well, without the bridge.
//
// There is one decoder per netlink family: Route (rtnetlink: links,
// addresses, routes, neighbours and rules; other message types as a dump
// of their attributes), Uevent (hotplug uevents, from the kernel or
// udevd), Proc (process connector), Audit (audit records), SELinux and
// RDMA (their notices), Netfilter (by subsystem: Conntrack for ctnetlink,
// ConntrackExp for expectations, Nftables for ruleset changes and traces,
// NfAcct for quotas), Xfrm (IPsec SAs and policies, keys left out unless
// asked for) and Genl (generic netlink, with nlctrl and ethtool
// notifications decoded). None fails: what does not decode is described
// by its bytes and a decode_error field. Each Result's Event is the JSON
// form of an exported type, which a Go program can unmarshal it into:
// Event for rtnetlink (with a LinkEvent, AddrEvent, RouteEvent,
// NeighEvent or RuleEvent, or Attrs), UeventEvent, ProcEvent, AuditEvent,
// SELinuxEvent, RDMAEvent, ConntrackEvent, ConntrackExpEvent, NftEvent,
// NfAcctEvent, XfrmEvent or GenlEvent. RedactXfrm is the one function
// that writes to the bytes it is given: it zeroes the key material of an
// xfrm message in place.
//
// Names caches interface names by index, from a link dump and from link
// events, so that Route can name the interface of an address, route or
// neighbour. ParseCtrl and ProcAck read the two control messages nlmcast
// acts on: nlctrl's announcements of generic netlink families, and the
// process connector's answer to a subscription.
//
// The decoders are pure functions of the bytes they are given; a Names
// reaches outside only through the Miss function its user sets. The tests
// compare each decoder's whole output with the golden files in
// testdata/golden.
//
// Layer rule (ARCHITECTURE.md): decode imports no other package of this
// module and opens no socket (socket code belongs in package kernel). It
// uses the attribute parsers of the netlink and rtnetlink libraries, never
// their sockets.
package decode
