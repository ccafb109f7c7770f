package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/sys/procstat"
	"github.com/nlmcast/nlmcast/internal/tool/compare"
	"github.com/nlmcast/nlmcast/netlinkbridge"
)

// RunResult is one run through the bridge with R receivers.
type RunResult struct {
	Receivers  int          `json:"receivers"`
	TargetRate float64      `json:"target_per_s,omitempty"` // zero: the kernel's peak
	Generated  int          `json:"generated"`
	GenRate    float64      `json:"generated_per_s"`
	Direct     PathResult   `json:"direct"`
	Bridge     []PathResult `json:"bridge_receivers"`
	// JSONReceiver is the receiver of the stream's JSON group, in runs
	// that have one (the latency rows with JSON on); it is in none of the
	// summaries over the raw receivers below.
	JSONReceiver *PathResult `json:"json_receiver,omitempty"`
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
	// From generation (the request's sendmsg) to arrival, the bridge's
	// receivers pooled: latency runs only.
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
	BridgeMessagesPerRead float64 `json:"bridge_messages_per_read"`
	BridgeSegmentedShare  float64 `json:"bridge_segmented_share"`
	BridgeJSONSkipped     uint64  `json:"bridge_json_skipped"`
	// Scrapes counts the scrapes of the bridge's metrics during the run
	// (the Metrics way); zero otherwise.
	Scrapes int `json:"scrapes,omitempty"`
	// What slow sends cost: netlink overruns of the bridge, datagrams its
	// relay dropped (Config.HandoffAfter), and sockets it detached for its
	// per-user limit (since it started).
	BridgeOverruns       uint64   `json:"bridge_overruns"`
	BridgeHandoffDropped uint64   `json:"bridge_handoff_dropped"`
	BridgeDetached       uint64   `json:"bridge_detached"`
	Ceiling              *Ceiling `json:"raw_ceiling,omitempty"`
	CeilingRatio         float64  `json:"delivered_ratio_of_ceiling,omitempty"`
	// Limit is the most the bridge could deliver: the lower of the raw
	// ceiling and the kernel's peak generation rate (Report.PeakRate).
	// LimitRatio is Delivered over it.
	Limit      float64 `json:"limit_per_s,omitempty"`
	LimitRatio float64 `json:"delivered_ratio_of_limit,omitempty"`
	// PathCPUPerGeneratedUS is the CPU time of the process that carried the
	// events, bridge or relay, per generated event, from just before the
	// first request to the last one's acknowledgement (its process CPU
	// clock): idle work included, what the path costs at the run's rate.
	// The last event's relaying may fall outside, a few microseconds of a
	// run's hundreds of events. Latency runs only.
	PathCPUPerGeneratedUS float64 `json:"path_cpu_us_per_generated,omitempty"`

	directGen, bridgeGen []time.Duration // for the plot and the latency rows
	added                []time.Duration // every receiver's added latencies, pooled
	jsonAdded            []time.Duration // the JSON receiver's, apart
}

// bridgeArgs returns the bridge's command line for a run that writes its
// stats to statsFile, with the flags of way w.
func (b *bench) bridgeArgs(statsFile string, w Way) []string {
	argv := []string{b.cfg.Self, "bridge", "--log-level", "info", "--stats", statsFile}
	if !w.defaults {
		argv = append(argv, "--streams", "ipv4-ifaddr", "--encodings", "raw", "--requests=false")
	}
	argv = append(argv, w.bridge...)
	if b.cfg.NoSocketLimit {
		argv = append(argv, "--max-sockets-per-uid", "0")
	}
	if b.cfg.NoHandoff {
		argv = append(argv, "--handoff-after", "0")
	}
	if b.cfg.BridgeNice != 0 {
		argv = append([]string{"nice", "-n", strconv.Itoa(b.cfg.BridgeNice)}, argv...)
	}
	return argv
}

