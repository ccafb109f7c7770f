// Package integration runs nlmcast end to end, as root, each test in a
// network namespace it creates and deletes itself; it never touches the
// host's own network configuration. It holds tests only.
//
// The tests build the real nlmcast command and run it against the real
// kernel: events of every family reach Go, C, Python and socat receivers
// whole and in order; overruns, a killed and restarted bridge, forged
// frames from an unprivileged sender, a forged frame and a replay from the
// bridge's own port, and messages too large for one datagram are all
// survived and reported; where any user may bind any port, receivers
// refuse to start, or with --insecure still print nothing forged from
// another port; nlmcast compare, the demo and a
// short nlmcast bench give complete reports.
//
// Without root, or without a tool they need (ip, gcc, python3, socat,
// nft, ...), the tests skip; under CI=true they fail instead
// (internal/testenv), so that CI never passes by running nothing.
//
// Layer rule (ARCHITECTURE.md): it may import any package of this module,
// and none imports it.
package integration
