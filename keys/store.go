package keys

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nlmcast/nlmcast/frame"
)

const syscallNoFollow = syscall.O_NOFOLLOW

// stamp tells a changed file from an unchanged one without reading it.
type stamp struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
	ctime    syscall.Timespec
}

func stampOf(fi os.FileInfo) stamp {
	s := stamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino, s.ctime = st.Dev, st.Ino, st.Ctim
	}
	return s
}

// A View is what a Store holds at one time: every key to accept, and the
// key to sign with. It never changes; a Store makes a new one.
type View struct {
	Keys    []frame.Key
	Signing frame.Key
}

// A Store holds a key file's keys and reloads them when the file changes,
// so that keys rotate without a restart. Its methods are safe for
// concurrent use; View costs one atomic load. A Store opens no descriptor
// that outlives a call, so it has nothing to close.
type Store struct {
	path string
	now  func() time.Time

	mu    sync.Mutex // serializes reloads
	next  time.Time  // next look at the file
	stamp stamp
	ring  *Ring

	view atomic.Pointer[View]
}

// Open loads the key file at path (see Load) into a new Store.
func Open(path string) (*Store, error) {
	return open(path, time.Now)
}

func open(path string, now func() time.Time) (*Store, error) {
	r, st, err := load(path)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, now: now, stamp: st, ring: r}
	t := now()
	s.next = t.Add(ReloadEvery)
	s.view.Store(&View{Keys: r.Keys(), Signing: r.Signing(t)})
	return s, nil
}

// Path returns the file the Store reads.
func (s *Store) Path() string { return s.path }

// View returns the keys in force.
func (s *Store) View() *View { return s.view.Load() }

// Check looks at the file, at most once per ReloadEvery, and reloads it if
// it changed; it also moves signing to a new key once its Grace is over.
// It reports whether the View changed. If the file cannot be read or is
// not valid, the Store keeps the keys it has and returns the error.
func (s *Store) Check() (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Before(s.next) {
		return false, nil
	}
	s.next = now.Add(ReloadEvery)
	fi, err := os.Stat(s.path)
	if err == nil && stampOf(fi) != s.stamp {
		r, st, lerr := load(s.path)
		if lerr != nil {
			err = lerr
		} else {
			s.ring, s.stamp = r, st
		}
	}
	old := s.view.Load()
	sign := s.ring.Signing(now)
	if len(old.Keys) == len(s.ring.Entries) && sameKeys(old.Keys, s.ring) && old.Signing == sign {
		return false, err
	}
	s.view.Store(&View{Keys: s.ring.Keys(), Signing: sign})
	return true, err
}

func sameKeys(ks []frame.Key, r *Ring) bool {
	for i, e := range r.Entries {
		if ks[i] != e.Key {
			return false
		}
	}
	return true
}
