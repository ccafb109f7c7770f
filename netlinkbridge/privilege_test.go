package netlinkbridge

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

func TestNeeds(t *testing.T) {
	resolve := func(names ...string) []streams.Stream {
		ss, err := streams.Resolve(names...)
		if err != nil {
			t.Fatal(err)
		}
		return ss
	}
	for _, c := range []struct {
		name       string
		cfg        *Config
		portStart  int
		start, run Capabilities
		why        string // in some need's Why
	}{
		{"plain rtnetlink, no limit", &Config{Streams: resolve("link"), NoSocketLimit: true}, 1024,
			CapNetBindService, 0, "source port 1021"},
		{"unprivileged ports", &Config{Streams: resolve("link"), NoSocketLimit: true}, 0, 0, 0, ""},
		{"high source port", &Config{Streams: resolve("link"), NoSocketLimit: true,
			Sender: &mcast.SenderConfig{Source: netip.AddrPortFrom(netip.Addr{}, 2000)}}, 1024, 0, 0, ""},
		{"uevents", &Config{Streams: resolve("uevent"), NoSocketLimit: true}, 0, 0, 0, ""},
		{"socket limit", &Config{Streams: resolve("link")}, 0,
			CapDacReadSearch | CapSysPtrace | CapNetRaw, CapDacReadSearch | CapSysPtrace | CapNetRaw, "socket limit"},
		{"netns", &Config{Streams: resolve("link"), NoSocketLimit: true, NetNS: 7, Private: cleartext("*")}, 0, CapSysAdmin, 0, "setns"},
		{"proc", &Config{Streams: resolve("proc"), Private: cleartext("proc"), NoSocketLimit: true}, 0,
			CapNetAdmin, CapNetAdmin, "PROC_CN_MCAST_IGNORE"},
		{"conntrack", &Config{Streams: resolve("conntrack"), Private: cleartext(names(resolve("conntrack"))...), NoSocketLimit: true}, 0,
			CapNetAdmin, 0, "conntrack-new"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			n := c.cfg.Needs(c.portStart)
			if got := All(n.Start); got != c.start {
				t.Errorf("start: %v, want %v", got, c.start)
			}
			if got := All(n.Run); got != c.run {
				t.Errorf("run: %v, want %v", got, c.run)
			}
			found := c.why == ""
			for _, need := range append(n.Start, n.Run...) {
				found = found || strings.Contains(need.Why, c.why)
			}
			if !found {
				t.Errorf("no need says %q: %+v", c.why, n)
			}
		})
	}
}

func TestMissing(t *testing.T) {
	ns := []Need{{Caps: CapNetAdmin, Why: "a"}, {Caps: CapSysPtrace | CapNetRaw, Why: "b"}}
	if m := Missing(ns, CapNetAdmin|CapNetRaw|CapSysPtrace); m != nil {
		t.Errorf("all held: missing %+v", m)
	}
	m := Missing(ns, CapNetRaw)
	if len(m) != 2 || m[0].Caps != CapNetAdmin || m[1].Caps != CapSysPtrace || m[1].Why != "b" {
		t.Errorf("missing %+v", m)
	}
}

func names(ss []streams.Stream) []string {
	var n []string
	for _, s := range ss {
		n = append(n, s.Name)
	}
	return n
}

// The audit stream needs CAP_AUDIT_READ to start, not CAP_NET_ADMIN, and
// nothing once joined; xfrm needs CAP_NET_ADMIN to start.
func TestNeedsAuditAndXfrm(t *testing.T) {
	audit, _ := streams.Lookup("audit")
	sa, _ := streams.Lookup("xfrm-sa")
	n := (&Config{Streams: []streams.Stream{audit}, NoSocketLimit: true}).Needs(0)
	if All(n.Start) != CapAuditRead || All(n.Run) != 0 {
		t.Errorf("audit needs %v to start, %v to run; want CAP_AUDIT_READ and nothing", All(n.Start), All(n.Run))
	}
	n = (&Config{Streams: []streams.Stream{sa}, NoSocketLimit: true}).Needs(0)
	if All(n.Start) != CapNetAdmin || All(n.Run) != 0 {
		t.Errorf("xfrm-sa needs %v to start, %v to run; want CAP_NET_ADMIN and nothing", All(n.Start), All(n.Run))
	}
}
