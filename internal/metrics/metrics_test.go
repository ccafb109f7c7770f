package metrics

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/netlinkbridge"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// fakeBridge hands out a fixed snapshot and counts the calls.
type fakeBridge struct {
	st    netlinkbridge.SetStats
	calls int
}

func (f *fakeBridge) Stats() netlinkbridge.SetStats { f.calls++; return f.st }

type fakeReceiver struct{ st receiver.Stats }

func (f *fakeReceiver) Stats() receiver.Stats { return f.st }

// samples gathers reg and returns every sample as `name{label="value",...}`
// (labels sorted, as the text format has them) to its value; a summary
// gives name_sum and name_count.
func samples(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := func(suffix string) string {
				if len(ls) == 0 {
					return mf.GetName() + suffix
				}
				return mf.GetName() + suffix + "{" + strings.Join(ls, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key("")] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key("")] = m.GetGauge().GetValue()
			case dto.MetricType_SUMMARY:
				out[key("_sum")] = m.GetSummary().GetSampleSum()
				out[key("_count")] = float64(m.GetSummary().GetSampleCount())
			default:
				out[key("")] = m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

func bridgeStats() netlinkbridge.SetStats {
	return netlinkbridge.SetStats{
		Families: map[string]netlinkbridge.Stats{
			"route": {
				Source:    kernel.Stats{Messages: 40, Reads: 8, Overruns: 2, NotKernel: 3, Malformed: 4, Oversized: 5},
				Events:    31,
				Datagrams: 70, NotStreams: 6, JSONSkipped: 1, Fragmented: 7, TooLarge: 8, JSONTooLarge: 9, SendErrors: 10,
				Handoffs: 11, HandoffDropped: 12, Resyncs: 3, ResyncTime: 1500 * time.Millisecond, DumpFailures: 13,
				Requests: 14, BadRequests: 15, RequestsRefused: 16, Answers: 17, Panics: 18,
				Frames: netlinkbridge.FrameCounts{Event: 61, Heartbeat: 19, Overrun: 20, ResyncBegin: 21, ResyncEnd: 22, Goodbye: 23},
				Streams: []netlinkbridge.StreamStats{
					{Name: "link", Raw: true, JSON: true, Events: 30, RawBytes: 3000, JSONEvents: 30, JSONBytes: 9000, JSONJoined: true,
						LastEvent: time.Unix(1700000000, 500_000_000)},
					{Name: "ipv4-ifaddr", Raw: true, JSON: true, Events: 1, RawBytes: 76, JSONSkipped: 1},
					{Name: "ipv6-route", Raw: true}, // raw only, never an event
				},
			},
			"generic": {GenlJoined: 1, GenlGone: 2, GenlRefused: 3,
				Streams: []netlinkbridge.StreamStats{{Name: "ethtool:monitor", JSON: true, JSONJoined: true}}},
		},
		Sender: mcast.SenderStats{Sent: 100, Retries: 24, Dropped: 25, Segmented: 90, Runs: 9},
	}
}

func TestBridgeCollector(t *testing.T) {
	src := &fakeBridge{st: bridgeStats()}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewBridgeCollector(src))
	got := samples(t, reg)
	if src.calls != 1 {
		t.Errorf("a scrape read the snapshot %d times, want once", src.calls)
	}
	want := map[string]float64{
		`nlmcast_bridge_events_total{family="route",stream="link"}`:                            30,
		`nlmcast_bridge_events_total{family="route",stream="ipv4-ifaddr"}`:                     1,
		`nlmcast_bridge_events_total{family="route",stream="ipv6-route"}`:                      0,
		`nlmcast_bridge_events_total{family="generic",stream="ethtool:monitor"}`:               0,
		`nlmcast_bridge_event_bytes_total{encoding="raw",family="route",stream="link"}`:        3000,
		`nlmcast_bridge_event_bytes_total{encoding="json",family="route",stream="link"}`:       9000,
		`nlmcast_bridge_event_bytes_total{encoding="raw",family="route",stream="ipv4-ifaddr"}`: 76,
		`nlmcast_bridge_json_encodings_total{family="route",stream="link"}`:                    30,
		`nlmcast_bridge_json_skipped_total{family="route",stream="ipv4-ifaddr"}`:               1,
		`nlmcast_bridge_json_joined{family="route",stream="link"}`:                             1,
		`nlmcast_bridge_json_joined{family="route",stream="ipv4-ifaddr"}`:                      0,
		`nlmcast_bridge_json_joined{family="generic",stream="ethtool:monitor"}`:                1,
		`nlmcast_bridge_json_joined_streams`:                                                   2,
		`nlmcast_bridge_last_event_timestamp_seconds{family="route",stream="link"}`:            1700000000.5,
		`nlmcast_bridge_frames_total{family="route",kind="event"}`:                             61,
		`nlmcast_bridge_frames_total{family="route",kind="heartbeat"}`:                         19,
		`nlmcast_bridge_frames_total{family="route",kind="overrun"}`:                           20,
		`nlmcast_bridge_frames_total{family="route",kind="resync-begin"}`:                      21,
		`nlmcast_bridge_frames_total{family="route",kind="resync-end"}`:                        22,
		`nlmcast_bridge_frames_total{family="route",kind="goodbye"}`:                           23,
		`nlmcast_bridge_netlink_read_messages_sum{family="route"}`:                             40,
		`nlmcast_bridge_netlink_read_messages_count{family="route"}`:                           8,
		`nlmcast_bridge_netlink_overruns_total{family="route"}`:                                2,
		`nlmcast_bridge_netlink_malformed_total{family="route"}`:                               4,
		`nlmcast_bridge_netlink_not_kernel_total{family="route"}`:                              3,
		`nlmcast_bridge_netlink_oversized_total{family="route"}`:                               5,
		`nlmcast_bridge_netlink_unbridged_messages_total{family="route"}`:                      6,
		`nlmcast_bridge_resync_duration_seconds_sum{family="route"}`:                           1.5,
		`nlmcast_bridge_resync_duration_seconds_count{family="route"}`:                         3,
		`nlmcast_bridge_dump_failures_total{family="route"}`:                                   13,
		`nlmcast_bridge_requests_total{family="route",result="accepted"}`:                      14,
		`nlmcast_bridge_requests_total{family="route",result="refused"}`:                       16,
		`nlmcast_bridge_requests_total{family="route",result="invalid"}`:                       15,
		`nlmcast_bridge_answers_total{family="route"}`:                                         17,
		`nlmcast_bridge_fragmented_messages_total{family="route"}`:                             7,
		`nlmcast_bridge_too_large_messages_total{encoding="raw",family="route"}`:               8,
		`nlmcast_bridge_too_large_messages_total{encoding="json",family="route"}`:              9,
		`nlmcast_bridge_send_errors_total{family="route"}`:                                     10,
		`nlmcast_bridge_datagrams_total{family="route"}`:                                       70,
		`nlmcast_bridge_handoffs_total{family="route"}`:                                        11,
		`nlmcast_bridge_handoff_dropped_datagrams_total{family="route"}`:                       12,
		`nlmcast_bridge_panics_total{family="route"}`:                                          18,
		`nlmcast_bridge_genl_group_changes_total{change="joined",family="generic"}`:            1,
		`nlmcast_bridge_genl_group_changes_total{change="gone",family="generic"}`:              2,
		`nlmcast_bridge_genl_group_changes_total{change="refused",family="generic"}`:           3,
		`nlmcast_sender_datagrams_total`:                                                       100,
		`nlmcast_sender_retries_total`:                                                         24,
		`nlmcast_sender_dropped_datagrams_total`:                                               25,
		`nlmcast_sender_segmented_datagrams_total`:                                             90,
		`nlmcast_sender_runs_total`:                                                            9,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for _, absent := range []string{
		`nlmcast_bridge_last_event_timestamp_seconds{family="route",stream="ipv6-route"}`,      // no event yet
		`nlmcast_bridge_event_bytes_total{encoding="json",family="route",stream="ipv6-route"}`, // raw only
		`nlmcast_bridge_json_joined{family="route",stream="ipv6-route"}`,
		`nlmcast_bridge_genl_group_changes_total{change="joined",family="route"}`,
	} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s present", absent)
		}
	}
	// A second scrape reads the snapshot again: nothing is cached.
	src.st.Families["route"].Streams[0].Events = 31
	if got := samples(t, reg)[`nlmcast_bridge_events_total{family="route",stream="link"}`]; got != 31 || src.calls != 2 {
		t.Errorf("second scrape: %v after %d reads, want 31 after 2", got, src.calls)
	}
}

