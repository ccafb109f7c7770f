package netlinkbridge

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/sys/privdrop"
	"github.com/nlmcast/nlmcast/streams"
)

// A Refusal is a stream whose netlink group the kernel would not let the
// bridge join, for lack of a capability: the stream is not bridged, and
// the bridge's other streams go on.
type Refusal struct {
	Stream streams.Stream
	Group  uint32 // the netlink group refused
	// Needs is the capability the bridge lacks: CAP_AUDIT_READ for audit,
	// CAP_NET_ADMIN for most groups; for a generic netlink group, which
	// the kernel may keep to CAP_NET_ADMIN or to CAP_SYS_ADMIN without
	// saying which, the one of the two the bridge does not have, or both
	// when Either.
	Needs Capabilities
	// Either is true when Needs holds two capabilities and either may be
	// the one missing. Zero: Needs is the one missing.
	Either bool
}

func (r Refusal) String() string {
	needs := r.Needs.String()
	if r.Either {
		needs = "one of " + needs + " (the kernel does not say which)"
	}
	return fmt.Sprintf("stream %s: the kernel refuses its group %d to this bridge, which lacks %s", r.Stream.Name, r.Group, needs)
}

// refusalNeeds says which capability a refused group of family needs.
func refusalNeeds(family uint16) (Capabilities, bool) {
	switch family {
	case streams.FamilyAudit:
		return CapAuditRead, false
	case streams.FamilyGeneric:
		if have, err := privdrop.Effective(); err == nil {
			switch {
			case have&CapNetAdmin != 0 && have&CapSysAdmin == 0:
				return CapSysAdmin, false
			case have&CapSysAdmin != 0 && have&CapNetAdmin == 0:
				return CapNetAdmin, false
			}
		}
		return CapNetAdmin | CapSysAdmin, true
	}
	return CapNetAdmin, false
}

// isRefused reports whether err is the kernel refusing a group join for
// lack of privilege.
func isRefused(err error) bool { return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) }

// refuse records that the kernel refused st's group g and logs it. New
// takes the stream out (drop); later, the stream stays, silent but for
// heartbeats, as one whose group is not registered.
func (b *Bridge) refuse(st *streamState, g uint32, drop bool) {
	needs, either := refusalNeeds(b.family)
	r := Refusal{Stream: st.stream, Group: g, Needs: needs, Either: either}
	b.refusedMu.Lock()
	b.refusals = append(b.refusals, r)
	b.refusedMu.Unlock()
	b.groupsRefused.Add(1)
	if int(g) < len(b.byGroup) {
		b.byGroup[g] = nil
	}
	if drop {
		b.streams = slices.DeleteFunc(b.streams, func(s *streamState) bool { return s == st })
	}
	b.log.Error("stream not bridged: the kernel refuses its netlink group to this process; the other streams go on",
		"stream", st.stream.Name, "group", g, "needs", r.Needs.String(), "either", r.Either, "refusal", r.String())
}

// Refused returns the streams whose group the kernel refused to let the
// bridge join, in the order refused; nil when none. It may be called from
// any goroutine.
func (b *Bridge) Refused() []Refusal {
	b.refusedMu.Lock()
	defer b.refusedMu.Unlock()
	return append([]Refusal(nil), b.refusals...)
}

// Refused returns the refusals of every bridge of the set.
func (s *Set) Refused() []Refusal {
	var out []Refusal
	for _, b := range s.bridges {
		out = append(out, b.Refused()...)
	}
	return out
}
