package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/nlmcast/nlmcast/internal/tool/compare"
	"github.com/nlmcast/nlmcast/internal/tool/rtgen"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	setup, err := compareConfig(args, stderr)
	if err != nil {
		return err
	}
	sess, err := compare.Open(setup.cfg)
	if err != nil {
		return receiverError(err, compareFlagNames)
	}
	defer sess.Close()
	warn(stderr, "compare", sess.Warnings())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if setup.duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, setup.duration)
		defer cancel()
	}
	out := &sideBySide{w: bufio.NewWriter(stdout), quiet: setup.json}
	out.header()
	genErr := make(chan error, 1)
	if setup.generate {
		go func() {
			select { // both paths subscribed and read
			case <-sess.Reading():
			case <-ctx.Done():
			}
			genErr <- generateChanges(ctx, setup.rounds, setup.interval, sess.Step)
			// Give the last events time to arrive on both paths.
			select {
			case <-ctx.Done():
			case <-time.After(setup.cfg.Wait + 100*time.Millisecond):
			}
			cancel()
		}()
	}
	resolved := 0
	tot, err := sess.Run(ctx, func(r compare.Report) {
		out.report(r)
		if r.Result != nil {
			if resolved++; setup.count > 0 && resolved >= setup.count {
				cancel()
			}
		}
	})
	if setup.generate {
		if gerr := <-genErr; gerr != nil && err == nil {
			err = gerr
		}
	}
	out.summary(tot)
	if setup.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(tot); jerr != nil && err == nil {
			err = jerr
		}
	}
	if err == nil && tot.Netlink > 0 && tot.Multicast == 0 {
		fmt.Fprintln(stderr, "nlmcast compare: nothing arrived through multicast: is 'nlmcast bridge' running in this network namespace, with these streams?")
	}
	return err
}

// compareSetup is what nlmcast compare's flags ask for.
type compareSetup struct {
	cfg      *compare.Config
	json     bool          // --json
	duration time.Duration // --duration
	count    int           // --count
	generate bool          // --generate
	rounds   int           // --rounds
	interval time.Duration // --interval
}

// compareFlagNames names the flag of each mcast.ReceiverConfig field, for
// errors.
var compareFlagNames = map[string]string{"Map": "--base/--port", "Interface": "--interface", "Source": "--source-port"}

// compareConfig parses nlmcast compare's arguments into a valid config. It
// opens nothing.
func compareConfig(args []string, stderr io.Writer) (*compareSetup, error) {
	fs := newFlags("compare", "[STREAM...] [flags]",
		"Subscribes to the same streams twice, directly to the kernel's netlink groups and through\n"+
			"the bridge's multicast groups, and prints each event once both paths delivered it: when\n"+
			"each path had it, which was first and by how much, and the event. An event one path lacks\n"+
			"after --wait is printed as MISSING. On exit (Ctrl-C, --duration, --count, or the end of\n"+
			"--generate) it prints a summary: events per path, missing on either side, order\n"+
			"differences, and the multicast path's added latency (p50, p90, p99, max).\n"+
			"Run it in the bridge's network namespace. STREAM is a stream or alias; none means all.\n"+
			"--generate makes real changes itself (a veth pair, addresses, a route, a neighbour) and\n"+
			"needs CAP_NET_ADMIN: use it in a throwaway namespace, as 'make demo' does.", stderr)
	mc := &mcast.ReceiverConfig{}
	cfg := &compare.Config{Mcast: mc}
	setup := &compareSetup{cfg: cfg}
	fs.BoolVar(&setup.json, "json", false, "print only the summary, as JSON")
	fs.DurationVar(&cfg.Wait, "wait", compare.DefaultWait, "how long an event waits for the other path before it is MISSING")
	fs.DurationVar(&setup.duration, "duration", 0, "stop after this long (0: until Ctrl-C, or the end of --generate)")
	fs.IntVar(&setup.count, "count", 0, "stop after this many events are resolved (0: no limit)")
	fs.BoolVar(&setup.generate, "generate", false, "make real changes in this network namespace (a veth pair nlmc0/nlmc1 and its addresses, route, neighbour), then stop (needs CAP_NET_ADMIN)")
	fs.IntVar(&setup.rounds, "rounds", 2, "with --generate: how many times to run the changes")
	fs.DurationVar(&setup.interval, "interval", 200*time.Millisecond, "with --generate: pause between two changes")
	fs.StringVar(&mc.Interface, "interface", mcast.DefaultInterface, "interface to join groups on")
	srcPort := sourcePortFlag(fs)
	fs.BoolVar(&cfg.Insecure, "insecure", false, insecureUsage)
	getMap := mapFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	if cfg.Map, err = getMap(); err != nil {
		return nil, err
	}
	if cfg.Streams, err = streams.Resolve(pos...); err != nil {
		return nil, err
	}
	switch {
	case cfg.Wait <= 0:
		return nil, fmt.Errorf("--wait %v: must be positive", cfg.Wait)
	case setup.duration < 0 || setup.count < 0 || setup.rounds < 1 || setup.interval < 0:
		return nil, fmt.Errorf("--duration, --count and --interval must not be negative, --rounds at least 1")
	case *srcPort == 0 || *srcPort > 65535: // the flag is wider than a port, and 0 is none
		return nil, fmt.Errorf("--source-port %d: use a port from 1 to 65535", *srcPort)
	}
	mc.Source = netip.AddrPortFrom(netip.Addr{}, uint16(*srcPort))
	if err := mc.Validate(); err != nil {
		return nil, withFlags(err, compareFlagNames)
	}
	return setup, nil
}

