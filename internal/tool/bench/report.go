package bench

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"text/tabwriter"

	"github.com/nlmcast/nlmcast/internal/tool/compare"

	"golang.org/x/net/ipv4"
)

type ipv4Message = ipv4.Message

func udpAddr(ap netip.AddrPort) *net.UDPAddr { return net.UDPAddrFromAddrPort(ap) }

// Report is a benchmark's results.
type Report struct {
	Kernel        string `json:"kernel"`
	CPUs          int    `json:"cpus"`
	Events        int    `json:"events_per_run"`
	Batch         int    `json:"requests_per_sendmsg"`
	DatagramBytes int    `json:"datagram_bytes"`
	// PeakRate is the fastest the kernel generated events in any run.
	PeakRate float64 `json:"peak_generated_per_s"`
	// BridgeNice is the nice value the bridge ran at.
	BridgeNice int `json:"bridge_nice"`
	// IdleSockets and NoSocketLimit are Config's: sockets of uid 65534
	// that never read, and whether the bridge was let to keep them all.
	IdleSockets   int         `json:"idle_sockets,omitempty"`
	NoSocketLimit bool        `json:"no_socket_limit,omitempty"`
	NoHandoff     bool        `json:"no_handoff,omitempty"`
	Baseline      *Baseline   `json:"baseline"`
	Runs          []RunResult `json:"runs"`
	Latency       *RunResult  `json:"latency,omitempty"`
	// BareHop is one multicast hop to a blocking recvfrom at the latency
	// run's rate, from send to arrival: the machine's own cost of a hop.
	BareHop *compare.Distribution `json:"bare_multicast_hop,omitempty"`
	// LibraryHop is the same hop read by package mcast, the receiving
	// end of every nlmcast receiver: less BareHop, what the library costs.
	LibraryHop *compare.Distribution `json:"library_hop,omitempty"`
	// Rates are the latency rows: the bridge against the reference relay
	// (and the Go reference relay against it) at each of Config.LatencyRates, for each of Config.LatencyReceivers,
	// with JSON off, then on (Config.LatencyJSON); in that order, the
	// rates innermost.
	Rates []RateResult `json:"latency_by_rate,omitempty"`
	// Burst is datagrams sent one per message as fast as sendmmsg goes
	// to one receiver of package mcast: what it loses of a burst.
	Burst *Ceiling `json:"burst,omitempty"`
	// Ways are the ways runs: every way to speed on, then each turned off.
	Ways []WayResult `json:"ways,omitempty"`
	// Fleet is the fleet phase: the stream through nlmcast publish and
	// JetStream to one consumer, beside a local receiver.
	Fleet *FleetResult `json:"fleet,omitempty"`
}

