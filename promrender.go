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

// family is the HELP and TYPE of one metric family, and the name of the
// label its samples carry, if any. Every family's name is written once, in
// a table, and the append helpers are kept out of line: inlined at each of
// some forty call sites they cost about 24 KB of ARM text, which the binary
// budget (2.0 MB, TestCrossArtifacts) cannot spare.
type family struct{ name, typ, help, label string }

var pidFamilies = [...]family{
	stageBeats:    {"varta_beats_total", "counter", "Beats accepted from the agent.", "pid"},
	stageStalls:   {"varta_stalls_total", "counter", "Stalls surfaced for the agent.", "pid"},
	stageStatus:   {"varta_status", "gauge", "Agent status: 0 ok, 1 degraded, 2 critical, 3 stall.", "pid"},
	stageLastBeat: {"varta_last_beat_timestamp_seconds", "gauge", "Unix time of the last accepted beat.", "pid"},
	stageInfo:     {"varta_agent_info", "gauge", "Agent process name (/proc/PID/comm, read when the pid first beat); always 1.", "pid"},
}

// The observer-wide families, in the order appendObserver writes them.
const (
	famBuildInfo = iota
	famStartTime
	famFramesReceived
	famBeatsAccepted
	famDecodeErrors
	famTruncated
	famAuthFailures
	famOutOfOrder
	famTrackerCapacity
	famTrackerPids
	famEvicted
	famCapacityExceeded
	famIOErrors
	famRecovery
	famExportWriteErrors
	famExportDropped
	famLogDropped
	famSocketQueue
	famStallDelay
	famPromRequests
	famPromDropped
	famPromConnections
	observerFamilyCount
)

var observerFamilies = [observerFamilyCount]family{
	famBuildInfo:         {"varta_build_info", "gauge", "Build of this observer; always 1.", ""},
	famStartTime:         {"varta_start_time_seconds", "gauge", "Unix time the observer started.", ""},
	famFramesReceived:    {"varta_frames_received_total", "counter", "Datagrams received on the VLP socket.", ""},
	famBeatsAccepted:     {"varta_beats_accepted_total", "counter", "Beats accepted from all agents, including pids no longer tracked.", ""},
	famDecodeErrors:      {"varta_decode_errors_total", "counter", "Frames that failed VLP v0.2 decoding, by the first check failed.", "kind"},
	famTruncated:         {"varta_truncated_datagrams_total", "counter", "Datagrams whose length was not 32 bytes.", ""},
	famAuthFailures:      {"varta_frame_auth_failures_total", "counter", "Frames whose pid differed from the sender's kernel-attested pid.", ""},
	famOutOfOrder:        {"varta_beats_out_of_order_total", "counter", "Frames dropped because their nonce was not newer than the last accepted.", ""},
	famTrackerCapacity:   {"varta_tracker_capacity", "gauge", "Most pids tracked at once (--tracker-capacity).", ""},
	famTrackerPids:       {"varta_tracker_pids", "gauge", "Pids tracked now.", ""},
	famEvicted:           {"varta_tracker_evicted_total", "counter", "Pids removed from the tracker: capacity (room for a new pid) or retired (process gone).", "reason"},
	famCapacityExceeded:  {"varta_tracker_capacity_exceeded_total", "counter", "Frames of new pids dropped because the tracker was full.", ""},
	famIOErrors:          {"varta_io_errors_total", "counter", "I/O errors of the event loop (socket, watchdog, accept).", ""},
	famRecovery:          {"varta_recovery_total", "counter", "Recovery attempts by outcome.", "outcome"},
	famExportWriteErrors: {"varta_export_write_errors_total", "counter", "Failed writes, rotations or reopens of the event file.", ""},
	famExportDropped:     {"varta_export_dropped_events_total", "counter", "Event lines dropped because the event file could not take them and the buffer was full.", ""},
	famLogDropped:        {"varta_log_lines_dropped_total", "counter", "Log lines dropped because stderr was not being read and the buffer was full, or stderr or stdout could not be written.", ""},
	famSocketQueue:       {"varta_socket_queue_datagrams", "gauge", "Datagrams the kernel queues on the VLP socket before senders get EAGAIN (Linux; 0 unknown).", ""},
	famStallDelay:        {"varta_stall_detection_delay_seconds", "histogram", "How late after its deadline each stall was surfaced.", "le"},
	famPromRequests:      {"varta_prom_requests_total", "counter", "HTTP responses of the metrics endpoint by status code.", "code"},
	famPromDropped:       {"varta_prom_requests_dropped_total", "counter", "Metrics connections closed without a response, by reason.", "reason"},
	famPromConnections:   {"varta_prom_connections", "gauge", "Open metrics connections.", ""},
}

var evictedReasons = [...]string{"capacity", "retired"}

