package main

import (
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Work bounds of one loop iteration. Linux queues only
// net.unix.max_dgram_qlen (default 10) datagrams on the socket, so no step
// may run long before the socket is drained again.
const (
	recvBudget     = 256       // datagrams read per drain before deadlines get a turn
	stallBudget    = 256       // stalls surfaced per iteration
	livenessBudget = 64        // /proc liveness checks per iteration
	retireFactor   = 10        // retirement/eviction after retireFactor × threshold
	yieldInterval  = 5_000_000 // ns between two passes through the scheduler, see iterate
)

// Signal bits set by the signal goroutine and consumed by the loop.
const (
	sigStop uint32 = 1 << iota
	sigHup
	sigChld
)

// observer is the whole daemon: one event loop that owns every fd.
type observer struct {
	cfg         config
	log         *logger
	poll        *poller
	sock        *vlpSocket
	tr          *tracker
	proc        procReader
	events      *eventFile
	prom        *promServer
	rec         *recoverer
	notify      *sdNotifier
	hwdog       *hwWatchdog
	stats       observerStats
	threshold   int64 // ns
	retireAfter int64 // ns
	startWallNs int64 // wall-clock Unix ns at start
	startMono   int64
	stopAt      int64 // monotonic ns of --shutdown-after-secs, 0 none
	nextSdPing  int64
	sdInterval  int64
	nextHwFeed  int64
	hwInterval  int64

	lastYield   int64 // monotonic ns of the last runtime.Gosched, see iterate
	lastArrival int64 // arrival time of the latest datagram, see arrivalTime
	coal        coalescer
	stopping    bool
	signals     atomic.Uint32
	sigc        chan os.Signal
	sigDone     chan struct{} // closed when the signal goroutine has returned
	pollEvents  [maxPollEvents]pollEvent
}

func newObserver(cfg config, log *logger) (o *observer, err error) {
	o = &observer{
		cfg:         cfg,
		log:         log,
		threshold:   cfg.thresholdMs * 1_000_000,
		retireAfter: retireFactor * cfg.thresholdMs * 1_000_000,
		startWallNs: time.Now().UnixNano(),
		startMono:   monoNow(),
	}
	defer func() {
		if err != nil {
			o.closeAll()
			o = nil
		}
	}()
	o.tr = newTracker(cfg.trackerCapacity)
	if o.poll, err = newPoller(); err != nil {
		return o, err
	}
	// Catch signals before the socket exists: whoever sees the socket may
	// stop the observer at once, and that must still be a clean exit that
	// removes the socket, not death by SIGTERM leaving it stale. A signal
	// that comes before run is handled by its first iteration.
	o.startSignals()
	if o.sock, err = bindVLPSocket(cfg.socket, cfg.socketMode, cfg.wantQueue()); err != nil {
		return o, err
	}
	if coalesceEnabled && o.sock.queue.qlen > 0 {
		o.coal = newCoalescer(o.sock.queue.qlen, o.threshold)
	}
	if err = o.poll.add(o.sock.fd, true, false); err != nil {
		return o, err
	}
	if cfg.exportFile != "" {
		if o.events, err = openEventFile(o, cfg.exportFile); err != nil {
			return o, err
		}
	}
	if cfg.promAddr != "" {
		if o.prom, err = newPromServer(o); err != nil {
			return o, err
		}
	}
	if cfg.recoveryCmd != "" || cfg.recoveryExec != "" {
		if o.rec, err = newRecoverer(o); err != nil {
			return o, err
		}
	}
	if cfg.hwWatchdog != "" {
		if o.hwdog, err = openHWWatchdog(cfg.hwWatchdog); err != nil {
			return o, err
		}
		o.hwInterval = int64(o.hwdog.interval())
	}
	if o.notify, err = newSdNotifier(); err != nil {
		return o, err // each error of newSdNotifier names its variable
	}
	o.sdInterval = int64(o.notify.watchdogInterval())
	if cfg.shutdownAfterSecs > 0 {
		o.stopAt = o.startMono + cfg.shutdownAfterSecs*1_000_000_000
	}
	return o, nil
}

// run serves until a stop signal or --shutdown-after-secs, then shuts down.
func (o *observer) run() error {
	// With a single P (GOMAXPROCS=1, the default on a one-core router)
	// sysmon retakes the P from any syscall that lasts 20 µs, because no
	// idle P is left: every epoll_wait that sleeps then ends in a handoff
	// and futex wakes (strace, one CPU: 1.7 futex calls per beat with one
	// P, 0.7 with two). A second P costs nothing while idle. An explicit
	// GOMAXPROCS from the environment is left alone.
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
	o.logStart()
	now := monoNow()
	if o.hwdog != nil {
		o.feedHW(now)
	}
	o.notify.send("READY=1")
	if o.sdInterval > 0 {
		o.notify.send("WATCHDOG=1")
		o.nextSdPing = now + o.sdInterval
	}
	var err error
	for !o.stopping {
		if err = o.iterate(); err != nil {
			break
		}
	}
	if err == nil {
		// Frames already queued when the stop came were sent before it:
		// judge them too, so their events reach the file.
		o.drainSocket()
		o.fireDeadlines(monoNow())
	}
	o.shutdown()
	return err
}

// iterate is one turn of the loop: wait for the nearest deadline or an fd,
// drain the socket, serve connections a bounded step, fire due deadlines.
func (o *observer) iterate() error {
	now := monoNow()
	if now-o.lastYield >= yieldInterval {
		// The loop goroutine blocks only in syscalls, never in the
		// scheduler, so its P's schedtick never moves: after 10 ms sysmon
		// takes it for a goroutine hogging the P and retakes the P at
		// every wait, and each wakeup then costs futex wakes of sysmon
		// and of a spinning M (strace at 512 beats/s: 2.4 to 6 futex
		// calls per beat; at 4096 beats/s about 4 context switches per
		// beat, see BENCHMARKS.md). Passing through the scheduler every
		// few ms (no syscall; the only runnable goroutine is this one)
		// shows progress, so the P stays with the loop while it waits:
		// 0.7 futex calls per beat at 512/s, all from this Gosched's
		// wakep. An idle loop does not turn, so it costs nothing idle.
		runtime.Gosched()
		o.lastYield = now
	}
	if p := o.coalescePause(now); p > 0 {
		pauseNs(p) // let a few beats queue up, see coalesce.go
		now = monoNow()
	}
	received := o.stats.framesReceived
	n, err := o.poll.wait(o.pollEvents[:], o.timeout(now))
	if err != nil {
		return err
	}
	now = monoNow()
	for i := 0; i < n; i++ {
		ev := o.pollEvents[i]
		switch {
		case ev.fd == o.sock.fd:
			o.drainSocket()
		case o.poll.isWake(ev.fd):
			o.poll.drainWake()
		case o.prom != nil && o.prom.owns(ev.fd):
			o.prom.handle(ev, now)
			o.drainSocket()
		case o.rec != nil && o.rec.owns(ev.fd):
			o.rec.handle(ev, now)
		}
	}
	if o.sock.batchPending() {
		o.drainSocket() // taken off the queue already: no readiness will come
	}
	o.handleSignals(monoNow())
	o.fireDeadlines(monoNow())
	o.coal.note(int64(o.stats.framesReceived-received), now)
	return nil
}

// coalescePause is how long iterate lets beats gather before it waits
// (coalesce.go): none while a scrape is being written.
func (o *observer) coalescePause(now int64) int64 {
	if o.prom.writing() {
		return 0
	}
	return o.coal.pause(o.timeout(now))
}

// timeout returns the wait in ns until the nearest deadline: -1 when there
// is none (an idle observer with no agents sleeps until an fd wakes it), 0
// when one is already due.
func (o *observer) timeout(now int64) int64 {
	next := int64(0)
	consider := func(d int64) {
		if d != 0 && (next == 0 || d < next) {
			next = d
		}
	}
	if s := o.tr.active.head; s != noSlot {
		consider(o.tr.slots[s].lastBeat + o.threshold)
	}
	if s := o.tr.stalled.head; s != noSlot {
		consider(o.tr.slots[s].lastBeat + o.retireAfter)
	}
	if s := o.tr.stalledOld.head; s != noSlot {
		consider(o.tr.slots[s].nextCheck)
	}
	if o.events != nil {
		consider(o.events.nextDeadline())
	}
	if o.prom != nil {
		consider(o.prom.nextDeadline())
	}
	if o.rec != nil {
		consider(o.rec.nextDeadline())
	}
	consider(o.stopAt)
	consider(o.nextSdPing)
	consider(o.nextHwFeed)
	if o.signals.Load() != 0 || o.sock.batchPending() {
		return 0
	}
	if next == 0 {
		return -1
	}
	if next <= now {
		return 0
	}
	return next - now
}

// drainSocket reads datagrams until EAGAIN or the budget is spent; the
// level-triggered poller reports the socket again if more are queued. The
// clocks are read once per batch of datagrams (recvmmsg), after it was
// taken off the queue: every datagram in it arrived before that instant.
func (o *observer) drainSocket() {
	var now, wallNow int64
	for i := 0; i < recvBudget; i++ {
		res, errno := o.sock.recv()
		if errno != 0 {
			if errno == unix.EINTR {
				continue
			}
			if errno != unix.EAGAIN && errno != unix.EWOULDBLOCK {
				o.ioError(monoNow(), "recvmsg", errno)
			}
			return
		}
		if now == 0 || o.sock.freshBatch() {
			now, wallNow = clocksNow()
		}
		o.handleDatagram(res, now, wallNow)
		if o.sock.queueWasEmpty() {
			// The last batch was short: the queue was empty when it was
			// read. The level-triggered poller reports anything queued
			// since; a recvmmsg now would only return EAGAIN.
			return
		}
	}
}

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
		o.identify(s)
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
		pid := sl.pid
		sl.beats, sl.stalls, sl.lastRecov, sl.nonce = 0, 0, 0, 0
		sl.pid = pid
		o.identify(s)
		sl.startTime = st
		o.accept(s, f, at, now)
		return
	}
	o.stats.outOfOrder++
}

