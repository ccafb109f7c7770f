// Package rtgen makes real rtnetlink changes in a network namespace, so that
// the kernel sends events: a paced Scenario of varied changes for the demo
// and for nlmcast compare --generate (a veth pair, links up and down, IPv4
// and IPv6 addresses, a route, a neighbour), and Churn, address changes as
// fast as the kernel takes them, for nlmcast bench.
//
// Layer rule (ARCHITECTURE.md): like every package under internal/tool,
// it may import the libraries of this module, internal/sys and the other
// tools (it needs none of them); only the command, other tools and tests
// import it.
package rtgen
