package main

// Agents by name at run time (contract §9): which section a new pid
// belongs to, its threshold class, expected agents that go missing, and
// recovery that escalates and gives up. agent.go holds what a section
// says; this file what the observer does with it.
//
// Nothing here runs per beat but two branches in accept: a missing agent
// comes back, a given-up agent is re-armed. Matching reads /proc once per
// new pid (procmatch_*.go); deadlines of missing agents are kept in a
// small heap, so no iteration looks at every agent.

// agentTable is the agent sections in force and their state.
type agentTable struct {
	agents   []agentState
	needExe  bool    // some section matches on exe: read /proc/PID/exe
	needCmd  bool    // some section matches on cmdline
	missHeap []int32 // expected agents with a missing deadline, nearest first
}

// agentState is one agent section in force.
type agentState struct {
	spec       agentSpec // resolved against the global configuration
	idx        int32     // its index in agentTable.agents
	class      uint16    // its threshold class in the tracker
	stalls     uint64
	recoveries [recoveryOutcomeCount]uint64

	missing bool  // varta_agent_missing 1: no beating pid for grace_ms
	missAt  int64 // monotonic ns of the missing deadline, 0 none
	heapPos int32 // in missHeap, -1 none

	gaveUp    bool
	lastStall int64   // monotonic ns of the agent's latest stall
	recent    []int64 // times of the latest max_recoveries recoveries, a ring
	recentN   int     // recoveries in the ring
	recentAt  int     // next write position

	rec, missCmd, giveUpCmd *recoveryCommand
}

// commands lists the commands the section runs, for the start-up check.
func (a *agentState) commands() []*recoveryCommand {
	return []*recoveryCommand{a.rec, a.missCmd, a.giveUpCmd}
}

// newAgentTable builds the table for cfg's agent sections and the
// tracker's threshold classes; prev, the table in force before a reload
// (nil at start), hands its counters and state to the sections of the
// same name. It returns nil when there are no sections.
func newAgentTable(cfg *config, tr *tracker, prev *agentTable) (*agentTable, error) {
	if cfg.agents == nil || len(cfg.agents.specs) == 0 {
		tr.thr = []int64{cfg.thresholdMs * 1_000_000}
		return nil, nil
	}
	specs := cfg.agents.specs
	t := &agentTable{agents: make([]agentState, len(specs)), missHeap: make([]int32, 0, len(specs))}
	thr := []int64{cfg.thresholdMs * 1_000_000}
	for i := range specs {
		a := &t.agents[i]
		a.spec = specs[i]
		a.idx, a.heapPos = int32(i), -1
		t.needExe = t.needExe || len(a.spec.exe) > 0
		t.needCmd = t.needCmd || len(a.spec.cmdline) > 0
		ns := a.spec.thresholdMs * 1_000_000
		c := 0
		for c < len(thr) && thr[c] != ns {
			c++
		}
		if c == len(thr) {
			thr = append(thr, ns)
		}
		a.class = uint16(c)
		for _, c := range [...]struct {
			dst       **recoveryCommand
			exec, cmd string
			debounce  int64
		}{
			{&a.rec, a.spec.recoveryExec, a.spec.recoveryCmd, a.spec.recoveryDebounceMs},
			{&a.missCmd, a.spec.missingExec, "", 0},
			{&a.giveUpCmd, a.spec.giveUpExec, "", 0},
		} {
			if c.exec != "" || c.cmd != "" {
				var err error
				if *c.dst, err = newRecoveryCommand(a.spec.name, c.exec, c.cmd, c.debounce, a.spec.recoveryTimeoutMs); err != nil {
					return nil, err
				}
			}
		}
		a.recent = make([]int64, max(a.spec.maxRecoveries, 1))
		if prev != nil {
			if j := prev.index(a.spec.name); j >= 0 {
				p := &prev.agents[j]
				a.stalls, a.recoveries = p.stalls, p.recoveries
				a.missing, a.missAt, a.gaveUp, a.lastStall = p.missing, p.missAt, p.gaveUp, p.lastStall
				for k := 0; k < p.recentN && k < len(a.recent); k++ {
					a.noteRecovery(p.recentTime(p.recentN - 1 - k))
				}
			}
		}
	}
	tr.thr = thr
	return t, nil
}

// hasCommands reports whether a section runs a command of its own.
func (t *agentTable) hasCommands() bool {
	if t == nil {
		return false
	}
	for i := range t.agents {
		if a := &t.agents[i]; a.rec != nil || a.missCmd != nil || a.giveUpCmd != nil {
			return true
		}
	}
	return false
}

// match is the index of the first section a pid with this comm, exe and
// cmdline belongs to, -1 none (agent.go's matchAgent on the resolved
// sections).
func (t *agentTable) match(comm, exe, cmd []byte) int {
	for i := range t.agents {
		if t.agents[i].spec.matches(comm, exe, cmd) {
			return i
		}
	}
	return -1
}

// index is the position of the section named name, -1 none.
func (t *agentTable) index(name string) int {
	for i := range t.agents {
		if t.agents[i].spec.name == name {
			return i
		}
	}
	return -1
}

