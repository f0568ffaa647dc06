package vlpclient

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// receiver is a bound datagram socket with SO_PASSCRED, like the observer's.
type receiver struct {
	t    *testing.T
	fd   int
	path string
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	path := filepath.Join(t.TempDir(), "obs.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatalf("bind %s: %v", path, err)
	}
	return &receiver{t: t, fd: fd, path: path}
}

// recv returns the next datagram and the pid the kernel attached to it.
func (r *receiver) recv() ([]byte, int32) {
	r.t.Helper()
	buf := make([]byte, 65536)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, flags, err := recvmsg(r.fd, buf, oob)
	if err != nil {
		r.t.Fatalf("recvmsg: %v", err)
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		r.t.Fatalf("recvmsg truncated: flags %#x", flags)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		r.t.Fatalf("control messages %v, %v", msgs, err)
	}
	cred, err := unix.ParseUnixCredentials(&msgs[0])
	if err != nil {
		r.t.Fatal(err)
	}
	return buf[:n], cred.Pid
}

func dial(t *testing.T, path string) *Client {
	t.Helper()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDialSocketFlags(t *testing.T) {
	c := dial(t, "/nonexistent/obs.sock")
	fl, err := unix.FcntlInt(uintptr(c.fd), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fl&unix.O_NONBLOCK == 0 {
		t.Error("socket is blocking, want O_NONBLOCK")
	}
	fd, err := unix.FcntlInt(uintptr(c.fd), unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fd&unix.FD_CLOEXEC == 0 {
		t.Error("socket lacks FD_CLOEXEC")
	}
	typ, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_DGRAM {
		t.Errorf("SO_TYPE = %d, %v; want SOCK_DGRAM", typ, err)
	}
	// unix.Getsockname cannot tell unbound from an abstract address; the
	// raw length can: an unbound socket's address is the family alone.
	var sa unix.RawSockaddrAny
	salen := uint32(unix.SizeofSockaddrAny)
	if _, _, errno := unix.Syscall(unix.SYS_GETSOCKNAME, uintptr(c.fd), uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&salen))); errno != 0 {
		t.Fatal(errno)
	}
	if salen != 2 {
		t.Errorf("client socket address is %d bytes, want 2 (unbound)", salen)
	}
}

func TestDialRejectsBadPaths(t *testing.T) {
	for _, p := range []string{"", "/" + string(bytes.Repeat([]byte{'x'}, 107))} {
		if c, err := Dial(p); err == nil {
			c.Close()
			t.Errorf("Dial(%d-byte path) succeeded", len(p))
		}
	}
	// 107 bytes is the longest path sun_path holds.
	c, err := Dial("/" + string(bytes.Repeat([]byte{'x'}, 106)))
	if err != nil {
		t.Fatalf("Dial(107-byte path): %v", err)
	}
	c.Close()
}

func TestSendDeliversFrameWithKernelPid(t *testing.T) {
	r := newReceiver(t)
	c := dial(t, r.path)
	var frame [FrameSize]byte
	Encode(&frame, StatusDegraded, uint32(os.Getpid()), 1234567890, 100, 0xDEADBEEF)
	for _, msg := range [][]byte{frame[:], {}, []byte("VA"), bytes.Repeat([]byte{0xAB}, 65535)} {
		sent, err := c.Send(msg)
		if err != nil || !sent {
			t.Fatalf("Send(%d bytes) = %v, %v", len(msg), sent, err)
		}
		got, pid := r.recv()
		if !bytes.Equal(got, msg) {
			t.Errorf("received %d bytes % x…, want %d bytes", len(got), got[:min(len(got), 32)], len(msg))
		}
		if pid != int32(os.Getpid()) {
			t.Errorf("kernel pid %d, want %d", pid, os.Getpid())
		}
	}
}

// TestSendDropsWhenQueueFull: nobody reads the receiver, so its queue
// (net.unix.max_dgram_qlen, 10 by default) fills and Send reports drops,
// not errors.
func TestSendDropsWhenQueueFull(t *testing.T) {
	r := newReceiver(t)
	c := dial(t, r.path)
	var frame [FrameSize]byte
	Encode(&frame, StatusOK, uint32(os.Getpid()), 1, 1, 0)
	delivered := 0
	for range 10000 {
		sent, err := c.Send(frame[:])
		if err != nil {
			t.Fatalf("Send after %d datagrams: %v", delivered, err)
		}
		if !sent {
			break
		}
		delivered++
	}
	if delivered == 0 || delivered == 10000 {
		t.Fatalf("%d datagrams delivered before the first drop", delivered)
	}
	// Reading one makes room for one more.
	r.recv()
	if sent, err := c.Send(frame[:]); !sent || err != nil {
		t.Errorf("Send after draining one = %v, %v; want sent", sent, err)
	}
}

func TestSendErrors(t *testing.T) {
	dir := t.TempDir()
	c := dial(t, filepath.Join(dir, "missing.sock"))
	if sent, err := c.Send([]byte("x")); sent || !errors.Is(err, unix.ENOENT) {
		t.Errorf("Send to a missing path = %v, %v; want ENOENT", sent, err)
	}

	// A socket file whose observer has gone away.
	r := newReceiver(t)
	unix.Close(r.fd)
	c = dial(t, r.path)
	if sent, err := c.Send([]byte("x")); sent || !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("Send to a dead socket = %v, %v; want ECONNREFUSED", sent, err)
	}
	var se *os.SyscallError
	if _, err := c.Send([]byte("x")); !errors.As(err, &se) || se.Syscall != "sendto" {
		t.Errorf("error %v does not name sendto", err)
	}
}

