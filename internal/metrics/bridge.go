package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nlmcast/nlmcast/netlinkbridge"
)

// BridgeSource hands out a bridge's counters; *netlinkbridge.Set is one.
// Stats is called at every scrape, from the scraping goroutine.
type BridgeSource interface {
	Stats() netlinkbridge.SetStats
}

// BridgeCollector is a prometheus.Collector of a bridge's counters, read
// from its BridgeSource at scrape time. Create it with NewBridgeCollector.
type BridgeCollector struct {
	src BridgeSource

	events, eventBytes, jsonEncoded, jsonSkipped, jsonJoined, jsonJoinedStreams, lastEvent,
	frames, reads, overruns, malformed, notKernel, oversized, notBridged,
	resyncs, dumpFailures, requests, answers, fragmented, tooLarge, sendErrors, datagrams,
	handoffs, handoffDropped, panics, genlGroups,
	sent, retries, dropped, segmented, runs metric
}

// NewBridgeCollector returns a collector of src's counters.
func NewBridgeCollector(src BridgeSource) *BridgeCollector {
	const b = "bridge"
	c, g, s := prometheus.CounterValue, prometheus.GaugeValue, prometheus.UntypedValue // s: summaries (emitted apart)
	return &BridgeCollector{
		src:    src,
		events: newMetric(b, "events_total", c, "Kernel events sent on a stream (each in every encoding of the stream), resyncs' dumped messages included.", "family", "stream"),
		eventBytes: newMetric(b, "event_bytes_total", c,
			"Bytes of the events sent on a stream: the netlink messages for encoding raw, the JSON frames for encoding json.", "family", "stream", "encoding"),
		jsonEncoded: newMetric(b, "json_encodings_total", c, "Events encoded in JSON and sent.", "family", "stream"),
		jsonSkipped: newMetric(b, "json_skipped_total", c, "Events not encoded in JSON because nobody had joined the stream's JSON group.", "family", "stream"),
		jsonJoined:  newMetric(b, "json_joined", g, "1 while JSON is encoded for the stream (its JSON group is joined, or --json-always), else 0.", "family", "stream"),
		jsonJoinedStreams: newMetric(b, "json_joined_streams", g,
			"Streams for which JSON is encoded now (their JSON group is joined, or --json-always)."),
		lastEvent: newMetric(b, "last_event_timestamp_seconds", g, "When the stream's last event was read from the kernel, in seconds since the epoch (absent before its first).", "family", "stream"),
		frames:    newMetric(b, "frames_total", c, "Frames sent to the streams' groups, by kind; one per encoding, one for a message sent in fragments; answers not included.", "family", "kind"),
		reads: newMetric(b, "netlink_read_messages", s,
			"Netlink messages per read system call (recvmmsg): _count is the reads, _sum the messages read.", "family"),
		overruns:     newMetric(b, "netlink_overruns_total", c, "Times the kernel reported its netlink buffer overrun (ENOBUFS): events lost, announced and resynced.", "family"),
		malformed:    newMetric(b, "netlink_malformed_total", c, "Netlink datagrams or messages whose lengths did not add up (skipped).", "family"),
		notKernel:    newMetric(b, "netlink_not_kernel_total", c, "Netlink messages not sent by the kernel (port id not 0; skipped).", "family"),
		oversized:    newMetric(b, "netlink_oversized_total", c, "Netlink datagrams too large to read whole (lost, handled as overruns).", "family"),
		notBridged:   newMetric(b, "netlink_unbridged_messages_total", c, "Netlink messages of groups joined for the bridge's own use (interface names, nlctrl), not sent.", "family"),
		resyncs:      newMetric(b, "resync_duration_seconds", s, "Resyncs (dump and send of the tables after overruns or requests to all): _count the resyncs, _sum the seconds they took.", "family"),
		dumpFailures: newMetric(b, "dump_failures_total", c, "Table dumps that failed: that stream was not resynced.", "family"),
		requests: newMetric(b, "requests_total", c,
			"Resync requests received: accepted (answered to the requester alone), refused (over a token bucket) or invalid.", "family", "result"),
		answers:    newMetric(b, "answers_total", c, "Resyncs of one stream sent to one requester alone.", "family"),
		fragmented: newMetric(b, "fragmented_messages_total", c, "Messages sent in fragments, too large for one datagram.", "family"),
		tooLarge: newMetric(b, "too_large_messages_total", c,
			"Messages not sent in an encoding because receivers would refuse them (raw: over frame.MaxRawMessage; json: a JSON frame over 4 MiB).", "family", "encoding"),
		sendErrors:     newMetric(b, "send_errors_total", c, "Multicast sends (sendmmsg batches) that failed: datagrams lost, receivers see a gap.", "family"),
		datagrams:      newMetric(b, "datagrams_total", c, "Datagrams handed to the multicast sender.", "family"),
		handoffs:       newMetric(b, "handoffs_total", c, "Times a slow multicast send made the reader hand sending to another thread.", "family"),
		handoffDropped: newMetric(b, "handoff_dropped_datagrams_total", c, "Datagrams dropped because the sending thread had no room for them (receivers see a gap).", "family"),
		panics:         newMetric(b, "panics_total", c, "Panics recovered in the bridge's loop (each dropped a message and restarted the bridge with a new epoch).", "family"),
		genlGroups: newMetric(b, "genl_group_changes_total", c,
			"Generic netlink groups that registered and were joined, unregistered, or registered and were refused as privileged.", "family", "change"),
		sent:      newMetric("sender", "datagrams_total", c, "Datagrams handed to the kernel by the multicast sender."),
		retries:   newMetric("sender", "retries_total", c, "Transient multicast send errors (ENOBUFS, EAGAIN) retried."),
		dropped:   newMetric("sender", "dropped_datagrams_total", c, "Datagrams the multicast sender gave up on after retries."),
		segmented: newMetric("sender", "segmented_datagrams_total", c, "Datagrams sent in runs with UDP segmentation offload (UDP_SEGMENT)."),
		runs:      newMetric("sender", "runs_total", c, "Segmented runs sent: segmented_datagrams_total over runs_total is the mean run."),
	}
}

