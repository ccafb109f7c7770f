package main

import (
	"flag"
	"fmt"
	"net/netip"

	"github.com/nlmcast/nlmcast/streams"
)

// mapFlags registers --base and --port and returns a function that builds
// the validated address map from them.
func mapFlags(fs *flag.FlagSet) func() (streams.Map, error) {
	base := fs.String("base", streams.DefaultBase.String(), "first address of the multicast block: stream N uses base+N (raw) and base+256+N (json, the next /24)")
	port := fs.Uint("port", uint(streams.DefaultPort), "base UDP port; stream N uses port+2N (raw) and port+2N+1 (json)")
	return func() (streams.Map, error) {
		b, err := netip.ParseAddr(*base)
		if err != nil {
			return streams.Map{}, fmt.Errorf("--base %q: not an IPv4 address (example: %s)", *base, streams.DefaultBase)
		}
		if *port > 65535 {
			return streams.Map{}, fmt.Errorf("--port %d: not a port number", *port)
		}
		m := streams.Map{Base: b, Port: uint16(*port)}
		if err := m.Validate(); err != nil {
			return streams.Map{}, fmt.Errorf("--base/--port: %w", err)
		}
		return m, nil
	}
}
