package keys

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// DefaultGroup is the group keygen gives a new key file when it exists and
// no other is asked for: the readers the operator trusts.
const DefaultGroup = "nlmcast"

// Create writes a new key file at path holding one new key, mode 0640. It
// refuses to overwrite anything, and never follows a symbolic link. If
// group is not empty, the file's group is set to it (which needs root, or
// membership of the group).
func Create(path, group string) (*Ring, error) {
	e, err := New(nil, time.Now())
	if err != nil {
		return nil, err
	}
	r := &Ring{Entries: []Entry{e}}
	return r, writeNew(path, r, group)
}

// RotateFile adds a new key to the key file at path, keeping the one in
// use (see Rotate), and replaces the file in one rename, with the same
// owner, group and mode.
func RotateFile(path string) (*Ring, error) {
	old, err := Load(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	r, err := Rotate(old, time.Now())
	if err != nil {
		return nil, err
	}
	sys, _ := fi.Sys().(*syscall.Stat_t)
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
	_ = os.Remove(tmp) // one left by a failed rotation; Remove does not follow links
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, fi.Mode().Perm())
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if sys != nil && os.Geteuid() == 0 {
		if err := f.Chown(int(sys.Uid), int(sys.Gid)); err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
	}
	if err := f.Chmod(fi.Mode().Perm()); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if _, err := f.Write(r.Format()); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	ok = true
	return r, nil
}

func writeNew(path string, r *Ring, group string) error {
	gid := -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return fmt.Errorf("key file group: %w (create it with: groupadd %s)", err, group)
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return fmt.Errorf("key file group %s: gid %q", group, g.Gid)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("key file %s exists; to add a key to it, rotate: nlmcast keygen --rotate %s", path, path)
		}
		return fmt.Errorf("key file: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("key file: %w", err)
	}
	if gid >= 0 {
		if err := f.Chown(-1, gid); err != nil {
			return fail(err)
		}
	}
	// Chmod after the group is set: the umask does not apply, and no one
	// of another group could read it meanwhile.
	if err := f.Chmod(0o640); err != nil {
		return fail(err)
	}
	if _, err := f.Write(r.Format()); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("key file: %w", err)
	}
	return nil
}
