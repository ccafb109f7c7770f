package netlinkbridge

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/keys"
	"github.com/nlmcast/nlmcast/streams"
)

// A droppedStream is where a stream SetStreams dropped stopped: a stream
// added back in the same epoch goes on from its last number, so that no
// number of an epoch is sent twice on a group.
type droppedStream struct {
	epoch, seq uint64
}

// A reconfig is a change of streams for the loop to apply (SetStreams).
type reconfig struct {
	streams  []streams.Stream
	private  map[string]Access
	sealings map[string]*sealing // every key file of private, opened
	done     chan error
}

// A StreamsError reports the streams a running bridge could not take up
// (SetStreams): each name with why. The others were applied.
type StreamsError struct {
	Failed map[string]error
}

func (e *StreamsError) Error() string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(e.Failed)) {
		parts = append(parts, name+": "+e.Failed[name].Error())
	}
	return "netlinkbridge: streams not taken up: " + strings.Join(parts, "; ")
}

// SetStreams changes, while Run is running, the streams the bridge bridges
// and who may read them (Config.Streams and Config.Private), without a
// restart: the epoch and every other stream go on. The streams must be of
// the bridge's netlink family, and pass Validate as Config.Streams would.
// A stream dropped gets a goodbye frame with frame.FlagDropped (the
// stream ends, the bridge and its socket go on), and its group is left
// (unless the bridge watches it for itself). A stream added is joined,
// and its sequence numbers start at 1; a stream added back in the same
// epoch goes on from its goodbye's number instead, with an overrun (its
// events since were lost) and, if it resyncs, a resync. Joining a
// privileged group needs the capability still (a bridge that gave it up
// with --user cannot), and a
// stream that cannot be joined is reported in a *StreamsError while the
// others are applied. A stream whose entry in Private changed is sealed,
// or sent in the clear, from its next frame. A key file not opened before
// is opened now. The socket limit (MaxSocketsPerUID) keeps watching the
// ports of the streams given to New. It returns once the loop has applied
// the change, or an error changing nothing: a bad config, or Run not
// running.
func (b *Bridge) SetStreams(ss []streams.Stream, private map[string]Access) error {
	cfg := b.cfg
	cfg.Streams, cfg.Private = ss, private
	if err := cfg.validateBridge(); err != nil {
		return err
	}
	if len(ss) > 0 && ss[0].Family != b.family {
		return &ConfigError{Field: "Streams", Reason: fmt.Sprintf("stream %s is not of this bridge's netlink family (%s)", ss[0].Name, streams.FamilyName(b.family))}
	}
	pc, err := cfg.probed()
	if err != nil {
		return err
	}
	rc := &reconfig{streams: pc.Streams, private: private, sealings: map[string]*sealing{}, done: make(chan error, 1)}
	if len(rc.streams) == 0 {
		rc.streams = streams.Default()
	}
	b.sealMu.Lock()
	known := maps.Clone(b.sealings)
	b.sealMu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(private)) {
		f := private[name].KeyFile
		if f == "" || rc.sealings[f] != nil {
			continue
		}
		if sl := known[f]; sl != nil {
			rc.sealings[f] = sl
			continue
		}
		ks, err := keys.Open(f)
		if err != nil {
			return fmt.Errorf("netlinkbridge: private stream %s: %w", name, err)
		}
		rc.sealings[f] = newSealing(ks)
	}
	b.life.Lock()
	done := b.runDone
	b.life.Unlock()
	if done == nil {
		return errors.New("netlinkbridge: SetStreams: Run is not running")
	}
	b.reconfMu.Lock()
	defer b.reconfMu.Unlock()
	select {
	case b.reconf <- rc:
	case <-done:
		return ErrClosed
	}
	b.wake()
	select {
	case err := <-rc.done:
		return err
	case <-done:
		return ErrClosed
	}
}

