// Package bench measures nlmcast against direct netlink delivery, in a
// network namespace of its own: a generator makes address events as fast as
// the kernel takes them (or at a set rate), a direct netlink subscriber is
// the baseline, and R receivers in separate processes read the bridge's
// stream. It reports loss, added latency, the bridge's CPU time, memory and
// allocations per event, ip monitor on the same burst, and the raw ceiling
// of loopback multicast for the same R and datagram size.
package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/sys/procstat"
	"github.com/nlmcast/nlmcast/internal/tool/compare"
	"github.com/nlmcast/nlmcast/internal/tool/rtgen"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/netlinkbridge"
)

// Config configures a benchmark. Zero fields take the defaults below.
type Config struct {
	// Self is the nlmcast binary: the bridge and the receivers are its
	// subcommands. Zero: os.Executable.
	Self string
	// Receivers is the sweep of receiver counts. Zero: 1, 8, 32.
	Receivers []int
	// Events is the events generated per run. Zero: 100,000.
	Events int
	// Rate caps the generation rate (events/s). Zero: as fast as the
	// kernel takes them.
	Rate float64
	// Batch is the requests per sendmsg of the generator. Zero: 64.
	Batch int
	// LatencyRate and LatencyEvents set the latency run: one receiver,
	// events spread evenly. Zero: 5,000/s and 10,000. Negative
	// LatencyEvents: no latency run.
	LatencyRate   float64
	LatencyEvents int
	// Burst is the datagrams of the burst: sent one per message, as fast
	// as sendmmsg goes, to one receiver built on package mcast, which
	// loses what its buffer and its reading cannot keep up with. Zero:
	// 200,000. Negative: no burst.
	Burst int
	// NoIPMonitor skips the ip monitor run; NoCeiling the raw ceiling.
	NoIPMonitor bool
	NoCeiling   bool
	// ReceiverBuffer is each receiver's socket buffer. Zero: mcast's
	// default.
	ReceiverBuffer int
	// BridgeNice is the nice value the bridge runs at (under nice(1)), from
	// -20 (most favoured) to 19. Zero: the bench's own. A bridge feeding
	// many receivers on few CPUs needs a larger share of them than any
	// one receiver: the scheduler otherwise gives it the same.
	BridgeNice int
	// Ways is the receivers of the ways runs: a run through the bridge with
	// every way to speed on, then one with each of Ways turned off. Zero:
	// no ways runs.
	Ways int
	// Log receives a line per step. Nil: discarded.
	Log io.Writer
}

// CeilingGroup is where the raw ceiling is measured: outside the default
// stream map (239.255.78.0/23).
var CeilingGroup = netip.MustParseAddrPort("239.255.77.250:17990")

type bench struct {
	cfg  Config
	dir  string
	seq  uint32 // next request sequence number
	runs int    // bridge runs so far
	size int    // netlink message bytes of one event
}

