package netlinkbridge

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// genlDriver resolves FAMILY:GROUP streams to the group numbers the kernel
// assigned, and keeps them resolved: it watches nlctrl, joins a group when
// its family registers (a module loaded) and reports one that goes away.
type genlDriver struct {
	names map[uint16]string // family id to name, for decoding
	// probe and cfg decide whether a group that appears is joined, and
	// sealed (Config.GenlProbe, Config.Private).
	probe func(netns int, ss []streams.Stream) (map[string]kernel.Access, error)
	cfg   *Config
}

// setup keeps what the driver needs of cfg (newBridge, before open).
func (d *genlDriver) setup(cfg *Config) {
	d.probe, d.cfg = cfg.GenlProbe, cfg
	if d.probe == nil {
		d.probe = kernel.ProbeGenl
	}
}

func newGenlDriver() *genlDriver { return &genlDriver{names: map[uint16]string{}} }

// joiner is a source whose group memberships change while it runs.
type joiner interface {
	Join(group uint32) error
	Leave(group uint32) error
}

func (d *genlDriver) open(b *Bridge, cfg *Config) (Source, error) {
	fams, err := kernel.GenlFamilies(cfg.NetNS)
	if err != nil {
		return nil, err
	}
	for _, f := range fams {
		d.names[f.ID] = f.Name
		for _, g := range f.Groups {
			d.bind(b, f.Name, g.Name, g.ID)
		}
	}
	for _, st := range b.streams {
		if st.stream.Group == 0 {
			b.log.Warn("generic netlink group not registered in this kernel now; it is joined when it appears",
				"stream", st.stream.Name)
		}
	}
	src, err := kernel.Open(kernelConfig(b, cfg, unix.NETLINK_GENERIC))
	if err != nil {
		return nil, fmt.Errorf("generic netlink: %w", err)
	}
	return src, nil
}

// bind maps a registered group to the stream that wants it, if any and if
// not mapped yet, and returns that stream (nil: none).
func (d *genlDriver) bind(b *Bridge, family, group string, id uint32) *streamState {
	for _, st := range b.streams {
		s := &st.stream
		if s.GenlFamily != family || s.GenlGroup != group || s.Group == id {
			continue
		}
		if id == 0 || id >= uint32(len(b.byGroup)) {
			b.log.Error("generic netlink group number out of range; stream not bridged", "stream", s.Name, "group", id)
			return nil
		}
		s.Group = id
		b.byGroup[id] = st
		return st
	}
	return nil
}

// refuses reports whether the group of st, which has just appeared, is
// one the kernel lets only privileged sockets join while the operator did
// not say who may read it (Config.Private): the bridge (which holds the
// privilege) must not join it. A group it may join that turns out
// privileged is sealed from now on if its entry says so. A probe that
// cannot tell leaves the decision to Stream.Privileged, which
// Config.Validate checked already.
func (d *genlDriver) refuses(b *Bridge, st *streamState) bool {
	if _, named := d.cfg.Private[st.stream.Name]; named {
		return false // its entry applies, private or not (newBridge)
	}
	if !st.stream.Privileged {
		s := st.stream
		got, err := d.probe(d.cfg.NetNS, []streams.Stream{s})
		if err != nil {
			b.log.Warn("cannot probe whether a generic netlink group that appeared needs privilege; nlmcast's catalog decides",
				"stream", s.Name, "err", err)
			return false
		}
		if got[s.Name] != kernel.AccessPrivileged {
			return false
		}
		st.stream.Privileged = true
	}
	a, ok := d.cfg.access(st.stream)
	if !ok {
		return true
	}
	if err := b.setAccess(st, a); err != nil {
		b.log.Error("cannot open the key file of a private stream; not joined", "stream", st.stream.Name, "err", err)
		return true
	}
	return false
}

// unbind forgets the groups of a family (all of them when group is "").
func (d *genlDriver) unbind(b *Bridge, family, group string) {
	for _, st := range b.streams {
		s := &st.stream
		if s.GenlFamily != family || (group != "" && s.GenlGroup != group) || s.Group == 0 {
			continue
		}
		if j, ok := b.src.(joiner); ok {
			_ = j.Leave(s.Group) // the kernel has dropped it already
		}
		b.byGroup[s.Group] = nil
		b.log.Warn("generic netlink group went away; its stream is silent until it registers again",
			"stream", s.Name, "group", s.Group)
		s.Group = 0
		b.genlGone.Add(1)
	}
}

func (d *genlDriver) watches(_ *Bridge, g uint32) bool { return g == decode.CtrlGroup }

// observe follows nlctrl's announcements.
func (d *genlDriver) observe(b *Bridge, m *kernel.Message) {
	if m.Group != decode.CtrlGroup {
		return
	}
	n, ok := decode.ParseCtrl(m.Data)
	if !ok {
		return
	}
	switch n.Cmd {
	case decode.CtrlCmdNewFamily, decode.CtrlCmdNewMcastGrp:
		d.names[n.ID] = n.Name
		for _, g := range n.Groups {
			st := d.bind(b, n.Name, g.Name, g.ID)
			if st == nil {
				continue
			}
			if d.refuses(b, st) {
				b.byGroup[g.ID] = nil
				st.stream.Group = 0
				b.genlRefused.Add(1)
				b.log.Error("generic netlink group appeared that this kernel lets only privileged sockets join; not joined, since bridging it "+
					"would let every local user read it: give it a key file (bridge --expose STREAM=KEYFILE, or all=KEYFILE)", "stream", st.stream.Name, "group", g.ID)
				continue
			}
			if j, ok := b.src.(joiner); ok {
				if err := j.Join(g.ID); err != nil {
					if isRefused(err) {
						b.refuse(st, g.ID, false)
						st.stream.Group = 0
						continue
					}
					b.log.Error("cannot join generic netlink group that appeared", "stream", n.Name+":"+g.Name, "err", err)
					continue
				}
			}
			b.genlJoined.Add(1)
			b.log.Info("generic netlink group appeared; joined", "stream", n.Name+":"+g.Name, "group", g.ID)
		}
	case decode.CtrlCmdDelFamily:
		delete(d.names, n.ID)
		d.unbind(b, n.Name, "")
	case decode.CtrlCmdDelMcastGrp:
		for _, g := range n.Groups {
			d.unbind(b, n.Name, g.Name)
		}
	}
}

func (d *genlDriver) decode(_ *Bridge, m *kernel.Message) decode.Result {
	return decode.Genl(m.Data, d.names)
}
