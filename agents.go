package main

// The rules for agents: how one datagram is judged, in contract §4's order.
//
//	datagram → decode (vlp.go) → auth (per-datagram credentials) →
//	track (tracker.go: new pid, newer nonce, pid reuse) → accept | stall | evict
//
// Every outcome is counted in observerStats and recorded as an event
// (events.go); a stall may start a recovery (recovery.go). observer.go is
// the loop that feeds datagrams and deadlines in.

// handleDatagram judges one datagram in contract §4's order; now and
// wallNow are the monotonic and wall clocks read after it was received.
// Its events are stamped with its arrival time.
func (o *observer) handleDatagram(res recvResult, now, wallNow int64) {
	o.stats.framesReceived++
	at := o.arrivalTime(res.arrival, now)
	if res.n != FrameSize {
		o.stats.truncated++
		return
	}
	f, derr := DecodeFrame(o.sock.frame())
	if derr != DecodeOK {
		o.stats.decodeErrors[derr]++
		o.emit(&event{ns: at, kind: evDecode, payload: derr.Error()}, now)
		return
	}
	pid, inner := f.Pid, uint32(0)
	if hasDatagramCreds {
		switch {
		case !res.hasCred || res.credPid <= 0:
			o.authFailure(f.Pid, at, now)
			return
		case uint32(res.credPid) != f.Pid:
			if !o.innerPidMatches(uint32(res.credPid), f.Pid, now) {
				o.authFailure(f.Pid, at, now)
				return
			}
			pid, inner = uint32(res.credPid), f.Pid
		}
	}
	o.track(pid, inner, &f, at, now)
}

func (o *observer) authFailure(claimed uint32, at, now int64) {
	o.stats.authFailures++
	o.emit(&event{ns: at, kind: evMismatch, pid: claimed, payload: "auth_failure"}, now)
}

// nsCheckCost is the token cost of one /proc read for a frame pid that
// differs from the kernel's: at most nsCheckBurst in a row, then one per
// nsCheckCost ns, so that a flood of spoofed frames cannot turn every
// datagram into three syscalls.
const (
	nsCheckCost  = 100_000
	nsCheckBurst = 64
)

// innerPidMatches reports whether framePid is the pid that the process
// credPid has in its own, innermost pid namespace (a container or jail),
// where an agent knows only that pid (contract §4 step 3). A tracked
// sender's inner pid is remembered in its slot; other senders cost a read
// of /proc/credPid/status, rate-limited.
func (o *observer) innerPidMatches(credPid, framePid uint32, now int64) bool {
	if s := o.tr.lookup(credPid); s != noSlot && o.tr.slots[s].innerPid == framePid {
		return true
	}
	o.nsTokens = min(o.nsTokens+(now-o.nsTokensAt), nsCheckBurst*nsCheckCost)
	o.nsTokensAt = now
	if o.nsTokens < nsCheckCost {
		return false
	}
	o.nsTokens -= nsCheckCost
	inner, ok := o.proc.innerPid(credPid)
	return ok && inner == framePid
}

// arrivalTime converts a datagram's kernel arrival time (wall clock) to the
// observer's monotonic clock, so a beat counts from when it was queued, not
// from when the loop got to it, however long that was (a frozen or starved
// observer). Without a usable timestamp (none given, or stamped before a
// wall-clock step) it is now. The result never goes backwards and never
// precedes an instant up to which the queue is known to have been read:
// the queue is FIFO, and the active list relies on beats arriving in order.
func (o *observer) arrivalTime(arrivalWall, now int64) int64 {
	at := now
	if arrivalWall != 0 && !o.clockStepped {
		at = arrivalWall - o.wallOffset
	}
	at = min(max(at, o.lastArrival, o.drainedTo), now)
	o.lastArrival = at
	return at
}

// reuseCheckInterval spaces the /proc checks for pid reuse that
// out-of-order frames trigger, per pid (ns).
const reuseCheckInterval = 10_000_000

