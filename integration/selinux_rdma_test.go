package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSELinuxAndRDMAStreams: where this kernel lacks SELinux or RDMA,
// nlmcast groups says so and why, and a bridge of the stream refuses with
// what it needs; SELinux notices exist in the initial network namespace
// only, and a bridge elsewhere says so. (Events of either family need a
// kernel that has it: decode's golden tests cover their messages.)
func TestSELinuxAndRDMAStreams(t *testing.T) {
	nlmcast, _ := binaries(t)
	out, err := exec.Command(nlmcast, "groups", "--json", "selinux", "rdma").Output()
	if err != nil {
		t.Fatalf("groups: %v", err)
	}
	var groups []struct {
		Name, Note string
		Available  bool
	}
	if err := json.Unmarshal(out, &groups); err != nil || len(groups) != 4 {
		t.Fatalf("groups --json: %v: %s", err, out)
	}
	_, selinuxErr := os.Stat("/sys/fs/selinux")
	rdmaFD, rdmaErr := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_RDMA)
	if rdmaErr == nil {
		unix.Close(rdmaFD)
	}
	for _, g := range groups {
		switch {
		case g.Name == "selinux" && selinuxErr != nil && (g.Available || !strings.Contains(g.Note, "SELinux is not enabled")):
			t.Errorf("selinux without /sys/fs/selinux: %+v", g)
		case g.Name == "rdma" && rdmaErr != nil && (g.Available || !strings.Contains(g.Note, "no RDMA")):
			t.Errorf("rdma without NETLINK_RDMA: %+v", g)
		}
	}
	ns := newNetNS(t)
	out, err = exec.Command("ip", "netns", "exec", ns.name, nlmcast, "bridge", "--streams", "link,selinux").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "SELinux notices come only in the host's initial network namespace") {
		t.Errorf("bridge of selinux in a namespace: %v: %s", err, out)
	}
	if rdmaErr != nil {
		out, err = exec.Command("ip", "netns", "exec", ns.name, nlmcast, "bridge", "--streams", "link,rdma").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "RDMA notices:") || !strings.Contains(string(out), "CONFIG_INFINIBAND") {
			t.Errorf("bridge of rdma without RDMA: %v: %s", err, out)
		}
	}
}
