package main

// tracker holds every agent pid the observer knows, in a fixed array of
// slots allocated at start. Lookup by pid is an open-addressing hash index
// (linear probing, backward-shift deletion: no tombstones to rot). Each slot
// sits on exactly one intrusive list, ordered so that the next deadline is
// always at a list head and nothing is found by scanning every agent:
//
//   - active: beating pids in order of their last accepted beat, one list
//     per distinct threshold (class 0 the global one, then one per other
//     threshold of the agent sections: at most 257). The pids of one list
//     share a threshold, so its head holds its next stall deadline, the
//     nearest of the heads the next of all, and a beat moves its slot to
//     the tail of its list in O(1).
//   - stalled: stalled pids in order of their last beat (stalls fire in that
//     order), first liveness check due at lastBeat + retireAfter.
//   - stalledOld: stalled pids found alive at least once, in order of their
//     next liveness check (now + retireAfter when checked).
type tracker struct {
	slots      []slot
	index      []int32
	mask       uint32
	freeHead   int32
	n          int
	seq        uint64     // insertions so far: the born stamp of the newest slot
	active     slotList   // class 0: the global threshold
	more       []slotList // active lists of classes 1…
	thr        []int64    // threshold of each class, ns; thr[0] the global one
	pids       []agentPids
	stalled    slotList
	stalledOld slotList
}

// agentPids counts the tracked pids of one agent section (slot.agent) by
// list: beating on an active list, stalled on a stalled one.
type agentPids struct{ beating, stalled int32 }

const (
	slotFree uint8 = iota
	slotActive
	slotStalled
	slotStalledOld
)

const noSlot int32 = -1

type slot struct {
	pid        uint32
	list       uint8
	status     Status // last status on the wire, or StatusStall
	commLen    uint8
	_          uint8
	innerPid   uint32 // the pid the agent has in its own pid namespace, 0 the same
	agent      uint16 // 1 + index of its agent section, 0 none (contract §9)
	class      uint16 // its threshold: tracker.thr[class]
	nonce      uint64 // last accepted nonce
	lastBeat   int64  // observer monotonic ns of the last accepted beat
	nextCheck  int64  // stalledOld: when to check liveness again
	startTime  uint64 // process start time (Linux /proc/PID/stat field 22), 0 unknown
	beats      uint64
	stalls     uint64
	lastRecov  int64  // monotonic ns of the last recovery attempt, 0 none
	born       uint64 // tracker.seq at insertion: a scrape renders only slots born before it began
	prev, next int32
	comm       [16]byte

	// reuseChecked is when an out-of-order frame last made the observer
	// read /proc for pid reuse (monotonic ns), 0 never.
	reuseChecked int64
}

type slotList struct{ head, tail int32 }

func newTracker(capacity int) *tracker {
	size := 1
	for size < 2*capacity {
		size <<= 1
	}
	t := &tracker{
		slots: make([]slot, capacity),
		index: make([]int32, size),
		mask:  uint32(size - 1),
		thr:   []int64{0},
	}
	for i := range t.index {
		t.index[i] = noSlot
	}
	for _, l := range []*slotList{&t.active, &t.stalled, &t.stalledOld} {
		*l = slotList{noSlot, noSlot}
	}
	for i := range t.slots {
		t.slots[i].next = int32(i + 1)
	}
	t.slots[capacity-1].next = noSlot
	return t
}

func (t *tracker) capacity() int { return len(t.slots) }
func (t *tracker) full() bool    { return t.freeHead == noSlot }

func (t *tracker) hash(pid uint32) uint32 { return (pid * 0x9E3779B1) >> 7 & t.mask }

// lookup returns the slot of pid or noSlot.
func (t *tracker) lookup(pid uint32) int32 {
	for i := t.hash(pid); ; i = (i + 1) & t.mask {
		s := t.index[i]
		if s == noSlot {
			return noSlot
		}
		if t.slots[s].pid == pid {
			return s
		}
	}
}

// insert takes a free slot for pid (the caller checked !full and that pid
// is absent) and puts it at the tail of the active list.
func (t *tracker) insert(pid uint32, now int64) int32 {
	s := t.freeHead
	t.freeHead = t.slots[s].next
	t.seq++
	t.slots[s] = slot{pid: pid, lastBeat: now, prev: noSlot, next: noSlot, born: t.seq}
	i := t.hash(pid)
	for t.index[i] != noSlot {
		i = (i + 1) & t.mask
	}
	t.index[i] = s
	t.n++
	t.link(s, slotActive)
	return s
}

// remove frees slot s.
func (t *tracker) remove(s int32) {
	t.unlink(s)
	pid := t.slots[s].pid
	i := t.hash(pid)
	for t.index[i] != s {
		i = (i + 1) & t.mask
	}
	// Backward-shift deletion: pull later members of the probe run into the
	// hole when their home position allows it.
	for j := (i + 1) & t.mask; t.index[j] != noSlot; j = (j + 1) & t.mask {
		home := t.hash(t.slots[t.index[j]].pid)
		if (j-home)&t.mask >= (j-i)&t.mask {
			t.index[i] = t.index[j]
			i = j
		}
	}
	t.index[i] = noSlot
	t.slots[s] = slot{list: slotFree, next: t.freeHead, prev: noSlot}
	t.freeHead = s
	t.n--
}

