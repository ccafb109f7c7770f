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
// events not read yet, nothing once they are, and the buffer it holds them
// in (the size ReadBuffer reports).
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
		if queued, _, err = s.Backlog(); err != nil || queued != 0 {
			t.Errorf("every event read: Backlog() = %d, %v; want 0", queued, err)
		}
		s.Close()
		if _, _, err := s.Backlog(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("after Close: %v, want net.ErrClosed", err)
		}
		return nil
	})
}
