package recording

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nlmcast/nlmcast/capture"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// RecordConfig configures Record. The zero RecordConfig is not usable:
// Output is needed.
type RecordConfig struct {
	// Netlink records straight from the kernel, with no bridge: one netlink
	// socket per family of Streams (rtnetlink, uevent and conntrack
	// streams only; conntrack needs CAP_NET_ADMIN), and Receiver is not
	// used. Zero: what a receiver gets from the groups.
	Netlink bool
	// Streams are the streams to record with Netlink. Zero: every
	// rtnetlink stream.
	Streams []streams.Stream
	// Receiver configures the receiver the events come from; its Encoding
	// is set to streams.Raw, the encoding a recording keeps. Nil: every
	// default (every rtnetlink stream from the default bridge).
	Receiver *receiver.Config
	// Output is the file to write (mode 0600: a recording of a private
	// stream holds its events in the clear). With MaxBytes or MaxAge,
	// later files are Output.1, Output.2, and so on.
	Output string
	// MaxBytes starts a new file once one holds this many bytes or more;
	// not negative. Zero: one file, however large.
	MaxBytes int64
	// MaxAge starts a new file once one is this old, when the next
	// events come; not negative. Zero: files are not started by age.
	MaxAge time.Duration
	// MaxFiles keeps only this many files, removing the oldest; not
	// negative, and only with MaxBytes or MaxAge. Zero: every file is
	// kept.
	MaxFiles int
	// Count stops after this many events (frames of kind event); not
	// negative. Zero: until the context ends.
	Count int
	// Heartbeats records heartbeat frames too. Zero: they are left out.
	Heartbeats bool
	// Ready is called once the receiver has joined every group. Nil: none.
	Ready func()
	// Logger receives the receiver's warnings and file rotations. Nil:
	// slog.Default().
	Logger *slog.Logger
}

// RecordStats counts what Record wrote.
type RecordStats struct {
	Events  uint64 // event frames (netlink messages)
	Notes   uint64 // control frames and notices
	Files   int    // files written
	Written int64  // bytes in every file
}

// DrainTime is how long Record goes on reading once its context ended,
// so that what the kernel queued for it before is recorded too.
const DrainTime = 100 * time.Millisecond

// App names nlmcast in a capture's section header.
const App = "nlmcast"

// output is the file being written, rotated by size.
type output struct {
	cfg    *RecordConfig
	f      *os.File
	bw     *bufio.Writer
	w      *capture.Writer
	index  int // of the current file: 0 is Output, n is Output.n
	stats  *RecordStats
	opened time.Time        // when the current file was started
	now    func() time.Time // nil: time.Now (tests set it)
}

func (o *output) clock() time.Time {
	if o.now != nil {
		return o.now()
	}
	return time.Now()
}

func fileName(base string, i int) string {
	if i == 0 {
		return base
	}
	return fmt.Sprintf("%s.%d", base, i)
}

func (o *output) open() error {
	name := fileName(o.cfg.Output, o.index)
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("recording: %w (choose a file you may write with -o)", err)
	}
	o.f, o.bw = f, bufio.NewWriterSize(f, 256<<10)
	if o.w, err = capture.NewWriter(o.bw, App); err == nil {
		err = o.bw.Flush() // a file with its header, even before any event
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("recording: %w", err)
	}
	o.stats.Files++
	o.opened = o.clock()
	if m := o.cfg.MaxFiles; m > 0 && o.index >= m {
		_ = os.Remove(fileName(o.cfg.Output, o.index-m))
	}
	return nil
}

// flush writes what is buffered, so that the file holds whole blocks.
func (o *output) flush() error { return o.bw.Flush() }

func (o *output) close() error {
	if o.f == nil {
		return nil
	}
	err := o.bw.Flush()
	o.stats.Written += o.w.Written()
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	o.f = nil
	return err
}

// rotate starts the next file when the current one is full, before a
// batch is written.
func (o *output) rotate() error {
	full := o.cfg.MaxBytes > 0 && o.w.Written() >= o.cfg.MaxBytes
	old := o.cfg.MaxAge > 0 && o.clock().Sub(o.opened) >= o.cfg.MaxAge
	if !full && !old {
		return nil
	}
	if err := o.close(); err != nil {
		return err
	}
	o.index++
	return o.open()
}

