package recording

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/ipv4"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/netlinkbridge"
	"github.com/nlmcast/nlmcast/streams"
)

// InjectKind is what an Injection makes happen.
type InjectKind uint8

// Kinds of injections.
const (
	// InjectNone is the zero InjectKind: not valid in an Injection.
	InjectNone InjectKind = iota
	// InjectGap drops the next Count event frames of Stream after the
	// bridge numbered them: receivers see a gap, as when datagrams are
	// lost.
	InjectGap
	// InjectOverrun makes Stream's family bridge read an overrun
	// (ENOBUFS) from its source: it sends an overrun frame on every
	// stream of the family, as after lost kernel events, and for
	// rtnetlink a resync of the tables as the replayed events left them.
	InjectOverrun
	// InjectRestart makes Stream's family bridge fail and recover, as it
	// does after an internal failure: a new, larger epoch, numbering from
	// 1, announced by a heartbeat numbered 0, with no goodbye
	// (PROTOCOL.md, Epochs). Its log says "injected restart".
	InjectRestart
	// InjectGoodbye stops Stream's family bridge cleanly (a goodbye on
	// each of its streams) and starts a new one: a new epoch, numbering
	// from 1, as when nlmcast bridge is restarted. As at the end of a
	// replay, the goodbye comes ReplayConfig.Linger after what the bridge
	// sent before it, whose socket stays open meanwhile.
	InjectGoodbye
	// InjectFragment sends the stream's last replayed message again,
	// padded past one datagram (with attributes of type 0, or for a uevent
	// a variable X_NLMCAST_PAD), so that the bridge sends it in fragments
	// (PROTOCOL.md, Fragments); receivers reassemble it. The stream must
	// have had a message replayed before.
	InjectFragment
)

// FragmentPad is how large InjectFragment makes a message, in bytes:
// more than a datagram holds.
const FragmentPad = 80000

var injectNames = map[string]InjectKind{"gap": InjectGap, "overrun": InjectOverrun, "restart": InjectRestart,
	"goodbye": InjectGoodbye, "fragment": InjectFragment}

func (k InjectKind) String() string {
	for n, v := range injectNames {
		if v == k {
			return n
		}
	}
	return "inject-" + strconv.Itoa(int(k))
}

// An Injection is a synthetic event made during a replay. The zero
// Injection is not valid: Kind and Stream are needed.
type Injection struct {
	Kind InjectKind
	// Stream is the name of the stream it applies to (for an overrun or
	// a restart, its family's bridge).
	Stream string
	// After makes it happen once this many recorded events were replayed.
	// Zero: before the first. Past the end of the recording: at the end.
	After uint64
	// Count is how many frames a gap drops; not negative, gaps only.
	// Zero: 1.
	Count int
}

func (in Injection) validate() error {
	switch {
	case in.Kind == InjectNone || in.Kind > InjectFragment:
		return fmt.Errorf("kind %d: want gap, overrun, restart, goodbye or fragment", in.Kind)
	case in.Stream == "":
		return fmt.Errorf("%s: name a stream", in.Kind)
	case in.Count < 0:
		return fmt.Errorf("%s: count %d must not be negative", in.Kind, in.Count)
	case in.Count > 0 && in.Kind != InjectGap:
		return fmt.Errorf("%s: count is for gaps only", in.Kind)
	}
	if _, err := streams.Resolve(in.Stream); err != nil {
		return err
	}
	return nil
}

// ParseInjection reads an injection written as KIND,stream=NAME[,after=N][,count=N],
// for example "gap,stream=link,after=10,count=3".
func ParseInjection(s string) (Injection, error) {
	parts := strings.Split(s, ",")
	var in Injection
	k, ok := injectNames[strings.TrimSpace(parts[0])]
	if !ok {
		return in, fmt.Errorf("injection %q: starts with gap, overrun, restart, goodbye or fragment (e.g. gap,stream=link,after=10,count=3)", s)
	}
	in.Kind = k
	for _, p := range parts[1:] {
		key, v, found := strings.Cut(strings.TrimSpace(p), "=")
		if !found {
			return in, fmt.Errorf("injection %q: %q is not KEY=VALUE", s, p)
		}
		var err error
		switch key {
		case "stream":
			in.Stream = v
		case "after":
			in.After, err = strconv.ParseUint(v, 10, 64)
		case "count":
			in.Count, err = strconv.Atoi(v)
		default:
			return in, fmt.Errorf("injection %q: unknown key %q (want stream, after, count)", s, key)
		}
		if err != nil {
			return in, fmt.Errorf("injection %q: %s: %w", s, key, err)
		}
	}
	if err := in.validate(); err != nil {
		return in, fmt.Errorf("injection %q: %w", s, err)
	}
	return in, nil
}

// ParseScript reads injections one a line, as ParseInjection takes them;
// blank lines and lines starting with # are skipped. Errors name the line.
func ParseScript(script string) ([]Injection, error) {
	var out []Injection
	for i, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		in, err := ParseInjection(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		out = append(out, in)
	}
	return out, nil
}

// injector makes the injections of a replay.
type injector struct {
	todo    []Injection // in order of After
	sink    *lockedSink
	sources map[uint16]*chanSource    // each family's bridge's, set by Replay
	restart func(family uint16) error // a clean restart of a family's bridge, set by Replay
	last    map[string][]byte         // the last message replayed on each stream, for fragments

	mu   sync.Mutex
	drop map[uint8]*dropping // by stream ID: gaps in progress
}

type dropping struct {
	left int
	seqs map[uint64]bool // the numbers dropped, in each encoding
}