func TestClose(t *testing.T) {
	c, err := Dial("/nonexistent/obs.sock")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err == nil {
		t.Error("second Close succeeded")
	}
}

func TestSendAsOwnPid(t *testing.T) {
	// Naming one's own pid needs no privilege.
	r := newReceiver(t)
	c := dial(t, r.path)
	sent, err := c.SendAs([]byte("own"), uint32(os.Getpid()))
	if err != nil || !sent {
		t.Fatalf("SendAs(own pid) = %v, %v", sent, err)
	}
	got, pid := r.recv()
	if string(got) != "own" || pid != int32(os.Getpid()) {
		t.Errorf("received %q from pid %d, want %q from %d", got, pid, "own", os.Getpid())
	}
}

func TestSendAsOtherPid(t *testing.T) {
	// A real process to stand in for.
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Skipf("cannot start a child process: %v", err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	other := uint32(child.Process.Pid)

	r := newReceiver(t)
	c := dial(t, r.path)
	var frame [FrameSize]byte
	Encode(&frame, StatusOK, other, 1, 1, 0)
	sent, err := c.SendAs(frame[:], other)
	if errors.Is(err, unix.EPERM) {
		t.Skipf("SendAs for another pid needs CAP_SYS_ADMIN: %v", err)
	}
	if err != nil || !sent {
		t.Fatalf("SendAs(%d) = %v, %v", other, sent, err)
	}
	got, pid := r.recv()
	if !bytes.Equal(got, frame[:]) {
		t.Errorf("received % x, want % x", got, frame)
	}
	if pid != int32(other) {
		t.Errorf("kernel pid %d, want the child's %d", pid, other)
	}

	// The kernel refuses a pid that does not exist.
	child.Process.Kill()
	child.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for unix.Kill(int(other), 0) == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if sent, err := c.SendAs(frame[:], other); sent || !errors.Is(err, unix.ESRCH) {
		t.Errorf("SendAs(dead pid %d) = %v, %v; want ESRCH", other, sent, err)
	}
}

// recvmsg retries EINTR: the runtime's signals (preemption, SIGCHLD from
// the agents this test starts) interrupt a blocking recvmsg.
func recvmsg(fd int, buf, oob []byte) (n, oobn, flags int, err error) {
	for {
		n, oobn, flags, _, err = unix.Recvmsg(fd, buf, oob, 0)
		if err != unix.EINTR {
			return n, oobn, flags, err
		}
	}
}
