//go:build linux && !race

package main

import (
	"os"
	"testing"
)

// TestProcReadsAllocateNothing: the /proc reads of the hot path (a new
// pid's start time and comm, its inner pid, liveness at a stall) and of a
// scrape (the process_* metrics) allocate nothing.
func TestProcReadsAllocateNothing(t *testing.T) {
	var p procReader
	pid := uint32(os.Getpid())
	if p.startTime(pid) == 0 {
		t.Skip("no /proc")
	}
	var comm [16]byte
	if n := testing.AllocsPerRun(100, func() {
		p.startTime(pid)
		p.alive(pid)
		p.startAndComm(pid, &comm)
		p.innerPid(pid)
	}); n != 0 {
		t.Fatalf("procReader: %v allocations per run", n)
	}
	var s selfProc
	if err := s.init(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { b = s.appendMetrics(b[:0]) }); n != 0 {
		t.Fatalf("selfProc.appendMetrics: %v allocations per run", n)
	}
	if fds, ok := s.openFds(); !ok || fds < 3 {
		t.Fatalf("openFds = %d, %v", fds, ok)
	}
}
