//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// queuedUntilFull sends 32-byte datagrams to path without blocking until the
// kernel refuses one, and returns how many it queued.
func queuedUntilFull(t *testing.T, path string) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// Room in the sender's buffer for every datagram: the queue must be the
	// limit, not the send buffer.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
	var frame [FrameSize]byte
	for n := 0; n < 100_000; n++ {
		switch err := unix.Sendto(fd, frame[:], 0, &unix.SockaddrUnix{Name: path}); err {
		case nil:
		case unix.EAGAIN:
			return n
		default:
			t.Fatalf("sendto after %d datagrams: %v", n, err)
		}
	}
	t.Fatal("the queue never filled")
	return 0
}

// TestSocketQueueOwnNamespace: asked for more than the machine's
// max_dgram_qlen, the socket really queues that many (the kernel takes one
// more than the limit), the machine's setting is unchanged, and the
// process's threads are all still in their network namespace.
func TestSocketQueueOwnNamespace(t *testing.T) {
	sys, err := maxDgramQlen()
	if err != nil {
		t.Skipf("no net.unix.max_dgram_qlen: %v", err)
	}
	hostNetns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Skipf("cannot read this process's network namespace: %v", err)
	}
	want := sys + 50
	s, err := bindVLPSocket(filepath.Join(shortTempDir(t), "s.sock"), 0o600, want)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if !s.queue.private {
		if os.Geteuid() == 0 {
			t.Logf("root, yet no queue of its own: %s", s.queue.why)
		}
		t.Skipf("no network namespace of the socket's own here: %s", s.queue.why)
	}
	if s.queue.qlen != want || s.queue.system != sys {
		t.Fatalf("queue = %+v, want qlen %d, system %d", s.queue, want, sys)
	}
	if got := queuedUntilFull(t, s.path); got != want+1 {
		t.Fatalf("the socket queued %d datagrams, want %d (max_dgram_qlen %d + 1)", got, want+1, want)
	}
	if now, _ := maxDgramQlen(); now != sys {
		t.Fatalf("the machine's net.unix.max_dgram_qlen changed from %d to %d", sys, now)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ns, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err == nil && ns != hostNetns {
			t.Errorf("thread %s is in network namespace %s, the process in %s", task.Name(), ns, hostNetns)
		}
	}
}

// TestSocketQueueMachineLimit: --socket-queue 0, or a request the machine's
// limit already meets, creates the socket as it is, with the machine's
// limit, which the kernel enforces.
func TestSocketQueueMachineLimit(t *testing.T) {
	sys, err := maxDgramQlen()
	if err != nil {
		t.Skipf("no net.unix.max_dgram_qlen: %v", err)
	}
	for _, want := range []int{0, max(sys-1, 1)} {
		s, err := bindVLPSocket(filepath.Join(shortTempDir(t), "s.sock"), 0o600, want)
		if err != nil {
			t.Fatal(err)
		}
		if s.queue.private || s.queue.qlen != sys || s.queue.why != "" {
			t.Errorf("want %d: queue = %+v, want the machine's %d", want, s.queue, sys)
		}
		if got := queuedUntilFull(t, s.path); got != sys+1 {
			t.Errorf("want %d: the socket queued %d datagrams, want %d", want, got, sys+1)
		}
		s.close()
	}
}

// TestSocketQueueUnprivileged: without CAP_SYS_ADMIN the socket is created
// all the same, with the machine's limit and the reason in queue.why. Run
// as root, the test drops to nobody in a child process.
func TestSocketQueueUnprivileged(t *testing.T) {
	if os.Getenv("VARTA_QUEUE_CHILD") == "1" {
		dir := os.Getenv("VARTA_QUEUE_DIR")
		s, err := bindVLPSocket(filepath.Join(dir, "s.sock"), 0o600, 4096)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		if s.queue.private || !strings.Contains(s.queue.why, "unshare") {
			t.Fatalf("unprivileged: queue = %+v, want the machine's with an unshare error", s.queue)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop to an unprivileged user")
	}
	if os.Getenv("VARTA_E2E") == "0" {
		t.Skip("VARTA_E2E=0: runs the test binary again (under qemu-user it cannot exec itself)")
	}
	if _, err := maxDgramQlen(); err != nil {
		t.Skipf("no net.unix.max_dgram_qlen: %v", err)
	}
	dir := shortTempDir(t)
	os.Chmod(dir, 0o777)
	runAsNobody(t, "TestSocketQueueUnprivileged", "VARTA_QUEUE_CHILD=1", "VARTA_QUEUE_DIR="+dir)
}

// runAsNobody runs this test binary's test name again as user and group
// 65534 with env added, from a copy nobody can execute, and fails t if it
// fails.
func runAsNobody(t *testing.T, name string, env ...string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := shortTempDir(t)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "test.bin")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run", "^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s as nobody: %v\n%s", name, err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+name) {
		t.Fatalf("%s as nobody did not pass:\n%s", name, out)
	}
}