func TestListenCollector(t *testing.T) {
	link, _ := streams.Lookup("link")
	addr, _ := streams.Lookup("ipv4-ifaddr")
	st := receiver.Stats{
		Mcast:     mcast.ReceiverStats{Received: 50, WrongInterface: 1, WrongSource: 2, Truncated: 3, KernelDrops: 4},
		Malformed: 5, Mismatch: 6, UnknownKind: 7, Duplicates: 8, BadFragment: 9, TooLarge: 10,
		Fragments: 11, Reassembled: 12, Reassembly: 13, Answers: 14,
		Unauthenticated: 15, UnknownKey: 16, BadTag: 17, Unattested: 18,
	}
	ls := receiver.StreamStats{Stream: link, Joined: true, Frames: 40, Events: 30, Missing: 3, SocketDrops: 2, Heard: time.Unix(1700000000, 250_000_000)}
	ls.Notices[receiver.Gap], ls.Notices[receiver.Restart], ls.Notices[receiver.Silent] = 2, 1, 4
	ls.Rejected[receiver.Stale] = 5
	st.Streams = []receiver.StreamStats{ls, {Stream: addr}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewListenCollector(&fakeReceiver{st}, "json"))
	got := samples(t, reg)
	want := map[string]float64{
		`nlmcast_listen_frames_total{encoding="json",stream="link"}`:                            40,
		`nlmcast_listen_events_total{encoding="json",stream="link"}`:                            30,
		`nlmcast_listen_notices_total{encoding="json",kind="gap",stream="link"}`:                2,
		`nlmcast_listen_notices_total{encoding="json",kind="restart",stream="link"}`:            1,
		`nlmcast_listen_notices_total{encoding="json",kind="silent",stream="link"}`:             4,
		`nlmcast_listen_notices_total{encoding="json",kind="duplicate",stream="link"}`:          0,
		`nlmcast_listen_notices_total{encoding="json",kind="answer-lost",stream="ipv4-ifaddr"}`: 0,
		`nlmcast_listen_missing_frames_total{encoding="json",stream="link"}`:                    3,
		`nlmcast_listen_socket_dropped_packets_total{encoding="json",stream="link"}`:            2,
		`nlmcast_listen_rejected_frames_total{encoding="json",reason="stale",stream="link"}`:    5,
		`nlmcast_listen_rejected_frames_total{encoding="json",reason="behind",stream="link"}`:   0,
		`nlmcast_listen_last_heard_timestamp_seconds{encoding="json",stream="link"}`:            1700000000.25,
		`nlmcast_listen_joined{encoding="json",stream="link"}`:                                  1,
		`nlmcast_listen_joined{encoding="json",stream="ipv4-ifaddr"}`:                           0,
		`nlmcast_listen_datagrams_total`:                                                        50,
		`nlmcast_listen_kernel_dropped_packets_total`:                                           4,
		`nlmcast_listen_dropped_datagrams_total{reason="malformed"}`:                            5,
		`nlmcast_listen_dropped_datagrams_total{reason="mismatch"}`:                             6,
		`nlmcast_listen_dropped_datagrams_total{reason="unknown-kind"}`:                         7,
		`nlmcast_listen_dropped_datagrams_total{reason="duplicate"}`:                            8,
		`nlmcast_listen_dropped_datagrams_total{reason="bad-fragment"}`:                         9,
		`nlmcast_listen_dropped_datagrams_total{reason="too-large"}`:                            10,
		`nlmcast_listen_dropped_datagrams_total{reason="wrong-source"}`:                         2,
		`nlmcast_listen_dropped_datagrams_total{reason="wrong-interface"}`:                      1,
		`nlmcast_listen_dropped_datagrams_total{reason="truncated"}`:                            3,
		`nlmcast_listen_authentication_failures_total{reason="unauthenticated"}`:                15,
		`nlmcast_listen_authentication_failures_total{reason="unknown-key"}`:                    16,
		`nlmcast_listen_authentication_failures_total{reason="bad-tag"}`:                        17,
		`nlmcast_listen_authentication_failures_total{reason="unattested"}`:                     18,
		`nlmcast_listen_fragments_total`:                                                        11,
		`nlmcast_listen_reassembled_messages_total`:                                             12,
		`nlmcast_listen_reassembly_bytes`:                                                       13,
		`nlmcast_listen_answer_frames_total`:                                                    14,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if _, ok := got[`nlmcast_listen_notices_total{encoding="json",kind="none",stream="link"}`]; ok {
		t.Error(`a notice of kind "none" is reported`)
	}
}

// The whole registry, as served, passes promtool's checks (names, units,
// help, types) and holds the build, process and Go metrics.
func TestServedMetricsPassPromtool(t *testing.T) {
	reg := NewRegistry(NewBridgeCollector(&fakeBridge{st: bridgeStats()}),
		NewListenCollector(&fakeReceiver{receiver.Stats{Streams: []receiver.StreamStats{{Stream: streams.Stream{Name: "link"}}}}}, "raw"))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	text := get(t, srv.URL)
	for _, name := range []string{"nlmcast_build_info{", "process_cpu_seconds_total", "go_goroutines", "nlmcast_bridge_events_total{", "nlmcast_listen_frames_total{"} {
		if !strings.Contains(text, name) {
			t.Errorf("no %s in\n%s", name, text)
		}
	}
	b := ReadBuild()
	if want := fmt.Sprintf(`nlmcast_build_info{commit=%q,goversion=%q,version=%q} 1`, b.Commit, b.GoVersion, b.Version); !strings.Contains(text, want) {
		t.Errorf("no %s", want)
	}
	CheckPromtool(t, text)
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %v, %s", url, err, resp.Status)
	}
	return string(body)
}

// CheckPromtool runs `promtool check metrics` on text and fails t on any
// problem it reports; without promtool t is skipped (failed under CI).
func CheckPromtool(t *testing.T, text string) {
	t.Helper()
	path := testenv.RequireCommand(t, "promtool")
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out.String())
	}
}