// noteRecovery records a recovery decided at now.
func (a *agentState) noteRecovery(now int64) {
	a.recent[a.recentAt] = now
	a.recentAt = (a.recentAt + 1) % len(a.recent)
	a.recentN = min(a.recentN+1, len(a.recent))
}

// recentTime is the time of the k-th latest recovery in the ring (0 the
// latest).
func (a *agentState) recentTime(k int) int64 {
	return a.recent[(a.recentAt-1-k+2*len(a.recent))%len(a.recent)]
}

// exhausted reports whether the agent had max_recoveries recoveries
// within recovery_window_s before now.
func (a *agentState) exhausted(now int64) bool {
	m := int(a.spec.maxRecoveries)
	return m > 0 && a.recentN >= m && now-a.recentTime(m-1) < a.spec.recoveryWindowS*1_000_000_000
}

// setAgents installs the agent table t in the observer and the tracker:
// the tracker's per-agent pid counts and lists follow it. Every tracked
// pid is matched again (reload) or, at start, there is none yet.
func (o *observer) setAgents(t *agentTable) {
	tr := o.tr
	o.agents = t
	o.am.table = t
	if o.rec != nil {
		o.rec.agents = t
	}
	n := 0
	if t != nil {
		n = len(t.agents)
	}
	tr.pids = make([]agentPids, n)
	for len(tr.more) < len(tr.thr)-1 {
		tr.more = append(tr.more, slotList{noSlot, noSlot})
	}
	// Rebuild the lists: every slot unlinked, matched, and linked again in
	// its list's order, so each active list stays in deadline order
	// whatever class its pids move to.
	kinds := make([]uint8, len(tr.slots))
	for s := range tr.slots {
		sl := &tr.slots[s]
		kinds[s] = sl.list
		if sl.list != slotFree {
			sl.agent = 0 // no count to take back: the counts were reset
			tr.unlink(int32(s))
		}
	}
	tr.more = tr.more[:len(tr.thr)-1]
	for i := range tr.more {
		tr.more[i] = slotList{noSlot, noSlot}
	}
	tr.active = slotList{noSlot, noSlot}
	tr.stalled, tr.stalledOld = slotList{noSlot, noSlot}, slotList{noSlot, noSlot}
	for s, kind := range kinds {
		if kind != slotFree {
			o.matchSlot(int32(s))
			tr.linkSorted(int32(s), kind)
		}
	}
	if t == nil {
		return
	}
	now := monoNow()
	t.missHeap = t.missHeap[:0]
	for i := range t.agents {
		a := &t.agents[i]
		a.heapPos = -1
		a.missing = a.missing && a.spec.expected // a section no longer expected is not missing
		if !a.spec.expected || a.missing || tr.pids[i].beating > 0 {
			a.missAt = 0
			continue
		}
		if a.missAt == 0 {
			a.missAt = now + a.spec.graceMs*1_000_000
		}
		t.push(int32(i))
	}
}

// matchSlot judges which agent section the process behind slot s belongs
// to, from its comm (already in the slot) and, when a section asks for
// them, its exe target and cmdline; it sets the slot's agent and class.
// The slot must be unlinked, or linked with no agent yet (a new pid).
func (o *observer) matchSlot(s int32) {
	sl := &o.tr.slots[s]
	sl.agent, sl.class = 0, 0
	t := o.agents
	if t == nil {
		return
	}
	exe, cmd := o.proc.identity(sl.pid, t.needExe, t.needCmd, &o.ident)
	if i := t.match(sl.comm[:sl.commLen], exe, cmd); i >= 0 {
		sl.agent, sl.class = uint16(i+1), t.agents[i].class
	}
}

// rematch matches a tracked slot whose pid now belongs to a new process,
// moving it to the list of its class.
func (o *observer) rematch(s int32) {
	tr := o.tr
	kind := tr.slots[s].list
	tr.unlink(s)
	o.matchSlot(s)
	tr.link(s, kind)
}

// agentOf is the agent section of slot sl, nil none.
func (o *observer) agentOf(sl *slot) *agentState {
	if sl.agent == 0 || o.agents == nil {
		return nil
	}
	return &o.agents.agents[sl.agent-1]
}

// agentBeat is the per-beat hook: a missing agent is back, a given-up
// agent that beat without a stall for a whole window is re-armed.
func (o *observer) agentBeat(a *agentState, at int64) {
	if a.missing || a.missAt != 0 {
		if a.missing {
			o.log.info("agent is back", fStr("agent", a.spec.name))
		}
		a.missing = false
		o.agents.disarm(a)
	}
	if a.gaveUp && at-a.lastStall >= a.spec.recoveryWindowS*1_000_000_000 {
		a.gaveUp = false
		a.recentN = 0
		o.log.info("agent re-armed: it beat without a stall for a whole recovery window", fStr("agent", a.spec.name))
	}
}

