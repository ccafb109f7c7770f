// Command recv is the smallest Go receiver of nlmcast streams: it joins
// the named streams (default: link and addresses) and prints each event's
// stream, sequence number and netlink message type. It imports the receiver
// library and the stream map, never netlink code. With -key (the bridge's
// key file, nlmcast keygen) it accepts only authenticated frames. With
// -private (the key file a private stream is sealed under, the bridge's
// --expose STREAMS=KEYFILE) every stream named is private: its frames are
// opened with it, and any frame not sealed under it is refused.
//
//	go run ./examples/go/recv [-key FILE] link addr
//	go run ./examples/go/recv -private /etc/nlmcast/private.key proc
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

func main() {
	key := flag.String("key", "", "the bridge's key file: accept only frames authenticated with its keys")
	private := flag.String("private", "", "the key file the streams are sealed under: they are private")
	flag.Parse()
	names := flag.Args()
	if len(names) == 0 {
		names = []string{"link", "addr"}
	}
	ss, err := streams.Resolve(names...)
	if err != nil {
		log.Fatal(err)
	}
	cfg := &receiver.Config{Streams: ss, KeyFile: *key} // raw encoding, default map
	if *private != "" {
		cfg.Private = map[string]string{}
		for _, s := range ss {
			cfg.Private[s.Name] = *private
		}
	}
	r, err := receiver.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	fmt.Fprintln(os.Stderr, "ready")
	// r.Stats() counts the frames refused (Unauthenticated, UnknownKey,
	// BadTag; NotSealed, BadSeal), and the sealed frames of streams not
	// opened (Sealed; a Sealed notice says so).

	evs := make([]receiver.Event, 64)
	for {
		n, err := r.ReadBatch(evs)
		if err != nil {
			log.Fatal(err)
		}
		for _, ev := range evs[:n] {
			if ev.IsNotice() { // lost frames, a bridge restart, silence...
				fmt.Printf("%s notice: %s\n", ev.Stream.Name, ev.Notice)
				continue
			}
			if ev.Header.Kind != frame.KindEvent { // heartbeat, overrun, resync-begin/end, goodbye
				fmt.Printf("%s %s seq=%d\n", ev.Stream.Name, ev.Header.Kind, ev.Header.Seq)
				continue
			}
			// The payload is the kernel's netlink message: nlmsghdr first.
			typ := binary.NativeEndian.Uint16(ev.Payload[4:])
			nsid := "" // an event of a peer network namespace (a bridge with --all-nsid) carries its id
			if ev.Header.Flags&frame.FlagNSID != 0 {
				nsid = fmt.Sprintf(" nsid=%d", ev.Header.NSID)
			}
			fmt.Printf("%s seq=%d epoch=%016x%s nlmsg_type=%d len=%d\n",
				ev.Stream.Name, ev.Header.Seq, ev.Header.Epoch, nsid, typ, len(ev.Payload))
		}
	}
}
