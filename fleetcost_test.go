//go:build linux

package main

// What an observer costs the Prometheus that scrapes it (README, "Running
// a fleet"): the series of one scrape, and the series a restart of an
// agent creates, with and without the per-pid series.

import (
	"strings"
	"testing"
)

// seriesOf returns the series (name and labels) of a scrape.
func seriesOf(body string) map[string]bool {
	s := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			s[line[:i]] = true
		}
	}
	return s
}

// restartAgent retires the tracked pid old and tracks fresh, with old's
// comm, in the same agent section, as when an init system restarts the
// agent.
func restartAgent(t testing.TB, o *observer, old, fresh uint32) {
	t.Helper()
	s := o.tr.lookup(old)
	if s == noSlot {
		t.Fatalf("pid %d is not tracked", old)
	}
	agent, comm := o.tr.slots[s].agent, o.tr.slots[s].comm
	commLen := o.tr.slots[s].commLen
	now := monoNow()
	o.evict(s, "retired", now)
	EncodeFrame(o.sock.frame(), Frame{Pid: fresh, Timestamp: 1, Nonce: 1})
	o.handleDatagram(recvResult{n: FrameSize, credPid: int32(fresh), hasCred: true}, now, 0)
	n := o.tr.lookup(fresh)
	if n == noSlot {
		t.Fatalf("new pid %d not tracked", fresh)
	}
	sl := &o.tr.slots[n]
	sl.comm, sl.commLen = comm, commLen
	o.setAgents(o.agents)
	if sl.agent != agent {
		t.Fatalf("new pid %d in section %d, the old one was in %d", fresh, sl.agent, agent)
	}
}

// TestSeriesPerAgentRestart: with per-pid series, a restart of an agent
// makes five new series in Prometheus (the old pid's go stale); with
// --prom-pid-series off and the agent known by name, none, and the
// scrape has a fixed set of series whatever the pids.
func TestSeriesPerAgentRestart(t *testing.T) {
	for _, mode := range []string{"on", "off"} {
		t.Run("pid-series="+mode, func(t *testing.T) {
			o := agentsBenchObserver(t, "--prom-addr", "127.0.0.1:0", "--prom-pid-series", mode)
			before := seriesOf(renderAll(o.prom, monoNow(), 0))
			restartAgent(t, o, agentPid(7), agentPid(9000))
			after := seriesOf(renderAll(o.prom, monoNow(), 0))
			var added []string
			for s := range after {
				if !before[s] {
					added = append(added, s)
				}
			}
			want := 0
			if mode == "on" {
				want = 5 // varta_beats_total, _stalls_total, _status, _last_beat_timestamp_seconds, _agent_info
			}
			if len(added) != want {
				t.Errorf("a restart added %d series, want %d: %q", len(added), want, added)
			}
			t.Logf("pid series %s: %d series in a scrape of 4096 pids and 256 agent sections; a restart adds %d", mode, len(after), len(added))
		})
	}
}
