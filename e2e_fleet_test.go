//go:build linux

package main

// A fleet on one machine (README, "Running a fleet"): 20 observers, each
// with its own socket, event file, metrics port and a --config naming
// three agents (two of them expected), real agent processes, and one real
// Prometheus server that finds the observers through file_sd_configs as
// router-01 … router-20 and loads the shipped alert and recording rules.
// Faults on four routers must fire exactly the alerts that name them, and
// nothing for the other sixteen; the alerts resolve when the agents come
// back. Every query of the Grafana dashboard runs against that Prometheus
// and returns data.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fleetConf is the configuration every router of the fleet runs: netd and
// wifid are expected, jobd is not and gives up after two recoveries.
const fleetConf = `
config varta-watch 'main'
	option threshold_ms '500'

config agent 'netd'
	option comm 'netd'
	option expected '1'
	option grace_ms '1000'

config agent 'wifid'
	option comm 'wifid'
	option expected '1'
	option grace_ms '1000'

config agent 'jobd'
	option comm 'jobd'
	option recovery_exec '/bin/true'
	option recovery_debounce_ms '0'
	option max_recoveries '2'
	option recovery_window_s '8'
`

// fleetFaulty are the routers the test makes faults on; no alert, pending
// or firing, may ever name another.
var fleetFaulty = map[string]bool{"router-03": true, "router-07": true, "router-12": true, "router-15": true}

type fleetRouter struct {
	name   string
	obs    *observerProc
	agents map[string]*agentProc
}

