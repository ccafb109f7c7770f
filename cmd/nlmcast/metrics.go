package main

import (
	"errors"
	"flag"
	"io/fs"
	"log/slog"
	"net"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nlmcast/nlmcast/internal/metrics"
)

// metricsFlag defines --metrics of command cmd.
func metricsFlag(fs *flag.FlagSet, cmd string) *string {
	return fs.String("metrics", "", "serve Prometheus metrics of the "+cmd+" at /metrics on this address: a loopback host:port\n"+
		"(127.0.0.1:9178, [::1]:9178) or a Unix socket path starting with / or ./ (made mode 0660, removed on exit); off when empty")
}

// serveMetrics serves c, with the build, process and Go runtime metrics,
// on ln (opened from a); the returned function stops serving and removes
// a Unix socket's file, saying so when it cannot (a --user that may not
// write to its directory).
func serveMetrics(ln net.Listener, a metrics.Addr, c prometheus.Collector, log *slog.Logger) (stop func()) {
	srv := metrics.Serve(ln, metrics.NewRegistry(c))
	log.Info("serving metrics", "address", a.Address, "network", a.Network, "path", "/metrics")
	return func() {
		if err := srv.Close(); err != nil {
			log.Warn("metrics server stopped early", "err", err)
		}
		if a.Network == "unix" {
			if _, err := os.Lstat(a.Address); !errors.Is(err, fs.ErrNotExist) {
				log.Warn("cannot remove the metrics socket; remove it by hand (the next start replaces it too)", "path", a.Address)
			}
		}
	}
}
