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
func (o *observer) handleDatagram(res recvResult, now, wallNow int64) {
	o.stats.framesReceived++
	if res.n != FrameSize {
		o.stats.truncated++
		return
	}
	f, derr := DecodeFrame(o.sock.frame())
	if derr != DecodeOK {
		o.stats.decodeErrors[derr]++
		o.emit(&event{ns: now, kind: evDecode, payload: derr.Error()}, now)
		return
	}
	if hasDatagramCreds && (!res.hasCred || res.credPid <= 0 || uint32(res.credPid) != f.Pid) {
		o.stats.authFailures++
		o.emit(&event{ns: now, kind: evMismatch, pid: f.Pid, payload: "auth_failure"}, now)
		return
	}
	o.track(&f, o.arrivalTime(res.arrival, now, wallNow), now)
}

// maxQueueAge bounds how old a datagram's kernel timestamp may be before it
// is distrusted: older means the wall clock was stepped meanwhile.
const maxQueueAge = 1_000_000_000

// arrivalTime converts a datagram's kernel arrival time (wall clock) to the
// observer's monotonic clock, so a beat counts from when it was queued, not
// from when the loop got to it. Without a usable timestamp it is now. The
// result never goes backwards: the queue is FIFO, and the active list
// relies on beats arriving in order.
func (o *observer) arrivalTime(arrivalWall, now, wallNow int64) int64 {
	at := now
	if arrivalWall != 0 {
		if d := wallNow - arrivalWall; d >= 0 && d < maxQueueAge {
			at = now - d
		}
	}
	if at < o.lastArrival {
		at = o.lastArrival
	}
	if at > now {
		at = now
	}
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

// track applies one authenticated frame, which arrived at time at, to the
// tracker; now is when it is judged.
func (o *observer) track(f *Frame, at, now int64) {
	tr := o.tr
	s := tr.lookup(f.Pid)
	if s == noSlot {
		if tr.full() && !o.evictForCapacity(at) {
			o.stats.capacityExceeded++
			return
		}
		s = tr.insert(f.Pid, at)
		o.identify(s, o.proc.startTime(f.Pid))
		o.accept(s, f, at, now)
		return
	}
	sl := &tr.slots[s]
	if nonceNewer(sl.nonce, f.Nonce) {
		o.accept(s, f, at, now)
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
	if st := o.proc.startTime(f.Pid); st != 0 && st != sl.startTime {
		sl.beats, sl.stalls, sl.lastRecov, sl.nonce = 0, 0, 0, 0
		o.identify(s, st)
		o.accept(s, f, at, now)
		return
	}
	o.stats.outOfOrder++
}

// identify records what /proc tells of a new process behind a slot's pid,
// once: its start time (already read by the caller) and its comm.
func (o *observer) identify(s int32, startTime uint64) {
	sl := &o.tr.slots[s]
	sl.startTime = startTime
	sl.commLen = o.proc.comm(sl.pid, &sl.comm)
}

// accept records one beat of slot s that arrived at time at: the slot goes
// to the tail of the active list and a beat event is emitted.
func (o *observer) accept(s int32, f *Frame, at, now int64) {
	sl := &o.tr.slots[s]
	if sl.list == slotActive && sl.beats > 0 && at-sl.lastBeat >= o.threshold {
		// The pid was silent past its deadline, but the loop reached the
		// beat before the deadline fired (it was descheduled, or served a
		// long step): surface the stall it owes first, or the silence
		// would go unreported.
		o.stall(s, sl.lastBeat+o.threshold, now)
	}
	sl.nonce = f.Nonce
	sl.status = f.Status
	sl.beats++
	sl.lastBeat = max(at, sl.lastBeat)
	o.tr.moveTo(s, slotActive)
	o.stats.beatsAccepted++
	o.emit(&event{ns: sl.lastBeat, kind: evBeat, pid: f.Pid, hasNonce: true, nonce: f.Nonce,
		status: f.Status.String(), hasPayloadNum: true, payloadNum: f.Payload}, now)
}

// evictForCapacity frees the slot of a stalled pid silent for over
// retireAfter, oldest first; false when there is none.
func (o *observer) evictForCapacity(now int64) bool {
	s := o.tr.stalledOld.head
	if s == noSlot {
		s = o.tr.stalled.head
		if s == noSlot || now-o.tr.slots[s].lastBeat <= o.retireAfter {
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
func (o *observer) judgeDeadlines(now int64) {
	tr := o.tr
	for i := 0; i < stallBudget; i++ {
		s := tr.active.head
		if s == noSlot {
			break
		}
		sl := &tr.slots[s]
		deadline := sl.lastBeat + o.threshold
		if deadline > now {
			break
		}
		o.stall(s, deadline, now)
	}
	for i := 0; i < livenessBudget; i++ {
		s := tr.stalled.head
		if s == noSlot || tr.slots[s].lastBeat+o.retireAfter > now {
			s = tr.stalledOld.head
			if s == noSlot || tr.slots[s].nextCheck > now {
				break
			}
		}
		if o.proc.alive(tr.slots[s].pid) {
			tr.slots[s].nextCheck = now + o.retireAfter
			tr.moveTo(s, slotStalledOld)
			continue
		}
		o.stats.evictedRetired++
		o.evict(s, "retired", now)
	}
}

// stall surfaces one stall, at most once per silence: the slot leaves the
// active list and only an accepted beat puts it back.
func (o *observer) stall(s int32, deadline, now int64) {
	sl := &o.tr.slots[s]
	sl.status = StatusStall
	sl.stalls++
	o.tr.moveTo(s, slotStalled)
	o.stats.stallDelay.observe(now - deadline)
	o.emit(&event{ns: now, kind: evStall, pid: sl.pid, hasNonce: true, nonce: sl.nonce, status: "stall"}, now)
	o.log.warn("agent stalled", fInt("pid", int64(sl.pid)), fInt("silent_ms", (now-sl.lastBeat)/1_000_000),
		fStr("comm", commString(sl)))
	if o.rec != nil {
		o.rec.onStall(sl, now)
	}
}

// commString views a slot's comm without copying; valid until the slot
// changes.
func commString(sl *slot) string {
	return unsafeString(sl.comm[:sl.commLen])
}