// Run runs the benchmark. It must run as root in a network namespace of its
// own (see EnterNamespace): it brings lo up and starts processes there.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Self = self
	}
	if len(cfg.Receivers) == 0 {
		cfg.Receivers = []int{1, 8, 32}
	}
	if cfg.Events == 0 {
		cfg.Events = 100_000
	}
	if cfg.Batch == 0 {
		cfg.Batch = 64
	}
	if cfg.LatencyRate == 0 {
		cfg.LatencyRate = 5000
	}
	if cfg.LatencyEvents == 0 {
		cfg.LatencyEvents = 10_000
	}
	if cfg.Burst == 0 {
		cfg.Burst = 200_000
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Events < 1 || cfg.Rate < 0 || cfg.LatencyRate < 0 {
		return nil, fmt.Errorf("bench: events must be positive and rates not negative")
	}
	if cfg.BridgeNice < -20 || cfg.BridgeNice > 19 {
		return nil, fmt.Errorf("bench: bridge nice value %d: use -20 to 19", cfg.BridgeNice)
	}
	// Whole add-then-delete pairs of batches, so that every run leaves
	// lo as it found it and makes exactly the events counted.
	cfg.Events = roundUp(cfg.Events, 2*cfg.Batch)
	if cfg.LatencyEvents > 0 {
		cfg.LatencyEvents = roundUp(cfg.LatencyEvents, 2)
	}
	for _, r := range cfg.Receivers {
		if r < 1 || r > 256 {
			return nil, fmt.Errorf("bench: %d receivers: use 1 to 256", r)
		}
	}
	if cfg.Ways < 0 || cfg.Ways > 256 {
		return nil, fmt.Errorf("bench: ways runs with %d receivers: use 1 to 256 (0: no ways runs)", cfg.Ways)
	}
	if err := loopbackUp(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "nlmcast-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b := &bench{cfg: cfg, dir: dir, seq: 1 << 20}
	rep := &Report{Events: cfg.Events, CPUs: runtime.NumCPU(), Kernel: kernelRelease(), Batch: cfg.Batch, BridgeNice: cfg.BridgeNice}

	// Direct delivery and ip monitor first: the peak rate and the
	// message size, which the ceiling needs.
	b.logf("baseline: %d events, direct netlink subscriber%s", cfg.Events, map[bool]string{false: " and ip monitor", true: ""}[cfg.NoIPMonitor])
	base, err := b.baseline(ctx)
	if err != nil {
		return nil, err
	}
	rep.Baseline = base
	rep.DatagramBytes = frame.HeaderLen + b.size

	for _, r := range cfg.Receivers {
		var ceil *Ceiling
		rate := cfg.Rate
		if !cfg.NoCeiling {
			b.logf("raw ceiling: %d receivers, %d datagrams of %d bytes", r, cfg.Events, rep.DatagramBytes)
			if ceil, err = b.ceiling(ctx, r, rep.DatagramBytes); err != nil {
				return nil, err
			}
			// With more receivers than the host can feed at the kernel's
			// peak, generate at the rate the ceiling allows.
			if limit := 0.9 * ceil.Rate; limit < base.GenRate && (rate == 0 || rate > limit) {
				rate = limit
			}
		}
		b.logf("bridge: %d receivers, %d events at %s", r, cfg.Events, rateText(rate))
		run, err := b.bridgeRun(ctx, r, cfg.Events, rate, cfg.Batch, false, Way{})
		if err != nil {
			return nil, err
		}
		run.Ceiling = ceil
		if ceil != nil && ceil.Rate > 0 {
			run.CeilingRatio = run.Delivered / ceil.Rate
		}
		rep.Runs = append(rep.Runs, *run)
	}
	// The kernel's peak is the fastest generation seen: the baseline's
	// alone varies from run to run by a fifth.
	rep.PeakRate = base.GenRate
	for _, run := range rep.Runs {
		rep.PeakRate = max(rep.PeakRate, run.GenRate)
	}
	for i := range rep.Runs {
		if run := &rep.Runs[i]; run.Ceiling != nil && run.Ceiling.Rate > 0 {
			run.Limit = min(run.Ceiling.Rate, rep.PeakRate)
			run.LimitRatio = run.Delivered / run.Limit
		}
	}
	if cfg.Ways > 0 {
		if rep.Ways, err = b.ways(ctx, cfg.Ways); err != nil {
			return nil, err
		}
	}
	if cfg.LatencyEvents > 0 {
		b.logf("latency: 1 receiver, %d events at %s, one request per sendmsg", cfg.LatencyEvents, rateText(cfg.LatencyRate))
		run, err := b.bridgeRun(ctx, 1, cfg.LatencyEvents, cfg.LatencyRate, 1, true, Way{})
		if err != nil {
			return nil, err
		}
		rep.Latency = run
		b.logf("bare hop: %d datagrams at %s to a blocking recvfrom", cfg.LatencyEvents, rateText(cfg.LatencyRate))
		if rep.BareHop, err = b.hop(ctx, ModeBare, cfg.LatencyEvents, cfg.LatencyRate, rep.DatagramBytes); err != nil {
			return nil, err
		}
		b.logf("library hop: %d datagrams at %s to a receiver of package mcast", cfg.LatencyEvents, rateText(cfg.LatencyRate))
		if rep.LibraryHop, err = b.hop(ctx, ModeRaw, cfg.LatencyEvents, cfg.LatencyRate, rep.DatagramBytes); err != nil {
			return nil, err
		}
	}
	if cfg.Burst > 0 {
		b.logf("burst: %d datagrams, one per message, as fast as sendmmsg goes, to one receiver of package mcast", cfg.Burst)
		if rep.Burst, err = b.blast(ctx, 1, cfg.Burst, rep.DatagramBytes, false, "burst"); err != nil {
			return nil, err
		}
	}
	return rep, ctx.Err()
}

// hop measures one loopback multicast hop: datagrams of the bridge's size
// sent one per sendmsg at the latency run's rate, to a receiving process
// of a mode: ModeBare, a socket read with blocking recvfrom and nothing of
// nlmcast, or ModeRaw, package mcast. The bare hop is what this machine
// charges for any hop, the floor of what the bridge can add; the other,
// less the bare one, is what the receiving library adds.
func (b *bench) hop(ctx context.Context, mode string, n int, rt float64, size int) (*compare.Distribution, error) {
	cs, files, err := b.receivers(mode, 1, n, "hop-"+mode, CeilingGroup)
	if err != nil {
		return nil, err
	}
	snd, err := mcast.NewSender(&mcast.SenderConfig{EphemeralPort: true, NoSegmentation: true})
	if err != nil {
		cs[0].stop()
		return nil, err
	}
	defer snd.Close()
	buf := make([]byte, max(size, 4))
	ms := []ipv4Message{{Buffers: [][]byte{buf}, Addr: udpAddr(CeilingGroup)}}
	sent := make(map[uint32]int64, n)
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if d := time.Until(start.Add(time.Duration(float64(i) / rt * float64(time.Second)))); d > 0 {
			time.Sleep(d)
		}
		binary.BigEndian.PutUint32(buf, uint32(i))
		sent[uint32(i)] = procstat.Monotonic()
		if err := snd.WriteBatch(ms); err != nil {
			cs[0].stop()
			return nil, fmt.Errorf("bench: %s hop send: %w", mode, err)
		}
	}
	if _, err := finish(cs, 3*time.Second); err != nil {
		return nil, err
	}
	keys, _, err := readRecords(files[0])
	if err != nil {
		return nil, err
	}
	d := compare.Distribute(fromGen(keys, sent))
	return &d, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.cfg.Log, "bench: "+format+"\n", args...)
}

