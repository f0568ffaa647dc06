//go:build linux

package main

import (
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSocketPathLock: while one observer holds a socket path, another
// start on it fails with "already running" and leaves even a stale socket
// there alone, whatever spelling of the path it uses; once the holder closes
// its socket, the path can be taken again. The lock is not inherited by
// children.
func TestSocketPathLock(t *testing.T) {
	dir := shortTempDir(t)
	path := filepath.Join(dir, "s.sock")
	makeStale := func() uint64 {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
			t.Fatal(err)
		}
		unix.Close(fd) // the file stays: a stale socket
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}

	lock, busy := lockSocketPath(path)
	if lock < 0 || busy {
		t.Fatalf("first lock: fd %d, busy %v", lock, busy)
	}
	if flags, err := unix.FcntlInt(uintptr(lock), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("lock descriptor is not close-on-exec (flags %#x, %v)", flags, err)
	}
	// The same path spelt another way: through a symlink to its directory,
	// and relative to the working directory.
	link := filepath.Join(shortTempDir(t), "d")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, filepath.Join(link, "s.sock"), rel} {
		if fd, busy := lockSocketPath(p); !busy {
			unix.Close(fd)
			t.Errorf("%s: a second lock was granted", p)
		}
	}
	if fd, busy := lockSocketPath(filepath.Join(dir, "other.sock")); busy {
		t.Error("another socket name in the same directory is locked too")
	} else {
		unix.Close(fd)
	}

	stale := makeStale()
	_, err = bindVLPSocket(path, 0o600, 0)
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("start while the path is held: %v, want already running", err)
	}
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Ino != stale {
		t.Fatal("a refused start touched the socket at the path")
	}

	unix.Close(lock) // the holder is gone
	s, err := bindVLPSocket(path, 0o600, 0)
	if err != nil {
		t.Fatalf("start after the holder went: %v", err)
	}
	if fd, busy := lockSocketPath(path); !busy {
		unix.Close(fd)
		t.Error("a running observer's path was not locked")
	}
	s.close()
	fd, busy := lockSocketPath(path)
	if busy {
		t.Fatal("the lock outlived the observer's socket")
	}
	unix.Close(fd)

	// A file name too long for the abstract name is hashed: still one lock.
	long := filepath.Join(dir, strings.Repeat("n", 90))
	fd, busy = lockSocketPath(long)
	if fd < 0 || busy {
		t.Fatalf("lock on a 90-byte name: fd %d, busy %v", fd, busy)
	}
	if fd2, busy := lockSocketPath(long); !busy {
		unix.Close(fd2)
		t.Error("a second lock on the 90-byte name was granted")
	}
	unix.Close(fd)
}

func TestFNV64a(t *testing.T) {
	h := fnv.New64a()
	for _, s := range []string{"", "a", "s.sock", strings.Repeat("long name ", 30)} {
		h.Reset()
		h.Write([]byte(s))
		if got, want := fnv64a(s), h.Sum64(); got != want {
			t.Errorf("fnv64a(%q) = %#x, want %#x", s, got, want)
		}
	}
}
