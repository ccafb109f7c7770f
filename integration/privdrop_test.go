package integration

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/sys/privdrop"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/netlinkbridge"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// bridgePrivileges checks every thread of the running bridge p against
// want, and returns its main thread's status.
func bridgePrivileges(t *testing.T, p *proc, want privdrop.Status) privdrop.Status {
	t.Helper()
	pid := p.cmd.Process.Pid // ip netns exec executes the bridge in its own process
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "nlmcast" {
		t.Fatalf("process %d is %q (%v), not the bridge", pid, comm, err)
	}
	st, err := privdrop.ReadStatus(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Diff(want); d != "" {
		t.Errorf("bridge %d: %s", pid, d)
	}
	if err := privdrop.Check(pid, want); err != nil { // every thread
		t.Error(err)
	}
	return st
}

// TestBridgeDropsPrivileges: with --user nobody the bridge, once ready,
// runs as uid and gid 65534 on every thread with no_new_privs, and keeps
// exactly the capabilities its configuration still needs: none for plain
// rtnetlink and uevent streams (and --all-nsid), CAP_DAC_READ_SEARCH,
// CAP_SYS_PTRACE and CAP_NET_RAW with the socket limit on (it finds and
// detaches other users' sockets), CAP_NET_ADMIN with a privileged generic
// netlink group (joined again when its family registers). It still
// forwards events and says goodbye. A stream sent in the clear is named in
// a warning at start.
func TestBridgeDropsPrivileges(t *testing.T) {
	nlmcast, _ := binaries(t)
	for _, c := range []struct {
		name   string
		stream string // bridged, and the one an event is awaited on
		args   []string
		keep   privdrop.Caps
		warn   string // on stderr at start
	}{
		{"plain", "link", []string{"--max-sockets-per-uid", "0"}, 0, ""},
		{"uevent", "uevent", []string{"--max-sockets-per-uid", "0"}, 0, ""},
		{"socket limit", "link", nil, privdrop.DacReadSearch | privdrop.SysPtrace | privdrop.NetRaw, ""},
		// Privileged groups joined at start, nothing needed after.
		{"conntrack", "link", []string{"--cleartext-to-all-users", "conntrack", "--max-sockets-per-uid", "0"}, 0,
			`level=WARN msg="a private stream is sent in the clear: every local user can read it" stream=conntrack`},
		// A privileged generic netlink group, joined again with
		// CAP_NET_ADMIN whenever its family registers (or is joined
		// once it does, if it has not yet).
		{"privileged generic netlink", "link", []string{"--cleartext-to-all-users", "mptcp_pm:mptcp_pm_events", "--max-sockets-per-uid", "0"}, privdrop.NetAdmin,
			`level=WARN msg="a private stream is sent in the clear: every local user can read it" stream=mptcp_pm:mptcp_pm_events`},
		// Peers' events come on the socket opened at start.
		{"all-nsid", "link", []string{"--all-nsid", "--cleartext-to-all-users", "all", "--max-sockets-per-uid", "0"}, 0,
			`level=WARN msg="a private stream is sent in the clear: every local user can read it" stream=all`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := newNetNS(t)
			args := append([]string{nlmcast, "bridge", "--streams", c.stream, "--encodings", "raw", "--user", "nobody"}, c.args...)
			bridge := ns.start(t, notified, args...)
			st := bridgePrivileges(t, bridge, privdrop.Status{UID: 65534, GID: 65534, Effective: c.keep, Permitted: c.keep, NoNewPrivs: true})
			for _, g := range st.Groups {
				if g != 65534 {
					t.Errorf("supplementary groups %v, want none but 65534", st.Groups)
				}
			}
			// The log tells what was kept (read as it is copied: READY may come first).
			bridge.waitStderr(t, `msg="privileges dropped" user=nobody uid=65534 gid=65534 kept=`+c.keep.String())
			if c.warn != "" {
				bridge.waitStderr(t, c.warn)
			} else if strings.Contains(bridge.Stderr(), "sent in the clear") {
				t.Errorf("a warning of a stream in the clear, where none is:\n%s", bridge.Stderr())
			}

			var r *receiver.Receiver
			ns.do(t, func() (err error) {
				r, err = receiver.New(&receiver.Config{Streams: []streams.Stream{mustStream(c.stream)}})
				return err
			})
			log := logFrames(r)
			defer r.Close()
			ns.ip(t, "link", "add", "nlt0", "type", "veth", "peer", "name", "nlt1") // a link event, and uevents
			waitFor(t, &log.changed, "an event from the unprivileged bridge", func() bool { return log.count(c.stream, frame.KindEvent) >= 1 })
			bridge.stop()
			waitFor(t, &log.changed, "a goodbye after SIGTERM", func() bool { return log.count(c.stream, frame.KindGoodbye) == 1 })
			if code := bridge.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit code %d after SIGTERM:\n%s", code, bridge.Stderr())
			}
		})
	}
}