// agentStall is the stall hook of an agent's pid: count, arm the missing
// deadline when no pid of it beats any more, and decide its recovery:
// with its own command, and up to max_recoveries per window, then give up.
func (o *observer) agentStall(a *agentState, sl *slot, now int64) {
	a.stalls++
	a.lastStall = now
	o.armMissing(a, now)
	if o.rec == nil || a.gaveUp {
		return
	}
	cmd := a.rec
	if cmd == nil {
		cmd = o.rec.cmd
	}
	if cmd == nil {
		return
	}
	if a.exhausted(now) {
		o.giveUp(a, sl, now)
		return
	}
	if o.rec.decide(sl, cmd, sl.agent, now) {
		a.noteRecovery(now)
	}
}

// giveUp stops recovering agent a: one gave_up event, the gauge, and
// give_up_exec once, unless the machine has not been up long enough.
func (o *observer) giveUp(a *agentState, sl *slot, now int64) {
	a.gaveUp = true
	o.rec.outcome(recGaveUp, sl.pid, sl.agent, now, "gave_up")
	o.log.error("agent gave up: no more recoveries until it beats without a stall for a whole window",
		fStr("agent", a.spec.name), fInt("pid", int64(sl.pid)), fInt("max_recoveries", a.spec.maxRecoveries),
		fInt("recovery_window_s", a.spec.recoveryWindowS))
	if a.giveUpCmd == nil {
		return
	}
	up, err := bootTime()
	if min := a.spec.giveUpMinUptimeS * 1_000_000_000; err != nil || up < min {
		o.rec.outcome(recRefused, sl.pid, sl.agent, now, "refused")
		reason := "the machine has been up less than give_up_min_uptime_s"
		if err != nil {
			reason = "the uptime is unknown: " + err.Error()
		}
		o.log.warn("give_up_exec refused", fStr("agent", a.spec.name), fStr("reason", reason),
			fInt("uptime_s", up/1_000_000_000), fInt("give_up_min_uptime_s", a.spec.giveUpMinUptimeS))
		return
	}
	o.rec.queue(a.giveUpCmd, sl.pid, sl.agent, now)
}

// armMissing starts the grace of an expected agent that has no beating
// pid left.
func (o *observer) armMissing(a *agentState, now int64) {
	i := a.idx
	if !a.spec.expected || a.missing || a.missAt != 0 || o.tr.pids[i].beating > 0 {
		return
	}
	a.missAt = now + a.spec.graceMs*1_000_000
	o.agents.push(i)
}

// missingDeadline is the nearest missing deadline, 0 none.
func (t *agentTable) missingDeadline() int64 {
	if t == nil || len(t.missHeap) == 0 {
		return 0
	}
	return t.agents[t.missHeap[0]].missAt
}

// judgeMissing surfaces the expected agents whose grace ran out by judged.
func (o *observer) judgeMissing(judged, now int64) {
	t := o.agents
	for t != nil && len(t.missHeap) > 0 {
		a := &t.agents[t.missHeap[0]]
		if a.missAt > judged {
			return
		}
		t.disarm(a)
		a.missing = true
		o.emit(&event{ns: judged, kind: evMissing, payload: a.spec.name}, now)
		o.log.warn("agent missing: no pid of it is beating", fStr("agent", a.spec.name), fInt("grace_ms", a.spec.graceMs))
		if a.missCmd != nil && o.rec != nil {
			o.rec.queue(a.missCmd, 0, uint16(a.idx+1), now)
		}
	}
}

// The missing deadlines are a binary min-heap of agent indexes on missAt;
// heapPos lets a deadline leave it when its agent beats.

func (t *agentTable) push(i int32) {
	t.agents[i].heapPos = int32(len(t.missHeap))
	t.missHeap = append(t.missHeap, i)
	t.up(len(t.missHeap) - 1)
}

func (t *agentTable) disarm(a *agentState) {
	a.missAt = 0
	p := int(a.heapPos)
	if p < 0 {
		return
	}
	a.heapPos = -1
	last := len(t.missHeap) - 1
	if p != last {
		t.missHeap[p] = t.missHeap[last]
		t.agents[t.missHeap[p]].heapPos = int32(p)
	}
	t.missHeap = t.missHeap[:last]
	if p < last {
		t.down(p)
		t.up(p)
	}
}

func (t *agentTable) less(i, j int) bool {
	return t.agents[t.missHeap[i]].missAt < t.agents[t.missHeap[j]].missAt
}

func (t *agentTable) swap(i, j int) {
	h := t.missHeap
	h[i], h[j] = h[j], h[i]
	t.agents[h[i]].heapPos, t.agents[h[j]].heapPos = int32(i), int32(j)
}

func (t *agentTable) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !t.less(i, p) {
			return
		}
		t.swap(i, p)
		i = p
	}
}

func (t *agentTable) down(i int) {
	for {
		c := 2*i + 1
		if c >= len(t.missHeap) {
			return
		}
		if c+1 < len(t.missHeap) && t.less(c+1, c) {
			c++
		}
		if !t.less(c, i) {
			return
		}
		t.swap(i, c)
		i = c
	}
}