func TestFleet(t *testing.T) {
	if _, err := os.Stat("/bin/true"); err != nil {
		t.Skip("no /bin/true for the recovery command")
	}
	const n = 20
	dir := shortTempDir(t)
	bins := map[string]string{}
	for _, name := range []string{"netd", "wifid", "jobd"} {
		bins[name] = agentBinAs(t, filepath.Join(dir, "bin", name))
	}
	conf := writeConfFile(t, dir, fleetConf)
	beat := func(r *fleetRouter, agent string) *agentProc {
		a := startAgentBin(t, bins[agent], r.obs.socket, "--interval-ms", "100")
		r.agents[agent] = a
		return a
	}
	routers := make([]*fleetRouter, n)
	byName := map[string]*fleetRouter{}
	var targets []string
	for i := range routers {
		r := &fleetRouter{name: fmt.Sprintf("router-%02d", i+1), agents: map[string]*agentProc{}}
		r.obs = startObserver(t, observerOpts{args: []string{"--prom-addr", "127.0.0.1:0", "--config", conf}})
		for _, agent := range []string{"netd", "wifid", "jobd"} {
			if r.name == "router-15" && agent == "wifid" {
				continue // an expected agent that never starts
			}
			beat(r, agent)
		}
		routers[i], byName[r.name] = r, r
		targets = append(targets, fmt.Sprintf(`{"targets": [%q], "labels": {"instance": %q}}`, r.obs.promAddr, r.name))
	}
	sd := filepath.Join(dir, "targets.json")
	if err := os.WriteFile(sd, []byte("["+strings.Join(targets, ",\n")+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := startPrometheus(t, fmt.Sprintf("  - job_name: varta\n    file_sd_configs:\n      - files: [%q]\n", sd),
		"contrib/prometheus/alerts.yml", "contrib/prometheus/rules.yml")

	// Every router scraped, every agent that runs up.
	prom.waitFor(60*time.Second, "20 observers up and 59 agents beating", func() (bool, string) {
		up, err1 := prom.query(`sum(up{job="varta"})`)
		agents, err2 := prom.query(`sum(varta_agent_up{job="varta"})`)
		if err1 != nil || err2 != nil || len(up) != 1 || len(agents) != 1 {
			return false, fmt.Sprint(up, agents, err1, err2)
		}
		return up[0].value == "20" && agents[0].value == "59", "up " + up[0].value + ", agents up " + agents[0].value
	})
	want := []string{"VartaAgentMissing router-15 wifid"}
	waitAlerts(t, prom, want, "only router-15's missing wifid")

	// The faults.
	byName["router-07"].agents["netd"].kill()                              // dies, nobody restarts it
	byName["router-12"].agents["jobd"].cmd.Process.Signal(syscall.SIGSTOP) // hung: alive, not beating
	r3 := byName["router-03"]
	r3.agents["jobd"].kill()
	for i := 0; i < 4; i++ { // keeps stalling: 2 recoveries, then it gives up (within one 8 s window)
		a := startAgentBin(t, bins["jobd"], r3.obs.socket, "--interval-ms", "10", "--count", "2")
		a.waitExit(t, 10*time.Second)
		r3.obs.waitKind("stall", a.pid, 1)
	}
	hung := byName["router-12"].agents["jobd"].pid
	want = []string{
		"VartaAgentGaveUp router-03 jobd",
		"VartaAgentMissing router-07 netd",
		"VartaAgentMissing router-15 wifid",
		"VartaAgentStalled router-12 jobd",
		"VartaNamedAgentStalled router-12 jobd",
	}
	alerts := waitAlerts(t, prom, want, "the alerts of the four faults")
	for _, a := range alerts {
		if a.state != "firing" {
			continue
		}
		inst, agent := a.labels["instance"], a.labels["agent"]
		if s := a.annotations["summary"]; !strings.Contains(s, inst) || !strings.Contains(s, agent) {
			t.Errorf("%s: summary %q does not name instance %s and agent %s", a.labels["alertname"], s, inst, agent)
		}
		if a.labels["alertname"] == "VartaAgentStalled" && (a.labels["pid"] != hung || a.labels["comm"] != "jobd") {
			t.Errorf("VartaAgentStalled names pid %q comm %q, want pid %s comm jobd", a.labels["pid"], a.labels["comm"], hung)
		}
	}
	// The recording rules see the same fleet.
	for q, want := range map[string]string{
		`agent:varta_agents_missing:sum{agent="netd"}`:  "1",
		`agent:varta_agents_missing:sum{agent="wifid"}`: "1",
		`agent:varta_agents_gave_up:sum{agent="jobd"}`:  "1",
		`agent:varta_agents_down:sum{agent="jobd"}`:     "2",
		`job:varta_observers_up:sum`:                    "20",
	} {
		if s, err := prom.query(q); err != nil || len(s) != 1 || s[0].value != want {
			t.Errorf("%s = %v (%v), want %s", q, s, err, want)
		}
	}
	checkDashboardQueries(t, prom)

	// The agents come back: every alert resolves.
	beat(byName["router-07"], "netd")
	byName["router-12"].agents["jobd"].cmd.Process.Signal(syscall.SIGCONT)
	beat(byName["router-15"], "wifid")
	beat(r3, "jobd") // re-armed after a whole window without a stall
	waitAlertsFor(t, prom, nil, "every alert resolved", 90*time.Second)
	for _, q := range []string{`sum(agent:varta_agents_missing:sum)`, `sum(agent:varta_agents_gave_up:sum)`, `sum(agent:varta_agents_down:sum)`} {
		prom.waitFor(30*time.Second, q+" back at 0", func() (bool, string) {
			s, err := prom.query(q)
			return err == nil && len(s) == 1 && s[0].value == "0", fmt.Sprint(s, err)
		})
	}
}

// waitAlerts waits until exactly want ("alertname instance agent", sorted)
// is firing, and returns the alerts then.
func waitAlerts(t *testing.T, prom *promProc, want []string, what string) []promAlert {
	t.Helper()
	return waitAlertsFor(t, prom, want, what, 60*time.Second)
}

func waitAlertsFor(t *testing.T, prom *promProc, want []string, what string, timeout time.Duration) []promAlert {
	t.Helper()
	var alerts []promAlert
	prom.waitFor(timeout, what, func() (bool, string) {
		var err error
		if alerts, err = prom.alerts(); err != nil {
			return false, err.Error()
		}
		for _, a := range alerts {
			if inst := a.labels["instance"]; !fleetFaulty[inst] {
				t.Errorf("%s %s for %s, a router without a fault (agent %q)", a.labels["alertname"], a.state, inst, a.labels["agent"])
			}
		}
		got := firing(alerts)
		return slices.Equal(got, want), fmt.Sprintf("firing %q, want %q", got, want)
	})
	return alerts
}

// checkDashboardQueries runs every query of the Grafana dashboard with its
// variables set to all routers and all agents, and to one router and one
// agent, against the fleet's Prometheus: each must return data. The
// variables' own label_values() queries must list the 20 routers and the
// three agents.
func checkDashboardQueries(t *testing.T, prom *promProc) {
	t.Helper()
	for _, sel := range [][2]string{{".*", ".*"}, {"router-03", "jobd"}} {
		for name, q := range dashboardQueries(t, sel[0], sel[1], "30s") {
			s, err := prom.query(q)
			if err != nil || len(s) == 0 {
				t.Errorf("dashboard panel %s with instance=%s agent=%s: %s returned %d series (%v)", name, sel[0], sel[1], q, len(s), err)
			}
		}
	}
	var instances, agents []string
	if err := prom.api("/api/v1/label/instance/values?match[]=varta_build_info", &instances); err != nil || len(instances) != 20 {
		t.Errorf("label_values(varta_build_info, instance): %q (%v), want the 20 routers", instances, err)
	}
	if err := prom.api("/api/v1/label/agent/values?match[]=varta_agent_up", &agents); err != nil || !slices.Equal(agents, []string{"jobd", "netd", "wifid"}) {
		t.Errorf("label_values(varta_agent_up, agent): %q (%v), want jobd netd wifid", agents, err)
	}
}
