package sdnotify

import (
	"context"
	"os"
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

// A Notifier's connection, opened once, still reaches the supervisor when
// the socket's path no longer does (as after a privilege drop, when the
// path is no longer the process's to open).
func TestNotifierSendsOverItsConnection(t *testing.T) {
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv(Socket, l.Path())
	n, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	moved := l.Path() + ".moved"
	if err := os.Rename(l.Path(), moved); err != nil {
		t.Fatal(err)
	}
	defer os.Rename(moved, l.Path())
	if err := Notify(Ready); err == nil {
		t.Fatal("the path still reaches the listener: the test cannot tell")
	}
	if err := n.Send(Ready + "\nSTATUS=bridging"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if msg, err := l.Wait(ctx, Ready); err != nil || msg != "READY=1\nSTATUS=bridging" {
		t.Fatalf("got %q, %v", msg, err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	t.Setenv(Socket, "")
	if n, err := Open(); n != nil || err != nil {
		t.Fatalf("without a socket: %v, %v", n, err)
	}
	var none *Notifier
	if err := none.Send(Ready); err != nil {
		t.Fatal(err)
	}
}
