package main

import (
	"encoding/binary"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// vlpSocket is the observer's bound datagram socket. Its receive buffers
// live here, allocated once, so receiving a frame allocates nothing.
type vlpSocket struct {
	fd       int
	path     string
	dev, ino uint64
	removed  bool

	buf [64]byte // a frame is 32 bytes; more room tells a long datagram apart
	oob [oobSize]byte
	iov unix.Iovec
	msg unix.Msghdr
	fds [maxRightsFds]int32

	batch recvBatch // Linux: datagrams taken off the queue by one recvmmsg(2)
	fresh bool      // the last recv read from the kernel, not from the batch
	queue socketQueue
	lock  int // lockSocketPath's descriptor, -1 none
	// lockNote: why the socket was bound without the path's lock although
	// something held it (a squatter's name, lockSocketPath), for the log.
	lockNote string
}

// socketQueue says how many datagrams the kernel queues on the socket
// before senders get EAGAIN (Linux: net.unix.max_dgram_qlen, copied into
// the socket when it is created).
type socketQueue struct {
	qlen    int    // the socket's limit, 0 unknown (not Linux)
	system  int    // the machine's net.unix.max_dgram_qlen, 0 unknown
	private bool   // qlen was raised in a network namespace of the socket's own
	userns  bool   // … which a helper made in a user namespace of its own (socketFromUserns)
	why     string // why a larger queue that was wanted could not be had
}

// oobSize is the control buffer of one recvmsg: SCM_CREDENTIALS plus room
// for descriptors a sender may smuggle in with SCM_RIGHTS.
const oobSize = 256

// maxRightsFds is how many descriptors fit in the control buffer (4 bytes
// each). The kernel installs as many as fit and drops the rest
// (MSG_CTRUNC); every one installed must be seen here and closed at once,
// or a hostile sender leaks descriptors into the observer with each
// datagram.
const maxRightsFds = oobSize / 4

// maxSocketPath is sun_path's capacity less the terminating NUL.
const maxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

// bindVLPSocket creates the observer socket at path with the given mode.
//
// An existing path is handled as contract §3 says: a non-socket (including
// a symlink) is left alone and start fails; a socket that answers a connect
// has a live observer behind it; a socket that refuses is stale and replaced.
// The umask is narrowed around bind(2) so the file never exists with wider
// permissions than mode.
//
// The socket gets room for at least wantQueue queued datagrams where the
// system allows (see openQueuedSocket); 0 leaves the machine's limit.
func bindVLPSocket(path string, mode uint32, wantQueue int) (*vlpSocket, error) {
	if len(path) > maxSocketPath {
		return nil, errorf("socket %s: path is %d bytes, the limit for a Unix socket is %d", path, len(path), maxSocketPath)
	}
	lock, holder := lockSocketPath(path)
	if holder.busy {
		who := "another observer"
		if holder.pid > 0 {
			who += " (pid " + strconv.Itoa(int(holder.pid)) + ")"
		}
		return nil, errorf("socket %s: already running: %s is starting or running on this path; if its socket file was removed, stop it first", path, who)
	}
	s, err := bindLocked(path, mode, wantQueue)
	if err != nil {
		if lock >= 0 {
			unix.Close(lock)
		}
		return nil, err
	}
	s.lock, s.lockNote = lock, holder.note
	return s, nil
}

// lockHolder is what lockSocketPath found holding the path's lock: an
// observer (busy, with its pid when known), or, in note, why the start
// goes on without the lock.
type lockHolder struct {
	busy bool
	pid  int32
	note string
}

// bindLocked is bindVLPSocket once the path's lock is held.
func bindLocked(path string, mode uint32, wantQueue int) (*vlpSocket, error) {
	if err := clearPath(path); err != nil {
		return nil, err
	}
	fd, queue, err := openQueuedSocket(wantQueue)
	if err != nil {
		return nil, errorf("socket %s: %v", path, os.NewSyscallError("socket", err))
	}
	return bindFd(fd, path, mode, queue)
}

// clearPath makes way for a socket at path: nothing there, or a stale
// socket it removes; anything else is an error.
func clearPath(path string) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			return errorf("socket %s: path exists and is not a socket; refusing to replace it", path)
		}
		live, err := socketIsLive(path)
		if err != nil {
			return errorf("socket %s: cannot tell whether an observer is running: %v", path, err)
		}
		if live {
			return errorf("socket %s: already running: another observer is bound to this path", path)
		}
		if err := unix.Unlink(path); err != nil && err != unix.ENOENT {
			return errorf("socket %s: cannot remove stale socket: %v", path, err)
		}
	} else if err != unix.ENOENT {
		return errorf("socket %s: %v", path, err)
	}
	return nil
}

