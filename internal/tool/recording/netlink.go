package recording

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// recordNetlink records straight from the kernel: one netlink socket per
// family of the streams, no bridge. Each message's comment has its stream,
// group and the time it was read, and a per-stream count as its sequence
// number under epoch 0; an overrun is a note on every stream of the
// family.
func recordNetlink(ctx context.Context, cfg *RecordConfig, out *output, stats *RecordStats) error {
	sel := cfg.Streams
	if len(sel) == 0 {
		sel = streams.Default()
	}
	byFamily := map[uint16][]streams.Stream{}
	for _, s := range sel {
		switch s.Family {
		case streams.FamilyRoute, streams.FamilyUevent, streams.FamilyNetfilter:
			byFamily[s.Family] = append(byFamily[s.Family], s)
		default:
			return &ConfigError{"Streams", fmt.Sprintf("stream %s: recording straight from netlink takes rtnetlink, uevent and conntrack streams; record the others from a bridge (without --netlink)", s.Name)}
		}
	}
	var socks []*kernel.Socket
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	fams := slices.Sorted(func(yield func(uint16) bool) {
		for f := range byFamily {
			if !yield(f) {
				return
			}
		}
	})
	for _, f := range fams {
		kc := &kernel.Config{Family: int(f)}
		for _, s := range byFamily[f] {
			kc.Groups = append(kc.Groups, s.Group)
		}
		if f == streams.FamilyUevent {
			kc.Raw, kc.UserGroups = true, []uint32{2}
		}
		s, err := kernel.Open(kc)
		if err != nil {
			return fmt.Errorf("recording: netlink family %s: %w (recording straight from netlink needs root for conntrack; without --netlink, record from a bridge)", streams.FamilyName(f), err)
		}
		socks = append(socks, s)
	}
	if cfg.Ready != nil {
		cfg.Ready()
	}
	// When ctx ends, what the kernel queued already is still recorded.
	stop := context.AfterFunc(ctx, func() {
		for _, s := range socks {
			_ = s.SetReadDeadline(time.Now().Add(DrainTime))
		}
	})
	defer stop()

	var (
		mu    sync.Mutex // out, stats, seq
		seq   = map[string]uint64{}
		errs  = make(chan error, len(socks))
		wg    sync.WaitGroup
		ended = make(chan struct{})
		once  sync.Once
	)
	done := func() { once.Do(func() { close(ended) }) }
	write := func(family uint16, ms []kernel.Message, overrun bool) error {
		mu.Lock()
		defer mu.Unlock()
		if cfg.Count != 0 && stats.Events >= uint64(cfg.Count) {
			return nil
		}
		now := time.Now().UnixNano()
		if err := out.rotate(); err != nil {
			return err
		}
		if overrun {
			for _, s := range byFamily[family] {
				seq[s.Name]++
				m := Meta{Stream: s.Name, Kind: frame.KindOverrun, Group: s.Group, Seq: seq[s.Name], Time: now}
				stats.Notes++
				if err := out.w.WriteNote(now, m.Comment()); err != nil {
					return err
				}
			}
		}
		for i := range ms {
			msg := &ms[i]
			s, ok := streams.ByGroup(family, msg.Group)
			if !ok {
				continue
			}
			seq[s.Name]++
			m := Meta{Stream: s.Name, Kind: frame.KindEvent, Group: msg.Group, Seq: seq[s.Name], Time: now, NSID: msg.NSID}
			if msg.HasNSID {
				m.Flags |= frame.FlagNSID
			}
			if err := out.w.WriteMessage(family, now, msg.Data, m.Comment()); err != nil {
				return err
			}
			stats.Events++
			if cfg.Count != 0 && stats.Events >= uint64(cfg.Count) {
				done()
				break
			}
		}
		return out.flush()
	}
	for i, s := range socks {
		family := fams[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms := make([]kernel.Message, 2*kernel.DefaultBatch)
			for {
				n, err := s.ReadBatch(ms)
				overrun := errors.Is(err, kernel.ErrOverrun)
				if err != nil && !overrun {
					if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, unix.EBADF) {
						errs <- err
					}
					return
				}
				if err := write(family, ms[:n], overrun); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	go func() {
		select {
		case <-ended:
			for _, s := range socks {
				_ = s.SetReadDeadline(time.Now())
			}
		case <-ctx.Done():
		}
	}()
	wg.Wait()
	done()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