func rateText(r float64) string {
	if r == 0 {
		return "the kernel's peak rate"
	}
	return fmt.Sprintf("%.0f/s", r)
}

// recvArgs returns the command line of a receiving process, extra last.
func (b *bench) recvArgs(mode string, count int, out string, group netip.AddrPort, extra []string) []string {
	args := []string{b.cfg.Self, "bench-recv", "--mode", mode, "--count", strconv.Itoa(count), "--out", out}
	if mode == ModeRaw || mode == ModeBare {
		args = append(args, "--group", group.String())
	}
	if mode != ModeNetlink && b.cfg.ReceiverBuffer > 0 {
		args = append(args, "--read-buffer", strconv.Itoa(b.cfg.ReceiverBuffer))
	}
	return append(args, extra...)
}

// receivers starts n receiving processes of a mode, extra added to their
// flags.
func (b *bench) receivers(mode string, n, count int, tag string, group netip.AddrPort, extra ...string) ([]*child, []string, error) {
	var cs []*child
	var files []string
	for i := range n {
		out := filepath.Join(b.dir, fmt.Sprintf("%s-%s-%d.rec", tag, mode, i))
		c, err := spawn(fmt.Sprintf("%s receiver %d", mode, i), "ready", nil, b.recvArgs(mode, count, out, group, extra)...)
		if err != nil {
			stopAll(cs)
			return nil, nil, err
		}
		cs, files = append(cs, c), append(files, out)
	}
	return cs, files, nil
}