// bindFd binds the datagram socket fd to path with mode and sets it up;
// on an error fd is closed.
func bindFd(fd int, path string, mode uint32, queue socketQueue) (*vlpSocket, error) {
	var st unix.Stat_t
	// Before bind: a datagram sent in between would carry no credentials
	// and be judged a forgery (an agent already beating when the observer
	// starts, or a test's first agent, once beside a second make test).
	if err := enableCredentials(fd); err != nil {
		unix.Close(fd)
		return nil, errorf("socket %s: %v", path, err)
	}
	old := unix.Umask(int(^mode & 0o777))
	err := unix.Bind(fd, &unix.SockaddrUnix{Name: path})
	unix.Umask(old)
	if err != nil {
		unix.Close(fd)
		if err == unix.EADDRINUSE {
			return nil, errorf("socket %s: already running: address in use", path)
		}
		return nil, errorf("socket %s: %v", path, os.NewSyscallError("bind", err))
	}
	s := &vlpSocket{fd: fd, path: path, queue: queue, lock: -1}
	if err := unix.Lstat(path, &st); err != nil {
		s.close()
		return nil, errorf("socket %s: %v", path, err)
	}
	s.dev, s.ino = uint64(st.Dev), uint64(st.Ino)
	s.iov.Base = &s.buf[0]
	s.iov.SetLen(len(s.buf))
	s.msg.Iov = &s.iov
	s.msg.SetIovlen(1)
	s.msg.Control = &s.oob[0]
	return s, nil
}

// requeue returns a socket for s's path with the queue a start would give
// it for want (openQueuedSocket), or nil when that is the queue s has. The
// queue is fixed when a socket is created, so the new one is bound beside
// the path, at PATH.reload, until handOver renames it over the path.
func (s *vlpSocket) requeue(mode uint32, want int) (*vlpSocket, error) {
	fd, q, err := openQueuedSocket(want)
	if err != nil {
		return nil, errorf("socket %s: %v", s.path, os.NewSyscallError("socket", err))
	}
	if q.qlen == s.queue.qlen && q.private == s.queue.private {
		unix.Close(fd)
		return nil, nil
	}
	tmp := s.path + ".reload"
	err = errorf("socket %s: a new queue needs a socket bound beside it at %s, longer than a Unix socket path may be (%d bytes); a restart applies it",
		s.path, tmp, maxSocketPath)
	if len(tmp) <= maxSocketPath {
		err = clearPath(tmp)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return bindFd(fd, tmp, mode, q)
}

// handOver renames n, bound beside s by requeue, over s's path: rename(2)
// replaces the path atomically, so a sender finds s or n there, never
// nothing. n takes the path's lock; s, still open, is drained next.
func (s *vlpSocket) handOver(n *vlpSocket) error {
	if err := unix.Rename(n.path, s.path); err != nil {
		return errorf("socket %s: %v", s.path, os.NewSyscallError("rename", err))
	}
	n.path, n.lock, n.lockNote, s.lock = s.path, s.lock, s.lockNote, -1
	s.removed = true // the path is n's now
	return nil
}

// chmod sets the mode of the socket file, if the path still holds it.
func (s *vlpSocket) chmod(mode uint32) error {
	if !s.holdsPath() {
		return errorf("socket %s: the path no longer holds the observer's socket", s.path)
	}
	if err := unix.Chmod(s.path, mode); err != nil {
		return errorf("socket %s: %v", s.path, os.NewSyscallError("chmod", err))
	}
	return nil
}

// holdsPath reports whether s.path is still the socket this process bound
// (same device and inode).
func (s *vlpSocket) holdsPath() bool {
	var st unix.Stat_t
	return unix.Lstat(s.path, &st) == nil && uint64(st.Dev) == s.dev && uint64(st.Ino) == s.ino &&
		st.Mode&unix.S_IFMT == unix.S_IFSOCK
}

// socketIsLive connects a throwaway datagram socket to path: a bound socket
// accepts, a stale one answers ECONNREFUSED.
func socketIsLive(path string) (bool, error) {
	fd, err := newSocket(unix.AF_UNIX, unix.SOCK_DGRAM)
	if err != nil {
		return false, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	switch err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err {
	case nil:
		return true, nil
	case unix.ECONNREFUSED, unix.ENOENT:
		return false, nil
	default:
		return false, os.NewSyscallError("connect", err)
	}
}

// recvResult is one datagram as the kernel delivered it.
type recvResult struct {
	n       int   // datagram length (may exceed len(buf): it was truncated)
	credPid int32 // kernel-attested sender pid
	hasCred bool
	arrival int64 // Linux: wall-clock ns the kernel queued the datagram (SO_TIMESTAMPNS), 0 unknown
}

// recv reads one datagram with recvmsg(2), issued directly because
// unix.Recvmsg allocates on every call. Descriptors smuggled in with
// SCM_RIGHTS are closed. It returns the errno, not an error, so that the
// common EAGAIN does not box a value.
func (s *vlpSocket) recv() (recvResult, unix.Errno) {
	if recvBatchSize > 1 {
		return s.recvBatched()
	}
	s.fresh = true
	s.msg.SetControllen(len(s.oob))
	s.msg.Flags = 0
	// RawSyscall: with MSG_DONTWAIT on a non-blocking socket the call never
	// blocks, so the scheduler need not be told (entersyscall/exitsyscall
	// cost on every datagram otherwise).
	r, _, e := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msg)), recvFlags)
	if e != 0 {
		return recvResult{}, e
	}
	res := recvResult{n: int(r)}
	if s.msg.Flags&unix.MSG_TRUNC != 0 && res.n <= len(s.buf) {
		res.n = len(s.buf) + 1 // BSD reports the copied length: it was longer
	}
	cl := int(s.msg.Controllen)
	if cl > len(s.oob) {
		cl = len(s.oob)
	}
	if cl > 0 {
		pid, ok, nfds := parseControl(s.oob[:cl], &s.fds)
		res.credPid, res.hasCred = pid, ok
		res.arrival = parseTimestamp(s.oob[:cl])
		for i := 0; i < nfds; i++ {
			unix.Close(int(s.fds[i]))
		}
	}
	return res, 0
}

