//go:build !race

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// Contract §9 with design.md's rule: with 256 agent sections, a beat and
// a stall of a pid that belongs to one (matched once, from this process's
// /proc) allocate nothing, and the stall comes at its section's threshold.
func TestAllocsBeatAndStallWithAgentSections(t *testing.T) {
	o := newConfObserver(t, agentSectionsText(256), "--export-file", filepath.Join(shortTempDir(t), "e.tsv"))
	fd := dialObserver(t, o)
	pid := uint32(os.Getpid())
	nonce := uint64(1)
	sendFrame(t, fd, Frame{Status: StatusOK, Pid: pid, Nonce: nonce})
	o.drainSocket()
	s := o.tr.lookup(pid)
	sl := &o.tr.slots[s]
	if a := o.agentOf(sl); a == nil || a.spec.name != "all" || o.tr.threshold(sl) != 150_000_000 {
		t.Fatalf("this process matched %+v, want section all with 150 ms", a)
	}
	sl.startTime = 0 // see TestAllocsSurfaceStall: no reuse check under qemu-user
	var b [FrameSize]byte
	stallAndRearm := func() {
		_, d := o.tr.nearestActive()
		if d != sl.lastBeat+150_000_000 {
			t.Fatalf("nearest deadline %d, want the section's %d", d, sl.lastBeat+150_000_000)
		}
		o.fireDeadlines(d + 1)
		nonce++
		EncodeFrame(&b, Frame{Status: StatusOK, Pid: pid, Nonce: nonce})
		unix.Write(fd, b[:])
		o.drainSocket()
	}
	if allocs := testing.AllocsPerRun(300, stallAndRearm); allocs != 0 {
		t.Errorf("a stall and a beat with agent sections: %v allocations", allocs)
	}
	if a := o.agentOf(sl); sl.stalls != 301 || a.stalls != 301 || o.tr.pids[a.idx].beating != 1 {
		t.Fatalf("stalls: slot %d, agent %d; beating %d", sl.stalls, a.stalls, o.tr.pids[a.idx].beating)
	}
}

// A scrape with 256 agent sections and their series allocates nothing.
func TestScrapeWithAgentSectionsAllocatesNothing(t *testing.T) {
	o := newConfObserver(t, agentSectionsText(256), "--prom-addr", "127.0.0.1:0", "--tracker-capacity", "4096")
	now := monoNow()
	for i := 0; i < 4096; i++ {
		s := o.tr.insert(uint32(100_000+i), now)
		sl := &o.tr.slots[s]
		sl.beats, sl.commLen = 1, uint8(copy(sl.comm[:], "agent-"+strconv.Itoa(i%300)))
	}
	o.setAgents(o.agents) // match them all: comm agent-k belongs to section a<k>
	c := newScrapeClient(t, o, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	if allocs := testing.AllocsPerRun(10, func() { c.scrape(t, o, nil) }); allocs != 0 {
		t.Fatalf("a scrape with agent sections allocates %.1f times", allocs)
	}
	if n := o.tr.pids[7].beating; n != 14 {
		t.Fatalf("section a7 has %d beating pids, want 14", n)
	}
}
