package main

import (
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
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
	heldWaitMax    = 9_000_000 // ns, the longest wait that keeps the loop's P: under sysmon's 10 ms (poll_linux.go)
)

// Signal bits set by the signal goroutine and consumed by the loop.
const (
	sigStop uint32 = 1 << iota
	sigHup
	sigChld
)

// partEnv is all a part of the observer (the metrics server, the
// recoverer) is handed: it registers fds with the poller, logs, counts, and
// records events. No part sees the observer itself, so data flows one way:
// socket → agents.go → tracker → events → exporters and recovery, and only
// the loop drains the socket or starts a new turn.
type partEnv struct {
	poll   *poller
	log    *logger
	stats  *observerStats
	events *eventFile // nil without --export-file
}

// emit records an event in the event file, when one is configured.
func (e *partEnv) emit(ev *event, now int64) { e.events.emit(ev, now) }

// ioError counts an I/O failure and records it as an io event.
func (e *partEnv) ioError(now int64, op string, err error) {
	e.stats.ioErrors++
	msg := op + ": " + err.Error()
	e.emit(&event{ns: now, kind: evIO, payload: msg}, now)
	e.log.error("i/o error", fStr("op", op), fStr("err", err.Error()))
}

// observer is the whole daemon: one event loop that owns every fd.
type observer struct {
	cfg         config
	args        []string    // the command line, read again at a reload
	stdout      io.Writer   // where a reload prints a new metrics address, nil nowhere
	addrLines   chan string // those addresses, to the goroutine that prints them
	log         *logger
	poll        *poller
	sock        *vlpSocket
	tr          *tracker
	proc        procReader
	agents      *agentTable // contract §9; nil without agent sections
	am          agentMetrics
	ident       procIdentity
	events      *eventFile
	prom        *promServer
	rec         *recoverer
	notify      *sdNotifier
	hwdog       *hwWatchdog
	stats       observerStats
	env         partEnv // handed to the parts; see partEnv
	threshold   int64   // ns
	retireAfter int64   // ns
	startWallNs int64   // wall-clock Unix ns at start
	startMono   int64
	stopAt      int64 // monotonic ns of --shutdown-after-secs, 0 none
	nextSdPing  int64
	sdInterval  int64
	nextHwFeed  int64
	hwInterval  int64

	lastYield    int64 // monotonic ns of the last runtime.Gosched, see iterate
	lastArrival  int64 // arrival time of the latest datagram, see arrivalTime
	lockRearmAt  int64 // watch the socket path's lock again then (answerLock failed), 0 watched
	drainedTo    int64 // the queue was found empty by a read that began then, see drainSocket
	wallOffset   int64 // wall clock − monotonic clock, ns, see checkClockStep
	clockStepped bool  // the wall clock was stepped since the queue was last empty
	nsTokens     int64 // rate limit of /proc reads for pid namespaces, see innerPidMatches
	nsTokensAt   int64
	coal         coalescer
	sockArmed    bool // the VLP socket's read interest is on; off during a coalescing pause
	stopping     bool
	signals      atomic.Uint32
	sigc         chan os.Signal
	sigDone      chan struct{} // closed when the signal goroutine has returned
	pollEvents   [maxPollEvents]pollEvent
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
	mono, wall := clocksNow()
	o.wallOffset = wall - mono
	defer func() {
		if err != nil {
			o.closeAll()
			o = nil
		}
	}()
	o.tr = newTracker(cfg.trackerCapacity)
	o.tr.thr[0] = o.threshold
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
	agents, err := newAgentTable(&o.cfg, o.tr, nil)
	if err != nil {
		return o, err
	}
	if coalesceEnabled && o.sock.queue.qlen > 0 {
		o.coal = newCoalescer(o.sock.queue.qlen, slices.Min(o.tr.thr))
	}
	if err = o.poll.add(o.sock.fd, true, false); err != nil {
		return o, err
	}
	if err = o.sock.watchLock(o.poll); err != nil {
		return o, err
	}
	o.sockArmed = true
	if cfg.exportFile != "" {
		if o.events, err = openEventFile(cfg.exportFile, cfg.exportMaxBytes, cfg.exportKeep, log, &o.stats); err != nil {
			return o, err
		}
		o.events.kinds = cfg.exportKinds
	}
	o.env = partEnv{poll: o.poll, log: log, stats: &o.stats, events: o.events}
	if cfg.promAddr != "" {
		if o.prom, err = newPromServer(&o.cfg, o.env, o.metricsView()); err != nil {
			return o, err
		}
	}
	if cfg.recoveryCmd != "" || cfg.recoveryExec != "" || agents.hasCommands() {
		if o.rec, err = newRecoverer(&o.cfg, o.env); err != nil {
			return o, err
		}
	}
	o.setAgents(agents)
	o.am = agentMetrics{table: agents, configured: cfg.configPath != "", reloadOK: true, reloadWallNs: o.startWallNs}
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
	setLoopProcs() // one P on Linux, at least two elsewhere (poll_*.go)
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
		o.prom.newTurn()
		o.drainSocket()
		o.fireDeadlines(monoNow())
		o.startRecoveries()
	}
	o.shutdown()
	return err
}

