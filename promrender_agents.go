package main

import "strconv"

// The per-agent families of contract §6 (one series per agent section,
// present at 0 from the first scrape) and the configuration reload
// gauges. promrender.go calls appendAgentFamily once per step between the
// observer families and the per-pid ones, and agentLabel for
// varta_agent_info.

// agentMetrics is what a scrape reads of the agent sections: the table in
// force (replaced at a reload) and the last reload's outcome.
type agentMetrics struct {
	table        *agentTable
	configured   bool  // --config given: the reload gauges are rendered
	reloadOK     bool  // the last load of the file succeeded
	reloadWallNs int64 // Unix ns of the last successful load
}

var agentFamilies = [...]family{
	{"varta_agent_up", "gauge", "1 while at least one pid of the agent section is beating.", "agent"},
	{"varta_agent_pids", "gauge", "Tracked pids of the agent section by state.", "agent"},
	{"varta_agent_missing", "gauge", "1 when an expected agent has had no beating pid for its grace_ms.", "agent"},
	{"varta_agent_stalls_total", "counter", "Stalls of the pids of the agent section.", "agent"},
	{"varta_agent_recoveries_total", "counter", "Recovery commands of the agent section by outcome.", "agent"},
	{"varta_agent_gave_up", "gauge", "1 while the agent section has given up recovering (max_recoveries within recovery_window_s).", "agent"},
	{"varta_agent_threshold_seconds", "gauge", "Stall threshold of the agent section.", "agent"},
}

var reloadFamilies = [...]family{
	{"varta_config_last_reload_successful", "gauge", "1 when the last load of the --config file succeeded.", ""},
	{"varta_config_last_reload_success_timestamp_seconds", "gauge", "Unix time of the last successful load of the --config file.", ""},
}

// appendAgentFamily appends the agent families from position pos (family
// pos>>9, from its agent pos&511; after them the reload gauges) up to
// about promOutChunk bytes, and returns the next position, -1 when all are
// done.
func (p *promServer) appendAgentFamily(b []byte, pos int) ([]byte, int) {
	m := p.view.agents
	if m == nil {
		return b, -1
	}
	t := m.table
	for t != nil && pos>>9 < len(agentFamilies) && len(b) < promOutChunk {
		i, k := pos>>9, pos&511
		if k == 0 {
			f := &agentFamilies[i]
			b = appendFamily(b, f)
		}
		for ; k < len(t.agents) && len(b) < promOutChunk; k++ {
			b = appendAgentSeries(b, p.view.tr, t, i, k)
		}
		pos = i<<9 | k
		if k >= len(t.agents) { // >: a reload removed sections under this scrape
			pos = (i + 1) << 9
		}
	}
	if t != nil && pos>>9 < len(agentFamilies) {
		return b, pos
	}
	for i := range reloadFamilies {
		if !m.configured {
			break
		}
		f := &reloadFamilies[i]
		b = appendFamily(b, f)
		b = append(b, f.name...)
		b = append(b, ' ')
		if i == 0 {
			b = appendDecimal(b, int64(b2u(m.reloadOK)), 0)
		} else {
			b = appendDecimal(b, m.reloadWallNs/1_000_000, 3)
		}
		b = append(b, '\n')
	}
	return b, -1
}

// appendAgentSeries appends the samples of family i for agent k.
func appendAgentSeries(b []byte, tr *tracker, t *agentTable, i, k int) []byte {
	a, name := &t.agents[k], agentFamilies[i].name
	n := tr.pids[k]
	var v uint64
	switch i {
	case 0:
		v = b2u(n.beating > 0)
	case 1:
		b = appendAgentSampleOf(b, name, a, "state", "beating", uint64(n.beating))
		return appendAgentSampleOf(b, name, a, "state", "stalled", uint64(n.stalled))
	case 2:
		v = b2u(a.missing)
	case 3:
		v = a.stalls
	case 4:
		for o := range a.recoveries {
			b = appendAgentSampleOf(b, name, a, "outcome", recoveryOutcomeNames[o], a.recoveries[o])
		}
		return b
	case 5:
		v = b2u(a.gaveUp)
	case 6:
		b = append(b, name...)
		b = appendAgentLabels(b, a, "", "")
		b = appendDecimal(b, a.spec.thresholdMs, 3)
		return append(b, '\n')
	}
	return appendAgentSampleOf(b, name, a, "", "", v)
}

func appendAgentLabels(b []byte, a *agentState, label, value string) []byte {
	b = append(b, `{agent="`...)
	b = appendLabelValue(b, a.spec.name)
	if label != "" {
		b = append(b, `",`...)
		b = append(b, label...)
		b = append(b, `="`...)
		b = append(b, value...)
	}
	return append(b, `"} `...)
}

func appendAgentSampleOf(b []byte, name string, a *agentState, label, value string, v uint64) []byte {
	b = append(b, name...)
	b = appendAgentLabels(b, a, label, value)
	b = strconv.AppendUint(b, v, 10)
	return append(b, '\n')
}

// agentLabel is the agent label of a pid's varta_agent_info: the name of
// its section, empty when it matches none.
func (m *agentMetrics) agentLabel(sl *slot) string {
	if m == nil || m.table == nil || sl.agent == 0 || int(sl.agent) > len(m.table.agents) {
		return ""
	}
	return m.table.agents[sl.agent-1].spec.name
}

func b2u(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}
