//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestMain lets this test binary be the socket helper of socketFromUserns
// (it execs /proc/self/exe, which here is the test binary).
func TestMain(m *testing.M) {
	socketHelper()
	os.Exit(m.Run())
}

// TestSocketQueueUnprivileged: without CAP_SYS_ADMIN the socket still gets
// the queue it wants where user namespaces are allowed (a helper in a user
// namespace of its own makes it), and where they are not, or /proc/sys is
// read-only (systemd's ProtectKernelTunables=), it is created all the same
// with the machine's limit and both reasons in queue.why. Run as root, the
// test drops to nobody in a child process.
func TestSocketQueueUnprivileged(t *testing.T) {
	if expect := os.Getenv("VARTA_QUEUE_CHILD"); expect != "" {
		dir := os.Getenv("VARTA_QUEUE_DIR")
		s, err := bindVLPSocket(filepath.Join(dir, "s.sock"), 0o600, 256)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		switch expect {
		case "userns":
			if !s.queue.private || !s.queue.userns || s.queue.qlen != 256 || s.queue.why != "" {
				t.Fatalf("unprivileged, user namespaces allowed: queue = %+v, want 256 from the helper", s.queue)
			}
			if got := queuedUntilFull(t, s.path); got != 257 {
				t.Fatalf("the helper's socket queued %d datagrams, want 257", got)
			}
		case "machine":
			if s.queue.private || !strings.Contains(s.queue.why, "unshare") || !strings.Contains(s.queue.why, "user namespace") {
				t.Fatalf("unprivileged, no user namespace: queue = %+v, want the machine's with both errors", s.queue)
			}
			if !strings.Contains(s.queue.why, os.Getenv("VARTA_QUEUE_WHY")) {
				t.Fatalf("queue.why = %q, want it to name %q", s.queue.why, os.Getenv("VARTA_QUEUE_WHY"))
			}
			t.Logf("queue.why: %s", s.queue.why)
		}
		return
	}
	skipUnlessNobodyTest(t, "needs root to drop to an unprivileged user")
	if sys, err := maxDgramQlen(); err != nil || sys >= 256 {
		t.Skipf("net.unix.max_dgram_qlen %d (%v): nothing to raise", sys, err)
	}
	for _, tool := range []string{"setpriv", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s(1) to ask whether nobody may create a user namespace here", tool)
		}
	}
	expect, why := "userns", ""
	if err := usernsAsNobody(); err != nil {
		t.Logf("a user namespace as nobody: %v; expecting the machine's queue", err)
		expect, why = "machine", "user namespace"
	}
	dir := shortTempDir(t)
	os.Chmod(dir, 0o777)
	runAsNobody(t, nil, "TestSocketQueueUnprivileged", "VARTA_QUEUE_CHILD="+expect, "VARTA_QUEUE_DIR="+dir, "VARTA_QUEUE_WHY="+why)

	// The same with /proc/sys read-only, as under ProtectKernelTunables=.
	for _, tool := range []string{"mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Logf("no %s(1) here: the read-only /proc/sys case is not run", tool)
			return
		}
	}
	roProcSys := []string{"unshare", "--mount", "--propagation", "private", "sh", "-ec",
		`mount --bind /proc/sys /proc/sys; mount -o remount,bind,ro /proc/sys; exec "$@"`, "sh"}
	dir = shortTempDir(t)
	os.Chmod(dir, 0o777)
	why = "read-only"
	if expect == "machine" {
		why = "user namespace"
	}
	runAsNobody(t, roProcSys, "TestSocketQueueUnprivileged", "VARTA_QUEUE_CHILD=machine", "VARTA_QUEUE_DIR="+dir, "VARTA_QUEUE_WHY="+why)
}

// copyExecutable copies the program at src to dst, mode 0755 (a copy that
// user nobody may run, outside root's private temporary directories), and
// returns dst.
func copyExecutable(t testing.TB, src, dst string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// usernsAsNobody tells whether user 65534 may create a user and a network
// namespace here, as the socket helper does: nil if it may. (It asks
// util-linux: Go's SysProcAttr would apply the credentials inside the new
// namespace, where 65534 is not mapped.)
func usernsAsNobody() error {
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "unshare", "--user", "--map-root-user", "--net", "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("setpriv … unshare --user --map-root-user --net: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// runAsNobody runs this test binary's test name again as user and group
// 65534 with env added, from a copy nobody can execute, and fails t if it
// fails. A wrapper command line, when given, runs it (as root, with the
// test's command line as its last arguments).
func runAsNobody(t *testing.T, wrapper []string, name string, env ...string) {
	t.Helper()
	cmd := nobodyTest(t, name, env, "-test.v")
	if wrapper != nil {
		setpriv := append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, cmd.Args...)
		w := exec.Command(wrapper[0], append(wrapper[1:], setpriv...)...)
		w.Env = cmd.Env
		cmd = w
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s as nobody: %v\n%s", name, err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+name) {
		t.Fatalf("%s as nobody did not pass:\n%s", name, out)
	}
}

// skipUnlessNobodyTest skips a test that reruns this test binary as user
// nobody (nobodyTest) where it cannot: not root (why says what for), or
// under qemu-user (VARTA_E2E=0), where the binary cannot exec itself.
func skipUnlessNobodyTest(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip(why)
	}
	if os.Getenv("VARTA_E2E") == "0" {
		t.Skip("VARTA_E2E=0: runs the test binary again (under qemu-user it cannot exec itself)")
	}
}

// nobodyTest is the command that runs test name of a copy of this test
// binary (one user nobody may run) as user nobody, with env added and
// flags after -test.run.
func nobodyTest(t *testing.T, name string, env []string, flags ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := shortTempDir(t)
	os.Chmod(dir, 0o755)
	bin := copyExecutable(t, self, filepath.Join(dir, "test.bin"))
	cmd := exec.Command(bin, append([]string{"-test.run", "^" + name + "$"}, flags...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// TestCredentialsFromTheFirstDatagram: a datagram sent the moment the
// socket's path appears carries the sender's credentials. SO_PASSCRED set
// after bind(2) left a window in which an agent that was already beating
// when the observer started had its beat judged a forgery (auth_failure).
func TestCredentialsFromTheFirstDatagram(t *testing.T) {
	dir := shortTempDir(t)
	for i := 0; i < 200; i++ {
		path := filepath.Join(dir, "s"+strconv.Itoa(i)+".sock")
		snd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		sent := make(chan error, 1)
		go func() {
			defer unix.Close(snd)
			for until := time.Now().Add(5 * time.Second); time.Now().Before(until); {
				if err := unix.Sendto(snd, []byte("first"), 0, &unix.SockaddrUnix{Name: path}); err == nil {
					sent <- nil
					return
				}
			}
			sent <- fmt.Errorf("the socket at %s never took a datagram", path)
		}()
		s, err := bindVLPSocket(path, 0o600, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-sent; err != nil {
			s.close()
			t.Fatal(err)
		}
		buf, oob := make([]byte, 64), make([]byte, 256)
		_, oobn, _, _, err := unix.Recvmsg(s.fd, buf, oob, 0)
		s.close()
		if err != nil {
			t.Fatal(err)
		}
		var fds [maxRightsFds]int32
		if pid, ok, _ := parseControl(oob[:oobn], &fds); !ok || pid != int32(os.Getpid()) {
			t.Fatalf("try %d: the first datagram came with credentials %v, pid %d; want this process's", i, ok, pid)
		}
	}
}
