package main

// SIGHUP reloads the --config file (contract §9): a bad file is logged
// and ignored (varta_config_last_reload_successful 0); a good one changes
// the threshold, the recovery commands, the event kinds, the per-pid
// series and the agent sections in place. Tracked pids keep their state
// (beats, nonces, stalls) and are matched again to the new sections.
// A changed event file is opened (a failure fails the reload) and the old
// one flushed and closed. The socket and the listener are kept as they
// are: an option that would change them is logged as taking effect at a
// restart.

import "time"

// restartOption names an option that changed from a to b and that a
// reload does not apply, "" none.
func restartOption(a, b *config) string {
	switch {
	case a.socket != b.socket, a.socketMode != b.socketMode, a.socketQueue != b.socketQueue:
		return "socket"
	case a.trackerCapacity != b.trackerCapacity:
		return "tracker_capacity"
	case a.promAddr != b.promAddr || a.promTokenFile != b.promTokenFile || a.promRate != b.promRate || a.promBurst != b.promBurst:
		return "prom_addr"
	case a.hwWatchdog != b.hwWatchdog:
		return "hw_watchdog"
	case a.shutdownAfterSecs != b.shutdownAfterSecs:
		return "shutdown_after_secs"
	case a.logJSON != b.logJSON:
		return "log_format"
	}
	return ""
}

// reload reads the configuration again from the command line it started
// with (o.args) and applies it, or keeps the running one.
func (o *observer) reload(now int64) {
	cfg, err := loadConfig(o.args)
	var t *agentTable
	if err == nil {
		if opt := restartOption(&o.cfg, &cfg); opt != "" {
			o.log.warn("configuration reload: options of this group take effect at a restart", fStr("option", opt))
		}
		keep := cfg
		cfg = o.cfg
		cfg.thresholdMs, cfg.exportKinds, cfg.promPidSeries, cfg.agents = keep.thresholdMs, keep.exportKinds, keep.promPidSeries, keep.agents
		cfg.recoveryCmd, cfg.recoveryExec = keep.recoveryCmd, keep.recoveryExec
		cfg.exportFile, cfg.exportMaxBytes, cfg.exportKeep = keep.exportFile, keep.exportMaxBytes, keep.exportKeep
		cfg.recoveryDebounceMs, cfg.recoveryTimeoutMs, cfg.shutdownGraceMs = keep.recoveryDebounceMs, keep.recoveryTimeoutMs, keep.shutdownGraceMs
		err = o.applyRecovery(&cfg)
	}
	var events *eventFile
	eventsChanged := cfg.exportFile != o.cfg.exportFile || cfg.exportMaxBytes != o.cfg.exportMaxBytes || cfg.exportKeep != o.cfg.exportKeep
	if err == nil && eventsChanged && cfg.exportFile != "" {
		events, err = openEventFile(cfg.exportFile, cfg.exportMaxBytes, cfg.exportKeep, o.log, &o.stats)
	}
	if err == nil {
		thr := o.tr.thr
		if t, err = newAgentTable(&cfg, o.tr, o.agents); err != nil {
			o.tr.thr = thr
		} else if o.rec == nil && t.hasCommands() {
			o.rec, err = newRecoverer(&cfg, o.env)
		}
		if err != nil {
			o.tr.thr = thr
		}
	}
	if err != nil {
		if events != nil {
			events.close()
		}
		o.am.reloadOK = false
		o.log.error("configuration reload failed; the running configuration is kept", fStr("err", err.Error()))
		return
	}
	old := o.agents
	o.cfg = cfg
	o.threshold = cfg.thresholdMs * 1_000_000
	o.retireAfter = retireFactor * o.threshold
	if eventsChanged {
		o.swapEvents(events)
	}
	if o.events != nil {
		o.events.kinds = cfg.exportKinds
	}
	if o.prom != nil {
		o.prom.view.noPidSeries = !cfg.promPidSeries
	}
	o.setAgents(t)
	if o.rec != nil {
		o.rec.remapAgents(old, t)
	}
	o.am.reloadOK, o.am.reloadWallNs = true, time.Now().UnixNano()
	n := 0
	if t != nil {
		n = len(t.agents)
	}
	o.log.info("configuration reloaded", fStr("config", cfg.configPath), fInt("threshold_ms", cfg.thresholdMs),
		fInt("agents", int64(n)), fInt("threshold_classes", int64(len(o.tr.thr))))
}

// applyRecovery prepares the global recovery command of cfg in the running
// recoverer (or creates one), leaving both as they are on an error.
func (o *observer) applyRecovery(cfg *config) error {
	if cfg.recoveryExec == "" && cfg.recoveryCmd == "" {
		if o.rec != nil {
			o.rec.cmd = nil
		}
		return nil
	}
	if o.rec == nil {
		r, err := newRecoverer(cfg, o.env)
		if err == nil {
			o.rec = r
		}
		return err
	}
	c, err := newRecoveryCommand("--recovery-exec", cfg.recoveryExec, cfg.recoveryCmd, cfg.recoveryDebounceMs, cfg.recoveryTimeoutMs)
	if err == nil {
		o.rec.cmd = c
	}
	return err
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