// TestBridgeDropsPrivilegesWithProc: process events come from the
// connector of the initial network namespace only, so this bridge runs on
// the host, on groups and a source port of its own (1018: TestProcStream
// sends from 1017). It keeps CAP_NET_ADMIN alone, on every thread, to
// unsubscribe (PROC_CN_MCAST_IGNORE) at exit; it forwards process events
// after the drop, warns at start that the stream is in the clear, and
// exits 0 on SIGTERM without an error.
func TestBridgeDropsPrivilegesWithProc(t *testing.T) {
	testenv.RequireRoot(t)
	nlmcast, _ := binaries(t)
	host := &netns{fd: -1}
	var rnd [2]byte
	rand.Read(rnd[:])
	m := streams.Map{Base: netip.AddrFrom4([4]byte{239, 253, rnd[0] &^ 1, 0}), Port: 22000 + uint16(rnd[1])*8}
	bridge := host.start(t, notified, nlmcast, "bridge", "--streams", "proc", "--cleartext-to-all-users", "proc", "--encodings", "raw",
		"--base", m.Base.String(), "--port", strconv.Itoa(int(m.Port)), "--source-port", "1018", "--requests=false",
		"--user", "nobody", "--max-sockets-per-uid", "0")
	bridgePrivileges(t, bridge, privdrop.Status{UID: 65534, GID: 65534, Effective: privdrop.NetAdmin, Permitted: privdrop.NetAdmin, NoNewPrivs: true})
	bridge.waitStderr(t, `msg="privileges dropped" user=nobody uid=65534 gid=65534 kept=CAP_NET_ADMIN for="unsubscribing from process events at exit (PROC_CN_MCAST_IGNORE)"`)
	bridge.waitStderr(t, `level=WARN msg="a private stream is sent in the clear: every local user can read it" stream=proc`)

	// The host's processes make events all the time; the child's make sure.
	from := &mcast.ReceiverConfig{Source: netip.AddrPortFrom(mcast.LoopbackSource, 1018), ReadBuffer: 4 << 20}
	raw := host.collect(t, &receiver.Config{Streams: []streams.Stream{mustStream("proc")}, Map: m, Mcast: from, Insecure: true})
	t.Cleanup(func() { raw.stop() })
	if err := exec.Command("/bin/true").Run(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &raw.changed, "a process event from the unprivileged bridge", func() bool { return len(raw.events("proc")) >= 1 })
	bridge.stop()
	if code := bridge.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM:\n%s", code, bridge.Stderr())
	}
	for _, line := range strings.Split(bridge.Stderr(), "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "PROC_CN_MCAST_IGNORE") && !strings.Contains(line, `msg="privileges dropped"`) {
			t.Errorf("an error at exit: %s\n%s", line, bridge.Stderr())
		}
	}
}

