// Package bench measures nlmcast against direct netlink delivery, in a
// network namespace of its own: a generator makes address events as fast as
// the kernel takes them (or at a set rate), a direct netlink subscriber is
// the baseline, and R receivers in separate processes read the bridge's
// stream. It reports loss, added latency, the bridge's CPU time, memory and
// allocations per event, ip monitor on the same burst, and the raw ceiling
// of loopback multicast for the same R and datagram size; and, through a
// JetStream nats-server in the namespace (package fleet, nlmcast publish),
// what one consumer beyond the host gets and what publishing costs.
//
// The files follow the run: config.go (Config, its defaults and limits),
// run.go (the order of the phases), baseline.go with ipmonitor.go,
// ceiling.go, bridgerun.go, ways.go, latency.go, rates.go, fleet.go and
// burst.go (one phase each), child.go (the child processes, owned by a
// group per phase), receivers.go and recv.go (the receiving processes,
// both sides),
// analysis.go (the figures, pure functions), report.go and plot.go (the
// output), netns.go (the namespace the bench runs in).
package bench
