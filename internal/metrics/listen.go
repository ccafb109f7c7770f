package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nlmcast/nlmcast/receiver"
)

// ReceiverSource hands out a receiver's counters; *receiver.Receiver is
// one. Stats is called at every scrape, from the scraping goroutine.
type ReceiverSource interface {
	Stats() receiver.Stats
}

// ListenCollector is a prometheus.Collector of a receiver's counters
// (`nlmcast listen`), read from its ReceiverSource at scrape time. Create
// it with NewListenCollector.
type ListenCollector struct {
	src      ReceiverSource
	encoding string

	frames, events, notices, missing, socketDrops, upstreamDrops, rejected, heard, joined,
	received, kernelDrops, dropped, authFailures, fragments, reassembled, reassembly, answers metric
}

// NewListenCollector returns a collector of src's counters; encoding
// ("raw" or "json") labels the per-stream metrics.
func NewListenCollector(src ReceiverSource, encoding string) *ListenCollector {
	const l = "listen"
	c, g := prometheus.CounterValue, prometheus.GaugeValue
	return &ListenCollector{
		src: src, encoding: encoding,
		frames:  newMetric(l, "frames_total", c, "Frames of a stream received and passed on, of every kind (events, heartbeats, overruns, resyncs, goodbyes).", "stream", "encoding"),
		events:  newMetric(l, "events_total", c, "Frames of kind event of a stream received and passed on.", "stream", "encoding"),
		notices: newMetric(l, "notices_total", c, "Notices about a stream, by kind: gap, duplicate, reordered, restart (of the bridge), socket-drops, silent, fragment-lost, rejected, disowned, answer-lost, sealed, upstream-drops.", "stream", "encoding", "kind"),
		missing: newMetric(l, "missing_frames_total", c, "Frames of a stream that never arrived (the counts of its gap notices).", "stream", "encoding"),
		socketDrops: newMetric(l, "socket_dropped_packets_total", c,
			"Packets of a stream the kernel dropped because this receiver's socket buffer was full (SO_RXQ_OVFL).", "stream", "encoding"),
		upstreamDrops: newMetric(l, "upstream_dropped_frames_total", c,
			"Frames of a stream dropped before they reached this receiver's source (with --nats: by the host's publisher, its buffer full while NATS was unreachable).", "stream", "encoding"),
		rejected: newMetric(l, "rejected_frames_total", c,
			"Frames of a stream dropped as not the bridge's, by reason: stale, future, old-epoch, unconfirmed, behind.", "stream", "encoding", "reason"),
		heard:        newMetric(l, "last_heard_timestamp_seconds", g, "When a frame of the stream last arrived (or it was joined, before any), in seconds since the epoch.", "stream", "encoding"),
		joined:       newMetric(l, "joined", g, "1 while the stream is joined, else 0.", "stream", "encoding"),
		received:     newMetric(l, "datagrams_total", c, "Datagrams received from the multicast groups."),
		kernelDrops:  newMetric(l, "kernel_dropped_packets_total", c, "Packets the kernel dropped because the receiver's socket buffers were full (every stream)."),
		dropped:      newMetric(l, "dropped_datagrams_total", c, "Datagrams dropped, by reason: malformed, mismatch (header names another stream), unknown-kind, duplicate, bad-fragment, too-large, wrong-source, wrong-interface, truncated.", "reason"),
		authFailures: newMetric(l, "authentication_failures_total", c, "Frames dropped as not authenticated by the bridge, by reason: unauthenticated (no trailer), unknown-key, bad-tag, unattested (the bridge's address not held by its uid alone).", "reason"),
		fragments:    newMetric(l, "fragments_total", c, "Fragments received."),
		reassembled:  newMetric(l, "reassembled_messages_total", c, "Messages reassembled from fragments."),
		reassembly:   newMetric(l, "reassembly_bytes", g, "Bytes held by messages being reassembled now."),
		answers:      newMetric(l, "answer_frames_total", c, "Frames of answers to this receiver's resync requests."),
	}
}

func (c *ListenCollector) metrics() []metric {
	return []metric{c.frames, c.events, c.notices, c.missing, c.socketDrops, c.upstreamDrops, c.rejected, c.heard, c.joined,
		c.received, c.kernelDrops, c.dropped, c.authFailures, c.fragments, c.reassembled, c.reassembly, c.answers}
}

// Describe sends the descriptions of every metric of the collector.
func (c *ListenCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics() {
		ch <- m.desc
	}
}

// Collect reads the source's counters and sends them.
func (c *ListenCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	e := c.encoding
	for _, ss := range st.Streams {
		n := ss.Stream.Name
		c.frames.emit(ch, ss.Frames, n, e)
		c.events.emit(ch, ss.Events, n, e)
		for k := receiver.Gap; int(k) < len(ss.Notices); k++ {
			c.notices.emit(ch, ss.Notices[k], n, e, k.String())
		}
		c.missing.emit(ch, ss.Missing, n, e)
		c.socketDrops.emit(ch, ss.SocketDrops, n, e)
		c.upstreamDrops.emit(ch, ss.UpstreamDrops, n, e)
		for r := receiver.Stale; int(r) < len(ss.Rejected); r++ {
			c.rejected.emit(ch, ss.Rejected[r], n, e, r.String())
		}
		if !ss.Heard.IsZero() {
			c.heard.emitFloat(ch, unixSeconds(ss.Heard), n, e)
		}
		c.joined.emit(ch, bool01(ss.Joined), n, e)
	}
	c.received.emit(ch, st.Mcast.Received)
	c.kernelDrops.emit(ch, st.Mcast.KernelDrops)
	for _, d := range []struct {
		reason string
		n      uint64
	}{{"malformed", st.Malformed}, {"mismatch", st.Mismatch}, {"unknown-kind", st.UnknownKind}, {"duplicate", st.Duplicates},
		{"bad-fragment", st.BadFragment}, {"too-large", st.TooLarge}, {"wrong-source", st.Mcast.WrongSource},
		{"wrong-interface", st.Mcast.WrongInterface}, {"truncated", st.Mcast.Truncated}} {
		c.dropped.emit(ch, d.n, d.reason)
	}
	for _, a := range []struct {
		reason string
		n      uint64
	}{{"unauthenticated", st.Unauthenticated}, {"unknown-key", st.UnknownKey}, {"bad-tag", st.BadTag}, {"unattested", st.Unattested}} {
		c.authFailures.emit(ch, a.n, a.reason)
	}
	c.fragments.emit(ch, st.Fragments)
	c.reassembled.emit(ch, st.Reassembled)
	c.reassembly.emit(ch, st.Reassembly)
	c.answers.emit(ch, st.Answers)
}
