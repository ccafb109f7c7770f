// Package rtgen makes real rtnetlink changes in a network namespace, so that
// the kernel sends events: a paced Scenario of varied changes for the demo
// and for nlmcast compare --generate (a veth pair, links up and down, IPv4
// and IPv6 addresses, a route, a neighbour), and Churn, address changes as
// fast as the kernel takes them, for nlmcast bench.
//
// Layer rule: it imports no other package of this module; only the
// command, other tools and tests import it.
package rtgen