// bridgeRun runs the bridge, a direct subscriber and r bridge receivers
// while n events are generated at rate rt (zero: the kernel's peak), batch
// requests per sendmsg; latency records when each request was sent. The
// flags of way w are added to the bridge's and the receivers'.
func (b *bench) bridgeRun(ctx context.Context, r, n int, rt float64, batch int, latency bool, w Way) (*RunResult, error) {
	b.runs++
	tag := fmt.Sprintf("run%d", b.runs) // names the run's files
	statsFile := filepath.Join(b.dir, "bridge-"+tag+".json")
	stats, err := watchStats(statsFile)
	if err != nil {
		return nil, err
	}
	defer stats.close()
	g := &group{}
	defer g.close()
	br, err := g.start(ctx, spec{name: "bridge", argv: b.bridgeArgs(statsFile, w), notify: true})
	if err != nil {
		return nil, err
	}
	nice, err := br.nice()
	if err != nil {
		return nil, err
	}
	direct, dfiles, err := b.receivers(ctx, g, ModeNetlink, 1, n, tag, netip.AddrPort{})
	if err != nil {
		return nil, err
	}
	cs, files, err := b.receivers(ctx, g, ModeBridge, r, n, tag, netip.AddrPort{}, w.recv...)
	if err != nil {
		return nil, err
	}
	var snaps int64
	snapshot := func() (netlinkbridge.StatsReport, error) {
		snaps++
		return stats.snapshot(br, snaps)
	}
	var jcs []*child
	var jfiles []string
	if w.json {
		if jcs, jfiles, err = b.receivers(ctx, g, ModeJSON, 1, n, tag, netip.AddrPort{}); err != nil {
			return nil, err
		}
		// The bridge learns of the join at its next look at the
		// memberships: events before it would not be encoded.
		if err := waitJSON(snapshot, benchStream); err != nil {
			return nil, err
		}
	}
	// Two snapshots back to back measure what taking one costs (it
	// allocates), to subtract it from the run's.
	calib, err := snapshot()
	if err != nil {
		return nil, err
	}
	before, err := snapshot()
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
	var sc *scraper
	if w.scrape != "" {
		sc = startScraper(w.scrape, ScrapeEvery)
		defer sc.stop()
	}
	var cpu0 int64
	if latency {
		if cpu0, err = br.onCPU(); err != nil {
			return nil, err
		}
	}
	gen, first, err := b.churn(ctx, n, rt, batch, sent)
	if err != nil {
		return nil, err
	}
	var pathCPU int64
	if latency {
		cpu1, err := br.onCPU()
		if err != nil {
			return nil, err
		}
		pathCPU = cpu1 - cpu0
	}
	scrapes := 0
	if sc != nil { // scraped while events are generated, not while receivers drain
		if scrapes, err = sc.stop(); err != nil {
			return nil, err
		}
	}
	dres, err := finish(direct, 10*time.Second)
	if err != nil {
		return nil, err
	}
	bres, err := finish(cs, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var jres []RecvResult
	if w.json {
		if jres, err = finish(jcs, 5*time.Second); err != nil {
			return nil, err
		}
	}
	after, err := snapshot()
	if err != nil {
		return nil, err
	}
	drs, err := collect(dres, dfiles)
	if err != nil {
		return nil, err
	}
	brs, err := collect(bres, files)
	if err != nil {
		return nil, err
	}
	jrs, err := collect(jres, jfiles)
	if err != nil {
		return nil, err
	}

	run := &RunResult{Receivers: r, TargetRate: rt, Generated: gen.Requests, GenRate: gen.Rate(), BridgeNice: nice, Scrapes: scrapes}
	d := drs[0]
	run.Direct = pathResult(d.keys, d.times, first, n)
	run.Direct.Overruns = dres[0].Overruns
	run.Direct.costs(dres[0])
	var pooled []time.Duration
	run.Bridge, pooled = bridgePaths(brs, d.keys, first, n)
	summarizeReceivers(run, run.Bridge, bres)
	run.added = slices.Clone(pooled)
	run.Added = compare.Distribute(pooled)
	if len(jrs) > 0 {
		jp, jadded := bridgePaths(jrs, d.keys, first, n)
		run.JSONReceiver, run.jsonAdded = &jp[0], jadded
	}
	if latency {
		run.PathCPUPerGeneratedUS = perGenerated(pathCPU, gen.Requests)
		run.directGen = since(d.keys, genTimes)
		for _, br := range brs {
			run.bridgeGen = append(run.bridgeGen, since(br.keys, genTimes)...)
		}
		dd := compare.Distribute(slices.Clone(run.directGen))
		bd := compare.Distribute(slices.Clone(run.bridgeGen))
		run.DirectFromGen, run.BridgeFromGen = &dd, &bd
	}
	bridgeCosts(run, calib, before, after)
	return run, nil
}

// perGenerated is a path's CPU time, cpu nanoseconds, per generated
// event, in microseconds (0 when none was).
func perGenerated(cpu int64, generated int) float64 {
	if generated <= 0 {
		return 0
	}
	return float64(cpu) / 1e3 / float64(generated)
}

// benchStream is the stream every run bridges and receives.
const benchStream = "ipv4-ifaddr"

// jsonWait bounds the wait for the bridge to encode JSON for a receiver
// that joined: it looks every netlinkbridge.MembersInterval.
const jsonWait = 5 * time.Second

// waitJSON takes snapshots until the bridge says it encodes JSON for
// stream, or jsonWait has passed.
func waitJSON(snapshot func() (netlinkbridge.StatsReport, error), stream string) error {
	deadline := time.Now().Add(jsonWait)
	for {
		s, err := snapshot()
		if err != nil {
			return err
		}
		if jsonJoined(s, stream) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: the bridge does not encode JSON for %s %v after a receiver joined its JSON group", stream, jsonWait)
		}
		time.Sleep(netlinkbridge.MembersInterval)
	}
}