// iterate is one turn of the loop: wait for the nearest deadline or an fd,
// drain the socket, serve connections a bounded step, fire due deadlines.
func (o *observer) iterate() error {
	now := monoNow()
	if o.lockRearmAt != 0 && now >= o.lockRearmAt {
		o.lockRearmAt = 0
		if o.sock.lock >= 0 {
			o.poll.arm(o.sock.lock, true)
		}
	}
	timeout, pause, held := o.planWait(now)
	if now-o.lastYield >= yieldInterval || held && now+timeout-o.lastYield >= yieldInterval {
		// The loop goroutine blocks only in syscalls, never in the
		// scheduler, so its P's schedtick never moves: after 10 ms sysmon
		// takes it for a goroutine hogging the P, preempts it (a signal)
		// or retakes the P at a wait, and each wakeup then costs futex
		// wakes of sysmon and of a spinning M (strace at 512 beats/s: 2.4
		// to 6 futex calls per beat; at 4096 beats/s about 4 context
		// switches per beat, see BENCHMARKS.md). Passing through the
		// scheduler every few ms, and before a held wait would pass
		// yieldInterval, shows progress and lets any other goroutine
		// (signals, the logger) have the P. With one P (setLoopProcs)
		// this wakes no thread; an idle loop does not turn, so it costs
		// nothing idle.
		runtime.Gosched()
		o.lastYield = now
		// Other goroutines may have had the P meanwhile: plan the wait
		// from the time it is now, or a deadline would fire that late.
		now = monoNow()
		timeout, pause, held = o.planWait(now)
	}
	if o.sockArmed != (pause == 0) {
		// During a pause the wait ends for anything but a beat: a scrape,
		// a signal, a recovery child, a deadline (coalesce.go).
		if err := o.poll.arm(o.sock.fd, pause == 0); err != nil {
			return err
		}
		o.sockArmed = pause == 0
	}
	received := o.stats.framesReceived
	n, err := o.poll.wait(o.pollEvents[:], timeout, held)
	if err != nil {
		return err
	}
	o.prom.newTurn()
	now = monoNow()
	if pause > 0 {
		o.drainSocket() // not in the wait's interest: read what gathered
	}
	for i := 0; i < n; i++ {
		ev := o.pollEvents[i]
		switch {
		case ev.fd == o.sock.fd:
			o.drainSocket()
		case o.poll.isWake(ev.fd): // before the lock: the BSD pollers' wake is fd -1, as a missing lock
			o.poll.drainWake()
		case o.sock.lock >= 0 && ev.fd == o.sock.lock:
			if !o.sock.answerLock() && o.poll.arm(o.sock.lock, false) == nil {
				o.lockRearmAt = now + promAcceptPause
			}
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
	o.startRecoveries()
	o.coal.note(int64(o.stats.framesReceived-received), now)
	return nil
}

// planWait plans iterate's wait at now: its timeout (ns, -1 none), the
// coalescing pause that is that timeout (0 none), and whether the wait is
// held (poll_linux.go). While beats come at heldMinRate or faster every
// wait lasts at most heldWaitMax: a wait that the runtime may retake would
// cost more wakeups than the beats.
func (o *observer) planWait(now int64) (timeout, pause int64, held bool) {
	timeout = o.timeout(now)
	pause = o.coalescePause(timeout)
	if pause > 0 {
		timeout = pause
	}
	if o.coal.busy() && (timeout < 0 || timeout > heldWaitMax) {
		timeout = heldWaitMax
	}
	return timeout, pause, timeout >= 0 && timeout <= heldWaitMax
}

// coalescePause is how long iterate lets beats gather (coalesce.go), given
// the ns until the nearest deadline (-1 none): none while a scrape is being
// written. Where the poller counts in whole ms the pause is rounded down,
// and one under 1 ms is none: rounded up it would let in more beats than
// planned, rounded to 0 the loop would spin.
func (o *observer) coalescePause(untilDeadline int64) int64 {
	if o.prom.writing() {
		return 0
	}
	p := o.coal.pause(untilDeadline)
	if !o.poll.fine {
		p -= p % 1_000_000
	}
	return p
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
	consider(o.trackerDeadline())
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
	consider(o.lockRearmAt)
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

// trackerDeadline is the nearest deadline of the agents (a stall, a first
// or a next liveness check), 0 when there is none.
func (o *observer) trackerDeadline() int64 {
	next := int64(0)
	consider := func(d int64) {
		if next == 0 || d < next {
			next = d
		}
	}
	if s, d := o.tr.nearestActive(); s != noSlot {
		consider(d)
	}
	if s := o.tr.stalled.head; s != noSlot {
		consider(o.tr.slots[s].nextCheck)
	}
	if s := o.tr.stalledOld.head; s != noSlot {
		consider(o.tr.slots[s].nextCheck)
	}
	if d := o.agents.missingDeadline(); d != 0 {
		consider(d)
	}
	return next
}

// drainSocket reads datagrams until EAGAIN or the budget is spent; the
// level-triggered poller reports the socket again if more are queued. The
// clocks are read once per batch of datagrams (recvmmsg), after it was
// taken off the queue: every datagram in it arrived before that instant.
// The monotonic clock is also read before each read of the queue: when
// that read finds the queue empty, every datagram queued before that
// instant has been judged (drainedTo), and deadlines up to it can be
// judged without a beat still waiting in the queue. It reports whether it
// found the queue empty.
func (o *observer) drainSocket() bool {
	var now, wallNow, before int64
	for i := 0; i < recvBudget; i++ {
		if !o.sock.batchPending() {
			before = monoNow()
		}
		res, errno := o.sock.recv()
		if errno != 0 {
			if errno == unix.EINTR {
				continue
			}
			if errno != unix.EAGAIN && errno != unix.EWOULDBLOCK {
				o.ioError(monoNow(), "recvmsg", errno)
				return false
			}
			o.drained(before)
			return true
		}
		if now == 0 || o.sock.freshBatch() {
			now, wallNow = clocksNow()
			o.checkClockStep(now, wallNow)
		}
		o.handleDatagram(res, now, wallNow)
		if o.sock.queueWasEmpty() {
			// The last batch was short: the queue was empty when it was
			// read. The level-triggered poller reports anything queued
			// since; a recvmmsg now would only return EAGAIN.
			o.drained(before)
			return true
		}
	}
	return false
}

// drained records that the queue was found empty by a read that started at
// the monotonic instant before.
func (o *observer) drained(before int64) {
	o.drainedTo = max(o.drainedTo, before)
	o.clockStepped = false // every datagram queued before the step is read
}

// judgedTo is the latest instant up to which every queued datagram has been
// judged: the queue was empty then, or (FIFO) a datagram that arrived then
// has been read. Deadlines up to it can be fired, and events stamped with
// it come after every beat row they follow.
func (o *observer) judgedTo(now int64) int64 {
	return min(now, max(o.drainedTo, o.lastArrival))
}

// clockStepTolerance is how far the wall clock may seem to move against
// the monotonic clock before it counts as stepped. The two clocks are slewed
// together (adjtime, NTP), so their difference changes only when the wall
// clock is set; smaller readings come from a thread descheduled between the
// two reads, and a step below this shifts arrival times by at most this.
const clockStepTolerance = 1_000_000

// checkClockStep compares the wall clock's offset from the monotonic clock
// with the one arrival times are converted with. The kernel stamps
// datagrams with the wall clock (SO_TIMESTAMPNS): after a step, the
// datagrams still queued carry stamps of the old clock, so they count from
// when they are read until the queue has been found empty once.
func (o *observer) checkClockStep(now, wallNow int64) {
	d := wallNow - now - o.wallOffset
	if d > -clockStepTolerance && d < clockStepTolerance {
		return
	}
	// Read again: a thread descheduled between the two clock reads makes
	// them disagree once; a real step stays.
	m2, w2 := clocksNow()
	if d2 := w2 - m2 - o.wallOffset; d2 > -clockStepTolerance && d2 < clockStepTolerance {
		return
	}
	o.log.warn("wall clock stepped: beats still queued count from when they are read",
		fInt("step_ms", (w2-m2-o.wallOffset)/1_000_000))
	o.wallOffset = w2 - m2
	o.clockStepped = true
}

// fireDeadlines judges the agents' due deadlines (agents.go), flushes the
// event file and runs the timers, each within its budget.
func (o *observer) fireDeadlines(now int64) {
	o.judgeDeadlines(now)
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

func (o *observer) feedHW(now int64) {
	if err := o.hwdog.feed(); err != nil {
		o.ioError(now, "hardware watchdog", err)
	}
	o.nextHwFeed = now + o.hwInterval
}

// emit records an event in the event file, when one is configured.
func (o *observer) emit(e *event, now int64) { o.events.emit(e, now) }

// ioError counts an I/O failure of the loop and records it as an io event.
func (o *observer) ioError(now int64, op string, err error) { o.env.ioError(now, op, err) }

// startRecoveries starts the recoveries the turn's stalls decided, at most
// spawnBudget, draining the socket after each: a spawn blocks the loop
// until the child has exec'd (CLONE_VFORK), and the socket queues only
// net.unix.max_dgram_qlen datagrams (10 by default), so it must not wait
// behind a run of spawns. A stall surfaced by such a drain may decide one
// more; it joins the recoverer's queue and is started within the budget
// or in the next turn.
func (o *observer) startRecoveries() {
	if o.rec == nil {
		return
	}
	for i := 0; i < spawnBudget && o.rec.spawnNext(monoNow()); i++ {
		o.drainSocket()
	}
}

// metricsView is what a scrape reads of the observer.
func (o *observer) metricsView() metricsView {
	v := metricsView{tr: o.tr, startWallNs: o.startWallNs, noPidSeries: !o.cfg.promPidSeries, agents: &o.am}
	if o.sock != nil {
		v.queueLen = uint64(o.sock.queue.qlen)
	}
	return v
}

// startSignals routes SIGINT/SIGTERM/SIGQUIT/SIGHUP/SIGCHLD through
// os/signal to bits the loop reads, waking the poller. SIGQUIT is a clean
// stop (contract §8), never the runtime's goroutine dump; one that came
// before this routing (guardSignals) stops the first iteration.
func (o *observer) startSignals() {
	if o.sigc != nil {
		return // already routed (newObserver does it before binding)
	}
	sigc, done := make(chan os.Signal, 16), make(chan struct{})
	o.sigc, o.sigDone = sigc, done
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGCHLD)
	if quitSeen.Load() {
		o.signals.Or(sigStop)
	}
	go func() {
		defer close(done)
		for s := range sigc {
			var bit uint32
			switch s {
			case syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT:
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
	if bits&sigHup != 0 && o.events != nil && o.events.reopen(now) {
		o.log.info("event file reopened", fStr("path", o.cfg.exportFile))
	}
	if bits&sigHup != 0 && o.cfg.configPath != "" {
		o.reload(now)
	}
	if bits&sigStop != 0 {
		o.log.info("stopping on signal")
		o.stopping = true
	}
}

func (o *observer) logStart() {
	o.log.info("varta-watch started", fStr("version", version), fStr("socket", o.cfg.socket),
		fInt("threshold_ms", o.cfg.thresholdMs), fInt("tracker_capacity", int64(o.cfg.trackerCapacity)))
	if o.agents != nil {
		o.log.info("agent sections", fInt("agents", int64(len(o.agents.agents))), fInt("threshold_classes", int64(len(o.tr.thr))),
			fStr("config", o.cfg.configPath))
	}
	if !hasDatagramCreds {
		o.log.warn("this system attaches no per-datagram credentials: frame pids are trusted on the strength of the socket mode, and recovery is refused",
			fStr("socket_mode", sprintf("%04o", o.cfg.socketMode)))
	}
	if o.rec != nil {
		o.rec.logStart()
	}
	o.logQueue()
	o.logLockNote()
}

// logLockNote says why the socket was bound without its path's lock
// although something held the lock's name (lockSocketPath).
func (o *observer) logLockNote() {
	if n := o.sock.lockNote; n != "" {
		o.log.warn("socket bound without the path's lock: observers starting on this path at the same instant are not kept apart",
			fStr("socket", o.sock.path), fStr("why", n))
	}
}

// logQueue logs the socket's queue limit, and how to raise it when it is
// short for the tracker.
func (o *observer) logQueue() {
	if q := o.sock.queue; q.qlen > 0 {
		if q.private {
			source := "own network namespace"
			if q.userns {
				source = "own user and network namespace"
			}
			o.log.info("socket queue limit", fStr("source", source), fInt("datagrams", int64(q.qlen)),
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
				fStr("fix", sprintf("set net.unix.max_dgram_qlen = %d in %s (the .ipk's; on Debian it overrides the .deb's %s), "+
					"then sysctl -p %s and restart varta-watch; or run it as root with --socket-queue %d",
					need, sysctlDropIn, sysctlDropInVendor, sysctlDropIn, need))}
			if q.why != "" {
				fields = append(fields, fStr("own_queue_failed", q.why))
			}
			o.log.warn("socket queue limit is low for the tracker capacity; raise it so bursts of beats are not dropped by the kernel", fields...)
		}
	}
}

// The sysctl snippet the packages install (contrib/package/sysctl.conf,
// ./package): the .ipk puts it in /etc, the .deb in /usr/lib, where a file
// of the same name in /etc/sysctl.d overrides it (sysctl.d(5)). Boot
// applies it before services start.
const (
	sysctlDropIn       = "/etc/sysctl.d/60-varta-watch.conf"
	sysctlDropInVendor = "/usr/lib/sysctl.d/60-varta-watch.conf"
)

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
