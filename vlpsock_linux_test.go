//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// countOwnFds counts this process's open descriptors.
func countOwnFds(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestRecvClosesEverySmuggledFd sends datagrams that carry the most
// descriptors the kernel passes in one message (SCM_MAX_FD, 253) and checks
// that the observer's recv closes every one it was given: the kernel
// installs as many as fit in the control buffer, and any it leaves open is
// a descriptor leak a local sender could repeat until the observer cannot
// accept a connection or reopen its event file.
func TestRecvClosesEverySmuggledFd(t *testing.T) {
	if comm, _ := os.ReadFile("/proc/self/comm"); strings.HasPrefix(string(comm), "qemu-") {
		// qemu-user receives into a host buffer larger than ours and leaks
		// the descriptors that do not fit when it converts the messages.
		t.Skip("under qemu-user emulation, which leaks SCM_RIGHTS descriptors itself")
	}
	dir := shortTempDir(t)
	s, err := bindVLPSocket(filepath.Join(dir, "s.sock"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	tx, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(tx)
	devnull, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(devnull)
	const scmMaxFd = 253 // include/net/scm.h
	fds := make([]int, scmMaxFd)
	for i := range fds {
		fds[i] = devnull
	}
	before := countOwnFds(t)
	const rounds = 20
	for i := 0; i < rounds; i++ {
		var frame [FrameSize]byte
		if err := unix.Sendmsg(tx, frame[:], unix.UnixRights(fds...), &unix.SockaddrUnix{Name: s.path}, 0); err != nil {
			t.Fatalf("sendmsg with %d fds: %v", len(fds), err)
		}
		res, errno := s.recv()
		if errno != 0 {
			t.Fatalf("recv: %v", errno)
		}
		if res.n != FrameSize || !res.hasCred || res.credPid != int32(os.Getpid()) {
			t.Fatalf("recv = %+v, want %d bytes from pid %d", res, FrameSize, os.Getpid())
		}
	}
	if after := countOwnFds(t); after != before {
		t.Fatalf("%d descriptors open after %d datagrams with %d fds each, %d before: recv leaks %d per datagram",
			after, rounds, scmMaxFd, before, (after-before)/rounds)
	}
}
