package bench

import (
	"strings"
	"testing"
)

// A run that lost events says where: at the bridge (overruns, its relay's
// drops, detached sockets) or at the receivers' sockets. A run that lost
// none says nothing of it.
func TestWriteTableSaysWhereEventsWereLost(t *testing.T) {
	rep := &Report{
		Runs: []RunResult{
			{Receivers: 1, Generated: 100096, Bridge: []PathResult{{Received: 100096}}},
			{Receivers: 8, Generated: 100096, MaxLost: 20612, BridgeOverruns: 2, BridgeHandoffDropped: 5, BridgeDetached: 1,
				Bridge: []PathResult{{Received: 79484, Lost: 20612, SocketDrops: 20000}, {Received: 100000, Lost: 96, SocketDrops: 96}}},
		},
		Latency: &RunResult{Receivers: 1, TargetRate: 5000, Generated: 10000, Direct: PathResult{Received: 9990, Lost: 10}},
	}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"lost with 8 receivers: at most 20612 events at one receiver (0 at the direct subscriber); the bridge's netlink socket overran 2 times, " +
			"its relay dropped 5 datagrams and it detached 1 sockets; the receivers' sockets dropped 20096 datagrams (their buffers full)",
		"lost at 5000 events/s: at most 0 events at one receiver (10 at the direct subscriber)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "lost with 1 receivers") {
		t.Errorf("a run that lost nothing has a loss line:\n%s", out)
	}
}
