//go:build linux

package main

import (
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// longPause makes o's coalescer plan a pause of about 40 minutes at once
// and keep planning it: no deadline comes sooner in a test observer
// without agents, so only what the pause waits for can end it.
func longPause(o *observer) {
	o.coal = newCoalescer(256, o.threshold)
	o.coal.maxPause = 1 << 62
	o.coal.target = 10_000_000
	o.coal.qlen = 1 << 40 // room for it
	o.coal.interval = 244_140
	o.coal.lastDrain = 1
	o.coal.windowStart = 1 << 62 // no new rate measured: the interval stays
}

// TestCoalescingPauseEndsForAScrapeOrASignal: a pause lets beats gather in
// the socket's queue, but a metrics connection or a signal must not wait
// for it (a scrape of 4096 agents took 16 ms instead of 3 behind 9 ms
// pauses). The pause waits for every fd but the VLP socket: a datagram
// queued before it does not end it, a connection or a signal does, and
// the datagram is read in the same turn.
func TestCoalescingPauseEndsForAScrapeOrASignal(t *testing.T) {
	for _, wakeBy := range []string{"metrics connection", "SIGHUP"} {
		t.Run(wakeBy, func(t *testing.T) {
			o := newTestObserver(t, "--threshold-ms", "1500", "--prom-addr", "127.0.0.1:0")
			longPause(o)
			if p := o.coalescePause(o.timeout(monoNow())); p < 1_000_000_000 {
				t.Fatalf("planned pause %d ns, want a long one", p)
			}
			fd := dialObserver(t, o)
			if _, err := unix.Write(fd, []byte("short")); err != nil {
				t.Fatal(err)
			}
			done, tid := make(chan error, 1), make(chan int, 1)
			go func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				o.lastYield = monoNow() // no Gosched in this turn
				tid <- unix.Gettid()
				done <- o.iterate()
			}()
			// A signal that comes before the turn plans its pause means no
			// pause (it is handled first): send it once the loop's thread
			// sleeps in the pause.
			waitBlocked(t, <-tid)
			switch wakeBy {
			case "metrics connection":
				c, err := net.Dial("tcp", o.prom.addr())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			case "SIGHUP":
				syscall.Kill(os.Getpid(), syscall.SIGHUP)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(2 * time.Minute):
				t.Fatalf("a %s did not end a coalescing pause", wakeBy)
			}
			if o.sockArmed {
				t.Error("the socket's interest is on during a pause")
			}
			if o.stats.truncated != 1 {
				t.Errorf("the datagram queued during the pause was not read in that turn (truncated %d)", o.stats.truncated)
			}
		})
	}
}

// waitBlocked returns once thread tid of this process sleeps in the kernel
// anywhere but in a futex (/proc/self/task/TID/wchan): a thread locked to a
// goroutine that the scheduler put aside sleeps in a futex; the loop's
// thread in a turn sleeps only in its wait (or a pause). The function name
// is the kernel's, also under qemu-user, whose syscall numbers are not the
// guest's.
func waitBlocked(t *testing.T, tid int) {
	t.Helper()
	path := "/proc/self/task/" + strconv.Itoa(tid) + "/wchan"
	sawName := false
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Skipf("cannot see where a thread sleeps: %v", err)
		}
		switch w := strings.TrimSpace(string(b)); {
		case w == "" || w == "0": // running, or a kernel that names no function
		case strings.Contains(w, "futex"):
			sawName = true
		default:
			return
		}
	}
	if !sawName {
		t.Skip("this kernel does not say where a thread sleeps (/proc/PID/wchan is 0)")
	}
	t.Fatalf("thread %d never slept outside a futex", tid)
}

// TestBusyLoopHoldsItsWaits: while datagrams come at heldMinRate or faster
// a turn waits at most heldWaitMax, whatever its next deadline (here none
// within a minute), and passes through the scheduler first; so the wait
// is a held one that sysmon never retakes (poll_linux.go). A quiet loop's
// wait is its deadline, not held.
func TestBusyLoopHoldsItsWaits(t *testing.T) {
	o := newTestObserver(t, "--threshold-ms", "60000")
	o.coal = newCoalescer(256, o.threshold)
	o.coal.windowStart = 1 << 62 // no new rate measured: stays as set
	now := monoNow()
	quiet, _, _ := o.planWait(now)
	if quiet >= 0 && quiet < time.Second.Nanoseconds() {
		t.Fatalf("the test observer has a deadline in %d ns: this test needs none soon", quiet)
	}
	if timeout, pause, held := o.planWait(now); timeout != quiet || pause != 0 || held {
		t.Fatalf("quiet: wait %d ns, pause %d, held %v; want its deadline, not held", timeout, pause, held)
	}
	o.coal.fast = true
	if timeout, pause, held := o.planWait(now); timeout != heldWaitMax || pause != 0 || !held {
		t.Fatalf("busy: wait %d ns, pause %d, held %v; want %d ns, no pause, held", timeout, pause, held, heldWaitMax)
	}
	// The same through a real turn: it ends by itself, after a pass
	// through the scheduler.
	y0 := monoNow()
	o.lastYield = y0
	done := make(chan error, 1)
	go func() { done <- o.iterate() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a busy loop's turn with nothing to do did not end within 20 s: its wait was not capped")
	}
	if o.lastYield == y0 {
		t.Fatal("no pass through the scheduler before a held wait")
	}
}
