package main

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestPrometheusContrib checks the shipped alert rules and example
// configuration with promtool: the rules parse, their unit tests
// (alerts_test.yml) pass, and the example prometheus.yml is valid.
func TestPrometheusContrib(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus): contrib/prometheus not checked")
	}
	dir := filepath.Join("contrib", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		{"check", "config", "prometheus.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
