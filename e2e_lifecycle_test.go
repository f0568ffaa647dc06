//go:build linux

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// notifyListenerE2E is a stand-in for systemd's notify socket.
type notifyListenerE2E struct {
	fd  int
	msg chan string
}

func listenNotifyE2E(t *testing.T, name string) *notifyListenerE2E {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	addr := name
	if strings.HasPrefix(name, "@") {
		addr = "\x00" + name[1:]
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
		t.Fatal(err)
	}
	l := &notifyListenerE2E{fd: fd, msg: make(chan string, 1024)}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		buf := make([]byte, 4096)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 { // shut down by the cleanup
				return
			}
			l.msg <- string(buf[:n])
		}
	}()
	// Close the fd only after the reader has left recvfrom: a reader still
	// blocked on a reused fd number would steal another test's messages.
	t.Cleanup(func() { unix.Shutdown(fd, unix.SHUT_RDWR); <-exited; unix.Close(fd) })
	return l
}

// next returns the next message, or "" after timeout.
func (l *notifyListenerE2E) next(timeout time.Duration) string {
	select {
	case m := <-l.msg:
		return m
	case <-time.After(timeout):
		return ""
	}
}

func TestSystemdNotifyLifecycle(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		name := filepath.Join(shortTempDir(t), "notify.sock")
		if abstract {
			name = "@varta-test-notify-" + filepath.Base(filepath.Dir(name))
		}
		t.Run(map[bool]string{false: "path", true: "abstract"}[abstract], func(t *testing.T) {
			l := listenNotifyE2E(t, name)
			p := startObserverCmd(t, []string{observerBinary(t)},
				[]string{"NOTIFY_SOCKET=" + name, "WATCHDOG_USEC=200000"}, "--threshold-ms", "1000")
			if m := l.next(5 * time.Second); m != "READY=1" {
				t.Fatalf("first notify message %q, want READY=1", m)
			}
			// WATCHDOG_USEC=200000 asks for a ping at least every 200 ms;
			// the observer pings every 100 ms from its loop.
			start := time.Now()
			pings := 0
			for time.Since(start) < 800*time.Millisecond {
				if m := l.next(time.Second); m == "WATCHDOG=1" {
					pings++
				} else if m != "" {
					t.Fatalf("unexpected notify message %q", m)
				}
			}
			if pings < 4 {
				t.Fatalf("%d WATCHDOG=1 pings in 800ms, want at least 4 (every 100ms)", pings)
			}
			p.signal(syscall.SIGTERM)
			for {
				m := l.next(5 * time.Second)
				if m == "STOPPING=1" {
					break
				}
				if m != "WATCHDOG=1" {
					t.Fatalf("got %q, want STOPPING=1 at shutdown", m)
				}
			}
			if code := p.wait(10 * time.Second); code != 0 {
				t.Fatalf("exit %d", code)
			}
		})
	}
}

func TestSystemdWatchdogForAnotherPidIsIgnored(t *testing.T) {
	name := filepath.Join(shortTempDir(t), "notify.sock")
	l := listenNotifyE2E(t, name)
	p := startObserverCmd(t, []string{observerBinary(t)},
		[]string{"NOTIFY_SOCKET=" + name, "WATCHDOG_USEC=100000", "WATCHDOG_PID=1"}, "--threshold-ms", "1000")
	if m := l.next(5 * time.Second); m != "READY=1" {
		t.Fatalf("first notify message %q, want READY=1", m)
	}
	if m := l.next(500 * time.Millisecond); m != "" {
		t.Fatalf("got %q: the watchdog was requested for pid 1, not for the observer", m)
	}
	p.stop()
}

func observerBinary(t *testing.T) string {
	binaries(t)
	return observerBin
}

func TestHardwareWatchdogFedAndClosedWithMagicOnlyWhenClean(t *testing.T) {
	for _, clean := range []bool{true, false} {
		t.Run(map[bool]string{true: "clean", false: "killed"}[clean], func(t *testing.T) {
			dev := filepath.Join(shortTempDir(t), "watchdog")
			if err := os.WriteFile(dev, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			p := startObserver(t, "--threshold-ms", "1000", "--hw-watchdog", dev)
			// A regular file has no WDIOC_GETTIMEOUT: the feed interval is 1s.
			deadline := time.Now().Add(5 * time.Second)
			for {
				b, _ := os.ReadFile(dev)
				if len(b) >= 2 {
					if bytes.ContainsRune(b, 'V') {
						t.Fatalf("magic close byte written while running: %q", b)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("watchdog fed %d times in 5s, want at least 2", len(b))
				}
				time.Sleep(50 * time.Millisecond)
			}
			if clean {
				if code := p.stop(); code != 0 {
					t.Fatalf("exit %d", code)
				}
			} else {
				p.signal(syscall.SIGKILL)
				p.wait(5 * time.Second)
			}
			b, _ := os.ReadFile(dev)
			if got := bytes.HasSuffix(b, []byte("V")); got != clean {
				t.Fatalf("magic close byte at the end = %v, want %v (file %q)", got, clean, b)
			}
		})
	}
}
