package kernel

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

// Backlog reports the kernel's own count of what is queued on the socket:
// events not read yet, less once they are read, and the buffer it holds
// them in (at least the size ReadBuffer reports).
func TestBacklog(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		s, err := Open(&Config{Groups: []uint32{unix.RTNLGRP_LINK}, ReadBuffer: 1 << 20})
		if err != nil {
			return err
		}
		defer s.Close()
		queued, limit, err := s.Backlog()
		if err != nil || queued != 0 || limit < s.ReadBuffer() {
			t.Errorf("before any event: Backlog() = %d, %d, %v; want 0 queued, a limit of %d or more (the kernel doubles it)", queued, limit, err, s.ReadBuffer())
		}
		for _, up := range []bool{true, false} {
			if err := testenv.SetLoUp(up); err != nil {
				return err
			}
		}
		if queued, _, err = s.Backlog(); err != nil || queued == 0 {
			t.Errorf("link events unread: Backlog() = %d, %v; want bytes queued", queued, err)
		}
		ms := make([]Message, 16)
		n := 0
		s.SetReadDeadline(time.Now()) // what is queued, and no wait
		for {
			k, err := s.ReadBatch(ms)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return err
			}
			n += k
		}
		if n == 0 {
			t.Error("read no event")
		}
		// The kernel may queue a link event of its own later (linkwatch):
		// what was read is no longer counted, whatever came after.
		unread := queued
		if queued, _, err = s.Backlog(); err != nil || queued >= unread {
			t.Errorf("every event read: Backlog() = %d, %v; want less than the %d unread before", queued, err, unread)
		}
		s.Close()
		if _, _, err := s.Backlog(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("after Close: %v, want net.ErrClosed", err)
		}
		return nil
	})
}
