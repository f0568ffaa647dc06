package main

// SIGHUP reloads the --config file (contract §9): a bad file is logged
// and ignored (varta_config_last_reload_successful 0); a good one takes
// effect at once, every option of it, and an option that did not change
// leaves its part as it is. Tracked pids keep their state (beats, nonces,
// stalls) and are matched again to the new sections.
//
// A reload first opens everything its new options need while the running
// configuration serves on: the event file, the metrics listener (and its
// token file), the socket, the hardware watchdog. Any failure closes what
// it opened and keeps the running configuration whole; only then is the
// new one applied, and what it replaces closed:
//
//   - socket: a new path is bound with the checks of a start (in use,
//     stale, not a socket); the old socket is drained, its beats judged,
//     then closed and its path removed. A new queue (socket_queue, or the
//     tracker capacity it follows) needs a new socket at the same path: it
//     is bound beside the path and renamed over it (rename(2) replaces it
//     atomically: a sender never finds no socket there), then the old one
//     is drained and closed. socket_mode alone is a chmod.
//   - metrics: a new prom_addr is bound before the old listener is closed
//     with its connections (a scrape under way is cut); its address is
//     printed on stdout as at start. The token file is read again at
//     every reload (a new token takes effect with it); a changed rate limit
//     starts with full buckets.
//   - tracker_capacity: the slots are reallocated (a pid that moves to a
//     lower slot may be missing from one scrape under way); it shrinks
//     only when the tracked pids fit.
//   - hw_watchdog: a new device is opened last, when nothing else can fail
//     any more (opening arms it, and a driver built with nowayout can never
//     be disarmed again); the old one is closed with the magic 'V', so
//     turning it off or naming another device disarms it, as a clean exit
//     does. A nowayout driver ignores the 'V': the board then resets.
//   - shutdown_after_secs counts from the reload; log_format switches the
//     log at once.

