package main

import (
	"bytes"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestBootTime compares CLOCK_BOOTTIME with /proc/uptime, which the kernel
// computes from the same clock (and offsets in a time namespace alike).
func TestBootTime(t *testing.T) {
	before, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Skip("no /proc/uptime:", err)
	}
	mono := monoRaw()
	ns, err := bootTime()
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	secs := func(b []byte) float64 {
		f, err := strconv.ParseFloat(string(b[:bytes.IndexByte(b, ' ')]), 64)
		if err != nil {
			t.Fatalf("/proc/uptime %q: %v", b, err)
		}
		return f
	}
	lo := time.Duration((secs(before) - 0.01) * float64(time.Second)) // /proc/uptime has centiseconds
	hi := time.Duration((secs(after) + 0.01) * float64(time.Second))
	if got := time.Duration(ns); got < lo || got > hi {
		t.Fatalf("bootTime %v, /proc/uptime says between %v and %v", got, lo, hi)
	}
	if ns < mono { // read after it: boot time is monotonic time plus time suspended
		t.Fatalf("CLOCK_BOOTTIME %d is behind CLOCK_MONOTONIC %d", ns, mono)
	}
}
