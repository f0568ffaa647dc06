package main

// The Grafana dashboard (contrib/grafana/varta-watch.json). Grafana is not
// packaged for Debian, so what can be checked for real is: the file is a
// dashboard Grafana imports (schemaVersion, uid, templating with the
// instance and agent variables, panels that do not overlap), and, in
// TestFleet, every panel's query with the variables substituted runs
// against a real Prometheus and returns data.

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

type grafanaTarget struct {
	RefID string `json:"refId"`
	Expr  string `json:"expr"`
}

type grafanaPanel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []grafanaTarget `json:"targets"`
}

type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

const grafanaDashboardPath = "contrib/grafana/varta-watch.json"

func readDashboard(t testing.TB) grafanaDashboard {
	t.Helper()
	data, err := os.ReadFile(grafanaDashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", grafanaDashboardPath, err)
	}
	return d
}

// dashboardQueries returns every panel query of the dashboard, by panel
// title and refId, with the template variables replaced: $instance and
// $agent by the regular expressions given, $__rate_interval by rate.
func dashboardQueries(t testing.TB, instance, agent, rate string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			q := strings.NewReplacer("$__rate_interval", rate, "$instance", instance, "$agent", agent).Replace(tg.Expr)
			out[p.Title+" "+tg.RefID] = q
		}
	}
	return out
}

// TestGrafanaDashboardShape: the dashboard is one JSON object with the
// fields Grafana needs to import it, the instance and agent variables
// (and a data source variable every panel uses), panels that do not
// overlap on the 24-column grid, and a query in every panel.
func TestGrafanaDashboardShape(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || len(d.UID) > 40 || d.Title == "" {
		t.Errorf("uid %q, title %q: both needed, uid at most 40 characters", d.UID, d.Title)
	}
	if d.SchemaVersion < 30 {
		t.Errorf("schemaVersion %d: a current Grafana writes 30 or more", d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" {
			q, _ := json.Marshal(v.Query)
			if !strings.Contains(string(q), "label_values(") {
				t.Errorf("variable %s: query %s is not a label_values() query", v.Name, q)
			}
		}
	}
	for name, typ := range map[string]string{"datasource": "datasource", "instance": "query", "agent": "query"} {
		if vars[name] != typ {
			t.Errorf("variable %s has type %q, want %q", name, vars[name], typ)
		}
	}
	type cell struct{ x, y int }
	used := map[cell]string{}
	queries := 0
	for _, p := range d.Panels {
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v is off the 24-column grid", p.Title, p.GridPos)
		}
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if other, ok := used[cell{x, y}]; ok {
					t.Fatalf("panels %q and %q overlap at %d,%d", other, p.Title, x, y)
				}
				used[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: data source %q, want the ${datasource} variable", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" {
				t.Errorf("panel %q: a target without expr or refId", p.Title)
			}
			queries++
		}
	}
	if queries < 15 {
		t.Errorf("%d queries: the dashboard lost panels", queries)
	}
}
