package sdnotify

import (
	"context"
	"testing"
	"time"
)

func TestNotifyReachesListener(t *testing.T) {
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv(Socket, l.Path())
	if err := Notify("STATUS=starting"); err != nil {
		t.Fatal(err)
	}
	if err := Notify(Ready + "\nSTATUS=bridging"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg, err := l.Wait(ctx, Ready)
	if err != nil {
		t.Fatal(err)
	}
	if msg != "READY=1\nSTATUS=bridging" {
		t.Errorf("got %q", msg)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Wait(ctx, Ready); err == nil {
		t.Fatal("Wait returned without a notification")
	}
}

func TestNotifyWithoutSocketDoesNothing(t *testing.T) {
	t.Setenv(Socket, "")
	if err := Notify(Ready); err != nil {
		t.Fatal(err)
	}
	t.Setenv(Socket, "relative/path")
	if err := Notify(Ready); err == nil {
		t.Fatal("a relative socket path was accepted")
	}
}
