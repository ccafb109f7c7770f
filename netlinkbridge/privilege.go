package netlinkbridge

import (
	"fmt"
	"strings"

	"github.com/nlmcast/nlmcast/internal/sys/privdrop"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// Capabilities is a set of Linux capabilities: bit n is capability n
// (capability(7)). Its String names them, such as "CAP_NET_ADMIN".
type Capabilities = privdrop.Caps

// The capabilities a bridge may need.
const (
	CapNetBindService = privdrop.NetBindService
	CapDacReadSearch  = privdrop.DacReadSearch
	CapNetAdmin       = privdrop.NetAdmin
	CapNetRaw         = privdrop.NetRaw
	CapSysPtrace      = privdrop.SysPtrace
	CapSysAdmin       = privdrop.SysAdmin
	CapAuditRead      = privdrop.AuditRead
	CapSetuid         = privdrop.Setuid
	CapSetgid         = privdrop.Setgid
)

// A Need is a set of capabilities a bridge needs, and what for.
type Need struct {
	Caps Capabilities
	Why  string // such as "joining privileged netlink groups (proc)"

	socketLimit bool // for the receivers' watch: needless without it
}

// Needs is what a configuration needs of the kernel's privileges.
type Needs struct {
	// Start is what opening the Set needs: sockets in another namespace,
	// privileged groups, the privileged source port.
	Start []Need
	// Run is what a running Set still needs, once every socket is open:
	// all a Set keeps after DropPrivileges.
	Run []Need
}

// All returns the union of the capabilities of ns.
func All(ns []Need) Capabilities {
	var c Capabilities
	for _, n := range ns {
		c |= n.Caps
	}
	return c
}

// Missing returns the needs of ns that have has lacks, each with the
// capabilities it lacks; nil when nothing is missing.
func Missing(ns []Need, has Capabilities) []Need {
	var out []Need
	for _, n := range ns {
		if lack := n.Caps &^ has; lack != 0 {
			out = append(out, Need{Caps: lack, Why: n.Why})
		}
	}
	return out
}

// Needs returns what a Set of c needs. portStart is the sender's
// namespace's net.ipv4.ip_unprivileged_port_start (mcast.UnprivilegedPortStart);
// negative when unknown, taken as 1024. c must be valid.
func (c *Config) Needs(portStart int) Needs {
	if c == nil {
		c = &Config{}
	}
	var n Needs
	if portStart < 0 {
		portStart = 1024
	}
	port := uint16(mcast.DefaultSourcePort)
	if c.Sender != nil && c.Sender.Source.Port() != 0 {
		port = c.Sender.Source.Port()
	}
	if int(port) < portStart {
		n.Start = append(n.Start, Need{Caps: CapNetBindService, Why: fmt.Sprintf("sending from the privileged source port %d", port)})
	}
	if c.NetNS != 0 {
		n.Start = append(n.Start, Need{Caps: CapSysAdmin, Why: "opening netlink sockets in another network namespace (setns)"})
	}
	sel := c.Streams
	if len(sel) == 0 {
		sel = streams.Default()
	}
	var privileged, genl []string
	proc, audit := false, false
	for _, s := range sel {
		if s.Family == streams.FamilyAudit {
			audit = true // CAP_AUDIT_READ, not CAP_NET_ADMIN
			continue
		}
		if s.Privileged {
			privileged = append(privileged, s.Name)
			if s.Family == streams.FamilyGeneric {
				genl = append(genl, s.Name)
			}
		}
		proc = proc || s.Family == streams.FamilyConnector
	}
	if len(privileged) > 0 {
		n.Start = append(n.Start, Need{Caps: CapNetAdmin, Why: "joining privileged netlink groups (" + strings.Join(privileged, ",") + ")"})
	}
	if audit {
		n.Start = append(n.Start, Need{Caps: CapAuditRead, Why: "joining the audit log's multicast group (audit)"})
	}
	if !c.NoSocketLimit {
		need := Need{Caps: CapDacReadSearch | CapSysPtrace | CapNetRaw, socketLimit: true,
			Why: "detaching other users' sockets beyond the socket limit (reading their /proc/PID/fd, pidfd_getfd, SO_BINDTOIFINDEX)"}
		n.Start = append(n.Start, need)
		n.Run = append(n.Run, need)
	}
	if len(genl) > 0 {
		n.Run = append(n.Run, Need{Caps: CapNetAdmin, Why: "joining privileged generic netlink groups when they register again (" + strings.Join(genl, ",") + ")"})
	}
	if proc {
		n.Run = append(n.Run, Need{Caps: CapNetAdmin, Why: "unsubscribing from process events at exit (PROC_CN_MCAST_IGNORE)"})
	}
	return n
}

// Needs returns what the running Set still needs (Config.Needs's Run),
// less what it does not use: without a sock_diag watch, no socket is
// detached.
func (s *Set) Needs() []Need {
	var out []Need
	for _, n := range s.needs {
		if n.socketLimit && (s.receivers == nil || s.receivers.limit == 0) {
			continue
		}
		out = append(out, n)
	}
	return out
}

// DropPrivileges switches every thread of the process to uid and gid (and
// the supplementary groups), keeping of its capabilities only those the
// Set still needs (Needs), and sets no_new_privs. Call it after NewSet,
// which opens every socket, and before Run. It needs a program built
// without cgo (it returns an error naming CGO_ENABLED=0 otherwise, having
// changed nothing). On any other error the process must exit: its threads
// may be half changed.
func (s *Set) DropPrivileges(uid, gid int, groups []int) (kept Capabilities, err error) {
	kept = All(s.Needs())
	if err := privdrop.Drop(privdrop.User{UID: uid, GID: gid, Groups: groups}, kept); err != nil {
		return 0, err
	}
	return kept, nil
}

// TrimCapabilities keeps of every thread's capabilities only those the Set
// still needs (Needs), without changing users, and sets no_new_privs: for
// a bridge started without root, with the capabilities it needed to start.
// Like DropPrivileges it needs a program built without cgo, and on an
// error other than that one the process must exit.
func (s *Set) TrimCapabilities() (kept Capabilities, err error) {
	kept = All(s.Needs())
	if err := privdrop.Trim(kept); err != nil {
		return 0, err
	}
	return kept, nil
}
