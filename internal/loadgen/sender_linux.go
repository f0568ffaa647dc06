//go:build linux

package loadgen

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sender sends VLP frames to one observer socket on behalf of any existing
// pid, attaching SCM_CREDENTIALS {pid, uid, gid} to each datagram. Only a
// process with CAP_SYS_ADMIN may name a pid other than its own (the kernel
// checks in scm_check_creds). The socket is non-blocking: a full receive
// queue refuses the datagram with EAGAIN, and Send reports it as lost, as
// an agent drops a beat. Buffers live in the Sender, so Send allocates
// nothing and its cost is the syscall's.
type Sender struct {
	fd    int
	uid   uint32
	gid   uint32
	frame [FrameSize]byte
	oob   [64]byte
	iov   unix.Iovec
	msg   unix.Msghdr
}

// ucredSize is sizeof(struct ucred): pid, uid, gid as 32-bit integers.
const ucredSize = 12

// NewSender opens a datagram socket connected to the observer at path.
func NewSender(path string) (*Sender, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("loadgen: connect %s: %w", path, os.NewSyscallError("connect", err))
	}
	s := &Sender{fd: fd, uid: uint32(os.Getuid()), gid: uint32(os.Getgid())}
	s.iov.Base = &s.frame[0]
	s.iov.SetLen(FrameSize)
	s.msg.Iov = &s.iov
	s.msg.SetIovlen(1)
	// One SCM_CREDENTIALS control message; only the pid changes per send.
	h := (*unix.Cmsghdr)(unsafe.Pointer(&s.oob[0]))
	h.Level = unix.SOL_SOCKET
	h.Type = unix.SCM_CREDENTIALS
	h.SetLen(unix.CmsgLen(ucredSize))
	s.msg.Control = &s.oob[0]
	s.msg.SetControllen(unix.CmsgSpace(ucredSize))
	data := s.oob[unix.CmsgLen(0):]
	binary.NativeEndian.PutUint32(data[4:8], s.uid)
	binary.NativeEndian.PutUint32(data[8:12], s.gid)
	return s, nil
}

// Send sends one frame from pid with sendmsg(2). It returns true when the
// kernel queued it, false with a zero error when the queue was full (EAGAIN
// or ENOBUFS: a lost beat), and an error for anything else (ESRCH: the pid
// does not exist; EPERM: not root; ECONNREFUSED: no observer).
func (s *Sender) Send(status uint8, pid uint32, timestamp, nonce uint64, payload uint32) (bool, error) {
	EncodeFrame(&s.frame, status, pid, timestamp, nonce, payload)
	binary.NativeEndian.PutUint32(s.oob[unix.CmsgLen(0):], pid)
	for {
		_, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msg)), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		switch e {
		case 0:
			return true, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.ENOBUFS:
			return false, nil
		}
		return false, os.NewSyscallError("sendmsg", e)
	}
}

// Close closes the socket.
func (s *Sender) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return os.NewSyscallError("close", err)
}