// applyStreams applies a SetStreams change on the loop.
func (b *Bridge) applyStreams(rc *reconfig, now time.Time) error {
	b.out.flush() // what is gathered goes out under the streams it was made for
	want := map[string]streams.Stream{}
	for _, s := range rc.streams {
		want[s.Name] = s
	}
	cfg := b.cfg
	cfg.Streams, cfg.Private = rc.streams, rc.private
	// New key files first: a stream may need one.
	b.sealMu.Lock()
	for f, sl := range rc.sealings {
		if b.sealings[f] == nil {
			b.sealings[f] = sl
			b.out.sealings = append(b.out.sealings, sl)
		}
	}
	b.sealMu.Unlock()
	failed := map[string]error{}
	j, canJoin := b.src.(joiner)
	var kept []*streamState
	for _, st := range b.streams {
		if _, ok := want[st.stream.Name]; ok {
			kept = append(kept, st)
			continue
		}
		// Dropped: say goodbye on it, and stop listening. The goodbye
		// says that the bridge goes on: its socket is not closing
		// (frame.FlagDropped).
		b.controlFlags(st, frame.KindGoodbye, frame.FlagDropped, now)
		if b.dropped == nil {
			b.dropped = map[string]droppedStream{}
		}
		b.dropped[st.stream.Name] = droppedStream{epoch: b.epoch, seq: st.seq}
		if g := st.stream.Group; g != 0 {
			b.byGroup[g] = nil
			if canJoin && !b.fam.watches(b, g) {
				_ = j.Leave(g)
			}
		}
		if b.cur != nil && b.cur.st == st {
			b.cur = nil // its answer ends here: the requester sees it incomplete
		}
		b.log.Info("stream dropped", "stream", st.stream.Name)
	}
	var back []*streamState // streams added back in this epoch
	have := map[string]*streamState{}
	for _, st := range kept {
		have[st.stream.Name] = st
	}
	for _, s := range rc.streams {
		if have[s.Name] != nil {
			continue
		}
		if s.Group != 0 && b.byGroup[s.Group] == nil && !b.fam.watches(b, s.Group) {
			if !canJoin {
				failed[s.Name] = errors.New("the source cannot join groups")
				continue
			}
			if err := j.Join(s.Group); err != nil {
				failed[s.Name] = fmt.Errorf("joining netlink group %d: %w", s.Group, err)
				continue
			}
		}
		st := b.newStream(s)
		if s.Group != 0 {
			b.byGroup[s.Group] = st
		}
		st.last = now
		have[s.Name] = st
		kept = append(kept, st)
		if d, ok := b.dropped[s.Name]; ok && d.epoch == b.epoch {
			// Added back: its numbers go on, and its events since
			// it was dropped are lost (an overrun; a resync follows).
			st.seq = d.seq
			back = append(back, st)
		}
		delete(b.dropped, s.Name)
		b.log.Info("stream added", "stream", s.Name)
	}
	// Who may read each stream, now.
	for _, st := range kept {
		a, ok := cfg.access(st.stream)
		if !ok { // a generic netlink stream found private later, with no entry: not joined then
			continue
		}
		if err := b.setAccess(st, a); err != nil {
			failed[st.stream.Name] = err
		}
	}
	// In catalog order, as New keeps them.
	order := map[string]int{}
	for i, s := range streams.All() {
		order[s.Name] = i
	}
	slices.SortStableFunc(kept, func(x, y *streamState) int { return order[x.stream.Name] - order[y.stream.Name] })
	b.streams = kept
	b.resyncable = [4]uint64{}
	for _, st := range kept {
		if st.stream.Resync && st.stream.Group != 0 {
			b.resyncable.Add(st.stream.Group)
		}
	}
	for i := range b.pending {
		b.pending[i] &= b.resyncable[i]
	}
	for _, st := range back {
		summary := readdedSummary + "; a resync follows"
		if !b.resynced(st) {
			summary = readdedSummary
		}
		b.controlSaying(st, frame.KindOverrun, 0, summary, now) // under its access, set above
		if st.stream.Resync && st.stream.Group != 0 {
			b.pending.Add(st.stream.Group)
		}
	}
	b.cfg.Streams, b.cfg.Private = rc.streams, rc.private
	if d, ok := b.fam.(*genlDriver); ok {
		d.setup(&b.cfg)
	}
	b.publishStreams()
	b.out.flush()
	if len(failed) > 0 {
		return &StreamsError{Failed: failed}
	}
	return nil
}

// SetStreams changes the streams of a running Set and who may read them,
// as Bridge.SetStreams does for each of its bridges (Config.Private's
// entries go to the bridge of each stream, "*" to all). Streams of a
// netlink family the Set does not bridge need a restart: they are refused
// with a *ConfigError, changing nothing; so is dropping every stream of a
// family. Errors of the bridges are joined.
func (s *Set) SetStreams(ss []streams.Stream, private map[string]Access) error {
	if len(ss) == 0 {
		ss = streams.Default()
	}
	byFamily := map[uint16][]streams.Stream{}
	for _, st := range ss {
		byFamily[st.Family] = append(byFamily[st.Family], st)
	}
	have := map[uint16]bool{}
	for _, b := range s.bridges {
		have[b.family] = true
		if len(byFamily[b.family]) == 0 {
			return &ConfigError{Field: "Streams", Reason: fmt.Sprintf("no stream of netlink family %s is left: stopping a family's bridge needs a restart", streams.FamilyName(b.family))}
		}
	}
	for f, fs := range byFamily {
		if !have[f] {
			return &ConfigError{Field: "Streams", Value: fs[0].Name, Reason: fmt.Sprintf("is of netlink family %s, which this bridge does not read: a new family needs a restart", streams.FamilyName(f))}
		}
	}
	var errs []error
	for _, b := range s.bridges {
		if err := b.SetStreams(byFamily[b.family], privateOf(private, byFamily[b.family])); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
