//go:build linux

package main

import (
	"testing"
	"time"
)

func TestEpollMsec(t *testing.T) {
	const day = int64(24 * time.Hour)
	for _, tc := range []struct {
		ns   int64
		want int
	}{
		{-1, -1},
		{-1 << 62, -1},
		{0, 0},
		{1, 1}, // rounded up: never early
		{999_999, 1},
		{1_000_000, 1},
		{1_000_001, 2},
		{100 * 1_000_000, 100},
		{24 * day, 2_073_600_000},
		{(1<<31 - 1) * 1_000_000, 1<<31 - 1},
		// Past what the kernel's int holds: capped, never wrapped to a
		// negative (forever) or a small value.
		{(1<<31-1)*1_000_000 + 1, 1<<31 - 1},
		{30 * day, 1<<31 - 1},
		{100 * 365 * day, 1<<31 - 1},
		{1<<63 - 1, 1<<31 - 1},
	} {
		if got := epollMsec(tc.ns); got != tc.want {
			t.Errorf("epollMsec(%d) = %d, want %d", tc.ns, got, tc.want)
		}
	}
}

// TestPollerWaitTimeout: a real epoll_wait with nothing ready returns
// after its timeout, not before, and a wake ends an endless wait.
func TestPollerWaitTimeout(t *testing.T) {
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	out := make([]pollEvent, 4)
	start := time.Now()
	n, err := p.wait(out, int64(20*time.Millisecond))
	if err != nil || n != 0 {
		t.Fatalf("wait = %d, %v", n, err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("wait of 20ms returned after %v", d)
	}
	go func() { time.Sleep(10 * time.Millisecond); p.wake() }()
	n, err = p.wait(out, -1)
	if err != nil || n != 1 || !p.isWake(out[0].fd) {
		t.Fatalf("wake: wait = %d %+v, %v", n, out[0], err)
	}
	p.drainWake()
	if n, _ := p.wait(out, 0); n != 0 {
		t.Fatalf("wake fd still ready after drainWake")
	}
}
