package main

// End-to-end tests of the command line (contract §2): flags, usage, exit
// codes, and the one-line message of a failed start.

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Contract §2: a bad flag or value is one line naming the flag, then the
// usage, on stderr, exit 2; -h and --help print the usage on stdout,
// --version one line, exit 0; --flag value and --flag=value both work.
func TestE2ECommandLine(t *testing.T) {
	binaries(t)
	usage := regexp.MustCompile(`(?m)^Usage: varta-watch --socket PATH --threshold-ms MS`)
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--threshold-ms", "100"}, "--socket"},
		{[]string{"--socket", "/nonexistent-varta/s"}, "--threshold-ms"},
		{[]string{"--socket", "/nonexistent-varta/s", "--threshold-ms", "5"}, "--threshold-ms"},
		{[]string{"--socket", "/nonexistent-varta/s", "--threshold-ms", "100", "--socket-mode", "999"}, "--socket-mode"},
		{[]string{"--socket", "/nonexistent-varta/s", "--threshold-ms", "100", "--frobnicate"}, "--frobnicate"},
		{[]string{"--socket", "/nonexistent-varta/s", "--threshold-ms", "100", "--tracker-capacity=0"}, "--tracker-capacity"},
	} {
		code, stdout, stderr := runObserverToExit(t, tc.args...)
		first, _, _ := strings.Cut(stderr, "\n")
		if code != 2 || stdout != "" || !strings.Contains(first, tc.flag) || !usage.MatchString(stderr) {
			t.Errorf("%q: exit %d, stdout %q, stderr:\n%s", tc.args, code, stdout, stderr)
		}
	}
	for _, h := range []string{"--help", "-h"} {
		code, stdout, stderr := runObserverToExit(t, h)
		if code != 0 || !usage.MatchString(stdout) || stderr != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", h, code, stdout, stderr)
		}
	}
	code, stdout, stderr := runObserverToExit(t, "--version")
	re := regexp.MustCompile(`^varta-watch \S+ \(\S+, go[0-9][^,]*, [a-z0-9]+/[a-z0-9]+\)\n$`)
	if code != 0 || !re.MatchString(stdout) || stderr != "" {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Both spellings of a value start a working observer.
	for _, args := range [][]string{{"--threshold-ms=100", "--socket-mode=0o600"}, {"--threshold-ms", "100", "--socket-mode", "0600"}} {
		p := startObserver(t, observerOpts{args: args})
		a := runAgent(t, p.socket, "--count", "1")
		p.waitKind("beat", a.pid, 1)
		if code := p.stop(); code != 0 {
			t.Errorf("%q: exit %d", args, code)
		}
	}
}

// Contract §2: a failure at start (no directory for the event file, a
// symlink at it, the metrics address in use) is one line naming the path or
// address, exit 1.
func TestE2EStartFailuresNameThePath(t *testing.T) {
	binaries(t)
	dir := shortTempDir(t)
	target := filepath.Join(dir, "target")
	os.WriteFile(target, nil, 0o600)
	link := filepath.Join(dir, "link.tsv")
	os.Symlink(target, link)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for name, c := range map[string]struct{ args []string }{
		filepath.Join(dir, "no", "such", "events.tsv"): {[]string{"--export-file", filepath.Join(dir, "no", "such", "events.tsv")}},
		link:                 {[]string{"--export-file", link}},
		busy.Addr().String(): {[]string{"--prom-addr", busy.Addr().String()}},
	} {
		args := append([]string{"--socket", filepath.Join(dir, "s.sock"), "--threshold-ms", "100"}, c.args...)
		code, stdout, stderr := runObserverToExit(t, args...)
		out := stdout + stderr
		if code != 1 {
			t.Errorf("%v: exit %d\n%s", c.args, code, out)
			continue
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], name) {
			t.Errorf("%v: want one line naming %s, got:\n%s", c.args, name, out)
		}
	}
	if data, _ := os.ReadFile(target); len(data) != 0 {
		t.Error("the symlink was followed")
	}
}

// checkStartFailure: exit 1 and exactly one stderr line naming path and
// containing want.
func checkStartFailure(t *testing.T, code int, stderr, path, want string) {
	t.Helper()
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", code, stderr)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") ||
		!strings.Contains(stderr, path) || !strings.Contains(stderr, want) {
		t.Fatalf("stderr %q: want one line naming %s and saying %q", stderr, path, want)
	}
	if strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
		t.Fatalf("stack trace: %s", stderr)
	}
}
