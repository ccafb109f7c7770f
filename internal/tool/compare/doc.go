// Package compare is nlmcast compare: it receives the same kernel events
// twice, directly from a netlink socket and through nlmcast's multicast
// groups, matches the two deliveries of each event, and measures the
// difference: events one path lacks, events in a different order, and how
// much later (or sooner) multicast delivered each.
//
// A Session (Open) reads both paths (package kernel for netlink, package
// receiver for multicast) and names events with package decode. A Matcher
// does the bookkeeping alone, from arrivals stamped by its caller; with
// Distribute and Quantile it is pure and tested without sockets.
//
// Layer rule (ARCHITECTURE.md): like every package under internal/tool,
// it may import the libraries of this module, internal/sys and the other
// tools; only the command, other tools and tests import it.
package compare