// jsonJoined tells whether the bridge's report says it encodes JSON for
// stream: someone has joined its JSON group.
func jsonJoined(s netlinkbridge.StatsReport, stream string) bool {
	for _, st := range s.Bridge.Streams {
		if st.Name == stream {
			return st.JSON && st.JSONJoined
		}
	}
	return false
}

// statsWatch watches for the bridge's --stats file: the bridge writes a
// temporary file and renames it into place, which inotify reports.
type statsWatch struct {
	file string
	f    *os.File // the inotify descriptor
}

func watchStats(file string) (*statsWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(file), unix.IN_MOVED_TO); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("inotify_add_watch", err)
	}
	return &statsWatch{file: file, f: os.NewFile(uintptr(fd), "inotify")}, nil
}

func (w *statsWatch) close() { w.f.Close() }

// snapshotTimeout bounds the wait for a stats snapshot.
const snapshotTimeout = 5 * time.Second

// snapshot asks the bridge for its stats (SIGUSR1) and waits until the
// file holds snap number want, or the bridge exits.
func (w *statsWatch) snapshot(br *child, want int64) (netlinkbridge.StatsReport, error) {
	var s netlinkbridge.StatsReport
	if err := br.signal(syscall.SIGUSR1); err != nil {
		return s, fmt.Errorf("bench: %s: %w", br.name, err)
	}
	w.f.SetReadDeadline(time.Now().Add(snapshotTimeout))
	exited := make(chan struct{})
	defer close(exited)
	go func() {
		select {
		case <-br.done:
			w.f.SetReadDeadline(time.Unix(1, 0))
		case <-exited:
		}
	}()
	buf := make([]byte, 4096)
	for {
		// Read before each wait: the file may be in already.
		data, err := os.ReadFile(w.file)
		if err == nil && json.Unmarshal(data, &s) == nil && s.Snap >= want {
			return s, nil
		}
		if _, err := w.f.Read(buf); err != nil {
			return s, fmt.Errorf("bench: the bridge wrote no stats to %s: %s", w.file, strings.TrimSpace(br.Stderr()))
		}
	}
}
