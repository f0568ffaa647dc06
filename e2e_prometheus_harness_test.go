package main

// A real Prometheus server for the end-to-end tests that need one (Debian's
// package): loopback only, its own data directory, scraping and evaluating
// every second, queried through its HTTP API.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// promProc is a running Prometheus server.
type promProc struct {
	t    testing.TB
	dir  string
	addr string // host:port of its web API
	logs *lockedBuffer
}

// promSample is one element of an instant vector.
type promSample struct {
	labels map[string]string
	value  string
}

// promAlert is one alert of /api/v1/alerts.
type promAlert struct {
	labels      map[string]string
	annotations map[string]string
	state       string // pending or firing
}

// startPrometheus runs Prometheus with scrape and evaluation every second,
// the given scrape_configs (YAML, indented as list items under
// scrape_configs:) and rule files, and returns once it is ready. It is
// skipped with a message where Prometheus is not installed, and stopped at
// the end of the test.
func startPrometheus(t testing.TB, scrapeConfigs string, ruleFiles ...string) *promProc {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		skipBecause(t, "prometheus not installed (Debian package prometheus; .ci/run installs it): %s not run", t.Name())
	}
	p := &promProc{t: t, dir: t.TempDir(), logs: &lockedBuffer{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = l.Addr().String()
	l.Close()
	var cfg strings.Builder
	cfg.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n")
	if len(ruleFiles) > 0 {
		cfg.WriteString("rule_files:\n")
		for _, f := range ruleFiles {
			abs, err := filepath.Abs(f)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&cfg, "  - %q\n", abs)
		}
	}
	cfg.WriteString("scrape_configs:\n" + scrapeConfigs)
	cfgPath := filepath.Join(p.dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(p.dir, "data"),
		"--web.listen-address="+p.addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus log (last lines):\n%s", p.tail(20))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := testHTTP.Get("http://" + p.addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-done:
			t.Fatalf("prometheus exited at start:\n%s", p.tail(20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 60 s:\n%s", p.tail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tail returns the last n lines of the server's log.
func (p *promProc) tail(n int) string {
	sc := bufio.NewScanner(strings.NewReader(p.logs.String()))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// api GETs an API path and decodes its data field into v.
func (p *promProc) api(path string, v any) error {
	resp, err := testHTTP.Get("http://" + p.addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Error  string
		Data   json.RawMessage
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: status %q: %s", path, r.Status, r.Error)
	}
	return json.Unmarshal(r.Data, v)
}

// query runs an instant query; an expression that is not a vector is an
// error.
func (p *promProc) query(q string) ([]promSample, error) {
	var d struct {
		ResultType string
		Result     []struct {
			Metric map[string]string
			Value  [2]any
		}
	}
	if err := p.api("/api/v1/query?query="+url.QueryEscape(q), &d); err != nil {
		return nil, err
	}
	if d.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %q, want vector", q, d.ResultType)
	}
	out := make([]promSample, 0, len(d.Result))
	for _, r := range d.Result {
		s, _ := r.Value[1].(string)
		out = append(out, promSample{labels: r.Metric, value: s})
	}
	return out, nil
}

// alerts returns the pending and firing alerts.
func (p *promProc) alerts() ([]promAlert, error) {
	var d struct {
		Alerts []struct {
			Labels      map[string]string
			Annotations map[string]string
			State       string
		}
	}
	if err := p.api("/api/v1/alerts", &d); err != nil {
		return nil, err
	}
	out := make([]promAlert, 0, len(d.Alerts))
	for _, a := range d.Alerts {
		out = append(out, promAlert{labels: a.Labels, annotations: a.Annotations, state: a.State})
	}
	return out, nil
}

// firing returns "alertname instance agent" for every firing alert, sorted.
func firing(alerts []promAlert) []string {
	var out []string
	for _, a := range alerts {
		if a.state == "firing" {
			out = append(out, a.labels["alertname"]+" "+a.labels["instance"]+" "+a.labels["agent"])
		}
	}
	sort.Strings(out)
	return out
}

// waitFor polls cond every 500 ms until it holds or timeout passes; then
// the test fails with what cond last said.
func (p *promProc) waitFor(timeout time.Duration, what string, cond func() (bool, string)) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("after %v, still not %s: %s", timeout, what, why)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
