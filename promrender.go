package main

import (
	"runtime"
	"strconv"
	"unicode/utf8"
)

// The /metrics body (Prometheus text format 0.0.4) is rendered in slices:
// first every observer-wide family, then the per-agent families, each a
// pass over the tracker's slots. A renderCursor remembers where a slice
// ended. Between slices the tracker changes; a scrape renders only slots
// born before it began, so a pid that left and came back into a later slot
// can never appear twice in one family.

type renderStage uint8

const (
	stageObserver renderStage = iota
	stageAgents               // promrender_agents.go
	stageBeats
	stageStalls
	stageStatus
	stageLastBeat
	stageInfo
	stageDone
)

type renderCursor struct {
	stage   renderStage
	slot    int
	seq     uint64 // tracker.seq when the scrape began
	agents  *agentMetrics
	wallOff int64 // Unix ns minus monotonic ns, fixed for the scrape
}

func (c *renderCursor) done() bool { return c.stage == stageDone }

// family is the HELP and TYPE of one metric family.
type family struct{ name, typ, help string }

var pidFamilies = [...]family{
	stageBeats:    {"varta_beats_total", "counter", "Beats accepted from the agent."},
	stageStalls:   {"varta_stalls_total", "counter", "Stalls surfaced for the agent."},
	stageStatus:   {"varta_status", "gauge", "Agent status: 0 ok, 1 degraded, 2 critical, 3 stall."},
	stageLastBeat: {"varta_last_beat_timestamp_seconds", "gauge", "Unix time of the last accepted beat."},
	stageInfo:     {"varta_agent_info", "gauge", "Agent process name (/proc/PID/comm, read when the pid first beat); always 1."},
}

var stallDelayLe = func() (le [len(stallDelayBuckets)]string) {
	for i, ub := range stallDelayBuckets {
		le[i] = strconv.FormatFloat(ub, 'g', -1, 64)
	}
	return
}()

// buildInfoLine is the single sample of varta_build_info.
var buildInfoLine = func() string {
	b := []byte("varta_build_info{version=\"")
	b = appendLabelValue(b, version)
	b = append(b, "\",revision=\""...)
	b = appendLabelValue(b, buildRevision())
	b = append(b, "\",goversion=\""...)
	b = appendLabelValue(b, runtime.Version())
	b = append(b, "\",goos=\""...)
	b = appendLabelValue(b, runtime.GOOS)
	b = append(b, "\",goarch=\""...)
	b = appendLabelValue(b, runtime.GOARCH)
	b = append(b, "\"} 1\n"...)
	return string(b)
}()

// startRender begins a scrape.
func (p *promServer) startRender(c *renderCursor, now int64) {
	*c = renderCursor{seq: p.view.tr.seq, wallOff: wallAt(0, now), agents: p.view.agents}
}

// renderStep appends the next slice of the body to b: the observer
// families in one go, then per-agent lines until about promOutChunk bytes.
func (p *promServer) renderStep(b []byte, c *renderCursor, now int64) []byte {
	tr := p.view.tr
	for len(b) < promOutChunk && c.stage != stageDone {
		if c.stage == stageObserver {
			b = p.appendObserver(b, c)
			c.stage, c.slot = stageAgents, 0
			continue
		}
		if c.stage == stageAgents {
			if b, c.slot = p.appendAgentFamily(b, c.slot); c.slot < 0 {
				c.stage, c.slot = stageBeats, 0
				if p.view.noPidSeries {
					c.stage = stageDone
				}
			}
			continue
		}
		if c.slot == 0 {
			f := &pidFamilies[c.stage]
			b = appendFamily(b, f.name, f.typ, f.help)
		}
		for ; c.slot < len(tr.slots) && len(b) < promOutChunk; c.slot++ {
			sl := &tr.slots[c.slot]
			if sl.list == slotFree || sl.born > c.seq {
				continue
			}
			b = appendAgentSample(b, c, sl)
		}
		if c.slot == len(tr.slots) {
			c.stage++
			c.slot = 0
		}
	}
	return b
}

