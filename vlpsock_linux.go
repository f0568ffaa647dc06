//go:build linux

package main

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux attaches the sender's credentials to every datagram once
// SO_PASSCRED is on; MSG_TRUNC makes recvmsg return the real length of a
// datagram longer than the buffer.
const (
	recvFlags        = unix.MSG_DONTWAIT | unix.MSG_TRUNC | unix.MSG_CMSG_CLOEXEC
	scmCredentials   = unix.SCM_CREDENTIALS
	scmTimestampNS   = unix.SO_TIMESTAMPNS // SCM_TIMESTAMPNS has the option's value
	hasDatagramCreds = true
	isDarwin         = false
)

// enableCredentials turns on SO_PASSCRED (the sender's pid on every
// datagram) and SO_TIMESTAMPNS (the time the kernel queued it). The arrival
// time lets a beat that sat in the queue while the loop was late (a busy
// machine, a coalescing pause) count from when it arrived, so such a beat
// neither hides a real silence nor causes a false stall.
func enableCredentials(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		return os.NewSyscallError("setsockopt SO_PASSCRED", err)
	}
	// Without timestamps the observer falls back to the time it reads a
	// datagram: not worth failing the start for.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	return nil
}

// newSocket creates a non-blocking, close-on-exec socket in one call.
func newSocket(domain, typ int) (int, error) {
	return unix.Socket(domain, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
}

// recvBatchSize is how many datagrams one recvmmsg(2) takes off the queue.
// The default queue holds net.unix.max_dgram_qlen = 10 (+1), so one call
// empties a full queue: the syscall entry and exit are paid once per batch
// instead of once per datagram, plus once for the EAGAIN that ends a drain.
const recvBatchSize = 16

// mmsghdr is struct mmsghdr: a msghdr and the length recvmmsg received
// into it (Go pads it as C does: 64 bytes on 64-bit, 32 on 32-bit).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// recvBatch holds the datagrams of one recvmmsg(2), handed out one by one
// by recvBatched. Each has its own data and control buffer; its
// credentials are read and its SCM_RIGHTS descriptors closed as soon as
// the batch arrives.
type recvBatch struct {
	bufs  [recvBatchSize][64]byte  // as vlpSocket.buf: room to tell a long datagram apart
	oobs  [recvBatchSize][256]byte // as vlpSocket.oob: credentials and smuggled descriptors
	iovs  [recvBatchSize]unix.Iovec
	hdrs  [recvBatchSize]mmsghdr
	res   [recvBatchSize]recvResult
	n     int  // datagrams in the batch
	next  int  // the next one to hand out
	short bool // the batch was not full: the queue was empty when it was read
	ready bool // iovecs and headers point into the buffers
}

// recvBatched returns the next datagram of the current batch, reading a
// new batch with recvmmsg(2) when it is used up; the datagram's bytes are
// copied to s.buf, where frame() finds them. Like recv, it allocates
// nothing and returns the errno (EAGAIN: nothing queued).
func (s *vlpSocket) recvBatched() (recvResult, unix.Errno) {
	b := &s.batch
	s.fresh = b.next == b.n
	if s.fresh {
		if e := s.fillBatch(); e != 0 {
			return recvResult{}, e
		}
	}
	i := b.next
	b.next++
	copy(s.buf[:], b.bufs[i][:])
	return b.res[i], 0
}

// queueWasEmpty reports whether every datagram of the last batch has been
// handed out and that batch was short, so the queue was empty when it was
// read: a drain can stop without the recvmmsg that would return EAGAIN.
func (s *vlpSocket) queueWasEmpty() bool {
	return s.batch.next == s.batch.n && s.batch.short
}

// batchPending reports whether datagrams already taken off the kernel
// queue wait in the batch: the poller cannot report those, so the loop must
// not sleep before handing them out.
func (s *vlpSocket) batchPending() bool { return s.batch.next < s.batch.n }

func (s *vlpSocket) fillBatch() unix.Errno {
	b := &s.batch
	if !b.ready {
		for i := range b.hdrs {
			b.iovs[i].Base = &b.bufs[i][0]
			b.iovs[i].SetLen(len(b.bufs[i]))
			b.hdrs[i].hdr.Iov = &b.iovs[i]
			b.hdrs[i].hdr.SetIovlen(1)
			b.hdrs[i].hdr.Control = &b.oobs[i][0]
		}
		b.ready = true
	}
	for i := range b.hdrs {
		b.hdrs[i].hdr.SetControllen(len(b.oobs[i]))
		b.hdrs[i].hdr.Flags = 0
		b.hdrs[i].n = 0
	}
	// RawSyscall: MSG_DONTWAIT on a non-blocking socket never blocks.
	r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&b.hdrs[0])),
		recvBatchSize, recvFlags, 0, 0)
	if e != 0 {
		b.n, b.next = 0, 0
		return e
	}
	b.n, b.next, b.short = int(r), 0, int(r) < recvBatchSize
	for i := 0; i < b.n; i++ {
		h := &b.hdrs[i]
		// With MSG_TRUNC, Linux reports a long datagram's real length.
		res := recvResult{n: int(h.n)}
		cl := min(int(h.hdr.Controllen), len(b.oobs[i]))
		if cl > 0 {
			pid, ok, nfds := parseControl(b.oobs[i][:cl], &s.fds)
			res.credPid, res.hasCred = pid, ok
			res.arrival = parseTimestamp(b.oobs[i][:cl])
			for j := 0; j < nfds; j++ {
				unix.Close(int(s.fds[j]))
			}
		}
		b.res[i] = res
	}
	return 0
}