// finish waits for receivers to reach their count, gives stragglers grace
// after the first is done, stops them, and returns their results.
func finish(cs []*child, grace time.Duration) ([]RecvResult, error) {
	deadline := time.Now().Add(grace)
	res := make([]RecvResult, len(cs))
	for i, c := range cs {
		c.wait(time.Until(deadline))
		c.stop()
		if err := c.failed(); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(c.Stdout()), &res[i]); err != nil {
			return nil, fmt.Errorf("bench: %s printed %q: %w", c.name, c.Stdout(), err)
		}
	}
	return res, nil
}

// churn generates n events from the next sequence numbers. sent, if set,
// is called with each batch's first and last number just before it is sent.
func (b *bench) churn(ctx context.Context, n int, rate float64, batch int, sent func(first, last uint32)) (rtgen.ChurnResult, uint32, error) {
	first := b.seq
	b.seq += uint32(n) + 1000
	if n%(2*batch) != 0 {
		return rtgen.ChurnResult{}, 0, fmt.Errorf("bench: %d events is not a whole number of add-then-delete pairs of %d-request batches", n, batch)
	}
	res, err := rtgen.Churn(ctx, rtgen.ChurnConfig{Events: n, Rate: rate, Batch: batch, FirstSeq: first, Sending: sent})
	if err == nil && res.Failed > 0 {
		err = fmt.Errorf("bench: the kernel refused %d of %d requests", res.Failed, res.Requests)
	}
	return res, first, err
}

// Baseline is the run without the bridge: the generator, a direct netlink
// subscriber, and ip monitor on the same burst.
type Baseline struct {
	Generated int        `json:"generated"`
	GenRate   float64    `json:"generated_per_s"`
	Direct    PathResult `json:"direct"`
	IPMonitor *IPMonitor `json:"ip_monitor,omitempty"`
}

// PathResult is what one subscriber got.
type PathResult struct {
	Received    int                   `json:"received"`
	Lost        int                   `json:"lost"`
	Rate        float64               `json:"received_per_s"` // from its first event to its last
	Added       *compare.Distribution `json:"added_latency,omitempty"`
	SocketDrops uint64                `json:"socket_drops,omitempty"`
	Overruns    int                   `json:"overruns,omitempty"`
	// The receiving process's CPU time per event received, and events per
	// read call and per wake-up (how well its reads batch).
	CPUPerEventUS float64 `json:"cpu_us_per_event"`
	SysPerEventUS float64 `json:"system_cpu_us_per_event"`
	EventsPerRead float64 `json:"events_per_read"`
	EventsPerWake float64 `json:"events_per_wakeup"`
}

// costs fills the per-event CPU, events per read and per wake-up from a
// receiver's report.
func (p *PathResult) costs(res RecvResult) {
	if res.Received > 0 {
		p.CPUPerEventUS = float64(res.CPUNS) / 1e3 / float64(res.Received)
		p.SysPerEventUS = float64(res.SysNS) / 1e3 / float64(res.Received)
	}
	if res.Reads > 0 {
		p.EventsPerRead = float64(res.Received) / float64(res.Reads)
	}
	if res.Waits > 0 {
		p.EventsPerWake = float64(res.Received) / float64(res.Waits)
	}
}

// IPMonitor is what `ip -o monitor address` printed of the burst.
type IPMonitor struct {
	Received int     `json:"received"`
	Lost     int     `json:"lost"`
	Rate     float64 `json:"received_per_s"`
	LagMS    float64 `json:"lag_ms"` // its last line after the direct subscriber's last event
}

