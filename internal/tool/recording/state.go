package recording

import (
	"bytes"
	"maps"
	"slices"
	"sync"

	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/receiver"
)

// stateDumper is the Dumper of a replay's rtnetlink bridge: it keeps the
// tables as the replayed events left them, and answers resyncs and
// receivers' requests from them, as the kernel would have then.
type stateDumper struct {
	mu     sync.Mutex
	tables map[uint32]map[string][]byte // by netlink group, then receiver.StateKey
}

func newStateDumper() *stateDumper {
	return &stateDumper{tables: map[uint32]map[string][]byte{}}
}

// apply updates the tables with a replayed event of the bridged
// namespace (not of a peer: those are not in its tables).
func (d *stateDumper) apply(it *Item) {
	if it.Data == nil || it.Flags != 0 {
		return
	}
	key, remove, ok := receiver.StateKey(it.Data)
	if !ok {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.tables[it.Stream.Group]
	if t == nil {
		t = map[string][]byte{}
		d.tables[it.Stream.Group] = t
	}
	if remove {
		delete(t, key)
		return
	}
	t[key] = bytes.Clone(it.Data)
}

// Dump returns the entries of every table the request dumps, in the order
// of their keys.
func (d *stateDumper) Dump(req kernel.DumpRequest) ([][]byte, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out [][]byte
	for _, g := range slices.Sorted(maps.Keys(d.tables)) {
		if r, ok := kernel.DumpFor(g); !ok || r != req {
			continue
		}
		t := d.tables[g]
		for _, k := range slices.Sorted(maps.Keys(t)) {
			out = append(out, t[k])
		}
	}
	return out, false, nil
}

func (d *stateDumper) Close() error { return nil }