// WriteTable prints the report for people.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "nlmcast bench: kernel %s, %d CPUs, %d address events per run (%d requests per sendmsg), datagrams of %d bytes, bridge at nice %d\n\n",
		r.Kernel, r.CPUs, r.Events, r.Batch, r.DatagramBytes, r.BridgeNice)
	if b := r.Baseline; b != nil {
		fmt.Fprintf(w, "generated:         %s events/s (add-then-delete churn, batched netlink requests)\n", kilo(b.GenRate))
		fmt.Fprintf(w, "direct netlink:    received %d, lost %d, %s events/s\n", b.Direct.Received, b.Direct.Lost, kilo(b.Direct.Rate))
		if m := b.IPMonitor; m != nil {
			when := fmt.Sprintf("%.1f ms after", m.LagMS)
			if m.LagMS < 0 {
				when = fmt.Sprintf("%.1f ms before", -m.LagMS)
			}
			fmt.Fprintf(w, "ip -o monitor:     received %d, lost %d, %s events/s, last line %s direct netlink's last event\n",
				m.Received, m.Lost, kilo(m.Rate), when)
		}
		fmt.Fprintln(w)
	}
	if len(r.Runs) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "receivers\tgenerated/s\tdirect lost\tmax lost\tadded p50\tp99\tmax\tdelivered/s\tceiling/s\tof limit\tbridge CPU/event\treceiver CPU/event\tallocs/event\tbridge RSS\t")
		for _, run := range r.Runs {
			ceil, ratio := "-", "-"
			if run.Ceiling != nil {
				ceil = kilo(run.Ceiling.Rate)
				ratio = fmt.Sprintf("%.2f", run.LimitRatio)
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f us\t%.2f us\t%.3f\t%.1f MiB\t\n",
				run.Receivers, kilo(run.GenRate), run.Direct.Lost, run.MaxLost, us(run.Added.P50), us(run.Added.P99), us(run.Added.Max),
				kilo(run.Delivered), ceil, ratio, run.BridgeCPUPerEventUS, run.ReceiverCPUPerEventUS, run.AllocsPerEvent, float64(run.BridgeRSS)/(1<<20))
		}
		tw.Flush()
		for _, run := range r.Runs {
			writeLoss(w, fmt.Sprintf("with %d receivers", run.Receivers), &run)
		}
		fmt.Fprintln(w, "\nadded: multicast arrival minus direct netlink arrival, per event, all receivers pooled.")
		fmt.Fprintln(w, "ceiling: plain datagrams of the same size to as many receivers (package mcast), sent as fast as sendmmsg goes.")
		fmt.Fprintf(w, "of limit: the slowest receiver's delivered rate over the lower of the ceiling and the kernel's peak\n")
		fmt.Fprintf(w, "generation rate (%s/s, the fastest of all runs): what the bridge delivered of what it could have.\n", kilo(r.PeakRate))
		fmt.Fprintln(w, "receiver CPU/event: each receiving process's CPU time per event, averaged. All processes share the")
		fmt.Fprintf(w, "machine's %d CPUs: with many receivers their CPU time slows the kernel's generation (generated/s).\n", r.CPUs)
	}
	writeWays(w, r.Ways, r.Events)
	if l := r.Latency; l != nil {
		fmt.Fprintf(w, "\nlatency at %.0f events/s, 1 receiver, %d events (lost: direct %d, bridge %d):\n", l.TargetRate, l.Generated, l.Direct.Lost, l.MaxLost)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tp50\tp90\tp99\tmax\t")
		row := func(name string, d *compare.Distribution) {
			if d != nil {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", name, us(d.P50), us(d.P90), us(d.P99), us(d.Max))
			}
		}
		row("direct netlink, from the request", l.DirectFromGen)
		row("through the bridge, from the request", l.BridgeFromGen)
		row("added by the bridge", &l.Added)
		row("for reference: a bare multicast hop", r.BareHop)
		row("the same hop, read by package mcast", r.LibraryHop)
		tw.Flush()
		writeLoss(w, fmt.Sprintf("at %.0f events/s", l.TargetRate), l)
		if r.BareHop != nil {
			fmt.Fprintln(w, "\nbare hop: the same datagrams, sent one per sendmsg at the same rate, to a socket read with a")
			fmt.Fprintln(w, "blocking recvfrom and nothing else: what this machine charges for any hop (the floor of 'added').")
		}
		if r.BareHop != nil && r.LibraryHop != nil {
			fmt.Fprintf(w, "package mcast (which every nlmcast receiver reads with) against it: p50 %+.0f us, p99 %+.0f us.\n",
				r.LibraryHop.P50-r.BareHop.P50, r.LibraryHop.P99-r.BareHop.P99)
		}
	}
	writeRates(w, r.Rates)
	writeFleet(w, r.Fleet)
	if b := r.Burst; b != nil {
		fmt.Fprintf(w, "\nburst: %d datagrams of %d bytes, one per message, sent at %s/s to one receiver of package mcast:\n",
			b.Sent, r.DatagramBytes, kilo(b.SendRate))
		fmt.Fprintf(w, "lost %d, read at %s/s.\n", b.Lost, kilo(b.Rate))
	}
	return nil
}

func kilo(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.0fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

func us(v float64) string { return fmt.Sprintf("%.0f us", v) }

// writeLoss says, for a run that lost events, where they were lost: at the
// bridge (netlink overruns, datagrams its relay dropped, sockets it
// detached) or at the receivers' sockets, whose buffers overflowed. It
// prints nothing for a run that lost none.
func writeLoss(w io.Writer, what string, run *RunResult) {
	if run.MaxLost == 0 && run.Direct.Lost == 0 {
		return
	}
	var drops uint64
	for _, p := range run.Bridge {
		drops += p.SocketDrops
	}
	fmt.Fprintf(w, "lost %s: at most %d events at one receiver (%d at the direct subscriber); the bridge's netlink socket overran %d times, "+
		"its relay dropped %d datagrams and it detached %d sockets; the receivers' sockets dropped %d datagrams (their buffers full)\n",
		what, run.MaxLost, run.Direct.Lost, run.BridgeOverruns, run.BridgeHandoffDropped, run.BridgeDetached, drops)
}
