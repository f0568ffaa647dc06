//go:build linux

package main

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// batchSocket binds an observer socket and connects a sender to it.
func batchSocket(t *testing.T) (s *vlpSocket, sender int) {
	t.Helper()
	dir, err := os.MkdirTemp("", "vwb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s, err = bindVLPSocket(filepath.Join(dir, "s.sock"), 0o600, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	sender, err = unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(sender) })
	if err := unix.Connect(sender, &unix.SockaddrUnix{Name: s.path}); err != nil {
		t.Fatal(err)
	}
	return s, sender
}

// TestRecvBatched: datagrams of every interesting length come out of the
// batches in order with their real lengths, bytes and credentials, then
// EAGAIN; queueWasEmpty says so after a short batch, and a datagram sent
// after that is read by the next call. With max_dgram_qlen above the batch
// size (checked in a network namespace with 64), they span two batches.
func TestRecvBatched(t *testing.T) {
	if recvBatchSize < 2 {
		t.Skip("no recvmmsg batching on this system")
	}
	s, sender := batchSocket(t)
	if err := unix.SetsockoptInt(sender, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20); err != nil {
		t.Fatal(err)
	}
	q, err := maxDgramQlen()
	if err != nil {
		t.Skip("cannot read net.unix.max_dgram_qlen")
	}
	lengths := []int{32, 0, 1, 31, 33, 64, 65, 200, 32}
	for len(lengths) < min(q, recvBatchSize+5) {
		lengths = append(lengths, 32)
	}
	lengths = lengths[:min(len(lengths), q)]
	var payload [256]byte
	for i, n := range lengths {
		payload[0] = byte(i)
		if _, err := unix.Write(sender, payload[:n]); err != nil {
			t.Fatalf("send %d of %d bytes: %v", i, n, err)
		}
	}
	for i, n := range lengths {
		res, errno := s.recv()
		if errno != 0 {
			t.Fatalf("datagram %d: %v", i, errno)
		}
		if res.n != n {
			t.Fatalf("datagram %d: length %d, want %d", i, res.n, n)
		}
		if !res.hasCred || res.credPid != int32(os.Getpid()) {
			t.Fatalf("datagram %d: credentials %+v, want pid %d", i, res, os.Getpid())
		}
		if n > 0 && s.buf[0] != byte(i) {
			t.Fatalf("datagram %d: first byte %d", i, s.buf[0])
		}
	}
	if len(lengths) < recvBatchSize && !s.queueWasEmpty() {
		t.Fatalf("a short batch is used up, but queueWasEmpty is false")
	}
	if _, errno := s.recv(); errno != unix.EAGAIN {
		t.Fatalf("after the last datagram: %v, want EAGAIN", errno)
	}
	if _, err := unix.Write(sender, payload[:32]); err != nil {
		t.Fatal(err)
	}
	if res, errno := s.recv(); errno != 0 || res.n != 32 {
		t.Fatalf("datagram sent after EAGAIN: %+v %v", res, errno)
	}
	if _, errno := s.recv(); errno != unix.EAGAIN {
		t.Fatalf("at the end: %v, want EAGAIN", errno)
	}
}

// TestRecvBatchedClosesSmuggledFds: descriptors sent with SCM_RIGHTS in
// several datagrams of one batch are all closed when the batch arrives.
func TestRecvBatchedClosesSmuggledFds(t *testing.T) {
	s, sender := batchSocket(t)
	countFds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(ents)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	before := countFds()
	var frame [FrameSize]byte
	for i := 0; i < 5; i++ {
		oob := unix.UnixRights(int(devnull.Fd()), int(devnull.Fd()), int(devnull.Fd()))
		if err := unix.Sendmsg(sender, frame[:], oob, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		if _, errno := s.recv(); errno != 0 {
			t.Fatalf("datagram %d: %v", i, errno)
		}
	}
	if after := countFds(); after != before {
		t.Fatalf("%d descriptors open before, %d after receiving 15 smuggled ones", before, after)
	}
}

// TestBatchPendingKeepsTheLoopAwake: datagrams taken off the kernel queue
// into a batch but not yet handed out are invisible to epoll; the loop's
// timeout must then be 0, and a turn of the loop hands them out.
func TestBatchPendingKeepsTheLoopAwake(t *testing.T) {
	o := newTestObserver(t, "--threshold-ms", "1000")
	sender, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sender)
	if err := unix.Connect(sender, &unix.SockaddrUnix{Name: o.sock.path}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := unix.Write(sender, make([]byte, 7)); err != nil {
			t.Fatal(err)
		}
	}
	if _, errno := o.sock.recv(); errno != 0 {
		t.Fatal(errno)
	}
	if !o.sock.batchPending() {
		t.Fatal("4 datagrams left in the batch, batchPending false")
	}
	if got := o.timeout(monoNow()); got != 0 {
		t.Fatalf("timeout %d with datagrams pending in the batch, want 0", got)
	}
	if err := o.iterate(); err != nil {
		t.Fatal(err)
	}
	if o.sock.batchPending() || o.stats.truncated != 4 {
		t.Fatalf("after a loop turn: pending %v, %d of the 4 handed out", o.sock.batchPending(), o.stats.truncated)
	}
}
