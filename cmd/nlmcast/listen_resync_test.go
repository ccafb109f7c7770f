package main

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// TestAwaitAnswers: listen --resync is ready once every stream with a
// state has its answer's end (or an AnswerLost notice), not at a
// multicast resync's end, and without answers after the wait.
func TestAwaitAnswers(t *testing.T) {
	ss, err := streams.Resolve("link", "ipv4-ifaddr", "uevent")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ready := make(chan struct{}, 2)
	each, stop := awaitAnswers(ss, time.Hour, func() { ready <- struct{}{} }, log)
	defer stop()
	end := func(s streams.Stream, flags frame.Flags) *receiver.Event {
		return &receiver.Event{Stream: s, Header: frame.Header{Kind: frame.KindResyncEnd, Flags: flags}}
	}
	isReady := func() bool {
		select {
		case <-ready:
			return true
		default:
			return false
		}
	}
	each(end(ss[0], frame.FlagAnswer))
	each(end(ss[1], 0)) // a multicast resync, to every receiver: no answer
	if isReady() {
		t.Fatal("ready with ipv4-ifaddr's answer still to come")
	}
	each(&receiver.Event{Stream: ss[1], Notice: receiver.Notice{Kind: receiver.AnswerLost}})
	if !isReady() {
		t.Fatal("not ready once every answer ended (uevent has no state: none comes)")
	}
	each(end(ss[0], frame.FlagAnswer))
	if isReady() {
		t.Error("ready twice")
	}

	_, stop2 := awaitAnswers(ss, time.Millisecond, func() { ready <- struct{}{} }, log)
	defer stop2()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer, and not ready after the wait")
	}
}
