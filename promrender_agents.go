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
	{"varta_agent_up", "gauge", "1 while at least one pid of the agent section is beating."},
	{"varta_agent_pids", "gauge", "Tracked pids of the agent section by state."},
	{"varta_agent_missing", "gauge", "1 when an expected agent has had no beating pid for its grace_ms."},
	{"varta_agent_stalls_total", "counter", "Stalls of the pids of the agent section."},
	{"varta_agent_recoveries_total", "counter", "Recovery commands of the agent section by outcome."},
	{"varta_agent_gave_up", "gauge", "1 while the agent section has given up recovering (max_recoveries within recovery_window_s)."},
	{"varta_agent_threshold_seconds", "gauge", "Stall threshold of the agent section."},
}

// appendAgentFamily appends family i of the agent sections (after them
// the reload gauges) and returns the next i, -1 when all are done.
func (p *promServer) appendAgentFamily(b []byte, i int) ([]byte, int) {
	m := p.view.agents
	if m == nil {
		return b, -1
	}
	t := m.table
	if i == len(agentFamilies) || t == nil {
		if m.configured {
			b = appendFamily(b, "varta_config_last_reload_successful", "gauge", "1 when the last load of the --config file succeeded.")
			b = appendSample(b, "varta_config_last_reload_successful", b2u(m.reloadOK))
			const ts = "varta_config_last_reload_success_timestamp_seconds"
			b = appendFamily(b, ts, "gauge", "Unix time of the last successful load of the --config file.")
			b = append(b, ts+" "...)
			b = appendDecimal(b, m.reloadWallNs/1_000_000, 3)
			b = append(b, '\n')
		}
		return b, -1
	}
	f := &agentFamilies[i]
	b = appendFamily(b, f.name, f.typ, f.help)
	tr := p.view.tr
	for k := range t.agents {
		a := &t.agents[k]
		n := tr.pids[k]
		switch i {
		case 0:
			b = appendAgentSampleOf(b, f.name, a, "", "", b2u(n.beating > 0))
		case 1:
			b = appendAgentSampleOf(b, f.name, a, "state", "beating", uint64(n.beating))
			b = appendAgentSampleOf(b, f.name, a, "state", "stalled", uint64(n.stalled))
		case 2:
			b = appendAgentSampleOf(b, f.name, a, "", "", b2u(a.missing))
		case 3:
			b = appendAgentSampleOf(b, f.name, a, "", "", a.stalls)
		case 4:
			for o := range a.recoveries {
				b = appendAgentSampleOf(b, f.name, a, "outcome", recoveryOutcomeNames[o], a.recoveries[o])
			}
		case 5:
			b = appendAgentSampleOf(b, f.name, a, "", "", b2u(a.gaveUp))
		case 6:
			b = append(b, f.name...)
			b = appendAgentLabels(b, a, "", "")
			b = appendDecimal(b, a.spec.thresholdMs, 3)
			b = append(b, '\n')
		}
	}
	return b, i + 1
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