func newInjector(in []Injection, sink *lockedSink) *injector {
	todo := append([]Injection(nil), in...)
	// Stable: injections at the same point keep their order.
	for i := 1; i < len(todo); i++ {
		for j := i; j > 0 && todo[j].After < todo[j-1].After; j-- {
			todo[j], todo[j-1] = todo[j-1], todo[j]
		}
	}
	return &injector{todo: todo, sink: sink, drop: map[uint8]*dropping{}, sources: map[uint16]*chanSource{}, last: map[string][]byte{}}
}

// before makes the injections due before the recorded item after done
// events.
func (j *injector) before(ctx context.Context, done uint64) error {
	for len(j.todo) > 0 && j.todo[0].After <= done {
		in := j.todo[0]
		j.todo = j.todo[1:]
		if err := j.make(ctx, in); err != nil {
			return err
		}
	}
	return nil
}

// after makes those left at the end of the recording.
func (j *injector) after(ctx context.Context) error {
	for len(j.todo) > 0 {
		in := j.todo[0]
		j.todo = j.todo[1:]
		if err := j.make(ctx, in); err != nil {
			return err
		}
	}
	return nil
}

func (j *injector) make(ctx context.Context, in Injection) error {
	// What was pushed before is forwarded first: a bridge takes a
	// message before it sends it.
	for _, src := range j.sources {
		src.drain(ctx)
	}
	ss, _ := streams.Resolve(in.Stream)
	for _, s := range ss {
		switch in.Kind {
		case InjectGap:
			j.mu.Lock()
			j.drop[s.ID] = &dropping{left: max(in.Count, 1), seqs: map[uint64]bool{}}
			j.mu.Unlock()
		case InjectOverrun:
			if err := j.sourceOf(s.Family).push(ctx, &Item{Stream: s, Overrun: true}); err != nil {
				return err
			}
		case InjectRestart:
			if err := j.sourceOf(s.Family).push(ctx, &Item{Stream: s, restart: true}); err != nil {
				return err
			}
		case InjectGoodbye:
			if err := j.restart(s.Family); err != nil {
				return err
			}
		case InjectFragment:
			msg := j.last[s.Name]
			if msg == nil {
				return fmt.Errorf("recording: --inject fragment,stream=%s: no message of %s was replayed before it: inject it later (after=N)", s.Name, s.Name)
			}
			if err := j.sourceOf(s.Family).push(ctx, &Item{Stream: s, Data: pad(s.Family, msg)}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (j *injector) sourceOf(f uint16) *chanSource { return j.sources[f] }

// seen keeps the last message of each stream, for fragments.
func (j *injector) seen(it *Item) {
	if it.Data != nil && j.wantsFragments() {
		j.last[it.Stream.Name] = append(j.last[it.Stream.Name][:0], it.Data...)
	}
}

func (j *injector) wantsFragments() bool {
	for _, in := range j.todo {
		if in.Kind == InjectFragment {
			return true
		}
	}
	return false
}

// pad returns msg made FragmentPad bytes long: netlink attributes of type
// 0 appended (and the header's length set), or for a uevent a variable.
func pad(family uint16, msg []byte) []byte {
	out := bytes.Clone(msg)
	if family == streams.FamilyUevent {
		out = append(out, "X_NLMCAST_PAD="...)
		out = append(out, bytes.Repeat([]byte{'x'}, max(0, FragmentPad-len(out)-1))...)
		return append(out, 0)
	}
	for len(out) < FragmentPad {
		n := min(FragmentPad-len(out), 0xfff0) &^ 3
		if n < 4 {
			break
		}
		attr := make([]byte, n)
		binary.NativeEndian.PutUint16(attr, uint16(n))
		out = append(out, attr...)
	}
	if len(out) >= 4 {
		binary.NativeEndian.PutUint32(out, uint32(len(out)))
	}
	return out
}

// sinkFor returns the sink of a family's bridge, which drops frames for
// gaps.
func (j *injector) sinkFor() netlinkbridge.Sink {
	return &familySink{j: j}
}

type familySink struct{ j *injector }

func (f *familySink) WriteBatch(ms []ipv4.Message) error {
	j := f.j
	j.mu.Lock()
	if len(j.drop) > 0 {
		kept := ms[:0:0]
		for _, m := range ms {
			if !j.dropped(m) {
				kept = append(kept, m)
			}
		}
		ms = kept
	}
	j.mu.Unlock()
	if len(ms) == 0 {
		return nil
	}
	return j.sink.WriteBatch(ms)
}

// dropped reports whether m is a frame a gap drops. j.mu is held.
func (j *injector) dropped(m ipv4.Message) bool {
	if len(m.Buffers) == 0 {
		return false
	}
	var hb []byte
	for _, b := range m.Buffers {
		hb = append(hb, b...)
		if len(hb) >= frame.HeaderLen {
			break
		}
	}
	if len(hb) < frame.HeaderLen || string(hb[:4]) != "NLMC" {
		return false
	}
	kind := frame.Kind(hb[5])
	if kind != frame.KindEvent && kind != frame.KindFragment {
		return false
	}
	family, group := uint16(hb[10])<<8|uint16(hb[11]), uint32(hb[12])<<24|uint32(hb[13])<<16|uint32(hb[14])<<8|uint32(hb[15])
	s, ok := streams.ByGroup(family, group)
	if !ok {
		return false
	}
	d := j.drop[s.ID]
	if d == nil {
		return false
	}
	var seq uint64
	for _, c := range hb[24:32] {
		seq = seq<<8 | uint64(c)
	}
	if d.seqs[seq] {
		return true // the frame in the other encoding, or another fragment
	}
	if d.left == 0 {
		delete(j.drop, s.ID)
		return false
	}
	d.left--
	d.seqs[seq] = true
	return true
}