func (b *bench) baseline(ctx context.Context) (*Baseline, error) {
	n := b.cfg.Events
	direct, files, err := b.receivers(ModeNetlink, 1, n, "base", netip.AddrPort{})
	if err != nil {
		return nil, err
	}
	var ipm *child
	var mu sync.Mutex
	var lines int
	var lastLine int64
	if !b.cfg.NoIPMonitor {
		ipm, err = spawn("ip monitor", "", func([]byte) {
			mu.Lock()
			lines++
			lastLine = procstat.Monotonic()
			mu.Unlock()
		}, "ip", "-o", "monitor", "address")
		if err != nil {
			direct[0].stop()
			return nil, err
		}
		time.Sleep(200 * time.Millisecond) // ip monitor has subscribed
	}
	gen, first, err := b.churn(ctx, n, b.cfg.Rate, b.cfg.Batch, nil)
	if err != nil {
		direct[0].stop()
		if ipm != nil {
			ipm.stop()
		}
		return nil, err
	}
	res, err := finish(direct, 5*time.Second)
	if err != nil {
		return nil, err
	}
	base := &Baseline{Generated: gen.Requests, GenRate: gen.Rate()}
	keys, times, err := readRecords(files[0])
	if err != nil {
		return nil, err
	}
	got := countRange(keys, first, n)
	b.size = res[0].MsgBytes
	base.Direct = PathResult{Received: got, Lost: n - got, Rate: rate(times), Overruns: res[0].Overruns}
	if ipm != nil {
		// ip monitor prints as fast as it can; give it time to drain.
		last := -1
		for i := 0; i < 100; i++ {
			mu.Lock()
			l := lines
			mu.Unlock()
			if l >= n || l == last {
				break
			}
			last = l
			time.Sleep(100 * time.Millisecond)
		}
		ipm.stop()
		mu.Lock()
		defer mu.Unlock()
		im := &IPMonitor{Received: lines, Lost: n - lines}
		if len(times) > 0 && lines > 0 {
			im.LagMS = float64(lastLine-times[len(times)-1]) / 1e6
			if d := lastLine - times[0]; d > 0 {
				im.Rate = float64(lines) / (float64(d) / 1e9)
			}
		}
		base.IPMonitor = im
	}
	return base, nil
}

// Ceiling is loopback multicast's own rate for R receivers: plain
// datagrams of the bridge's size sent as fast as sendmmsg goes.
type Ceiling struct {
	Sent     int     `json:"sent"`
	SendRate float64 `json:"sent_per_s"`
	Rate     float64 `json:"delivered_per_s"` // the slowest receiver's
	Lost     int     `json:"lost"`            // by the receiver that lost most
	// Receivers' mean CPU time per datagram, datagrams per read and per
	// wake-up.
	ReceiverCPUPerEventUS float64 `json:"receiver_cpu_us_per_event"`
	EventsPerRead         float64 `json:"events_per_read"`
	EventsPerWake         float64 `json:"events_per_wakeup"`
}

func (b *bench) ceiling(ctx context.Context, r, size int) (*Ceiling, error) {
	return b.blast(ctx, r, b.cfg.Events, size, true, fmt.Sprintf("ceil%d", r))
}

