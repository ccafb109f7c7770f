package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"
)

// WritePlot writes the latency run's distributions as an SVG chart: for
// direct netlink and for the bridge, the share of events (y) that arrived
// within a time of the request (x), one curve each.
func WritePlot(file string, r *Report) error {
	l := r.Latency
	if l == nil || len(l.directGen) == 0 || len(l.bridgeGen) == 0 {
		return errors.New("bench: no latency run to plot")
	}
	return os.WriteFile(file, plotSVG(l.directGen, l.bridgeGen, l.TargetRate), 0o644)
}

func plotSVG(direct, bridge []time.Duration, rate float64) []byte {
	const (
		w, h                     = 760, 440
		left, right, top, bottom = 70, 30, 50, 60
	)
	sortD := func(ds []time.Duration) []time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s
	}
	d, b := sortD(direct), sortD(bridge)
	// The x axis ends at the 99.5th percentile of the slower path, so a
	// few outliers do not squash the curves.
	xmax := max(pct(d, 0.995), pct(b, 0.995)).Seconds() * 1e6
	if xmax <= 0 {
		xmax = 1
	}
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	x := func(us float64) float64 { return left + min(us, xmax)/xmax*pw }
	y := func(frac float64) float64 { return top + (1-frac)*ph }
	var s bytes.Buffer
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&s, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&s, `<text x="%d" y="24" font-size="15">nlmcast: event latency from the request, %.0f events/s (%d events)</text>`+"\n", left, rate, len(d))
	for i := 0; i <= 10; i++ { // grid and ticks
		fx := float64(i) / 10
		fmt.Fprintf(&s, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x(fx*xmax), top, x(fx*xmax), h-bottom)
		fmt.Fprintf(&s, `<text x="%.1f" y="%d" text-anchor="middle">%.0f</text>`+"\n", x(fx*xmax), h-bottom+18, fx*xmax)
		fmt.Fprintf(&s, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(fx), w-right, y(fx))
		fmt.Fprintf(&s, `<text x="%d" y="%.1f" text-anchor="end">%.0f%%</text>`+"\n", left-6, y(fx)+4, fx*100)
	}
	fmt.Fprintf(&s, `<text x="%.1f" y="%d" text-anchor="middle">microseconds from the request's sendmsg to arrival</text>`+"\n", left+pw/2, h-18)
	fmt.Fprintf(&s, `<text x="18" y="%.1f" transform="rotate(-90 18 %.1f)" text-anchor="middle">share of events</text>`+"\n", top+ph/2, top+ph/2)
	curve := func(ds []time.Duration, color, name string, row int) {
		var pts bytes.Buffer
		step := max(1, len(ds)/500)
		for i := 0; i < len(ds); i += step {
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(ds[i].Seconds()*1e6), y(float64(i+1)/float64(len(ds))))
		}
		fmt.Fprintf(&pts, "%.1f,%.1f", x(ds[len(ds)-1].Seconds()*1e6), y(1))
		fmt.Fprintf(&s, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, pts.String())
		ly := top + 16 + row*18
		fmt.Fprintf(&s, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", x(0.62*xmax), ly-4, x(0.62*xmax)+24, ly-4, color)
		fmt.Fprintf(&s, `<text x="%.1f" y="%d">%s: p50 %.0f us, p99 %.0f us</text>`+"\n", x(0.62*xmax)+30, ly, name,
			pct(ds, 0.5).Seconds()*1e6, pct(ds, 0.99).Seconds()*1e6)
	}
	curve(d, "#1f77b4", "direct netlink", 0)
	curve(b, "#d62728", "through the bridge", 1)
	s.WriteString("</svg>\n")
	return s.Bytes()
}