import (
	"io"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// staged is what a reload opened before it applies anything: closed again
// when it fails.
type staged struct {
	events  *eventFile
	prom    *promServer // a metrics server where there was none
	lfd     int         // a new listener for the running server, -1 none
	bound   string
	token   []byte
	sock    *vlpSocket // the new socket, nil: the old one stays
	chmod   bool       // the old socket's mode was changed
	hwdog   *hwWatchdog
	rec     *recoverer // a recoverer where there was none
	cmd     *recoveryCommand
	agents  *agentTable
	thr     []int64
	boundAt int64 // monotonic ns when the new socket could first take beats
}

func (s *staged) abort(o *observer) {
	if s.events != nil {
		s.events.close()
	}
	if s.prom != nil {
		s.prom.close()
	}
	if s.lfd >= 0 {
		o.poll.remove(s.lfd)
		unix.Close(s.lfd)
	}
	if s.sock != nil {
		o.closeSocket(s.sock)
	}
	if s.chmod {
		o.sock.chmod(o.cfg.socketMode)
	}
	if s.rec != nil && s.rec.devNull >= 0 {
		unix.Close(s.rec.devNull)
	}
}

// reload reads the configuration again from the command line it started
// with (o.args) and applies it, or keeps the running one.
func (o *observer) reload(now int64) {
	cfg, err := loadConfig(o.args)
	s := staged{lfd: -1}
	if err == nil {
		err = o.stage(&cfg, &s)
	}
	if err != nil {
		s.abort(o)
		o.am.reloadOK = false
		o.log.error("configuration reload failed; the running configuration is kept", fStr("err", err.Error()))
		return
	}
	old, prev := o.agents, o.cfg
	o.cfg = cfg
	if s.sock != nil {
		o.swapSocket(&s, &prev)
	} else if s.chmod {
		o.log.info("socket mode changed", fStr("socket", cfg.socket), fStr("socket_mode", sprintf("%04o", cfg.socketMode)))
	}
	if cfg.trackerCapacity != o.tr.capacity() {
		if o.tr.n > cfg.trackerCapacity {
			// Pids that first beat on the old socket while it was drained.
			o.log.warn("tracker capacity kept: more pids are tracked than the new capacity", fInt("tracked", int64(o.tr.n)),
				fInt("tracker_capacity", int64(cfg.trackerCapacity)))
			o.cfg.trackerCapacity = o.tr.capacity()
		} else {
			o.tr.resize(cfg.trackerCapacity)
			o.log.info("tracker capacity changed", fInt("tracker_capacity", int64(cfg.trackerCapacity)))
		}
	}
	o.threshold = cfg.thresholdMs * 1_000_000
	o.retireAfter = retireFactor * o.threshold
	if s.rec != nil {
		o.rec = s.rec
	} else if o.rec != nil {
		o.rec.cmd = s.cmd
	}
	o.applyProm(&s, &prev)
	if cfg.exportFile != prev.exportFile || cfg.exportMaxBytes != prev.exportMaxBytes || cfg.exportKeep != prev.exportKeep {
		o.swapEvents(s.events)
	}
	if o.events != nil {
		o.events.kinds = cfg.exportKinds
	}
	o.tr.thr = s.thr
	o.setAgents(s.agents)
	if o.rec != nil {
		o.rec.remapAgents(old, s.agents)
	}
	o.coal = coalescer{}
	if coalesceEnabled && o.sock.queue.qlen > 0 {
		o.coal = newCoalescer(o.sock.queue.qlen, slices.Min(o.tr.thr))
	}
	if cfg.hwWatchdog != prev.hwWatchdog {
		if o.hwdog != nil {
			if err := o.hwdog.close(true); err != nil {
				o.log.error("hardware watchdog: closing the old device", fStr("err", err.Error()))
			}
			o.log.info("hardware watchdog closed with the magic character", fStr("path", prev.hwWatchdog))
		}
		o.hwdog, o.hwInterval, o.nextHwFeed = s.hwdog, 0, 0
		if o.hwdog != nil {
			o.hwInterval = int64(o.hwdog.interval())
			o.feedHW(now)
			o.log.info("hardware watchdog opened", fStr("path", cfg.hwWatchdog), fInt("feed_interval_ms", o.hwInterval/1_000_000))
		}
	}
	if cfg.shutdownAfterSecs != prev.shutdownAfterSecs {
		o.stopAt = 0
		if cfg.shutdownAfterSecs > 0 {
			o.stopAt = now + cfg.shutdownAfterSecs*1_000_000_000
		}
	}
	o.log.setJSON(cfg.logJSON)
	o.am.reloadOK, o.am.reloadWallNs = true, time.Now().UnixNano()
	n := 0
	if s.agents != nil {
		n = len(s.agents.agents)
	}
	o.log.info("configuration reloaded", fStr("config", cfg.configPath), fInt("threshold_ms", cfg.thresholdMs),
		fInt("agents", int64(n)), fInt("threshold_classes", int64(len(o.tr.thr))))
}

// stage opens what cfg needs and the running configuration does not have,
// into s; on an error s holds what was opened so far.
func (o *observer) stage(cfg *config, s *staged) (err error) {
	old := &o.cfg
	if cfg.exportFile != "" && (cfg.exportFile != old.exportFile || cfg.exportMaxBytes != old.exportMaxBytes || cfg.exportKeep != old.exportKeep) {
		if s.events, err = openEventFile(cfg.exportFile, cfg.exportMaxBytes, cfg.exportKeep, o.log, &o.stats); err != nil {
			return err
		}
	}
	if cfg.trackerCapacity < o.tr.n {
		return errorf("tracker_capacity %d: %d pids are tracked; the capacity can shrink only to what they fit in",
			cfg.trackerCapacity, o.tr.n)
	}
	switch {
	case cfg.promAddr == "":
	case o.prom == nil:
		if s.prom, err = newPromServer(cfg, o.env, o.metricsView()); err != nil {
			return err
		}
	default:
		if cfg.promTokenFile != "" {
			if s.token, err = readTokenFile(cfg.promTokenFile); err != nil {
				return err
			}
		}
		if cfg.promAddr != old.promAddr {
			if s.lfd, s.bound, err = listenOn(cfg.promAddr, o.poll); err != nil {
				return err
			}
		}
	}
	if err = o.stageRecovery(cfg, s); err != nil {
		return err
	}
	thr := o.tr.thr
	s.agents, err = newAgentTable(cfg, o.tr, o.agents)
	s.thr, o.tr.thr = o.tr.thr, thr // applied after the old socket is drained
	if err != nil {
		return err
	}
	if s.rec == nil && o.rec == nil && s.agents.hasCommands() {
		if s.rec, err = newRecoverer(cfg, o.env); err != nil {
			return err
		}
	}
	s.boundAt = monoNow()
	switch {
	case cfg.socket != old.socket:
		s.sock, err = bindVLPSocket(cfg.socket, cfg.socketMode, cfg.wantQueue())
	case cfg.wantQueue() != old.wantQueue():
		s.sock, err = o.sock.requeue(cfg.socketMode, cfg.wantQueue())
	}
	if err != nil {
		return err
	}
	if s.sock != nil {
		if err = o.poll.add(s.sock.fd, true, false); err != nil {
			return errorf("socket %s: %v", cfg.socket, err)
		}
		if err = s.sock.watchLock(o.poll); err != nil {
			return errorf("socket %s: %v", cfg.socket, err)
		}
	} else if cfg.socketMode != old.socketMode {
		if err = o.sock.chmod(cfg.socketMode); err != nil {
			return err
		}
		s.chmod = true
	}
	if cfg.hwWatchdog != "" && cfg.hwWatchdog != old.hwWatchdog {
		// Last: nothing may fail once the new device is armed.
		s.hwdog, err = openHWWatchdog(cfg.hwWatchdog)
	}
	return err
}

// stageRecovery prepares the global recovery command of cfg: for the
// running recoverer (s.cmd), or a new one when there is none (s.rec).
func (o *observer) stageRecovery(cfg *config, s *staged) (err error) {
	if cfg.recoveryExec == "" && cfg.recoveryCmd == "" {
		return nil
	}
	if o.rec == nil {
		s.rec, err = newRecoverer(cfg, o.env)
		return err
	}
	s.cmd, err = newRecoveryCommand("--recovery-exec", cfg.recoveryExec, cfg.recoveryCmd, cfg.recoveryDebounceMs, cfg.recoveryTimeoutMs)
	return err
}

// closeSocket takes a VLP socket and its path's lock out of the poller, then
// closes it, while the loop goes on (a reload).
func (o *observer) closeSocket(s *vlpSocket) {
	o.poll.remove(s.fd)
	s.unwatchLock(o.poll)
	s.close()
}

// swapSocket makes the staged socket the observer's: what was queued on
// the old one is judged first (with the running policy), then it is closed
// and its path removed unless the new socket holds it now.
func (o *observer) swapSocket(s *staged, prev *config) {
	n := s.sock
	if o.cfg.socket == prev.socket {
		if err := o.sock.handOver(n); err != nil {
			o.log.error("socket queue not changed", fStr("err", err.Error()))
			o.closeSocket(n)
			return
		}
	}
	drainedTo := o.drainedTo
	for i := 0; i < 64 && !o.drainSocket(); i++ {
	}
	// The queue found empty was the old one: beats may wait on the new
	// one since it was bound, so deadlines wait for its own drain.
	o.drainedTo = min(max(drainedTo, o.drainedTo), s.boundAt)
	o.closeSocket(o.sock)
	o.sock, o.sockArmed = n, true
	if o.prom != nil {
		o.prom.view.queueLen = uint64(n.queue.qlen)
	}
	o.log.info("socket changed", fStr("socket", n.path), fStr("old", prev.socket), fStr("socket_mode", sprintf("%04o", o.cfg.socketMode)))
	o.logQueue()
	o.logLockNote()
	o.drainSocket()
}

// applyProm applies the staged metrics server, listener, token and rate
// limit.
func (o *observer) applyProm(s *staged, prev *config) {
	cfg := &o.cfg
	switch {
	case cfg.promAddr == "":
		if o.prom != nil {
			o.prom.close()
			o.prom = nil
			o.log.info("metrics endpoint closed", fStr("prom_addr", prev.promAddr))
		}
		return
	case s.prom != nil:
		o.prom = s.prom
	default:
		p := o.prom
		p.token = s.token
		if cfg.promRate != prev.promRate || cfg.promBurst != prev.promBurst {
			p.setLimit(cfg.promRate, cfg.promBurst)
		}
		if s.lfd < 0 {
			p.view.noPidSeries = !cfg.promPidSeries
			return
		}
		p.relisten(s.lfd, s.bound)
	}
	o.prom.view = o.metricsView()
	o.log.info("metrics endpoint listening", fStr("addr", o.prom.addr()), fStr("old", prev.promAddr))
	if o.stdout == nil {
		return
	}
	if o.addrLines == nil {
		// A goroutine writes them, in order: a stdout nobody reads must
		// not stop the loop.
		o.addrLines = make(chan string, 8)
		go func(c <-chan string, w io.Writer, log *logger) {
			for a := range c {
				printAddr(w, a, log)
			}
		}(o.addrLines, o.stdout, o.log)
	}
	select {
	case o.addrLines <- o.prom.addr():
	default:
		o.log.lostLine()
	}
}

// remapAgents points the running and pending recoveries of the sections of
// old at the sections of the same name in t (0 when gone).
func (r *recoverer) remapAgents(old, t *agentTable) {
	r.agents = t
	for i := 0; i < r.n+r.npending; i++ {
		a := &r.children[min(i, maxRecoveryChildren-1)].agent
		if i >= r.n {
			a = &r.pending[(r.pendHead+i-r.n)%maxRecoveryChildren].agent
		}
		if *a != 0 && old != nil && t != nil {
			*a = uint16(t.index(old.agents[*a-1].spec.name) + 1)
		} else {
			*a = 0
		}
	}
}

// swapEvents makes ev (nil: none) the event file of the observer and its
// parts, flushing and closing the one before.
func (o *observer) swapEvents(ev *eventFile) {
	if o.events != nil {
		o.events.close()
	}
	o.events, o.env.events = ev, ev
	if o.prom != nil {
		o.prom.env.events = ev
	}
	if o.rec != nil {
		o.rec.env.events = ev
	}
	o.log.info("event file changed", fStr("path", o.cfg.exportFile))
}
