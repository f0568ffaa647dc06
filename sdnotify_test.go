//go:build unix

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listenNotify binds a datagram socket standing in for systemd's notify
// socket and returns a function that receives the next message.
func listenNotify(t *testing.T, name string) func() string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return func() string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("receive on %s: %v", name, err)
		}
		return string(buf[:n])
	}
}

func setNotifyEnv(t *testing.T, socket, usec, pid string) {
	t.Helper()
	for k, v := range map[string]string{"NOTIFY_SOCKET": socket, "WATCHDOG_USEC": usec, "WATCHDOG_PID": pid} {
		t.Setenv(k, v) // restores the old value after the test
		if v == "" {
			os.Unsetenv(k)
		}
	}
}

func newTestNotifier(t *testing.T) *sdNotifier {
	t.Helper()
	n, err := newSdNotifier()
	if err != nil {
		t.Fatalf("newSdNotifier: %v", err)
	}
	if n == nil {
		t.Fatal("newSdNotifier returned nil with NOTIFY_SOCKET set")
	}
	t.Cleanup(n.close)
	return n
}

func TestSdNotifyUnset(t *testing.T) {
	setNotifyEnv(t, "", "10000000", "")
	n, err := newSdNotifier()
	if n != nil || err != nil {
		t.Fatalf("newSdNotifier() = %v, %v; want nil, nil without NOTIFY_SOCKET", n, err)
	}
	if err := n.send("READY=1"); err != nil {
		t.Errorf("nil send: %v", err)
	}
	if d := n.watchdogInterval(); d != 0 {
		t.Errorf("nil watchdogInterval = %v, want 0", d)
	}
	n.close()
}

func testSdNotifySend(t *testing.T, name string) {
	recv := listenNotify(t, name)
	setNotifyEnv(t, name, "", "")
	n := newTestNotifier(t)
	for _, msg := range []string{"READY=1", "WATCHDOG=1", "WATCHDOG=1", "STOPPING=1"} {
		if err := n.send(msg); err != nil {
			t.Fatalf("send(%q): %v", msg, err)
		}
		if got := recv(); got != msg {
			t.Fatalf("received %q, want %q", got, msg)
		}
	}
}

func TestSdNotifyPath(t *testing.T) {
	testSdNotifySend(t, filepath.Join(t.TempDir(), "notify"))
}

func TestSdNotifyAbstract(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("abstract unix socket names exist only on Linux")
	}
	testSdNotifySend(t, fmt.Sprintf("@varta-watch-test/%d/%d", os.Getpid(), time.Now().UnixNano()))
}

func TestSdNotifyNobodyListening(t *testing.T) {
	name := filepath.Join(t.TempDir(), "notify")
	setNotifyEnv(t, name, "", "")
	n := newTestNotifier(t)
	err := n.send("READY=1")
	var serr *os.SyscallError
	if !errors.As(err, &serr) || serr.Syscall != "sendto" {
		t.Fatalf("send to a missing socket: %v, want a sendto error", err)
	}
}

func TestSdNotifyClose(t *testing.T) {
	name := filepath.Join(t.TempDir(), "notify")
	listenNotify(t, name)
	setNotifyEnv(t, name, "", "")
	n := newTestNotifier(t)
	n.close()
	n.close()
	if err := n.send("STOPPING=1"); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("send after close: %v, want os.ErrClosed", err)
	}
}

func TestSdNotifySocketFlags(t *testing.T) {
	name := filepath.Join(t.TempDir(), "notify")
	setNotifyEnv(t, name, "", "")
	n := newTestNotifier(t)
	fdFlags, err := unix.FcntlInt(uintptr(n.fd), unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fdFlags&unix.FD_CLOEXEC == 0 {
		t.Error("notify socket is not close-on-exec: recovery children would inherit it")
	}
	flFlags, err := unix.FcntlInt(uintptr(n.fd), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flFlags&unix.O_NONBLOCK == 0 {
		t.Error("notify socket is blocking: a stuck service manager would stall the loop")
	}
	typ, err := unix.GetsockoptInt(n.fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		t.Fatal(err)
	}
	if typ != unix.SOCK_DGRAM {
		t.Errorf("socket type %d, want SOCK_DGRAM", typ)
	}
}

func TestSdNotifyBadSocketName(t *testing.T) {
	for _, name := range []string{
		"relative/notify",
		"vsock:2:1234",
		"@",
		"/" + strings.Repeat("x", 200),
	} {
		setNotifyEnv(t, name, "", "")
		n, err := newSdNotifier()
		if err == nil {
			n.close()
			t.Errorf("NOTIFY_SOCKET=%q: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), "NOTIFY_SOCKET") {
			t.Errorf("NOTIFY_SOCKET=%q: error %q does not name the variable", name, err)
		}
	}
}

func TestSdNotifyWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	other := strconv.Itoa(os.Getpid() + 1)
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		wantErr   bool
	}{
		{"", "", 0, false},
		{"", self, 0, false},
		{"10000000", "", 5 * time.Second, false},
		{"10000000", self, 5 * time.Second, false},
		{"10000000", other, 0, false},
		{"3", "", 1500 * time.Nanosecond, false},
		{"18446744073709551614", "", 1<<63/2 - 1, false},
		{"0", "", 0, true},
		{"-1", "", 0, true},
		{"10s", "", 0, true},
		{"10000000", "me", 0, true},
		{"10000000", "0", 0, true},
	} {
		setNotifyEnv(t, filepath.Join(t.TempDir(), "notify"), tc.usec, tc.pid)
		n, err := newSdNotifier()
		if tc.wantErr {
			if err == nil {
				n.close()
				t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: no error", tc.usec, tc.pid)
			}
			continue
		}
		if err != nil {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v", tc.usec, tc.pid, err)
			continue
		}
		if got := n.watchdogInterval(); got != tc.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: watchdogInterval = %v, want %v", tc.usec, tc.pid, got, tc.want)
		}
		n.close()
	}
}
