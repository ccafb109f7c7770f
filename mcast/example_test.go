package mcast_test

import (
	"fmt"
	"log"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/nlmcast/nlmcast/mcast"
)

// A Receiver joins a group on lo and reads what a Sender sends to it. The
// Sender here sends from a port the kernel picks, so that the example
// needs no privilege, and the Receiver accepts that sender only. (By
// default a Sender sends from privileged port 1021, and a Receiver accepts
// only 127.0.0.1:1021: then no unprivileged process can forge the
// datagrams, where that port is privileged; see UnprivilegedPortStart.)
func ExampleReceiver() {
	snd, err := mcast.NewSender(&mcast.SenderConfig{EphemeralPort: true})
	if err != nil {
		log.Fatal(err)
	}
	defer snd.Close()

	group := netip.MustParseAddrPort("239.255.98.1:27001")
	rcv, err := mcast.NewReceiver(&mcast.ReceiverConfig{Source: snd.Source()})
	if err != nil {
		log.Fatal(err)
	}
	defer rcv.Close()
	if err := rcv.Join(group); err != nil {
		log.Fatal(err)
	}

	if err := snd.Send([]byte("hello"), group); err != nil {
		log.Fatal(err)
	}

	rcv.SetReadDeadline(time.Now().Add(5 * time.Second))
	ds := make([]mcast.Datagram, 8)
	n, err := rcv.ReadBatch(ds)
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range ds[:n] {
		fmt.Printf("%s from %s: %s\n", d.Group, d.Source.Addr(), d.Data)
	}
	// Output:
	// 239.255.98.1:27001 from 127.0.0.1: hello
}

// WriteBatch sends many datagrams with one system call; datagrams of one
// size for one group go as one UDP_SEGMENT run. Every receiver gets them
// as they were sent, one by one, in order.
func ExampleSender_WriteBatch() {
	snd, err := mcast.NewSender(&mcast.SenderConfig{EphemeralPort: true})
	if err != nil {
		log.Fatal(err)
	}
	defer snd.Close()

	group := netip.MustParseAddrPort("239.255.98.2:27002")
	var rcvs []*mcast.Receiver
	for range 2 {
		rcv, err := mcast.NewReceiver(&mcast.ReceiverConfig{Source: snd.Source()})
		if err != nil {
			log.Fatal(err)
		}
		defer rcv.Close()
		if err := rcv.Join(group); err != nil {
			log.Fatal(err)
		}
		rcvs = append(rcvs, rcv)
	}

	dst := net.UDPAddrFromAddrPort(group)
	ms := []ipv4.Message{
		{Buffers: [][]byte{[]byte("one")}, Addr: dst},
		{Buffers: [][]byte{[]byte("two")}, Addr: dst},
		{Buffers: [][]byte{[]byte("six")}, Addr: dst},
	}
	if err := snd.WriteBatch(ms); err != nil {
		log.Fatal(err)
	}

	ds := make([]mcast.Datagram, 8)
	for i, rcv := range rcvs {
		rcv.SetReadDeadline(time.Now().Add(5 * time.Second))
		for got := 0; got < len(ms); {
			n, err := rcv.ReadBatch(ds)
			if err != nil {
				log.Fatal(err)
			}
			for _, d := range ds[:n] {
				fmt.Printf("receiver %d: %s\n", i, d.Data)
			}
			got += n
		}
	}
	// Output:
	// receiver 0: one
	// receiver 0: two
	// receiver 0: six
	// receiver 1: one
	// receiver 1: two
	// receiver 1: six
}