// TestBridgeWithSomeCapabilities: started as uid 65534 with only the
// capabilities it needs in its ambient set (as a systemd unit with
// AmbientCapabilities), the bridge starts, and then keeps none it no
// longer needs; with one missing, it refuses and names each missing
// capability, what for, and the flag that avoids it.
func TestBridgeWithSomeCapabilities(t *testing.T) {
	nlmcast, _ := binaries(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	ns := newNetNS(t)
	asNobody := func(caps string, args ...string) []string {
		return append([]string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps=" + caps, "--ambient-caps=" + caps, nlmcast, "bridge", "--streams", "link", "--encodings", "raw"}, args...)
	}
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.name}, asNobody("+net_bind_service")...)...).CombinedOutput()
	if err == nil {
		t.Fatalf("started without the socket limit's capabilities:\n%s", out)
	}
	for _, want := range []string{"missing capabilities CAP_DAC_READ_SEARCH,CAP_NET_RAW,CAP_SYS_PTRACE", "--max-sockets-per-uid 0", "AmbientCapabilities=CAP_DAC_READ_SEARCH CAP_NET_RAW CAP_SYS_PTRACE"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the error does not say %q:\n%s", want, out)
		}
	}
	bridge := ns.start(t, notified, asNobody("+net_bind_service", "--max-sockets-per-uid", "0")...)
	// Once started it needs none of them: they are gone, ambient ones too.
	bridgePrivileges(t, bridge, privdrop.Status{UID: 65534, GID: 65534, NoNewPrivs: true})
}

// TestUnprivilegedBridgeDetaches: run as another user (daemon) with the
// three capabilities it keeps for the socket limit, the bridge still
// finds and detaches uid 65534's sockets beyond the limit.
func TestUnprivilegedBridgeDetaches(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	link, _ := streams.Lookup("link")
	raw := streams.Map{}.Addr(link, streams.Raw)
	ports := map[uint16]bool{raw.Port(): true}
	const attack = 20
	ns.startIdleSockets(t, attack, 0, []netip.AddrPort{raw})
	bridge := ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--encodings", "raw", "--user", "daemon")
	keep := privdrop.DacReadSearch | privdrop.SysPtrace | privdrop.NetRaw
	bridgePrivileges(t, bridge, privdrop.Status{UID: 1, GID: 1, Effective: keep, Permitted: keep, NoNewPrivs: true})
	waitFor(t, &bridge.changed, "the bridge detached the excess", func() bool {
		return strings.Contains(bridge.Stderr(), "detached sockets over the per-user limit")
	})
	limit := netlinkbridge.DefaultMaxSocketsPerUID
	if r, d := ns.uidSockets(t, 65534, ports); r != limit || d != attack-limit {
		t.Fatalf("uid 65534 has %d receiving and %d detached sockets, want %d and %d\n%s", r, d, limit, attack-limit, bridge.Stderr())
	}
}

// TestBridgeUserCannotWriteStats: --stats in a directory the --user cannot
// write to is refused at start, not found out at the first snapshot.
func TestBridgeUserCannotWriteStats(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	dir := t.TempDir() // root's, 0700
	out, err := exec.Command("ip", "netns", "exec", ns.name, nlmcast, "bridge", "--streams", "link",
		"--user", "nobody", "--stats", filepath.Join(dir, "stats.json")).CombinedOutput()
	if err == nil {
		t.Fatalf("started:\n%s", out)
	}
	if !strings.Contains(string(out), "user nobody cannot write in its directory") {
		t.Errorf("the error does not say why:\n%s", out)
	}
}