// blast sends n datagrams of size bytes as fast as sendmmsg goes, 128 per
// call, to r receiving processes of package mcast: in runs of 128 as the
// bridge sends them (segmented), or one datagram per message.
func (b *bench) blast(ctx context.Context, r, n, size int, segmented bool, tag string) (*Ceiling, error) {
	cs, files, err := b.receivers(ModeRaw, r, n, tag, CeilingGroup)
	if err != nil {
		return nil, err
	}
	snd, err := mcast.NewSender(&mcast.SenderConfig{EphemeralPort: true, WriteBuffer: 4 << 20, NoSegmentation: !segmented})
	if err != nil {
		stopAll(cs)
		return nil, err
	}
	defer snd.Close()
	const batch = 128 // the longest run the bridge sends, and a sendmmsg's worth
	bufs := make([][]byte, batch)
	ms := make([]ipv4Message, batch)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	dst := udpAddr(CeilingGroup)
	start := time.Now()
	for sent := 0; sent < n && ctx.Err() == nil; {
		k := min(batch, n-sent)
		for i := range k {
			binary.BigEndian.PutUint32(bufs[i], uint32(sent+i))
			ms[i] = ipv4Message{Buffers: [][]byte{bufs[i]}, Addr: dst}
		}
		if err := snd.WriteBatch(ms[:k]); err != nil {
			stopAll(cs)
			return nil, fmt.Errorf("bench: %s send: %w", tag, err)
		}
		sent += k
	}
	elapsed := time.Since(start)
	res, err := finish(cs, 3*time.Second)
	if err != nil {
		return nil, err
	}
	c := &Ceiling{Sent: n, SendRate: float64(n) / elapsed.Seconds()}
	for i := range res {
		_, times, err := readRecords(files[i])
		if err != nil {
			return nil, err
		}
		rt := rate(times)
		if i == 0 || rt < c.Rate {
			c.Rate = rt
		}
		c.Lost = max(c.Lost, n-len(times))
		var p PathResult
		p.costs(res[i])
		c.ReceiverCPUPerEventUS += p.CPUPerEventUS / float64(len(res))
		c.EventsPerRead += p.EventsPerRead / float64(len(res))
		c.EventsPerWake += p.EventsPerWake / float64(len(res))
	}
	return c, nil
}

// Run is one run through the bridge with R receivers.
type RunResult struct {
	Receivers  int          `json:"receivers"`
	TargetRate float64      `json:"target_per_s,omitempty"` // zero: the kernel's peak
	Generated  int          `json:"generated"`
	GenRate    float64      `json:"generated_per_s"`
	Direct     PathResult   `json:"direct"`
	Bridge     []PathResult `json:"bridge_receivers"`
	// Summaries over the receivers: the most any lost, the latency added
	// over direct delivery for all their events pooled, and the slowest
	// one's rate.
	MaxLost   int                  `json:"max_lost"`
	Added     compare.Distribution `json:"added_latency"`
	Delivered float64              `json:"delivered_per_s"`
	// The bridge receivers' mean CPU time per event, events per read and
	// per wake-up.
	ReceiverCPUPerEventUS float64 `json:"receiver_cpu_us_per_event"`
	EventsPerRead         float64 `json:"receiver_events_per_read"`
	EventsPerWake         float64 `json:"receiver_events_per_wakeup"`
	// CoalescedShare is the share of their datagrams that arrived in
	// coalesced runs (UDP_GRO), averaged.
	CoalescedShare float64 `json:"receiver_coalesced_share"`
	// From generation (the request's sendmsg) to arrival: latency runs only.
	DirectFromGen *compare.Distribution `json:"direct_from_generation,omitempty"`
	BridgeFromGen *compare.Distribution `json:"bridge_from_generation,omitempty"`
	// The bridge process over the run.
	BridgeCPUPerEventUS float64 `json:"bridge_cpu_us_per_event"`
	BridgeSysPerEventUS float64 `json:"bridge_system_cpu_us_per_event"` // the kernel's share: netlink reads, multicast sends
	AllocsPerEvent      float64 `json:"bridge_allocs_per_event"`
	BridgeRSS           int64   `json:"bridge_peak_rss"`
	BridgeNice          int     `json:"bridge_nice"` // as the kernel had it during the run
	BridgeEvents        uint64  `json:"bridge_events"`
	// How the bridge worked: netlink messages per read (recvmmsg), the
	// share of datagrams sent in UDP_SEGMENT runs, and events not encoded
	// in JSON because no one had joined the JSON group.
	BridgeMessagesPerRead float64  `json:"bridge_messages_per_read"`
	BridgeSegmentedShare  float64  `json:"bridge_segmented_share"`
	BridgeJSONSkipped     uint64   `json:"bridge_json_skipped"`
	Ceiling               *Ceiling `json:"raw_ceiling,omitempty"`
	CeilingRatio          float64  `json:"delivered_ratio_of_ceiling,omitempty"`
	// Limit is the most the bridge could deliver: the lower of the raw
	// ceiling and the kernel's peak generation rate (Report.PeakRate).
	// LimitRatio is Delivered over it.
	Limit      float64 `json:"limit_per_s,omitempty"`
	LimitRatio float64 `json:"delivered_ratio_of_limit,omitempty"`

	directGen, bridgeGen []time.Duration // for the plot
}