// nonceNewer reports whether next follows last: strictly greater, or a wrap
// from the top 2^20 values to the bottom 2^20.
func nonceNewer(last, next uint64) bool {
	const window = 1 << 20
	return next > last || (last >= ^uint64(0)-window+1 && next <= window)
}

// track applies one authenticated frame of pid (the pid the observer's
// namespace sees; inner, when not 0, is the frame's own pid in the
// sender's namespace), which arrived at time at, to the tracker; now is
// when it is judged.
func (o *observer) track(pid, inner uint32, f *Frame, at, now int64) {
	tr := o.tr
	s := tr.lookup(pid)
	if s == noSlot {
		if tr.full() && !o.evictForCapacity(at) {
			o.stats.capacityExceeded++
			return
		}
		s = tr.insert(pid, at)
		o.identify(s)
		o.accept(s, inner, f, at, now)
		return
	}
	sl := &tr.slots[s]
	if nonceNewer(sl.nonce, f.Nonce) {
		// A pid that comes back after a stall or a silence past the
		// threshold may be a new process that got the old one's pid and
		// starts at a higher nonce: rare, so /proc is read every time.
		if (sl.list != slotActive || at-sl.lastBeat >= tr.threshold(sl)) && sl.startTime != 0 {
			if st := o.proc.startTime(pid); st != 0 && st != sl.startTime {
				o.restart(s, st, at)
			}
		}
		o.accept(s, inner, f, at, now)
		return
	}
	// Not newer: a duplicate or replay, unless the pid now belongs to another
	// process (the old agent died and its pid was reused). Reading /proc
	// costs three syscalls, so a pid repeating one frame as fast as it can
	// would make every datagram that dear: ask at most once per
	// reuseCheckInterval per pid. A restarted agent is recognised at most
	// that much later.
	if now-sl.reuseChecked < reuseCheckInterval {
		o.stats.outOfOrder++
		return
	}
	sl.reuseChecked = now
	if st := o.proc.startTime(pid); st != 0 && st != sl.startTime {
		o.restart(s, st, at)
		o.accept(s, inner, f, at, now)
		return
	}
	o.stats.outOfOrder++
}

// restart makes a slot whose pid now belongs to another process (start time
// st, as the caller read it) a new agent: the old one's owed stall first,
// then counts, nonce, start time and name afresh from /proc (st if the
// process is gone meanwhile).
func (o *observer) restart(s int32, st uint64, at int64) {
	sl := &o.tr.slots[s]
	if thr := o.tr.threshold(sl); sl.list == slotActive && sl.beats > 0 && at-sl.lastBeat >= thr {
		o.stall(s, sl.lastBeat+thr, sl.lastBeat+thr, at)
	}
	sl.beats, sl.stalls, sl.lastRecov, sl.nonce, sl.innerPid = 0, 0, 0, 0, 0
	o.identify(s)
	if sl.startTime == 0 { // gone since the caller's read
		sl.startTime = st
	}
}

// identify records what /proc tells of a new process behind a slot's pid,
// once, from one read of /proc/PID/stat: its start time and its comm.
func (o *observer) identify(s int32) {
	sl := &o.tr.slots[s]
	sl.startTime, sl.commLen = o.proc.startAndComm(sl.pid, &sl.comm)
	if o.agents != nil {
		o.rematch(s)
	}
}

func (o *observer) accept(s int32, inner uint32, f *Frame, at, now int64) {
	sl := &o.tr.slots[s]
	if thr := o.tr.threshold(sl); sl.list == slotActive && sl.beats > 0 && at-sl.lastBeat >= thr {
		// The pid was silent past its deadline, but the loop reached the
		// beat before the deadline fired (it was descheduled, or served a
		// long step): surface the stall it owes first, or the silence
		// would go unreported. Its row is stamped with the deadline, so it
		// comes before the beat's in time as in the file.
		o.stall(s, sl.lastBeat+thr, sl.lastBeat+thr, now)
	}
	sl.innerPid = inner
	sl.nonce = f.Nonce
	sl.status = f.Status
	sl.beats++
	sl.lastBeat = max(at, sl.lastBeat)
	o.tr.moveTo(s, slotActive)
	if sl.agent != 0 {
		o.agentBeat(o.agentOf(sl), at)
	}
	o.stats.beatsAccepted++
	o.emit(&event{ns: sl.lastBeat, kind: evBeat, pid: sl.pid, hasNonce: true, nonce: f.Nonce,
		status: f.Status.String(), hasPayloadNum: true, payloadNum: f.Payload}, now)
}

