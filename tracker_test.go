package main

import (
	"math/rand/v2"
	"testing"
)

// checkTracker verifies every invariant: each used slot is findable by pid
// and sits on exactly one list, the lists are well linked and ordered, and
// the free list holds the rest.
func checkTracker(t *testing.T, tr *tracker) {
	t.Helper()
	seen := make(map[int32]uint8)
	for _, kind := range []uint8{slotActive, slotStalled, slotStalledOld} {
		l := tr.listOf(kind, 0)
		prev := noSlot
		for s := l.head; s != noSlot; s = tr.slots[s].next {
			if tr.slots[s].list != kind || tr.slots[s].prev != prev {
				t.Fatalf("slot %d badly linked on list %d", s, kind)
			}
			if _, dup := seen[s]; dup {
				t.Fatalf("slot %d on two lists", s)
			}
			seen[s] = kind
			if kind == slotActive && prev != noSlot && tr.slots[prev].lastBeat > tr.slots[s].lastBeat {
				t.Fatalf("active list out of order at slot %d", s)
			}
			prev = s
		}
		if l.tail != prev {
			t.Fatalf("list %d tail %d, want %d", kind, l.tail, prev)
		}
	}
	if len(seen) != tr.n {
		t.Fatalf("%d slots on lists, n = %d", len(seen), tr.n)
	}
	for s := range seen {
		if got := tr.lookup(tr.slots[s].pid); got != s {
			t.Fatalf("lookup(%d) = %d, want %d", tr.slots[s].pid, got, s)
		}
	}
	free := 0
	for s := tr.freeHead; s != noSlot; s = tr.slots[s].next {
		if _, used := seen[s]; used {
			t.Fatalf("slot %d both free and used", s)
		}
		free++
	}
	if free+tr.n != tr.capacity() {
		t.Fatalf("free %d + used %d != capacity %d", free, tr.n, tr.capacity())
	}
}

func TestTrackerRandomOperationsKeepInvariants(t *testing.T) {
	for _, capacity := range []int{1, 2, 7, 64, 4096} {
		tr := newTracker(capacity)
		model := map[uint32]bool{}
		rng := rand.New(rand.NewPCG(1, uint64(capacity)))
		now := int64(0)
		for op := 0; op < 20000; op++ {
			now++
			// Few distinct pids, so collisions and probe runs are common.
			pid := uint32(2 + rng.IntN(3*capacity+3))
			s := tr.lookup(pid)
			if (s != noSlot) != model[pid] {
				t.Fatalf("cap %d: lookup(%d) = %d, model says %v", capacity, pid, s, model[pid])
			}
			switch {
			case s == noSlot && !tr.full():
				tr.insert(pid, now)
				model[pid] = true
			case s != noSlot && rng.IntN(3) == 0:
				tr.remove(s)
				delete(model, pid)
			case s != noSlot && rng.IntN(2) == 0:
				tr.slots[s].lastBeat = now
				tr.moveTo(s, slotActive)
			case s != noSlot:
				tr.moveTo(s, slotStalled+uint8(rng.IntN(2)))
			}
			if op%997 == 0 {
				checkTracker(t, tr)
			}
		}
		checkTracker(t, tr)
		if tr.n != len(model) {
			t.Fatalf("cap %d: n = %d, model %d", capacity, tr.n, len(model))
		}
	}
}

func TestTrackerCollidingPidsSurviveDeletes(t *testing.T) {
	tr := newTracker(16)
	// Fill, then delete from the middle of probe runs and look everything up.
	for p := uint32(2); p < 18; p++ {
		tr.insert(p, int64(p))
	}
	if !tr.full() {
		t.Fatal("tracker of 16 not full after 16 inserts")
	}
	for p := uint32(3); p < 18; p += 2 {
		tr.remove(tr.lookup(p))
	}
	for p := uint32(2); p < 18; p++ {
		if got := tr.lookup(p) != noSlot; got != (p%2 == 0) {
			t.Fatalf("lookup(%d) present=%v", p, got)
		}
	}
	checkTracker(t, tr)
}