// generateChanges runs the scenario rounds times, announcing each change
// with step before it makes it.
func generateChanges(ctx context.Context, rounds int, interval time.Duration, step func(desc string)) error {
	sc, err := rtgen.NewScenario(0, "nlmc")
	if err != nil {
		return err
	}
	defer sc.Close()
	for r := 1; r <= rounds; r++ {
		for _, st := range sc.Steps() {
			if ctx.Err() != nil {
				sc.Cleanup()
				return nil
			}
			step("ip " + st.Desc)
			if err := st.Do(); err != nil {
				sc.Cleanup()
				if os.Geteuid() != 0 {
					return fmt.Errorf("--generate: ip %s: %w (making changes needs CAP_NET_ADMIN: run as root in a throwaway namespace, e.g. make demo)", st.Desc, err)
				}
				return fmt.Errorf("--generate: ip %s: %w", st.Desc, err)
			}
			time.Sleep(interval)
		}
	}
	return nil
}

// sideBySide prints resolved events as two columns of arrival times. It is
// written from one goroutine at a time: the header before compare.Run, the
// reports from Run's goroutine (the generator's steps among them), the
// summary after Run.
type sideBySide struct {
	w     *bufio.Writer
	quiet bool
}

const sbsFormat = "%-15s  %-15s  %-9s %9s  %-12s %s\n"

func (o *sideBySide) header() {
	if o.quiet {
		return
	}
	fmt.Fprintf(o.w, sbsFormat, "NETLINK", "MULTICAST", "FIRST", "BY", "STREAM", "EVENT")
	o.w.Flush()
}

func (o *sideBySide) report(r compare.Report) {
	if o.quiet {
		return
	}
	defer o.w.Flush()
	if r.Step != "" {
		fmt.Fprintf(o.w, "---- %s\n", safe(r.Step))
		return
	}
	if r.Result == nil {
		name := r.Path.String()
		if r.Stream.Name != "" {
			name += " [" + r.Stream.Name + "]"
		}
		fmt.Fprintf(o.w, "!! %s: %s\n", safe(name), safe(r.Note))
		return
	}
	res := r.Result
	col := func(p compare.Path) string {
		if res.At[p].IsZero() {
			return "-"
		}
		return res.At[p].Format("15:04:05.000000")
	}
	first, by := "", ""
	switch d := res.Delta(); {
	case res.Missed:
		first, by = "MISSING", "on "+res.MissingOn().String()
	case d < 0:
		first, by = "multicast", fmt.Sprintf("%dus", -d.Microseconds())
	default:
		first, by = "netlink", fmt.Sprintf("%dus", d.Microseconds())
	}
	ev := r.Summary
	if res.OutOfOrder {
		ev += "  (out of order)"
	}
	// The summary may be of a forged message (one missing on netlink).
	fmt.Fprintf(o.w, sbsFormat, col(compare.Netlink), col(compare.Multicast), first, by, safe(r.Stream.Name), safe(ev))
}

func (o *sideBySide) summary(t compare.Totals) {
	if o.quiet {
		return
	}
	defer o.w.Flush()
	a := t.Added
	fmt.Fprintf(o.w, "\n== summary\n")
	fmt.Fprintf(o.w, "events:          %d netlink, %d multicast, %d on both\n", t.Netlink, t.Multicast, t.Matched)
	fmt.Fprintf(o.w, "missing:         %d on multicast, %d on netlink", t.MissingMulticast, t.MissingNetlink)
	if t.Waiting > 0 {
		fmt.Fprintf(o.w, " (%d still waiting for the other path)", t.Waiting)
	}
	fmt.Fprintf(o.w, "\norder:           %d delivered out of netlink's order\n", t.OrderDiffs)
	if a.Count > 0 {
		fmt.Fprintf(o.w, "added latency:   p50 %.0fus  p90 %.0fus  p99 %.0fus  max %.0fus  (multicast minus netlink; multicast first %d times)\n",
			a.P50, a.P90, a.P99, a.Max, t.MulticastFirst)
	}
	if t.NetlinkOverruns+t.Notices+t.ControlFrames+t.StateEvents > 0 {
		fmt.Fprintf(o.w, "also:            %d netlink overruns, %d multicast notices, %d control frames, %d state events (not compared)\n",
			t.NetlinkOverruns, t.Notices, t.ControlFrames, t.StateEvents)
	}
}