// evictForCapacity frees the slot of a stalled pid silent for over
// retireAfter, oldest first; false when there is none.
func (o *observer) evictForCapacity(now int64) bool {
	s := o.tr.stalledOld.head
	if s == noSlot {
		s = o.tr.stalled.head
		if s == noSlot || now <= o.tr.slots[s].nextCheck {
			return false
		}
	}
	o.stats.evictedCapacity++
	o.evict(s, "capacity", now)
	return true
}

func (o *observer) evict(s int32, reason string, now int64) {
	sl := &o.tr.slots[s]
	o.emit(&event{ns: now, kind: evEviction, pid: sl.pid, hasNonce: true, nonce: sl.nonce, payload: reason}, now)
	o.tr.remove(s)
}

// judgeDeadlines surfaces due stalls and checks stalled pids for
// retirement, each within its budget.
// A pid's deadline is judged only once every datagram queued before it has
// been read: a beat still waiting in the queue (the loop was late, or the
// observer frozen) re-arms it instead. The events are stamped with the
// instant up to which the queue has been read, so they come after every
// beat row before them and before every one after them.
func (o *observer) judgeDeadlines(now int64) {
	tr := o.tr
	judged := o.judgedTo(now)
	if d := o.trackerDeadline(); d != 0 && d <= now && d > judged {
		if o.drainSocket() {
			o.drained(now) // this read of the queue began after now was read
		}
		judged = o.judgedTo(now)
	}
	for i := 0; i < stallBudget; i++ {
		s, deadline := tr.nearestActive()
		if s == noSlot || deadline > judged {
			break
		}
		o.stall(s, deadline, judged, now)
	}
	for i := 0; i < livenessBudget; i++ {
		s := tr.stalled.head
		if s == noSlot || tr.slots[s].nextCheck > judged {
			s = tr.stalledOld.head
			if s == noSlot || tr.slots[s].nextCheck > judged {
				break
			}
		}
		if o.proc.alive(tr.slots[s].pid) {
			tr.slots[s].nextCheck = judged + retireFactor*tr.threshold(&tr.slots[s])
			tr.moveTo(s, slotStalledOld)
			continue
		}
		o.stats.evictedRetired++
		o.evict(s, "retired", judged)
	}
	o.judgeMissing(judged, now)
}

// stall surfaces one stall, at most once per silence: the slot leaves the
// active list and only an accepted beat puts it back. Its row is stamped
// at; now is when it is surfaced (its lateness is now − deadline).
func (o *observer) stall(s int32, deadline, at, now int64) {
	sl := &o.tr.slots[s]
	sl.status = StatusStall
	sl.stalls++
	// Its first liveness check: silent for retireFactor × its threshold.
	// Pids of different thresholds share the stalled list, ordered by
	// when they stalled, so a check may come later by at most the
	// difference of two thresholds.
	sl.nextCheck = sl.lastBeat + retireFactor*o.tr.threshold(sl)
	o.tr.moveTo(s, slotStalled)
	o.stats.stallDelay.observe(now - deadline)
	o.emit(&event{ns: at, kind: evStall, pid: sl.pid, hasNonce: true, nonce: sl.nonce, status: "stall"}, now)
	o.log.warn("agent stalled", fInt("pid", int64(sl.pid)), fInt("silent_ms", (at-sl.lastBeat)/1_000_000),
		fStr("comm", commString(sl)))
	if a := o.agentOf(sl); a != nil {
		o.agentStall(a, sl, now)
	} else if o.rec != nil {
		o.rec.onStall(sl, now)
	}
}

// commString views a slot's comm without copying; valid until the slot
// changes.
func commString(sl *slot) string {
	return unsafeString(sl.comm[:sl.commLen])
}
