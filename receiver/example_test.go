package receiver_test

import (
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// A Receiver joins streams and reads their events. A real program needs
// only receiver.New(&receiver.Config{Streams: ss}) and the loop: the
// bridge sends. To run without a bridge, this example plays the bridge
// itself: it sends three frames of the link stream, from an unprivileged
// port (so its receiver is told to accept that port, and, since any user
// could send from it, to start all the same: Insecure), to an address
// block of its own, and loses the second on purpose.
func ExampleReceiver() {
	link, _ := streams.Lookup("link")
	m := streams.Map{Base: netip.MustParseAddr("239.255.97.0"), Port: 27800}

	snd, err := mcast.NewSender(&mcast.SenderConfig{EphemeralPort: true})
	if err != nil {
		log.Fatal(err)
	}
	defer snd.Close()

	r, err := receiver.New(&receiver.Config{
		Streams: []streams.Stream{link},
		Map:     m,
		Mcast:   &mcast.ReceiverConfig{Source: snd.Source()},
		// For this example only: a real program trusts the bridge's port.
		Insecure: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	// The bridge's side: an RTM_NEWLINK message, framed as event 1 and
	// event 3 of the stream (event 2 is "lost").
	msg := newLink(7, "veth0")
	for _, seq := range []uint64{1, 3} {
		h := frame.Header{Kind: frame.KindEvent, Family: link.Family, Group: link.Group, Epoch: 0x5eed, Seq: seq, Time: time.Now().UnixNano()}
		if err := snd.Send(frame.Append(nil, h, msg), m.Addr(link, streams.Raw)); err != nil {
			log.Fatal(err)
		}
	}

	// The receiver's side.
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	evs := make([]receiver.Event, 16)
	for got := 0; got < 3; {
		n, err := r.ReadBatch(evs)
		if err != nil {
			log.Fatal(err)
		}
		for _, ev := range evs[:n] {
			if ev.IsNotice() {
				fmt.Printf("%s !! %s\n", ev.Stream.Name, ev.Notice)
			} else {
				// The payload is the kernel's netlink message.
				fmt.Printf("%s #%d %s\n", ev.Stream.Name, ev.Header.Seq, decode.Route(ev.Payload, nil).Summary)
			}
		}
		got += n
	}
	// Output:
	// link #1 new link 7: veth0 <UP> mtu 1500 state UP
	// link !! gap: frame #2 lost
	// link #3 new link 7: veth0 <UP> mtu 1500 state UP
}

// newLink returns an RTM_NEWLINK message as the kernel sends it.
func newLink(index uint32, name string) []byte {
	body, err := (&rtnetlink.LinkMessage{Index: index, Flags: unix.IFF_UP, Attributes: &rtnetlink.LinkAttributes{
		Name: name, MTU: 1500, OperationalState: rtnetlink.OperStateUp}}).MarshalBinary()
	if err != nil {
		log.Fatal(err)
	}
	nm := netlink.Message{Header: netlink.Header{Length: uint32(16 + len(body)), Type: unix.RTM_NEWLINK}, Data: body}
	b, err := nm.MarshalBinary()
	if err != nil {
		log.Fatal(err)
	}
	return b
}
