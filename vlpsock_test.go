package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cmsg builds one control message as the kernel lays it out: header,
// aligned data, padding to the next alignment.
func cmsg(level, typ int32, data []byte) []byte {
	hdr := unix.SizeofCmsghdr
	l := cmsgAlign(hdr) + len(data)
	b := make([]byte, cmsgAlign(l))
	if cmsgLenSize == 8 {
		binary.NativeEndian.PutUint64(b[0:8], uint64(l))
	} else {
		binary.NativeEndian.PutUint32(b[0:4], uint32(l))
	}
	binary.NativeEndian.PutUint32(b[cmsgLenSize:], uint32(level))
	binary.NativeEndian.PutUint32(b[cmsgLenSize+4:], uint32(typ))
	copy(b[cmsgAlign(hdr):], data)
	return b
}

func credData(pid int32) []byte {
	d := make([]byte, 12)
	binary.NativeEndian.PutUint32(d[0:4], uint32(pid))
	binary.NativeEndian.PutUint32(d[4:8], 1000)
	binary.NativeEndian.PutUint32(d[8:12], 1000)
	return d
}

func rightsData(fds ...int32) []byte {
	d := make([]byte, 4*len(fds))
	for i, fd := range fds {
		binary.NativeEndian.PutUint32(d[4*i:], uint32(fd))
	}
	return d
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// openFds counts this process's open descriptors.
func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents)
}

// TestRecvClosesSmuggledFds sends real descriptors with SCM_RIGHTS to a
// bound observer socket: recv must close every one the kernel installed,
// however many, so a hostile sender cannot exhaust the observer's fds.
func TestRecvClosesSmuggledFds(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts fds in /proc/self/fd")
	}
	dir := shortTempDir(t)
	s, err := bindVLPSocket(filepath.Join(dir, "s.sock"), 0o600, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	client, err := newSocket(unix.AF_UNIX, unix.SOCK_DGRAM)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(client)
	to := &unix.SockaddrUnix{Name: s.path}
	var frame [FrameSize]byte
	EncodeFrame(&frame, Frame{Status: StatusOK, Pid: uint32(os.Getpid()), Nonce: 1})

	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	// As many as fit in the control buffer after the credentials; beyond
	// that the kernel installs only those that fit (MSG_CTRUNC). qemu-user,
	// which runs the 32-bit unit tests in make test, receives into a larger
	// host buffer and leaks what does not fit the guest's: test past the
	// limit only on 64-bit builds, which it does not emulate there.
	fit := (oobSize - cmsgAlign(unix.SizeofCmsghdr+12) - cmsgAlign(unix.SizeofCmsghdr)) / 4
	counts := []int{1, 3, 32, 33, fit}
	if unsafe.Sizeof(uintptr(0)) == 8 {
		counts = append(counts, fit+1, 64, 253)
	}
	for _, n := range counts {
		fds := make([]int, n)
		for i := range fds {
			fds[i] = int(devnull.Fd())
		}
		before := openFds(t)
		if err := unix.Sendmsg(client, frame[:], unix.UnixRights(fds...), to, 0); err != nil {
			t.Fatalf("sendmsg %d fds: %v", n, err)
		}
		res, errno := recvNext(s)
		if errno != 0 {
			t.Fatalf("recv: %v", errno)
		}
		if res.n != FrameSize || res.hasCred != hasDatagramCreds || (hasDatagramCreds && res.credPid != int32(os.Getpid())) {
			t.Fatalf("recv with %d fds = %+v", n, res)
		}
		if after := openFds(t); after != before {
			t.Fatalf("%d descriptors sent: %d open before, %d after recv", n, before, after)
		}
	}
}

// TestRecvLengths: recv reports the real length of short, empty and long
// datagrams (MSG_TRUNC), so only exactly 32 bytes is a frame.
func TestRecvLengths(t *testing.T) {
	dir := shortTempDir(t)
	s, err := bindVLPSocket(filepath.Join(dir, "s.sock"), 0o600, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	client, err := newSocket(unix.AF_UNIX, unix.SOCK_DGRAM)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(client)
	if err := unix.SetsockoptInt(client, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(client, &unix.SockaddrUnix{Name: s.path}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 31, 32, 33, 64, 65, 65535} {
		if _, err := unix.Write(client, make([]byte, n)); err != nil {
			t.Fatalf("send %d bytes: %v", n, err)
		}
		res, errno := recvNext(s)
		if errno != 0 {
			t.Fatalf("recv %d bytes: %v", n, errno)
		}
		if (res.n == FrameSize) != (n == FrameSize) || (runtime.GOOS == "linux" && res.n != n) {
			t.Fatalf("sent %d bytes, recv says %d", n, res.n)
		}
	}
	if _, errno := s.recv(); errno != unix.EAGAIN {
		t.Fatalf("empty socket: errno %v, want EAGAIN", errno)
	}
}

// recvNext reads the next datagram. A short recvmmsg batch ends with one
// EAGAIN returned without a syscall (the poller would report the socket
// again), so one EAGAIN is retried.
func recvNext(s *vlpSocket) (recvResult, unix.Errno) {
	res, errno := s.recv()
	if errno == unix.EAGAIN {
		res, errno = s.recv()
	}
	return res, errno
}
