package metrics

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// docs are the files that name metrics to scrape or alert on.
var docs = []string{"../../README.md", "../../dist/nlmcast.8", "../../dist/nlmcast.toml"}

// docName is an nlmcast_ name in a document, with the character before
// it: a name after a slash is a path's (examples/c/nlmcast_recv.c,
// bin/nlmcast_recv), not a metric's.
var docName = regexp.MustCompile(`(^|[^A-Za-z0-9_])(nlmcast_[a-z0-9_]+)`)

// exportedNames returns every series name nlmcast's own collectors
// export: each metric's name, and for summaries and histograms the names
// of their series (_sum, _count; _bucket).
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	link, _ := streams.Lookup("link")
	cs := []prometheus.Collector{
		NewBuildInfoCollector(),
		NewBridgeCollector(&fakeBridge{st: bridgeStats()}),
		NewListenCollector(&fakeReceiver{receiver.Stats{Streams: []receiver.StreamStats{{Stream: link, Heard: time.Unix(1, 0)}}}}, "raw"),
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(cs...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		n := mf.GetName()
		names[n] = true
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[n+"_bucket"] = true
			fallthrough
		case dto.MetricType_SUMMARY:
			names[n+"_sum"], names[n+"_count"] = true, true
		}
	}
	// Every metric described was gathered (so its type is known): the
	// stats above must leave none out.
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	ch := make(chan *prometheus.Desc)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		if !names[m[1]] {
			t.Errorf("%s is described but was not gathered: give it a value in the test's stats", m[1])
		}
	}
	return names
}

// TestReadmeMetricNames: every metric name the README, the man page and
// the reference configuration give is one the collectors export, so that
// what they tell an administrator to grep or alert on exists.
func TestReadmeMetricNames(t *testing.T) {
	exported := exportedNames(t)
	found := 0
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, m := range docName.FindAllStringSubmatch(line, -1) {
				if m[1] == "/" {
					continue
				}
				found++
				if !exported[m[2]] {
					t.Errorf("%s:%d: %s is not a metric nlmcast exports", doc, i+1, m[2])
				}
			}
		}
	}
	if found == 0 {
		t.Error("no metric name in the documents: is the pattern wrong?")
	}
	t.Logf("%d metric names in the documents", found)
}