// Record writes what arrives on the configured streams to a pcapng file
// until ctx ends or Count events came, then closes the file whole. Event
// frames are LINKTYPE_NETLINK packets (capture.Writer.WriteMessage) at the
// bridge's time; control frames and the receiver's notices are notes
// (WriteNote); every packet's comment is its Meta.
func Record(ctx context.Context, cfg *RecordConfig) (RecordStats, error) {
	var stats RecordStats
	if err := cfg.Validate(); err != nil {
		return stats, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Netlink {
		out := &output{cfg: cfg, stats: &stats}
		if err := out.open(); err != nil {
			return stats, err
		}
		err := recordNetlink(ctx, cfg, out, &stats)
		if cerr := out.close(); err == nil {
			err = cerr
		}
		return stats, err
	}
	rc := receiver.Config{}
	if cfg.Receiver != nil {
		rc = *cfg.Receiver
	}
	rc.Encoding = streams.Raw
	r, err := receiver.New(&rc)
	if err != nil {
		return stats, err
	}
	defer r.Close()
	for _, w := range r.Warnings() {
		log.Warn(w)
	}
	// When ctx ends, what is queued already is still recorded: reading
	// goes on for DrainTime.
	stop := context.AfterFunc(ctx, func() { _ = r.SetReadDeadline(time.Now().Add(DrainTime)) })
	defer stop()

	out := &output{cfg: cfg, stats: &stats}
	if err := out.open(); err != nil {
		return stats, err
	}
	defer out.close()
	if cfg.Ready != nil {
		cfg.Ready()
	}
	evs := make([]receiver.Event, mcast.DefaultBatch)
	for cfg.Count == 0 || stats.Events < uint64(cfg.Count) {
		n, err := r.ReadBatch(evs)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			return stats, err
		}

		if err := out.rotate(); err != nil {
			return stats, err
		}
		for i := range evs[:n] {
			if err := out.put(&evs[i]); err != nil {
				return stats, err
			}
			if cfg.Count != 0 && stats.Events >= uint64(cfg.Count) {
				break
			}
		}
		if err := out.flush(); err != nil {
			return stats, fmt.Errorf("recording: %w", err)
		}
	}
	if st := r.Stats(); st.Unattested+st.Malformed+st.Rejected+st.Mcast.KernelDrops+st.Unauthenticated+st.BadTag+st.NotSealed+st.BadSeal > 0 {
		log.Warn("frames not recorded", "unattested", st.Unattested, "malformed", st.Malformed, "rejected", st.Rejected,
			"socket_drops", st.Mcast.KernelDrops, "unauthenticated", st.Unauthenticated+st.UnknownKey+st.BadTag, "not_opened", st.NotSealed+st.BadSeal)
	}
	return stats, out.close()
}

// put writes one event or notice.
func (o *output) put(ev *receiver.Event) error {
	if ev.IsNotice() {
		n := ev.Notice
		m := Meta{Stream: ev.Stream.Name, Notice: n.Kind.String(), Epoch: n.Epoch, Count: n.Count, From: n.From, PrevEpoch: n.PrevEpoch}
		o.stats.Notes++
		return o.w.WriteNote(time.Now().UnixNano(), m.Comment())
	}
	h := &ev.Header
	if h.Kind == frame.KindHeartbeat && !o.cfg.Heartbeats {
		return nil
	}
	m := Meta{Stream: ev.Stream.Name, Kind: h.Kind, Flags: h.Flags, Group: h.Group, Epoch: h.Epoch, Seq: h.Seq, Time: h.Time, NSID: h.NSID}
	if h.Kind == frame.KindEvent {
		o.stats.Events++
		return o.w.WriteMessage(h.Family, h.Time, ev.Payload, m.Comment())
	}
	o.stats.Notes++
	return o.w.WriteNote(h.Time, m.Comment())
}

// A ConfigError reports a field of a RecordConfig or ReplayConfig that
// breaks a rule.
type ConfigError struct {
	Field  string // the field's name, such as "MaxFiles"
	Reason string // what is wrong
}

func (e *ConfigError) Error() string { return "recording: " + e.Field + ": " + e.Reason }

// Validate reports the first rule c breaks, as a *ConfigError, or an error
// of its receiver config.
func (c *RecordConfig) Validate() error {
	switch {
	case c.Output == "":
		return &ConfigError{"Output", "the file to write is needed"}
	case c.MaxBytes < 0:
		return &ConfigError{"MaxBytes", "must not be negative"}
	case c.MaxFiles < 0:
		return &ConfigError{"MaxFiles", "must not be negative"}
	case c.MaxAge < 0:
		return &ConfigError{"MaxAge", "must not be negative"}
	case c.MaxFiles > 0 && c.MaxBytes == 0 && c.MaxAge == 0:
		return &ConfigError{"MaxFiles", "needs MaxBytes or MaxAge: files are started by size or age"}
	case c.Count < 0:
		return &ConfigError{"Count", "must not be negative"}
	}
	return nil
}
