package frame_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/nlmcast/nlmcast/frame"
)

// Append writes a raw frame, a 48-byte header then the payload; Parse
// checks a datagram and returns its header and payload. The payload of an
// event is a netlink message; any bytes do here.
func ExampleParse() {
	h := frame.Header{
		Kind:  frame.KindEvent,
		Group: 1, // RTNLGRP_LINK, the link stream
		Epoch: 0x5eed,
		Seq:   42,
		Time:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano(),
	}
	datagram := frame.Append(nil, h, []byte("netlink message"))
	fmt.Printf("% x\n", datagram[:16])

	got, payload, err := frame.Parse(datagram)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(datagram), got.Kind, got.Group, got.Seq, time.Unix(0, got.Time).UTC().Format(time.RFC3339))
	fmt.Printf("%q\n", payload)

	// A datagram that is not a whole frame is refused.
	_, _, err = frame.Parse(datagram[:40])
	fmt.Println(errors.Is(err, frame.ErrShort), frame.ErrorToken(err))
	// Output:
	// 4e 4c 4d 43 01 01 00 00 00 30 00 00 00 00 00 01
	// 63 event 1 42 2026-01-02T03:04:05Z
	// "netlink message"
	// true short
}