// freshBatch reports whether the datagram recv returned last came from a
// new read of the kernel queue (the first of a recvmmsg batch, or any
// datagram where there is no batching).
func (s *vlpSocket) freshBatch() bool { return s.fresh }

// frame returns the received bytes as a frame; valid only when n == FrameSize.
func (s *vlpSocket) frame() *[FrameSize]byte {
	return (*[FrameSize]byte)(s.buf[:FrameSize])
}

var cmsgLenSize = int(unsafe.Sizeof(unix.Cmsghdr{}.Len))

// cmsgAlign rounds n up to the kernel's control-message alignment.
func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	if isDarwin {
		return (n + 3) &^ 3
	}
	return (n + a - 1) &^ (a - 1)
}

// parseControl walks the control messages of one recvmsg. It returns the
// sender pid from SCM_CREDENTIALS (Linux) and copies any SCM_RIGHTS
// descriptors into fds so the caller can close them. It never reads past
// oob and never panics, whatever the bytes.
func parseControl(oob []byte, fds *[maxRightsFds]int32) (pid int32, hasCred bool, nfds int) {
	for {
		level, typ, data, rest, ok := nextCmsg(oob)
		if !ok {
			return
		}
		if level == unix.SOL_SOCKET {
			switch {
			case typ == scmCredentials && len(data) >= 12:
				pid = int32(binary.NativeEndian.Uint32(data[0:4]))
				hasCred = true
			case typ == unix.SCM_RIGHTS:
				for len(data) >= 4 && nfds < len(fds) {
					fds[nfds] = int32(binary.NativeEndian.Uint32(data[0:4]))
					nfds++
					data = data[4:]
				}
			}
		}
		oob = rest
	}
}

// nextCmsg splits the first control message off oob: its level, type and
// data, and what follows it. ok is false at the end or at a malformed
// header; it never reads past oob, whatever the bytes.
func nextCmsg(oob []byte) (level, typ int32, data, rest []byte, ok bool) {
	hdr := unix.SizeofCmsghdr
	if len(oob) < hdr {
		return 0, 0, nil, nil, false
	}
	var l int
	if cmsgLenSize == 8 {
		l64 := binary.NativeEndian.Uint64(oob[0:8])
		if l64 > uint64(len(oob)) {
			return 0, 0, nil, nil, false
		}
		l = int(l64)
	} else {
		l = int(binary.NativeEndian.Uint32(oob[0:4]))
	}
	if l < hdr || l > len(oob) {
		return 0, 0, nil, nil, false
	}
	level = int32(binary.NativeEndian.Uint32(oob[cmsgLenSize : cmsgLenSize+4]))
	typ = int32(binary.NativeEndian.Uint32(oob[cmsgLenSize+4 : cmsgLenSize+8]))
	if a := cmsgAlign(hdr); a <= l {
		data = oob[a:l]
	}
	if next := cmsgAlign(l); next < len(oob) {
		rest = oob[next:]
	}
	return level, typ, data, rest, true
}

// parseTimestamp returns the SCM_TIMESTAMPNS arrival time in the control
// messages of one recvmsg, as Unix nanoseconds, or 0 when there is none.
// The payload is a struct timespec: 16 bytes on 64-bit systems, 8 on
// 32-bit ones (SO_TIMESTAMPNS_OLD: 32-bit seconds).
func parseTimestamp(oob []byte) int64 {
	for {
		level, typ, data, rest, ok := nextCmsg(oob)
		if !ok {
			return 0
		}
		if level == unix.SOL_SOCKET && typ == scmTimestampNS {
			switch {
			case len(data) >= 16:
				return int64(binary.NativeEndian.Uint64(data[0:8]))*1e9 + int64(binary.NativeEndian.Uint64(data[8:16]))
			case len(data) >= 8:
				return int64(int32(binary.NativeEndian.Uint32(data[0:4])))*1e9 + int64(int32(binary.NativeEndian.Uint32(data[4:8])))
			}
			return 0
		}
		oob = rest
	}
}

// close closes the socket and removes its path only if the path still holds
// the socket this process created (same device and inode): a file put there
// since, by an operator or a second observer, is left alone.
func (s *vlpSocket) close() {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
	if !s.removed && s.ino != 0 {
		s.removed = true
		if s.holdsPath() {
			unix.Unlink(s.path)
		}
	}
	// Last: the next observer may start once the path is cleared.
	if s.lock >= 0 {
		unix.Close(s.lock)
		s.lock = -1
	}
}