// bridgeRun runs the bridge, a direct subscriber and r bridge receivers
// while n events are generated at rate rt (zero: the kernel's peak), batch
// requests per sendmsg; latency records when each request was sent. The
// flags of way w are added to the bridge's and the receivers'.
func (b *bench) bridgeRun(ctx context.Context, r, n int, rt float64, batch int, latency bool, w Way) (*RunResult, error) {
	b.runs++
	tag := fmt.Sprintf("run%d", b.runs) // names the run's files
	statsFile := filepath.Join(b.dir, "bridge-"+tag+".json")
	argv := []string{b.cfg.Self, "bridge", "--streams", "ipv4-ifaddr",
		"--encodings", "raw", "--requests=false", "--log-level", "info", "--stats", statsFile}
	argv = append(argv, w.bridge...)
	if b.cfg.BridgeNice != 0 {
		argv = append([]string{"nice", "-n", strconv.Itoa(b.cfg.BridgeNice)}, argv...)
	}
	br, err := spawn("bridge", "bridge ready", nil, argv...)
	if err != nil {
		return nil, err
	}
	defer br.stop()
	nice, err := br.nice()
	if err != nil {
		return nil, err
	}
	direct, dfiles, err := b.receivers(ModeNetlink, 1, n, tag, netip.AddrPort{})
	if err != nil {
		return nil, err
	}
	cs, files, err := b.receivers(ModeBridge, r, n, tag, netip.AddrPort{}, w.recv...)
	if err != nil {
		direct[0].stop()
		return nil, err
	}
	// Two snapshots back to back measure what taking one costs (it
	// allocates), to subtract it from the run's.
	calib, err := snapshot(br, statsFile, 1)
	if err != nil {
		return nil, err
	}
	before, err := snapshot(br, statsFile, 2)
	if err != nil {
		return nil, err
	}
	var genTimes map[uint32]int64
	var sent func(first, last uint32)
	if latency {
		genTimes = make(map[uint32]int64, n)
		sent = func(first, last uint32) {
			now := procstat.Monotonic()
			for s := first; s <= last; s++ {
				genTimes[s] = now
			}
		}
	}
	gen, first, err := b.churn(ctx, n, rt, batch, sent)
	if err != nil {
		return nil, err
	}
	dres, err := finish(direct, 10*time.Second)
	if err != nil {
		return nil, err
	}
	bres, err := finish(cs, 5*time.Second)
	if err != nil {
		return nil, err
	}
	after, err := snapshot(br, statsFile, 3)
	if err != nil {
		return nil, err
	}

	run := &RunResult{Receivers: r, TargetRate: rt, Generated: gen.Requests, GenRate: gen.Rate(), BridgeNice: nice}
	dkeys, dtimes, err := readRecords(dfiles[0])
	if err != nil {
		return nil, err
	}
	got := countRange(dkeys, first, n)
	run.Direct = PathResult{Received: got, Lost: n - got, Rate: rate(dtimes), Overruns: dres[0].Overruns}
	run.Direct.costs(dres[0])
	if latency {
		run.directGen = fromGen(dkeys, genTimes)
		d := compare.Distribute(append([]time.Duration(nil), run.directGen...))
		run.DirectFromGen = &d
	}
	var pooled []time.Duration
	for i, res := range bres {
		keys, times, err := readRecords(files[i])
		if err != nil {
			return nil, err
		}
		got := countRange(keys, first, n)
		var added []time.Duration
		for k, at := range keys {
			if dt, ok := dkeys[k]; ok {
				added = append(added, time.Duration(at-dt))
			}
		}
		pooled = append(pooled, added...)
		dist := compare.Distribute(added)
		pr := PathResult{Received: got, Lost: n - got, Rate: rate(times), Added: &dist, SocketDrops: res.SocketDrops}
		pr.costs(res)
		run.ReceiverCPUPerEventUS += pr.CPUPerEventUS / float64(len(bres))
		run.EventsPerRead += pr.EventsPerRead / float64(len(bres))
		run.EventsPerWake += pr.EventsPerWake / float64(len(bres))
		if res.Received > 0 {
			run.CoalescedShare += float64(res.Coalesced) / float64(res.Received) / float64(len(bres))
		}
		run.Bridge = append(run.Bridge, pr)
		run.MaxLost = max(run.MaxLost, pr.Lost)
		if i == 0 || pr.Rate < run.Delivered {
			run.Delivered = pr.Rate
		}
		if latency && i == 0 {
			run.bridgeGen = fromGen(keys, genTimes)
			d := compare.Distribute(append([]time.Duration(nil), run.bridgeGen...))
			run.BridgeFromGen = &d
		}
	}
	run.Added = compare.Distribute(pooled)
	ev := after.Bridge.Events - before.Bridge.Events
	run.BridgeEvents = ev
	if ev > 0 {
		run.BridgeCPUPerEventUS = float64(after.Process.CPU()-before.Process.CPU()) / 1e3 / float64(ev)
		run.BridgeSysPerEventUS = float64(after.Process.SystemNS-before.Process.SystemNS) / 1e3 / float64(ev)
		own := before.Process.Mallocs - calib.Process.Mallocs
		run.AllocsPerEvent = max(0, float64(after.Process.Mallocs-before.Process.Mallocs)-float64(own)) / float64(ev)
	}
	run.BridgeRSS = after.Process.MaxRSS
	if reads := after.Bridge.Source.Reads - before.Bridge.Source.Reads; reads > 0 {
		run.BridgeMessagesPerRead = float64(after.Bridge.Source.Messages-before.Bridge.Source.Messages) / float64(reads)
	}
	if sent := after.Sender.Sent - before.Sender.Sent; sent > 0 {
		run.BridgeSegmentedShare = float64(after.Sender.Segmented-before.Sender.Segmented) / float64(sent)
	}
	run.BridgeJSONSkipped = after.Bridge.JSONSkipped - before.Bridge.JSONSkipped
	return run, nil
}

