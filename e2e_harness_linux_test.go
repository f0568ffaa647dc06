//go:build linux

package main

// The Linux-only part of the end-to-end harness (e2e_harness_test.go):
// senders that wait for room in the observer's queue and may name
// another pid in SCM_CREDENTIALS.

import (
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// blockingSender is a datagram socket that waits for room in the
// observer's queue instead of dropping, so a test knows exactly what the
// observer received. SO_SNDTIMEO bounds the wait should the observer die.
type blockingSender struct {
	t    testing.TB
	fd   int
	addr unix.SockaddrUnix
}

func newBlockingSender(t testing.TB, path string) *blockingSender {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Sec: 5}); err != nil {
		t.Fatal(err)
	}
	// A 64 KiB datagram needs a send buffer larger than itself.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
	return &blockingSender{t: t, fd: fd, addr: unix.SockaddrUnix{Name: path}}
}

// send sends b, with SCM_CREDENTIALS naming asPid when it is not 0, and
// returns the error: nil means the datagram sits in the observer's queue.
func (s *blockingSender) send(b []byte, asPid int) error {
	var oob []byte
	if asPid != 0 {
		oob = unix.UnixCredentials(&unix.Ucred{Pid: int32(asPid), Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())})
	}
	for {
		err := unix.Sendmsg(s.fd, b, oob, &s.addr, 0)
		if err == unix.EINTR {
			continue
		}
		return err
	}
}

// hungSender beats a few times for a pid and then falls silent while the
// pid stays alive: a hung agent. As root it stands in for a live process
// with blocking sends that wait for room in the queue, so the beats reach
// the observer whatever floods the socket; otherwise it is a real agent
// with --hang-after, which a flood may silence before it is ever heard.
//
// It returns the pid and how many beats reached the observer's queue, -1
// when that is not known (the agent drops beats on a full queue).
func hungSender(t *testing.T, socket string) (string, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		return startAgent(t, socket, "--interval-ms", "2", "--hang-after", "30").pid, -1
	}
	pid := liveProcess(t)
	tx := newBlockingSender(t, socket)
	const beats = 5
	for n := uint64(1); n <= beats; n++ {
		if err := tx.send(encodeFrame(0, uint32(pid), n, 0), pid); err != nil {
			t.Errorf("hung sender %d: %v", pid, err)
			return strconv.Itoa(pid), -1
		}
		time.Sleep(5 * time.Millisecond)
	}
	return strconv.Itoa(pid), beats
}