// TestBridgeDropsPrivilegesWithNetNS: reading another namespace's events
// (--netns) needs CAP_SYS_ADMIN at start only: with --user the bridge keeps
// no capability and still forwards that namespace's address changes, byte
// for byte, marked with that namespace's id here (what `ip netns list-id`
// says; the bridge gave it one at start), raw, in JSON and in listen's
// lines. And it still names interfaces it never heard of after the drop,
// over the socket it opened in that namespace at start (a new one would
// need CAP_SYS_ADMIN): the link event of a link made while the bridge is
// stopped is lost to its full netlink buffer, and the resync after the
// overrun dumps an address of that link, which JSON names.
func TestBridgeDropsPrivilegesWithNetNS(t *testing.T) {
	nlmcast, _ := binaries(t)
	here, there := newNetNS(t), newNetNS(t)
	bridge := here.start(t, notified, nlmcast, "bridge", "--netns", there.name, "--cleartext-to-all-users", "all", "--streams", "ipv4-ifaddr", "--json-always",
		"--read-buffer", "4096", "--user", "nobody", "--max-sockets-per-uid", "0")
	bridgePrivileges(t, bridge, privdrop.Status{UID: 65534, GID: 65534, NoNewPrivs: true})
	nsid := nsidIn(t, here, there)
	raw, js := here.receivers(t, streams.Map{}, "ipv4-ifaddr")
	listen := here.start(t, notified, nlmcast, "listen", "ipv4-ifaddr")
	direct := there.subscribe(t, []uint32{unix.RTNLGRP_IPV4_IFADDR})
	there.ip(t, "addr", "add", "192.0.2.1/32", "dev", "lo")
	direct.stop()

	run := bridged(t, "--netns", direct.messages(unix.RTNLGRP_IPV4_IFADDR), raw, "ipv4-ifaddr")
	for _, g := range run {
		if g.flags&frame.FlagNSID == 0 || g.nsid != nsid {
			t.Errorf("raw event: flags %v nsid %d, want NSID %d", g.flags, g.nsid, nsid)
		}
	}
	for _, g := range jsonOf(t, js, "ipv4-ifaddr", run) {
		if f, err := frame.ParseJSON(g.payload); err != nil || f.NSID == nil || *f.NSID != nsid {
			t.Errorf("JSON event: %v, want nsid %d: %s", err, nsid, g.payload)
		}
	}
	listen.waitStdout(t, fmt.Sprintf("listen printed the address with nsid %d", nsid), func(out string) bool {
		return strings.Contains(out, fmt.Sprintf(" nsid %d new addr 192.0.2.1/32", nsid))
	})

	// The bridge stopped, its buffer filled and overflowing, nlt0 is made:
	// its link event is dropped, and the bridge has no name for it.
	if err := bridge.cmd.Process.Signal(unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bridge.cmd.Process.Signal(unix.SIGCONT) }) // before its stop, on a failure
	for i := 0; !netlinkDrops(t, there); i++ {
		if i == 64 {
			t.Fatal("the stopped bridge's netlink socket dropped nothing")
		}
		there.ip(t, "link", "add", fmt.Sprintf("fill%d", i), "type", "veth", "peer", "name", fmt.Sprintf("fillp%d", i))
	}
	there.ip(t, "link", "add", "nlt0", "type", "veth", "peer", "name", "nlt1")
	there.ip(t, "addr", "add", "192.0.2.77/24", "dev", "nlt0")
	if err := bridge.cmd.Process.Signal(unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	var dumped []byte
	waitFor(t, &js.changed, "the resync's JSON dump of nlt0's address", func() bool {
		for _, g := range js.events("ipv4-ifaddr") {
			if g.flags&frame.FlagDump != 0 && bytes.Contains(g.payload, []byte(`"192.0.2.77"`)) {
				dumped = g.payload
				return true
			}
		}
		return false
	})
	if !bytes.Contains(dumped, []byte(`"ifname":"nlt0"`)) {
		t.Errorf("JSON does not name nlt0, made after the drop and never announced to the bridge: %s", dumped)
	}
}

// netlinkDrops reports whether an rtnetlink multicast socket in ns has
// dropped messages for want of room (/proc/net/netlink, Drops).
func netlinkDrops(t *testing.T, ns *netns) bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.name, "cat", "/proc/net/netlink").CombinedOutput()
	if err != nil {
		t.Fatalf("/proc/net/netlink: %v: %s", err, out)
	}
	// sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
	for _, line := range strings.Split(string(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 10 && f[1] == "0" && strings.Trim(f[3], "0") != "" && f[8] != "0" {
			return true
		}
	}
	return false
}

// nsidIn returns the id that namespace in gives namespace of, as
// `ip netns list-id` run in it says.
func nsidIn(t *testing.T, in, of *netns) int32 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", in.name, "ip", "netns", "list-id").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list-id: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		var id int32
		if _, err := fmt.Sscanf(line, "nsid %d", &id); err == nil && strings.Contains(line, "name: "+of.name+")") {
			return id
		}
	}
	t.Fatalf("ip netns list-id in %s does not list %s:\n%s", in.name, of.name, out)
	return 0
}
