//go:build unix

package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Tests never open a real /dev/watchdog: opening one arms it, and a test
// that failed to feed it would reset the machine.

func TestHWWatchdogRegularFile(t *testing.T) {
	for _, tc := range []struct {
		clean bool
		want  string
	}{
		{true, "\x00\x00\x00V"},
		{false, "\x00\x00\x00"},
	} {
		path := filepath.Join(t.TempDir(), "watchdog")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		w, err := openHWWatchdog(path)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := w.feed(); err != nil {
				t.Fatalf("feed: %v", err)
			}
		}
		if err := w.close(tc.clean); err != nil {
			t.Fatalf("close(%v): %v", tc.clean, err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("close(%v): device saw %q, want %q", tc.clean, got, tc.want)
		}
	}
}

// TestHWWatchdogFIFO reads what a driver would see, byte by byte as it is
// written, through a FIFO standing in for the device.
func TestHWWatchdogFIFO(t *testing.T) {
	for _, clean := range []bool{true, false} {
		path := filepath.Join(t.TempDir(), "watchdog")
		if err := unix.Mkfifo(path, 0o600); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		type result struct {
			data []byte
			err  error
		}
		got := make(chan result, 1)
		go func() {
			// Opening a FIFO for reading blocks until a writer opens it.
			r, err := os.Open(path)
			if err != nil {
				got <- result{err: err}
				return
			}
			defer r.Close()
			data, err := io.ReadAll(r)
			got <- result{data, err}
		}()
		w, err := openHWWatchdog(path)
		if err != nil {
			t.Fatal(err)
		}
		if d := w.interval(); d != hwWatchdogDefaultInterval {
			t.Errorf("interval of a FIFO = %v, want the default %v", d, hwWatchdogDefaultInterval)
		}
		for range 2 {
			if err := w.feed(); err != nil {
				t.Fatalf("feed: %v", err)
			}
		}
		if err := w.close(clean); err != nil {
			t.Fatalf("close(%v): %v", clean, err)
		}
		var res result
		select {
		case res = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("reader did not see the FIFO close")
		}
		if res.err != nil {
			t.Fatal(res.err)
		}
		want := "\x00\x00"
		if clean {
			want += "V"
		}
		if string(res.data) != want {
			t.Errorf("close(%v): device saw %q, want %q", clean, res.data, want)
		}
	}
}

func TestHWWatchdogOpenErrorNamesPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-watchdog")
	w, err := openHWWatchdog(path)
	if err == nil {
		w.close(false)
		t.Fatal("opened a missing device")
	}
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q: want ErrNotExist naming %s", err, path)
	}
}

func TestHWWatchdogCloseOnExec(t *testing.T) {
	w, err := openHWWatchdog(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close(false)
	flags, err := unix.FcntlInt(uintptr(w.fd), unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.FD_CLOEXEC == 0 {
		t.Error("watchdog fd is not close-on-exec: a recovery child would hold the device open")
	}
}

func TestHWWatchdogAfterClose(t *testing.T) {
	w, err := openHWWatchdog(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.close(true); err != nil {
		t.Fatal(err)
	}
	if err := w.close(true); err != nil {
		t.Errorf("second close: %v", err)
	}
	if err := w.feed(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("feed after close: %v, want os.ErrClosed", err)
	}
}

func TestHWWatchdogNil(t *testing.T) {
	var w *hwWatchdog
	if err := w.feed(); err != nil {
		t.Error(err)
	}
	if d := w.interval(); d != 0 {
		t.Errorf("nil interval = %v, want 0", d)
	}
	if err := w.close(true); err != nil {
		t.Error(err)
	}
}

func TestHWWatchdogFeedInterval(t *testing.T) {
	for _, tc := range []struct{ timeout, want time.Duration }{
		{0, time.Second},
		{-time.Second, time.Second},
		{60 * time.Second, 30 * time.Second},
		{time.Second, 500 * time.Millisecond},
		{150 * time.Millisecond, 100 * time.Millisecond},
		{time.Millisecond, 100 * time.Millisecond},
	} {
		if got := hwWatchdogFeedInterval(tc.timeout); got != tc.want {
			t.Errorf("timeout %v: interval %v, want %v", tc.timeout, got, tc.want)
		}
	}
}