// stallDelayLe are the le labels of the histogram's buckets, in seconds.
var stallDelayLe = func() (le [len(stallDelayBucketsNs) + 1]string) {
	for i, ub := range stallDelayBucketsNs {
		le[i] = string(appendDecimal(nil, ub, 9))
	}
	le[len(stallDelayBucketsNs)] = "+Inf"
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
			b = appendFamily(b, &pidFamilies[c.stage])
		}
		for ; c.slot < len(tr.slots) && len(b) < promOutChunk; c.slot++ {
			sl := &tr.slots[c.slot]
			if sl.list == slotFree || sl.born > c.seq {
				continue
			}
			b = appendAgentSample(b, c, sl)
		}
		if c.slot >= len(tr.slots) { // >: a reload shrank the tracker under this scrape
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
	v, st, fs := &p.view, p.env.stats, &observerFamilies
	b = appendFamily(b, &fs[famBuildInfo])
	b = append(b, buildInfoLine...)
	b = appendDecimalSample(b, &fs[famStartTime], v.startWallNs/1_000_000, 3)
	b = appendOnlySample(b, &fs[famFramesReceived], st.framesReceived)
	b = appendOnlySample(b, &fs[famBeatsAccepted], st.beatsAccepted)
	b = appendLabeledSamples(b, &fs[famDecodeErrors], decodeErrorKinds[1:], st.decodeErrors[1:])
	b = appendOnlySample(b, &fs[famTruncated], st.truncated)
	b = appendOnlySample(b, &fs[famAuthFailures], st.authFailures)
	b = appendOnlySample(b, &fs[famOutOfOrder], st.outOfOrder)
	b = appendOnlySample(b, &fs[famTrackerCapacity], uint64(v.tr.capacity()))
	b = appendOnlySample(b, &fs[famTrackerPids], uint64(v.tr.n))
	evicted := [len(evictedReasons)]uint64{st.evictedCapacity, st.evictedRetired}
	b = appendLabeledSamples(b, &fs[famEvicted], evictedReasons[:], evicted[:])
	b = appendOnlySample(b, &fs[famCapacityExceeded], st.capacityExceeded)
	b = appendOnlySample(b, &fs[famIOErrors], st.ioErrors)
	b = appendLabeledSamples(b, &fs[famRecovery], recoveryOutcomeNames[:], st.recovery[:])
	b = appendOnlySample(b, &fs[famExportWriteErrors], st.exportWriteErrors)
	b = appendOnlySample(b, &fs[famExportDropped], st.exportDropped)
	b = appendOnlySample(b, &fs[famLogDropped], p.env.log.droppedLines())
	b = appendOnlySample(b, &fs[famSocketQueue], v.queueLen)
	b = appendHistogram(b, &fs[famStallDelay], &st.stallDelay)
	b = appendLabeledSamples(b, &fs[famPromRequests], codeLabels[:], p.stats.responses[:])
	b = appendLabeledSamples(b, &fs[famPromDropped], dropLabels[:], p.stats.dropped[:])
	b = appendOnlySample(b, &fs[famPromConnections], uint64(p.nconns))
	return p.self.appendMetrics(b)
}

// appendHistogram appends a family of type histogram: cumulative buckets
// labelled le (the last one +Inf), then _sum and _count.
func appendHistogram(b []byte, f *family, h *histogram) []byte {
	var cum [len(stallDelayBucketsNs) + 1]uint64
	var n uint64
	for i := range stallDelayBucketsNs {
		n += h.counts[i]
		cum[i] = n
	}
	cum[len(stallDelayBucketsNs)] = h.count
	b = appendFamily(b, f)
	for i := range cum {
		b = appendLabeled(b, f, "_bucket", stallDelayLe[i], cum[i])
	}
	b = append(b, f.name...)
	b = append(b, "_sum "...)
	b = appendDecimal(b, h.sumNs, 9)
	b = append(b, '\n')
	b = append(b, f.name...)
	b = append(b, "_count "...)
	b = strconv.AppendUint(b, h.count, 10)
	return append(b, '\n')
}

//go:noinline
func appendFamily(b []byte, f *family) []byte {
	b = append(b, "# HELP "...)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = append(b, f.help...)
	b = append(b, "\n# TYPE "...)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = append(b, f.typ...)
	return append(b, '\n')
}

// appendOnlySample appends family f and its one sample, without labels.
//
//go:noinline
func appendOnlySample(b []byte, f *family, v uint64) []byte {
	b = appendFamily(b, f)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, v, 10)
	return append(b, '\n')
}

// appendDecimalSample appends family f and its one sample, v / 10^scale.
//
//go:noinline
func appendDecimalSample(b []byte, f *family, v int64, scale int) []byte {
	b = appendFamily(b, f)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = appendDecimal(b, v, scale)
	return append(b, '\n')
}

// appendLabeledSamples appends family f and one sample per label value.
//
//go:noinline
func appendLabeledSamples(b []byte, f *family, values []string, counts []uint64) []byte {
	b = appendFamily(b, f)
	for i := range values {
		b = appendLabeled(b, f, "", values[i], counts[i])
	}
	return b
}

// appendLabeled appends one sample of family f (of its series
// name+suffix) whose label has the given value.
//
//go:noinline
func appendLabeled(b []byte, f *family, suffix, value string, v uint64) []byte {
	b = append(b, f.name...)
	b = append(b, suffix...)
	b = append(b, '{')
	b = append(b, f.label...)
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
