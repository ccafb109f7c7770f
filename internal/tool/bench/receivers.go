package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// recvArgs returns the command line of a receiving process, extra last.
func (b *bench) recvArgs(mode string, count int, out string, group netip.AddrPort, extra []string) []string {
	args := []string{b.cfg.Self, "bench-recv", "--mode", mode, "--count", strconv.Itoa(count), "--out", out}
	if mode == ModeRaw || mode == ModeBare || mode == ModeRelay {
		args = append(args, "--group", group.String())
	}
	if mode != ModeNetlink && b.cfg.ReceiverBuffer > 0 {
		args = append(args, "--read-buffer", strconv.Itoa(b.cfg.ReceiverBuffer))
	}
	return append(args, extra...)
}

// receivers starts n receiving processes of a mode in g, extra added to
// their flags, and returns once each has said it is ready. files are where
// they write their records.
func (b *bench) receivers(ctx context.Context, g *group, mode string, n, count int, tag string, group netip.AddrPort, extra ...string) (cs []*child, files []string, err error) {
	for i := range n {
		out := filepath.Join(b.dir, fmt.Sprintf("%s-%s-%d.rec", tag, mode, i))
		c, err := g.start(ctx, spec{name: fmt.Sprintf("%s receiver %d", mode, i), argv: b.recvArgs(mode, count, out, group, extra), notify: true})
		if err != nil {
			return nil, nil, err
		}
		cs, files = append(cs, c), append(files, out)
	}
	return cs, files, nil
}

// finish gives receivers until grace from now to reach their count, stops
// those that have not, and returns their reports.
func finish(cs []*child, grace time.Duration) ([]RecvResult, error) {
	deadline := time.Now().Add(grace)
	res := make([]RecvResult, len(cs))
	for i, c := range cs {
		c.wait(time.Until(deadline))
		c.stop()
		if err := c.failed(); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(c.Stdout()), &res[i]); err != nil {
			return nil, fmt.Errorf("bench: %s printed %q: %w", c.name, c.Stdout(), err)
		}
	}
	return res, nil
}

// recvData is what one receiving process left: its report and its records.
type recvData struct {
	res   RecvResult
	keys  map[uint32]int64 // key to first arrival
	times []int64          // every arrival, in order
}

// collect reads the records files of receivers that reported res.
func collect(res []RecvResult, files []string) ([]recvData, error) {
	out := make([]recvData, len(res))
	for i := range res {
		data, err := os.ReadFile(files[i])
		if err != nil {
			return nil, err
		}
		keys, times, err := parseRecords(data)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", files[i], err)
		}
		out[i] = recvData{res: res[i], keys: keys, times: times}
	}
	return out, nil
}
