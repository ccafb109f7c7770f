// Command mirror is a consumer under test for the integration tests: a
// receiver.Mirror of the link and IPv4 address tables that says READY=1
// once in sync, and exits printing its tables once they hold -links links
// and -addrs addresses, one line "entry\tSTREAM\tKEY\tHEX" per entry
// (status 1 if not within -timeout).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

func main() {
	links := flag.Int("links", 0, "links to wait for")
	addrs := flag.Int("addrs", 0, "addresses to wait for")
	timeout := flag.Duration("timeout", 30*time.Second, "give up after this long")
	flag.Parse()
	link, _ := streams.Lookup("link")
	addr, _ := streams.Lookup("ipv4-ifaddr")
	m, err := receiver.NewMirror(&receiver.MirrorConfig{Streams: []streams.Stream{link, addr},
		RequestEvery: 50 * time.Millisecond, MaxRequestEvery: 50 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "mirror:", err)
		os.Exit(1)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	go m.Run(ctx)
	if err := m.WaitSynced(ctx, link, addr); err != nil {
		fmt.Fprintln(os.Stderr, "mirror: never in sync:", err)
		os.Exit(1)
	}
	if err := sdnotify.Notify(sdnotify.Ready); err != nil {
		fmt.Fprintln(os.Stderr, "mirror:", err)
	}
	for {
		changed := m.Changed()
		if m.Len(link) == *links && m.Len(addr) == *addrs && m.Synced(link) && m.Synced(addr) {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			fmt.Fprintf(os.Stderr, "mirror: %d links, %d addresses after %v\n", m.Len(link), m.Len(addr), *timeout)
			os.Exit(1)
		}
	}
	// One line per entry, tab-separated (keys hold spaces): the test
	// compares each message byte for byte with the recorded one.
	for _, s := range []streams.Stream{link, addr} {
		for _, k := range m.Keys(s) {
			msg, _ := m.Get(s, k)
			fmt.Printf("entry\t%s\t%s\t%x\n", s.Name, k, msg)
		}
	}
	fmt.Printf("stats %+v\n", m.Stats())
}
