package netlinkbridge

import (
	"fmt"
	"net/netip"

	"github.com/nlmcast/nlmcast/mcast"
)

// portTrust says, in a sentence, why receivers cannot trust the source
// port src that the bridge sends from, in the calling thread's network
// namespace, where its sender is: any user may bind the port there
// (net.ipv4.ip_unprivileged_port_start at or below it), or the setting
// cannot be read. "" when only root or CAP_NET_BIND_SERVICE may bind it.
// New and NewSet log it as a warning, and StatsReport holds it. When the
// bridge authenticates its frames, receivers given the key do not depend
// on the port, and those without it refuse to start where it proves
// nothing: there is nothing to warn of.
func portTrust(src netip.AddrPort, authenticated bool) string {
	start, err := mcast.UnprivilegedPortStart()
	switch {
	case authenticated:
		return ""
	case err != nil:
		return fmt.Sprintf("cannot read net.ipv4.ip_unprivileged_port_start (%v), so receivers cannot tell whether only root can send from "+
			"the bridge's source port %d: they refuse to start unless told to take the risk", err, src.Port())
	case start <= int(src.Port()):
		return fmt.Sprintf("net.ipv4.ip_unprivileged_port_start is %d in this network namespace, so any user can send from the bridge's "+
			"source port %d while the bridge is not running: receivers' source check proves nothing here (frames are not authenticated), "+
			"and they refuse to start unless told to take the risk", start, src.Port())
	}
	return ""
}

// Warnings returns what the bridge warned of when it started (see
// StatsReport.Warnings), if anything. A Bridge of a Set has none of its
// own: the Set's are about the sender they share.
func (b *Bridge) Warnings() []string { return append([]string(nil), b.warnings...) }

// Warnings returns what the set warned of when it started (see
// StatsReport.Warnings), if anything.
func (s *Set) Warnings() []string { return append([]string(nil), s.warnings...) }