func (c *BridgeCollector) metrics() []metric {
	return []metric{c.events, c.eventBytes, c.jsonEncoded, c.jsonSkipped, c.jsonJoined, c.jsonJoinedStreams, c.lastEvent,
		c.frames, c.reads, c.overruns, c.malformed, c.notKernel, c.oversized, c.notBridged,
		c.resyncs, c.dumpFailures, c.requests, c.answers, c.fragmented, c.tooLarge, c.sendErrors, c.datagrams,
		c.handoffs, c.handoffDropped, c.panics, c.genlGroups,
		c.sent, c.retries, c.dropped, c.segmented, c.runs}
}

// Describe sends the descriptions of every metric of the collector.
func (c *BridgeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics() {
		ch <- m.desc
	}
}

// Collect reads the source's counters and sends them.
func (c *BridgeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	families := make([]string, 0, len(st.Families))
	for f := range st.Families {
		families = append(families, f)
	}
	slices.Sort(families)
	joined := 0
	for _, f := range families {
		s := st.Families[f]
		for _, ss := range s.Streams {
			c.events.emit(ch, ss.Events, f, ss.Name)
			if ss.Raw {
				c.eventBytes.emit(ch, ss.RawBytes, f, ss.Name, "raw")
			}
			if ss.JSON {
				c.eventBytes.emit(ch, ss.JSONBytes, f, ss.Name, "json")
				c.jsonEncoded.emit(ch, ss.JSONEvents, f, ss.Name)
				c.jsonSkipped.emit(ch, ss.JSONSkipped, f, ss.Name)
				c.jsonJoined.emit(ch, bool01(ss.JSONJoined), f, ss.Name)
			}
			if ss.JSONJoined {
				joined++
			}
			if !ss.LastEvent.IsZero() {
				c.lastEvent.emitFloat(ch, unixSeconds(ss.LastEvent), f, ss.Name)
			}
		}
		fr := s.Frames
		for _, k := range []struct {
			kind string
			n    uint64
		}{{"event", fr.Event}, {"heartbeat", fr.Heartbeat}, {"overrun", fr.Overrun}, {"resync-begin", fr.ResyncBegin},
			{"resync-end", fr.ResyncEnd}, {"goodbye", fr.Goodbye}} {
			c.frames.emit(ch, k.n, f, k.kind)
		}
		ch <- prometheus.MustNewConstSummary(c.reads.desc, s.Source.Reads, float64(s.Source.Messages), nil, f)
		c.overruns.emit(ch, s.Source.Overruns, f)
		c.malformed.emit(ch, s.Source.Malformed, f)
		c.notKernel.emit(ch, s.Source.NotKernel, f)
		c.oversized.emit(ch, s.Source.Oversized, f)
		c.notBridged.emit(ch, s.NotStreams, f)
		ch <- prometheus.MustNewConstSummary(c.resyncs.desc, s.Resyncs, s.ResyncTime.Seconds(), nil, f)
		c.dumpFailures.emit(ch, s.DumpFailures, f)
		c.requests.emit(ch, s.Requests, f, "accepted")
		c.requests.emit(ch, s.RequestsRefused, f, "refused")
		c.requests.emit(ch, s.BadRequests, f, "invalid")
		c.answers.emit(ch, s.Answers, f)
		c.fragmented.emit(ch, s.Fragmented, f)
		c.tooLarge.emit(ch, s.TooLarge, f, "raw")
		c.tooLarge.emit(ch, s.JSONTooLarge, f, "json")
		c.sendErrors.emit(ch, s.SendErrors, f)
		c.datagrams.emit(ch, s.Datagrams, f)
		c.handoffs.emit(ch, s.Handoffs, f)
		c.handoffDropped.emit(ch, s.HandoffDropped, f)
		c.panics.emit(ch, s.Panics, f)
		if f == "generic" || s.GenlJoined+s.GenlGone+s.GenlRefused > 0 {
			c.genlGroups.emit(ch, s.GenlJoined, f, "joined")
			c.genlGroups.emit(ch, s.GenlGone, f, "gone")
			c.genlGroups.emit(ch, s.GenlRefused, f, "refused")
		}
	}
	c.jsonJoinedStreams.emit(ch, uint64(joined))
	c.sent.emit(ch, st.Sender.Sent)
	c.retries.emit(ch, st.Sender.Retries)
	c.dropped.emit(ch, st.Sender.Dropped)
	c.segmented.emit(ch, st.Sender.Segmented)
	c.runs.emit(ch, st.Sender.Runs)
}
