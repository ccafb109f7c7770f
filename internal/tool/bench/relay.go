package bench

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nlmcast/nlmcast/internal/sys/procstat"
	"github.com/nlmcast/nlmcast/internal/tool/compare"
	"github.com/nlmcast/nlmcast/streams"
)

// relaySource is the reference relay: the simplest relay a C programmer
// would write (a netlink socket, a blocking recvmsg, one sendto per
// message, no batching, no threads).
//
//go:embed relay/relay.c
var relaySource []byte

// RelayBase is where the reference relay sends: each netlink group's
// messages to RelayBase plus the group number, on port RelayPort. Outside
// the default stream map, as CeilingGroup is.
var (
	RelayBase = netip.MustParseAddr("239.255.77.0")
	RelayPort = uint16(17991)
)

// relayGroup is where the relay sends the ipv4-ifaddr group's messages.
func relayGroup() netip.AddrPort {
	addr, _ := streams.Lookup("ipv4-ifaddr")
	b := RelayBase.As4()
	b[3] += byte(addr.Group)
	return netip.AddrPortFrom(netip.AddrFrom4(b), RelayPort)
}

// buildRelay compiles the reference relay with the system cc (once per
// bench) and returns the program's path.
func (b *bench) buildRelay() (string, error) {
	if b.relay != "" {
		return b.relay, nil
	}
	src, bin := filepath.Join(b.dir, "relay.c"), filepath.Join(b.dir, "relay")
	if err := os.WriteFile(src, relaySource, 0o644); err != nil {
		return "", err
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	out, err := exec.Command(cc, "-O2", "-o", bin, src).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("bench: building the reference relay with %s (set $CC, or skip the latency rows with no rates): %v: %s", cc, err, bytes.TrimSpace(out))
	}
	b.relay = bin
	return bin, nil
}

// relayArgs returns the relay's command line, argv0 first: every
// rtnetlink group the bridge bridges by default, so that it reads what the
// bridge reads.
func relayArgs(argv0 ...string) []string {
	argv := append(argv0, RelayBase.String(), strconv.Itoa(int(RelayPort)))
	for _, s := range streams.Default() {
		argv = append(argv, strconv.Itoa(int(s.Group)))
	}
	return argv
}

// relayOut follows the relay's stdout: ready once it says "ready", and
// the count it prints when it stops.
type relayOut struct {
	ready   chan struct{}
	once    sync.Once
	mu      sync.Mutex
	relayed int64 // -1 until it says
}

func (o *relayOut) line(l []byte) {
	s := string(l)
	if s == "ready" {
		o.once.Do(func() { close(o.ready) })
		return
	}
	var n, failed int64
	if _, err := fmt.Sscanf(s, "relayed %d failed %d", &n, &failed); err == nil {
		o.mu.Lock()
		o.relayed = n
		o.mu.Unlock()
	}
}

// relayRun is bridgeRun's counterpart for the reference relay (relay.c,
// or with goRelay GoRelay, run as this program's bench-relay): the relay,
// a direct subscriber and r receivers of its ipv4-ifaddr group while n
// events are generated at rate rt, one request per sendmsg. The result's
// Bridge holds the relay's receivers, Added their added latencies pooled,
// BridgeFromGen their times from the request, pooled, and BridgeEvents
// the messages the relay says it relayed.
//
// With second, one more receiver of the group runs beside them, apart
// from Bridge and Added (in JSONReceiver): it stands for the JSON receiver
// of the bridge's runs in a row with JSON on, so that both runs of the row
// have as many processes woken for every event. On two CPUs a process more
// to wake delays the others, whoever relays.
func (b *bench) relayRun(ctx context.Context, r, n int, rt float64, second, goRelay bool) (*RunResult, error) {
	name, argv := "Go reference relay", relayArgs(b.cfg.Self, "bench-relay")
	if !goRelay {
		bin, err := b.buildRelay()
		if err != nil {
			return nil, err
		}
		name, argv = "reference relay", relayArgs(bin)
	}
	b.runs++
	tag := fmt.Sprintf("run%d", b.runs)
	g := &group{}
	defer g.close()
	out := &relayOut{ready: make(chan struct{}), relayed: -1}
	rl, err := g.start(ctx, spec{name: name, argv: argv, lines: out.line})
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-out.ready:
	case <-rl.done:
		return nil, fmt.Errorf("bench: the %s exited before it was ready: %s", name, strings.TrimSpace(rl.Stderr()))
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, fmt.Errorf("bench: the %s not ready after %v", name, readyTimeout)
	}
	direct, dfiles, err := b.receivers(ctx, g, ModeNetlink, 1, n, tag, netip.AddrPort{})
	if err != nil {
		return nil, err
	}
	cs, files, err := b.receivers(ctx, g, ModeRelay, r, n, tag, relayGroup())
	if err != nil {
		return nil, err
	}
	var scs []*child
	var sfiles []string
	if second {
		if scs, sfiles, err = b.receivers(ctx, g, ModeRelay, 1, n, tag+"-second", relayGroup()); err != nil {
			return nil, err
		}
	}
	genTimes := make(map[uint32]int64, n)
	cpu0, err := rl.onCPU()
	if err != nil {
		return nil, err
	}
	gen, first, err := b.churn(ctx, n, rt, 1, func(first, last uint32) {
		now := procstat.Monotonic()
		for s := first; s <= last; s++ {
			genTimes[s] = now
		}
	})
	if err != nil {
		return nil, err
	}
	cpu1, err := rl.onCPU()
	if err != nil {
		return nil, err
	}
	dres, err := finish(direct, 10*time.Second)
	if err != nil {
		return nil, err
	}
	rres, err := finish(cs, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var sres []RecvResult
	if second {
		if sres, err = finish(scs, 5*time.Second); err != nil {
			return nil, err
		}
	}
	rl.stop()
	if err := rl.failed(); err != nil {
		return nil, err
	}
	srs, err := collect(sres, sfiles)
	if err != nil {
		return nil, err
	}
	drs, err := collect(dres, dfiles)
	if err != nil {
		return nil, err
	}
	rrs, err := collect(rres, files)
	if err != nil {
		return nil, err
	}
	run := &RunResult{Receivers: r, TargetRate: rt, Generated: gen.Requests, GenRate: gen.Rate(),
		PathCPUPerGeneratedUS: perGenerated(cpu1-cpu0, gen.Requests)}
	d := drs[0]
	run.Direct = pathResult(d.keys, d.times, first, n)
	run.Direct.Overruns = dres[0].Overruns
	run.Direct.costs(dres[0])
	run.Bridge, run.added = bridgePaths(rrs, d.keys, first, n)
	summarizeReceivers(run, run.Bridge, rres)
	run.Added = compare.Distribute(slices.Clone(run.added))
	if len(srs) > 0 {
		sp, sadded := bridgePaths(srs, d.keys, first, n)
		run.JSONReceiver, run.jsonAdded = &sp[0], sadded
	}
	run.directGen = since(d.keys, genTimes)
	for _, rr := range rrs {
		run.bridgeGen = append(run.bridgeGen, since(rr.keys, genTimes)...)
	}
	dd := compare.Distribute(slices.Clone(run.directGen))
	bd := compare.Distribute(slices.Clone(run.bridgeGen))
	run.DirectFromGen, run.BridgeFromGen = &dd, &bd
	out.mu.Lock()
	relayed := out.relayed
	out.mu.Unlock()
	if relayed < 0 {
		return nil, fmt.Errorf("bench: the %s did not say what it relayed: %s", name, strings.TrimSpace(rl.Stderr()))
	}
	run.BridgeEvents = uint64(relayed)
	return run, nil
}