// threshold is the stall threshold of slot sl, ns.
func (t *tracker) threshold(sl *slot) int64 { return t.thr[sl.class] }

// activeList is the active list of class c.
func (t *tracker) activeList(c uint16) *slotList {
	if c == 0 {
		return &t.active
	}
	return &t.more[c-1]
}

// nearestActive returns the active slot whose stall deadline is the
// nearest, and that deadline; noSlot when no pid is beating. It looks at
// one head per threshold class, never at every agent.
func (t *tracker) nearestActive() (int32, int64) {
	best, deadline := t.active.head, int64(0)
	if best != noSlot {
		deadline = t.slots[best].lastBeat + t.thr[0]
	}
	for i := range t.more {
		if s := t.more[i].head; s != noSlot {
			if d := t.slots[s].lastBeat + t.thr[i+1]; best == noSlot || d < deadline {
				best, deadline = s, d
			}
		}
	}
	return best, deadline
}

func (t *tracker) listOf(kind uint8, class uint16) *slotList {
	switch kind {
	case slotActive:
		return t.activeList(class)
	case slotStalled:
		return &t.stalled
	case slotStalledOld:
		return &t.stalledOld
	}
	return nil
}

// link appends s to the tail of list kind.
func (t *tracker) link(s int32, kind uint8) {
	sl := &t.slots[s]
	l := t.listOf(kind, sl.class)
	if sl.agent != 0 && kind != slotFree {
		t.countPid(sl, kind, 1)
	}
	sl.list, sl.prev, sl.next = kind, l.tail, noSlot
	if l.tail != noSlot {
		t.slots[l.tail].next = s
	} else {
		l.head = s
	}
	l.tail = s
}

func (t *tracker) unlink(s int32) {
	sl := &t.slots[s]
	l := t.listOf(sl.list, sl.class)
	if l == nil {
		return
	}
	if sl.agent != 0 {
		t.countPid(sl, sl.list, -1)
	}
	if sl.prev != noSlot {
		t.slots[sl.prev].next = sl.next
	} else {
		l.head = sl.next
	}
	if sl.next != noSlot {
		t.slots[sl.next].prev = sl.prev
	} else {
		l.tail = sl.prev
	}
	sl.prev, sl.next, sl.list = noSlot, noSlot, slotFree
}

// moveTo moves s to the tail of list kind.
func (t *tracker) moveTo(s int32, kind uint8) {
	t.unlink(s)
	t.link(s, kind)
}

func (t *tracker) countPid(sl *slot, kind uint8, d int32) {
	if c := &t.pids[sl.agent-1]; kind == slotActive {
		c.beating += d
	} else {
		c.stalled += d
	}
}

// linkSorted links s into list kind at the place its order asks for (last
// beat; stalledOld: next check), searching from the tail: a reload relinks
// every slot this way, never a beat.
func (t *tracker) linkSorted(s int32, kind uint8) {
	key := func(s int32) int64 {
		if kind == slotStalledOld {
			return t.slots[s].nextCheck
		}
		return t.slots[s].lastBeat
	}
	t.link(s, kind)
	l := t.listOf(kind, t.slots[s].class)
	for p := t.slots[s].prev; p != noSlot && key(p) > key(s); p = t.slots[s].prev {
		// Swap s with its predecessor p.
		sp, ss := &t.slots[p], &t.slots[s]
		pp, sn := sp.prev, ss.next
		if pp != noSlot {
			t.slots[pp].next = s
		} else {
			l.head = s
		}
		if sn != noSlot {
			t.slots[sn].prev = p
		} else {
			l.tail = p
		}
		ss.prev, ss.next, sp.prev, sp.next = pp, p, s, sn
	}
}

// resize gives the tracker room for capacity pids (at least t.n), at a
// reload: a slot keeps its index where it fits, the others move to free
// slots below capacity (a scrape under way may miss a moved pid once), and
// the index is built again. The lists stay linked, each in index order:
// setAgents links them again in the order they keep.
func (t *tracker) resize(capacity int) {
	old := t.slots
	kinds := make([]uint8, len(old))
	for s := range old {
		if kinds[s] = old[s].list; kinds[s] != slotFree {
			t.unlink(int32(s))
		}
	}
	nt := newTracker(capacity)
	t.slots, t.index, t.mask = nt.slots, nt.index, nt.mask
	dst := make([]int32, len(old))
	used := make([]bool, capacity)
	for s, k := range kinds {
		if dst[s] = noSlot; k != slotFree && s < capacity {
			dst[s], used[s] = int32(s), true
		}
	}
	free := 0
	for s, k := range kinds {
		if k != slotFree && s >= capacity {
			for used[free] {
				free++
			}
			dst[s], used[free] = int32(free), true
		}
	}
	t.freeHead = noSlot
	for d := capacity - 1; d >= 0; d-- {
		if !used[d] {
			t.slots[d] = slot{next: t.freeHead, prev: noSlot}
			t.freeHead = int32(d)
		}
	}
	for s, d := range dst {
		if d == noSlot {
			continue
		}
		t.slots[d] = old[s]
		i := t.hash(old[s].pid)
		for t.index[i] != noSlot {
			i = (i + 1) & t.mask
		}
		t.index[i] = d
		t.link(d, kinds[s])
	}
}
