package metrics

import (
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric of nlmcast's own.
const Namespace = "nlmcast"

// NewRegistry returns a registry holding cs, the build information
// (NewBuildInfoCollector), the process's metrics (CPU, memory, file
// descriptors: collectors.NewProcessCollector) and the Go runtime's
// (collectors.NewGoCollector). It panics if two collectors describe the
// same metric, a programming error.
func NewRegistry(cs ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewBuildInfoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector())
	reg.MustRegister(cs...)
	return reg
}

// Build is what nlmcast_build_info tells of the running binary.
type Build struct {
	// Version is the main module's version ("(devel)" for a build from a
	// work tree); Commit the VCS revision it was built from, with
	// "-dirty" when the tree had changes ("" when unknown); GoVersion the
	// toolchain's.
	Version, Commit, GoVersion string
}

// ReadBuild returns the running binary's build information, from
// runtime/debug.ReadBuildInfo; fields it cannot tell are "unknown".
func ReadBuild() Build {
	b := Build{Version: "unknown", Commit: "unknown", GoVersion: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.GoVersion = bi.GoVersion
	if bi.Main.Version != "" {
		b.Version = bi.Main.Version
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Commit != "unknown" {
		b.Commit += "-dirty"
	}
	return b
}

// NewBuildInfoCollector returns a collector of nlmcast_build_info, a gauge
// always 1 whose labels version, commit and goversion tell of the running
// binary (ReadBuild).
func NewBuildInfoCollector() prometheus.Collector {
	b := ReadBuild()
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "A metric with a constant '1' value labeled by the version, commit and Go version nlmcast was built from.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": b.GoVersion},
	}, func() float64 { return 1 })
}

// metric is one metric a collector reports: its description and type.
type metric struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
}

func newMetric(subsystem, name string, typ prometheus.ValueType, help string, labels ...string) metric {
	return metric{prometheus.NewDesc(prometheus.BuildFQName(Namespace, subsystem, name), help, labels, nil), typ}
}

// emit sends one sample of m.
func (m metric) emit(ch chan<- prometheus.Metric, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(m.desc, m.typ, float64(v), labels...)
}

// emitFloat sends one sample of m.
func (m metric) emitFloat(ch chan<- prometheus.Metric, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(m.desc, m.typ, v, labels...)
}

// bool01 is 1 for true, 0 for false.
func bool01(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// unixSeconds is t in seconds since the epoch.
func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}