// snapshot asks the bridge for its stats (SIGUSR1) and waits for snap
// number want.
func snapshot(br *child, file string, want int64) (netlinkbridge.StatsReport, error) {
	var s netlinkbridge.StatsReport
	if err := br.signal(syscall.SIGUSR1); err != nil {
		return s, err
	}
	for i := 0; i < 500; i++ {
		data, err := os.ReadFile(file)
		if err == nil && json.Unmarshal(data, &s) == nil && s.Snap >= want {
			return s, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s, fmt.Errorf("bench: the bridge wrote no stats to %s: %s", file, br.Stderr())
}

func roundUp(n, m int) int { return (n + m - 1) / m * m }

func countRange(keys map[uint32]int64, first uint32, n int) int {
	c := 0
	for k := range keys {
		if k-first < uint32(n) {
			c++
		}
	}
	return c
}

// rate is events per second from the first arrival to the last.
func rate(times []int64) float64 {
	if len(times) < 2 {
		return 0
	}
	lo, hi := times[0], times[0]
	for _, t := range times {
		lo, hi = min(lo, t), max(hi, t)
	}
	if hi == lo {
		return 0
	}
	return float64(len(times)-1) / (float64(hi-lo) / 1e9)
}

func fromGen(keys map[uint32]int64, gen map[uint32]int64) []time.Duration {
	var ds []time.Duration
	for k, at := range keys {
		if g, ok := gen[k]; ok {
			ds = append(ds, time.Duration(at-g))
		}
	}
	return ds
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return strings.TrimRight(string(u.Release[:]), "\x00")
}