func appendAgentSample(b []byte, c *renderCursor, sl *slot) []byte {
	b = append(b, pidFamilies[c.stage].name...)
	b = append(b, `{pid="`...)
	b = strconv.AppendUint(b, uint64(sl.pid), 10)
	switch c.stage {
	case stageBeats:
		b = append(b, `"} `...)
		b = strconv.AppendUint(b, sl.beats, 10)
	case stageStalls:
		b = append(b, `"} `...)
		b = strconv.AppendUint(b, sl.stalls, 10)
	case stageStatus:
		b = append(b, `"} `...)
		b = strconv.AppendUint(b, uint64(sl.status), 10)
	case stageLastBeat:
		b = append(b, `"} `...)
		b = appendDecimal(b, (sl.lastBeat+c.wallOff)/1_000_000, 3)
	case stageInfo:
		b = append(b, `",comm="`...)
		b = appendLabelValue(b, commString(sl))
		b = append(b, `",agent="`...)
		b = appendLabelValue(b, c.agents.agentLabel(sl))
		b = append(b, `"} 1`...)
	}
	return append(b, '\n')
}

// appendObserver appends every observer-wide family; each is present, at
// zero, from the first scrape.
func (p *promServer) appendObserver(b []byte, c *renderCursor) []byte {
	v, st := &p.view, p.env.stats
	b = appendFamily(b, "varta_build_info", "gauge", "Build of this observer; always 1.")
	b = append(b, buildInfoLine...)
	b = appendFamily(b, "varta_start_time_seconds", "gauge", "Unix time the observer started.")
	b = append(b, "varta_start_time_seconds "...)
	b = appendDecimal(b, v.startWallNs/1_000_000, 3)
	b = append(b, '\n')

	b = appendFamily(b, "varta_frames_received_total", "counter", "Datagrams received on the VLP socket.")
	b = appendSample(b, "varta_frames_received_total", st.framesReceived)
	b = appendFamily(b, "varta_beats_accepted_total", "counter", "Beats accepted from all agents, including pids no longer tracked.")
	b = appendSample(b, "varta_beats_accepted_total", st.beatsAccepted)
	b = appendFamily(b, "varta_decode_errors_total", "counter", "Frames that failed VLP v0.2 decoding, by the first check failed.")
	for k := DecodeError(1); k < decodeErrorCount; k++ {
		b = appendLabeled(b, "varta_decode_errors_total", "kind", k.Kind(), st.decodeErrors[k])
	}
	b = appendFamily(b, "varta_truncated_datagrams_total", "counter", "Datagrams whose length was not 32 bytes.")
	b = appendSample(b, "varta_truncated_datagrams_total", st.truncated)
	b = appendFamily(b, "varta_frame_auth_failures_total", "counter", "Frames whose pid differed from the sender's kernel-attested pid.")
	b = appendSample(b, "varta_frame_auth_failures_total", st.authFailures)
	b = appendFamily(b, "varta_beats_out_of_order_total", "counter", "Frames dropped because their nonce was not newer than the last accepted.")
	b = appendSample(b, "varta_beats_out_of_order_total", st.outOfOrder)
	b = appendFamily(b, "varta_tracker_capacity", "gauge", "Most pids tracked at once (--tracker-capacity).")
	b = appendSample(b, "varta_tracker_capacity", uint64(v.tr.capacity()))
	b = appendFamily(b, "varta_tracker_pids", "gauge", "Pids tracked now.")
	b = appendSample(b, "varta_tracker_pids", uint64(v.tr.n))
	b = appendFamily(b, "varta_tracker_evicted_total", "counter", "Pids removed from the tracker: capacity (room for a new pid) or retired (process gone).")
	b = appendLabeled(b, "varta_tracker_evicted_total", "reason", "capacity", st.evictedCapacity)
	b = appendLabeled(b, "varta_tracker_evicted_total", "reason", "retired", st.evictedRetired)
	b = appendFamily(b, "varta_tracker_capacity_exceeded_total", "counter", "Frames of new pids dropped because the tracker was full.")
	b = appendSample(b, "varta_tracker_capacity_exceeded_total", st.capacityExceeded)
	b = appendFamily(b, "varta_io_errors_total", "counter", "I/O errors of the event loop (socket, watchdog, accept).")
	b = appendSample(b, "varta_io_errors_total", st.ioErrors)
	b = appendFamily(b, "varta_recovery_total", "counter", "Recovery attempts by outcome.")
	for i := recoveryOutcome(0); i < recoveryOutcomeCount; i++ {
		b = appendLabeled(b, "varta_recovery_total", "outcome", recoveryOutcomeNames[i], st.recovery[i])
	}
	b = appendFamily(b, "varta_export_write_errors_total", "counter", "Failed writes, rotations or reopens of the event file.")
	b = appendSample(b, "varta_export_write_errors_total", st.exportWriteErrors)
	b = appendFamily(b, "varta_export_dropped_events_total", "counter", "Event lines dropped because the event file could not take them and the buffer was full.")
	b = appendSample(b, "varta_export_dropped_events_total", st.exportDropped)
	b = appendFamily(b, "varta_log_lines_dropped_total", "counter", "Log lines dropped because stderr was not being read and the buffer was full, or stderr or stdout could not be written.")
	b = appendSample(b, "varta_log_lines_dropped_total", p.env.log.droppedLines())
	b = appendFamily(b, "varta_socket_queue_datagrams", "gauge", "Datagrams the kernel queues on the VLP socket before senders get EAGAIN (Linux; 0 unknown).")
	b = appendSample(b, "varta_socket_queue_datagrams", v.queueLen)

	const h = "varta_stall_detection_delay_seconds"
	b = appendFamily(b, h, "histogram", "How late after its deadline each stall was surfaced.")
	var cum uint64
	for i := range stallDelayBuckets {
		cum += st.stallDelay.counts[i]
		b = appendLabeled(b, h+"_bucket", "le", stallDelayLe[i], cum)
	}
	b = appendLabeled(b, h+"_bucket", "le", "+Inf", st.stallDelay.count)
	b = append(b, h+"_sum "...)
	b = appendDecimal(b, st.stallDelay.sumNs, 9)
	b = append(b, '\n')
	b = appendSample(b, h+"_count", st.stallDelay.count)

	b = appendFamily(b, "varta_prom_requests_total", "counter", "HTTP responses of the metrics endpoint by status code.")
	for i := range codeLabels {
		b = appendLabeled(b, "varta_prom_requests_total", "code", codeLabels[i], p.stats.responses[i])
	}
	b = appendFamily(b, "varta_prom_requests_dropped_total", "counter", "Metrics connections closed without a response, by reason.")
	for i := range dropLabels {
		b = appendLabeled(b, "varta_prom_requests_dropped_total", "reason", dropLabels[i], p.stats.dropped[i])
	}
	b = appendFamily(b, "varta_prom_connections", "gauge", "Open metrics connections.")
	b = appendSample(b, "varta_prom_connections", uint64(p.nconns))
	return p.self.appendMetrics(b)
}

