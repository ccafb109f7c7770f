package mcast

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// portStartFile is where Linux shows net.ipv4.ip_unprivileged_port_start.
const portStartFile = "/proc/sys/net/ipv4/ip_unprivileged_port_start"

// UnprivilegedPortStart returns net.ipv4.ip_unprivileged_port_start: the
// lowest port any user may bind in the network namespace, ports below it
// needing root or CAP_NET_BIND_SERVICE. It is 1024 by default; container
// runtimes set it to 0 in the namespaces they make, where every user may
// then bind every port, the Sender's DefaultSourcePort too (when free).
// So a Receiver's source check proves that the bridge sent a datagram only
// where UnprivilegedPortStart is above the accepted port.
//
// /proc/sys/net shows the network namespace of the thread that opens it:
// a program whose threads are in different namespaces calls it from a
// goroutine locked to a thread of the one it means (runtime.LockOSThread).
// On a kernel without the setting (before Linux 4.11) it returns 1024, the
// fixed limit there.
func UnprivilegedPortStart() (int, error) {
	b, err := os.ReadFile(portStartFile)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat("/proc/sys/net/ipv4"); serr == nil {
			return 1024, nil // an older kernel: the limit was fixed
		}
	}
	if err != nil {
		return 0, fmt.Errorf("mcast: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("mcast: %s: %q is not a number", portStartFile, b)
	}
	return n, nil
}
