// Package keys reads, writes and reloads nlmcast key files: the shared
// secrets a bridge authenticates its frames with and receivers verify them
// with (PROTOCOL.md "Authenticated frames", frame.Signer, frame.Verifier).
//
// A key file is text, one key per line, as `nlmcast keygen` writes it:
//
//	# comment
//	ID       CREATED              SECRET
//	00000001 2026-11-30T03:40:00Z 000102…1f
//
// ID is 8 hexadecimal digits, CREATED an RFC 3339 time, SECRET 64
// hexadecimal digits (32 bytes). Blank lines and lines starting with # are
// ignored. Receivers accept a frame authenticated with any key of the file.
// A bridge signs with the newest key created at least Grace ago, or with
// the oldest key if none is that old: so a rotation (a new key added, the
// previous kept) gives every receiver Grace to load the new key before the
// first frame needs it, and no frame is refused on either side.
//
// Anyone who can read a key file can forge frames: it must be neither
// world-readable nor writable by anyone but its owner (Load refuses it
// otherwise), and is meant to be owned by root and readable by a group of
// trusted readers, mode 0640.
//
// Layer rule (ARCHITECTURE.md): keys imports only frame.
package keys

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/nlmcast/nlmcast/frame"
)

// Grace is how long after its creation a new key is first used to sign:
// time for every receiver to reload the file (they check it every
// ReloadEvery).
const Grace = 5 * time.Second

// ReloadEvery is how often a Store looks at its file for changes.
const ReloadEvery = time.Second

// An Entry is one key of a file and when it was made.
type Entry struct {
	frame.Key
	Created time.Time
}

// A Ring is the content of a key file: its keys, oldest first.
type Ring struct {
	Entries []Entry
}

// Keys returns every key of r, for a frame.Verifier.
func (r *Ring) Keys() []frame.Key {
	ks := make([]frame.Key, len(r.Entries))
	for i, e := range r.Entries {
		ks[i] = e.Key
	}
	return ks
}

// Signing returns the key a bridge signs with at now: the newest created
// at least Grace before now, or else the oldest.
func (r *Ring) Signing(now time.Time) frame.Key {
	k := r.Entries[0].Key
	for _, e := range r.Entries {
		if !e.Created.After(now.Add(-Grace)) {
			k = e.Key
		}
	}
	return k
}

// Parse reads the text of a key file. It needs at least one key and
// refuses a line it cannot read, naming it, and a repeated id.
func Parse(data []byte) (*Ring, error) {
	r := &Ring{}
	seen := map[uint32]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if seen[e.ID] {
			return nil, fmt.Errorf("line %d: key id %08x appears twice", n, e.ID)
		}
		seen[e.ID] = true
		r.Entries = append(r.Entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(r.Entries) == 0 {
		return nil, errors.New("no key in the file (make one with: nlmcast keygen FILE)")
	}
	sort.SliceStable(r.Entries, func(i, j int) bool { return r.Entries[i].Created.Before(r.Entries[j].Created) })
	return r, nil
}

func parseLine(line string) (Entry, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return Entry{}, errors.New("want three fields: ID CREATED SECRET")
	}
	var e Entry
	id, err := hex.DecodeString(f[0])
	if err != nil || len(id) != 4 {
		return Entry{}, fmt.Errorf("key id %q: want 8 hexadecimal digits", f[0])
	}
	e.ID = binary.BigEndian.Uint32(id)
	if e.Created, err = time.Parse(time.RFC3339, f[1]); err != nil {
		return Entry{}, fmt.Errorf("created %q: want an RFC 3339 time", f[1])
	}
	secret, err := hex.DecodeString(f[2])
	if err != nil || len(secret) != frame.KeyLen {
		return Entry{}, fmt.Errorf("secret of key %08x: want %d hexadecimal digits", e.ID, 2*frame.KeyLen)
	}
	copy(e.Secret[:], secret)
	return e, nil
}

// Format returns the text of a key file holding r.
func (r *Ring) Format() []byte {
	var b bytes.Buffer
	b.WriteString("# nlmcast keys, written by nlmcast keygen. Whoever can read this file can\n")
	b.WriteString("# forge frames: keep it owned by root, mode 0640, group of trusted readers.\n")
	b.WriteString("# id     created              secret\n")
	for _, e := range r.Entries {
		fmt.Fprintf(&b, "%08x %s %x\n", e.ID, e.Created.UTC().Format(time.RFC3339), e.Secret[:])
	}
	return b.Bytes()
}

// New returns an entry with a fresh random secret, created at now, whose
// id is one more than the largest in r (1 for a nil r).
func New(r *Ring, now time.Time) (Entry, error) {
	return newFrom(rand.Reader, r, now)
}

func newFrom(rnd io.Reader, r *Ring, now time.Time) (Entry, error) {
	e := Entry{Created: now.UTC().Truncate(time.Second)}
	if _, err := io.ReadFull(rnd, e.Secret[:]); err != nil {
		return Entry{}, fmt.Errorf("keys: random secret: %w", err)
	}
	e.ID = 1
	if r != nil {
		for _, o := range r.Entries {
			if o.ID >= e.ID {
				e.ID = o.ID + 1
			}
		}
	}
	return e, nil
}

// Rotate returns the ring after a rotation at now: the key r signs with
// now, then a new key. Older keys are dropped: a receiver accepts the
// current and the next key, and the bridge moves to the next after Grace.
func Rotate(r *Ring, now time.Time) (*Ring, error) {
	e, err := New(r, now)
	if err != nil {
		return nil, err
	}
	cur := r.Signing(now)
	out := &Ring{}
	for _, o := range r.Entries {
		if o.ID == cur.ID {
			out.Entries = append(out.Entries, o)
		}
	}
	out.Entries = append(out.Entries, e)
	return out, nil
}

// A PermissionError reports a key file others may read or change.
type PermissionError struct {
	Path string
	Mode os.FileMode
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("key file %s has mode %04o: anyone who can read it can forge frames, and only its owner may write it; make it %04o (chmod 0640 %s)",
		e.Path, e.Mode.Perm(), os.FileMode(0o640), e.Path)
}

// Load reads the key file at path. It refuses a file that is not regular,
// is readable by others or writable by anyone but its owner.
func Load(path string) (*Ring, error) {
	r, _, err := load(path)
	return r, err
}

func load(path string) (*Ring, stamp, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscallNoFollow, 0)
	if err != nil {
		return nil, stamp{}, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, stamp{}, fmt.Errorf("key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, stamp{}, fmt.Errorf("key file %s: not a regular file", path)
	}
	if fi.Mode().Perm()&0o027 != 0 {
		return nil, stamp{}, &PermissionError{Path: path, Mode: fi.Mode()}
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, stamp{}, fmt.Errorf("key file: %w", err)
	}
	r, err := Parse(data)
	if err != nil {
		return nil, stamp{}, fmt.Errorf("key file %s: %w", path, err)
	}
	return r, stampOf(fi), nil
}
