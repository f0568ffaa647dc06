package main

import (
	"math/rand"
	"slices"
	"testing"
)

// Per-agent thresholds (contract §9): the nearest stall deadline is the
// nearest of the heads of the per-threshold lists, whatever the order the
// pids beat in; a slot's class moves it between lists.
func TestNearestActiveIsTheNearestHeadOfEveryThreshold(t *testing.T) {
	tr := newTracker(64)
	tr.thr = []int64{1000, 300, 5000}
	tr.more = []slotList{{noSlot, noSlot}, {noSlot, noSlot}}
	rng := rand.New(rand.NewSource(1))
	var now int64
	for i := 0; i < 64; i++ {
		now += rng.Int63n(100)
		s := tr.insert(uint32(100+i), now)
		tr.unlink(s)
		tr.slots[s].class = uint16(rng.Intn(3))
		tr.link(s, slotActive)
	}
	for n := 0; n < 64; n++ {
		want, wantD := noSlot, int64(0)
		for s := range tr.slots {
			sl := &tr.slots[s]
			if d := sl.lastBeat + tr.thr[sl.class]; sl.list == slotActive && (want == noSlot || d < wantD) {
				want, wantD = int32(s), d
			}
		}
		s, d := tr.nearestActive()
		if s != want || d != wantD {
			t.Fatalf("nearestActive = slot %d at %d, want slot %d at %d", s, d, want, wantD)
		}
		tr.moveTo(s, slotStalled) // it stalls
	}
	if s, _ := tr.nearestActive(); s != noSlot {
		t.Fatalf("every pid stalled, yet slot %d is next", s)
	}
}

// The per-agent pid counts follow every list change, and removal.
func TestAgentPidCountsFollowTheLists(t *testing.T) {
	tr := newTracker(8)
	tr.pids = make([]agentPids, 2)
	s := tr.insert(7, 1)
	tr.unlink(s)
	tr.slots[s].agent = 2
	tr.link(s, slotActive)
	if tr.pids[1] != (agentPids{1, 0}) {
		t.Fatalf("after a beat %+v", tr.pids[1])
	}
	tr.moveTo(s, slotStalled)
	tr.moveTo(s, slotStalledOld)
	if tr.pids[1] != (agentPids{0, 1}) {
		t.Fatalf("after a stall %+v", tr.pids[1])
	}
	tr.remove(s)
	if tr.pids[1] != (agentPids{0, 0}) || tr.pids[0] != (agentPids{}) {
		t.Fatalf("after removal %+v", tr.pids)
	}
}

// The missing deadlines come out of the heap in order, and an agent that
// beats leaves it wherever it is.
func TestMissingHeapGivesDeadlinesInOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	tb := &agentTable{agents: make([]agentState, 200)}
	var want []int64
	for i := range tb.agents {
		a := &tb.agents[i]
		a.idx, a.heapPos, a.missAt = int32(i), -1, 1+rng.Int63n(1000)
		tb.push(int32(i))
	}
	for i := range tb.agents {
		if i%3 == 0 {
			tb.disarm(&tb.agents[i])
		} else {
			want = append(want, tb.agents[i].missAt)
		}
	}
	slices.Sort(want)
	var got []int64
	for len(tb.missHeap) > 0 {
		a := &tb.agents[tb.missHeap[0]]
		got = append(got, a.missAt)
		tb.disarm(a)
		if a.missAt != 0 || a.heapPos != -1 {
			t.Fatalf("disarmed agent keeps %d at %d", a.missAt, a.heapPos)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("deadlines out of order:\n got %v\nwant %v", got, want)
	}
}

// Escalation counts the recoveries within the window: max_recoveries of
// them exhaust it, older ones do not.
func TestExhaustedCountsRecoveriesWithinTheWindow(t *testing.T) {
	const s = 1_000_000_000
	a := &agentState{spec: agentSpec{maxRecoveries: 3, recoveryWindowS: 10}, recent: make([]int64, 3)}
	for _, at := range []int64{1 * s, 2 * s} {
		a.noteRecovery(at)
	}
	if a.exhausted(3 * s) {
		t.Fatal("exhausted after 2 of 3 recoveries")
	}
	a.noteRecovery(4 * s)
	if !a.exhausted(5 * s) {
		t.Fatal("not exhausted after 3 recoveries within 10 s")
	}
	if a.exhausted(11*s + 1) {
		t.Fatal("exhausted although the first of the 3 is more than a window ago")
	}
	a.noteRecovery(12 * s) // the ring keeps the latest three: 2, 4, 12
	if a.exhausted(12*s + 1) {
		t.Fatal("exhausted: 2 s is outside the window of 12 s")
	}
	never := &agentState{spec: agentSpec{maxRecoveries: 0, recoveryWindowS: 10}, recent: make([]int64, 1)}
	never.noteRecovery(1)
	if never.exhausted(2) {
		t.Fatal("max_recoveries 0 gave up")
	}
}