func appendFamily(b []byte, name, typ, help string) []byte {
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, help...)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	return append(b, '\n')
}

func appendSample(b []byte, name string, v uint64) []byte {
	b = append(b, name...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, v, 10)
	return append(b, '\n')
}

func appendLabeled(b []byte, name, label, value string, v uint64) []byte {
	b = append(b, name...)
	b = append(b, '{')
	b = append(b, label...)
	b = append(b, `="`...)
	b = appendLabelValue(b, value)
	b = append(b, `"} `...)
	b = strconv.AppendUint(b, v, 10)
	return append(b, '\n')
}

// appendLabelValue escapes a label value as the text format requires
// (backslash, double quote, newline) and replaces invalid UTF-8, which a
// process name may hold, with U+FFFD.
func appendLabelValue(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '\\':
				b = append(b, '\\', '\\')
			case '"':
				b = append(b, '\\', '"')
			case '\n':
				b = append(b, '\\', 'n')
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\uFFFD"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}

// appendDecimal appends v / 10^scale exactly, without trailing zeros.
func appendDecimal(b []byte, v int64, scale int) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	var pow int64 = 1
	for i := 0; i < scale; i++ {
		pow *= 10
	}
	b = strconv.AppendInt(b, v/pow, 10)
	frac := v % pow
	if frac == 0 {
		return b
	}
	var digits [18]byte
	n := scale
	for i := n - 1; i >= 0; i-- {
		digits[i] = byte('0' + frac%10)
		frac /= 10
	}
	for n > 0 && digits[n-1] == '0' {
		n--
	}
	b = append(b, '.')
	return append(b, digits[:n]...)
}