// identify reads what /proc tells of a new pid, once.
func (o *observer) identify(s int32) {
	sl := &o.tr.slots[s]
	sl.startTime = o.proc.startTime(sl.pid)
	sl.commLen = o.proc.comm(sl.pid, &sl.comm)
}

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

// fireDeadlines surfaces due stalls, checks stalled pids for retirement,
// flushes the event file and runs the timers, each within its budget.
func (o *observer) fireDeadlines(now int64) {
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
	if o.events != nil && o.events.due(now) {
		o.events.flushStep(now)
	}
	if o.prom != nil {
		o.prom.fire(now)
	}
	if o.rec != nil {
		o.rec.fire(now)
	}
	if o.nextSdPing != 0 && now >= o.nextSdPing {
		o.notify.send("WATCHDOG=1")
		o.nextSdPing = now + o.sdInterval
	}
	if o.nextHwFeed != 0 && now >= o.nextHwFeed {
		o.feedHW(now)
	}
	if o.stopAt != 0 && now >= o.stopAt && !o.stopping {
		o.log.info("shutdown-after-secs reached", fInt("secs", o.cfg.shutdownAfterSecs))
		o.stopping = true
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

func (o *observer) feedHW(now int64) {
	if err := o.hwdog.feed(); err != nil {
		o.ioError(now, "hardware watchdog", err)
	}
	o.nextHwFeed = now + o.hwInterval
}

// emit records an event in the event file, when one is configured.
func (o *observer) emit(e *event, now int64) {
	if o.events != nil {
		o.events.add(e, now)
	}
}

// ioError counts an I/O failure of the loop and records it as an io event.
func (o *observer) ioError(now int64, op string, err error) {
	o.stats.ioErrors++
	msg := op + ": " + err.Error()
	o.emit(&event{ns: now, kind: evIO, payload: msg}, now)
	o.log.error("i/o error", fStr("op", op), fStr("err", err.Error()))
}

// startSignals routes SIGINT/SIGTERM/SIGHUP/SIGCHLD through os/signal to
// bits the loop reads, waking the poller.
func (o *observer) startSignals() {
	if o.sigc != nil {
		return // already routed (newObserver does it before binding)
	}
	sigc, done := make(chan os.Signal, 16), make(chan struct{})
	o.sigc, o.sigDone = sigc, done
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGCHLD)
	go func() {
		defer close(done)
		for s := range sigc {
			var bit uint32
			switch s {
			case syscall.SIGINT, syscall.SIGTERM:
				bit = sigStop
			case syscall.SIGHUP:
				bit = sigHup
			case syscall.SIGCHLD:
				bit = sigChld
			}
			o.signals.Or(bit)
			o.poll.wake()
		}
	}()
}

// stopSignals ends the routing of signals and waits for its goroutine,
// which may still hold a buffered signal (SIGCHLD from a recovery child)
// and would wake a poller closeAll is about to close. After signal.Stop no
// signal is sent on sigc, so closing it is safe.
func (o *observer) stopSignals() {
	if o.sigc == nil {
		return
	}
	signal.Stop(o.sigc)
	close(o.sigc)
	<-o.sigDone
	o.sigc = nil
}

func (o *observer) handleSignals(now int64) {
	bits := o.signals.Swap(0)
	if bits == 0 {
		return
	}
	if bits&sigChld != 0 && o.rec != nil {
		o.rec.onSIGCHLD(now)
	}
	if bits&sigHup != 0 && o.events != nil {
		if err := o.events.reopen(); err != nil {
			o.ioError(now, "reopen", err)
		} else {
			o.log.info("event file reopened", fStr("path", o.cfg.exportFile))
		}
	}
	if bits&sigStop != 0 {
		o.log.info("stopping on signal")
		o.stopping = true
	}
}

func (o *observer) logStart() {
	o.log.info("varta-watch started", fStr("version", version), fStr("socket", o.cfg.socket),
		fInt("threshold_ms", o.cfg.thresholdMs), fInt("tracker_capacity", int64(o.cfg.trackerCapacity)))
	if !hasDatagramCreds {
		o.log.warn("this system attaches no per-datagram credentials: frame pids are trusted on the strength of the socket mode, and recovery is refused",
			fStr("socket_mode", sprintf("%04o", o.cfg.socketMode)))
	}
	if o.rec != nil {
		o.rec.logStart()
	}
	if q := o.sock.queue; q.qlen > 0 {
		if q.private {
			o.log.info("socket queue limit", fStr("source", "own network namespace"), fInt("datagrams", int64(q.qlen)),
				fInt("machine_max_dgram_qlen", int64(q.system)))
		} else {
			o.log.info("socket queue limit", fStr("sysctl", "net.unix.max_dgram_qlen"), fInt("datagrams", int64(q.qlen)))
		}
		need := o.cfg.wantQueue() // --socket-queue, or what the tracker needs
		if need == 0 {
			need = recommendedQlen(o.cfg.trackerCapacity)
		}
		if q.qlen < need {
			fields := []field{fInt("max_dgram_qlen", int64(q.qlen)), fInt("recommended", int64(need)),
				fStr("fix", sprintf("sysctl -w net.unix.max_dgram_qlen=%d, or --socket-queue %d as root", need, need))}
			if q.why != "" {
				fields = append(fields, fStr("own_queue_failed", q.why))
			}
			o.log.warn("socket queue limit is low for the tracker capacity; raise it so bursts of beats are not dropped by the kernel", fields...)
		}
	}
}

// recommendedQlen is the socket queue depth that absorbs a burst of beats
// arriving while the loop is busy for ~1 ms: one sixteenth of the tracker,
// at least 16, at most 1024.
func recommendedQlen(capacity int) int {
	return min(max(capacity/16, 16), 1024)
}

// shutdown stops cleanly: STOPPING=1, recovery children killed and reaped,
// event file flushed, watchdog closed with the magic byte, socket removed.
func (o *observer) shutdown() {
	o.stopSignals()
	o.notify.send("STOPPING=1")
	if o.rec != nil {
		o.rec.shutdown(o.cfg.shutdownGraceMs * 1_000_000)
	}
	o.closeAll()
	o.log.info("varta-watch stopped")
}

func (o *observer) closeAll() {
	o.stopSignals()
	if o.prom != nil {
		o.prom.close()
		o.prom = nil
	}
	if o.events != nil {
		o.events.close()
		o.events = nil
	}
	if o.hwdog != nil {
		o.hwdog.close(o.stopping)
		o.hwdog = nil
	}
	if o.notify != nil {
		o.notify.close()
		o.notify = nil
	}
	if o.sock != nil {
		o.sock.close()
		o.sock = nil
	}
	if o.poll != nil {
		o.poll.close()
		o.poll = nil
	}
}
