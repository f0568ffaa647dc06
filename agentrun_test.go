package main

import (
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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

// Contract §9 policy: a pid of an agent section is recovered with the
// section's command and debounce, not the global ones; its outcomes are
// counted for the section too.
func TestAgentSectionRecoveryUsesItsOwnCommandAndDebounce(t *testing.T) {
	o := newConfObserver(t, "config agent 'all'\n\toption cmdline '*'\n\toption threshold_ms '150'\n"+
		"\toption recovery_exec '/bin/true {pid}'\n\toption recovery_debounce_ms '60000'\n",
		"--recovery-exec", "/bin/false {pid}", "--recovery-debounce-ms", "0")
	fd := dialObserver(t, o)
	pid := uint32(os.Getpid())
	a := &o.agents.agents[0]
	for nonce := uint64(1); nonce <= 2; nonce++ {
		sendFrame(t, fd, Frame{Status: StatusOK, Pid: pid, Nonce: nonce})
		o.drainSocket()
		sl := &o.tr.slots[o.tr.lookup(pid)]
		sl.startTime = 0 // no reuse check (qemu-user fakes it per thread)
		if o.agentOf(sl) != a {
			t.Fatalf("this process is not in section all")
		}
		o.fireDeadlines(sl.lastBeat + 150_000_001)
		if sl.stalls != nonce {
			t.Fatalf("stall %d not surfaced at the section's 150 ms", nonce)
		}
	}
	if o.rec.npending != 1 || o.rec.pending[o.rec.pendHead].cmd != a.rec || a.rec.command != "/bin/true {pid}" {
		t.Fatalf("pending %d, command %+v; want one spawn of the section's command", o.rec.npending, o.rec.pending[o.rec.pendHead].cmd)
	}
	if a.recoveries[recDebounced] != 1 || o.stats.recovery[recDebounced] != 1 {
		t.Fatalf("second stall: section debounced %d, observer %d; want 1 by the section's 60 s window",
			a.recoveries[recDebounced], o.stats.recovery[recDebounced])
	}
}

// agentSectionsText is a configuration of n agent sections with four
// distinct thresholds; section k matches comm agent-k, and the last one
// (expected, so its missing deadline is kept too) matches every cmdline.
func agentSectionsText(n int) string {
	var b strings.Builder
	for k := 0; k < n-1; k++ {
		b.WriteString("config agent 'a" + strconv.Itoa(k) + "'\n\toption comm 'agent-" + strconv.Itoa(k) + "'\n")
		b.WriteString("\toption threshold_ms '" + strconv.Itoa(100+50*(k%4)) + "'\n")
	}
	b.WriteString("config agent 'all'\n\toption cmdline '*'\n\toption expected '1'\n\toption threshold_ms '150'\n")
	return b.String()
}

// newConfObserver is newTestObserver with a --config file of text.
func newConfObserver(t testing.TB, text string, args ...string) *observer {
	t.Helper()
	dir := shortTempDir(t)
	conf := filepath.Join(dir, "c.conf")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(append([]string{"--socket", filepath.Join(dir, "s.sock"), "--threshold-ms", "100", "--config", conf}, args...))
	if err != nil {
		t.Fatal(err)
	}
	o, err := newObserver(cfg, quietLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.closeAll)
	skipRecoveryUnderQemuUser(t, o)
	return o
}
