package integration

import (
	"fmt"
	"strings"
	"testing"
)

// nlmcast listen says it is ready only once the bridge encodes its JSON:
// an event made the moment it says so is printed. (The bridge learns of a
// JSON group's joins from /proc/net/igmp every 100 ms; a listen that said
// ready on joining missed such an event, with no gap to show for it.) The
// first listen is the group's first member, the others join beside it.
func TestListenReadyMeansEncoded(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	bridge := ns.start(t, notified, nlmcast, "bridge", "--streams", "link")
	defer bridge.stop()
	for i := range 4 {
		listen := ns.start(t, notified, nlmcast, "listen", "link")
		defer listen.stop()
		name := fmt.Sprintf("rdy%d", i)
		ns.ip(t, "link", "add", name, "type", "veth", "peer", "name", name+"p")
		listen.waitStdout(t, fmt.Sprintf("listen %d, ready before the event, printed no event of %s", i, name), func(out string) bool {
			return strings.Contains(out, " "+name+" ")
		})
		if e := listen.Stderr(); strings.Contains(e, "ready all the same") {
			t.Errorf("listen %d did not hear the bridge on its group: %s", i, e)
		}
	}
}
