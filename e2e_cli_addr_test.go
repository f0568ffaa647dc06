//go:build linux

package main

// End-to-end tests of the command line's answers (issue 12): what --prom-addr
// accepts, how a failure reads with --log-format json, and the NOTIFY_SOCKET
// message. The real binary, real sockets.

import (
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EPromAddrIPv4Mapped: [::ffff:127.0.0.1]:0 is a valid address. It is
// bound as 127.0.0.1 (see parseListenAddr), printed as such, and served to
// IPv4 clients and to IPv6 clients naming the mapped address. Before, the
// observer exited 1 at start ("is not an IPv6 address").
func TestE2EPromAddrIPv4Mapped(t *testing.T) {
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "1000", "--prom-addr", "[::ffff:127.0.0.1]:0"}})
	host, port, err := net.SplitHostPort(p.promAddr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("bound address %q, want 127.0.0.1:PORT", p.promAddr)
	}
	if body := scrape(t, p, nil); !strings.Contains(body, "varta_tracker_capacity 4096\n") {
		t.Fatalf("IPv4 scrape: %.300q", body)
	}
	// An IPv6 socket connecting to the mapped address reaches it too (IPv4
	// on the wire), unless the machine has no IPv6 at all.
	resp, err := rawHTTP(net.JoinHostPort("::ffff:127.0.0.1", port), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second)
	switch {
	case errors.Is(err, syscall.EAFNOSUPPORT):
		t.Log("no IPv6 on this machine: the mapped-address client was not tried")
	case err != nil || !strings.HasPrefix(resp, "HTTP/1.1 200") || !strings.Contains(resp, "varta_tracker_capacity"):
		t.Fatalf("scrape through [::ffff:127.0.0.1]:%s: %v %.300q", port, err, resp)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestE2EPromAddrBadIsUsageError: an address the listener cannot bind by
// its form is a bad command line (exit 2, one line naming --prom-addr, then
// the usage), not a start failure (exit 1, no usage) as it was for host
// names.
func TestE2EPromAddrBadIsUsageError(t *testing.T) {
	for _, addr := range []string{"router1:9100", "[::ffff:127.0.0.1:0", "[fe80::1%eth0]:9100", "127.0.0.1:99999", "[::ffff:1.2.3]:0"} {
		code, stdout, stderr := runObserverToExit(t, "--socket", "/nonexistent-varta/s", "--threshold-ms", "100", "--prom-addr", addr)
		first, rest, _ := strings.Cut(stderr, "\n")
		if code != 2 || stdout != "" || !strings.HasPrefix(first, "varta-watch: --prom-addr: ") ||
			!strings.Contains(rest, "Usage: varta-watch") {
			t.Errorf("--prom-addr %s: exit %d, stdout %q, stderr:\n%s", addr, code, stdout, stderr)
		}
	}
}

// jsonLogLine decodes one line of the JSON log and checks the fields every
// line has.
func jsonLogLine(t *testing.T, line string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("not a JSON log line (%v): %q", err, line)
	}
	for _, k := range []string{"time", "level", "msg"} {
		if _, ok := m[k].(string); !ok {
			t.Fatalf("JSON log line without %q: %q", k, line)
		}
	}
	return m
}

// TestE2EJSONStartFailure: with --log-format json a failure at start is one
// JSON line (level ERROR, msg "start failed", err naming the path and the
// cause), still exit 1; without it, the text line stays as it was.
func TestE2EJSONStartFailure(t *testing.T) {
	missing := filepath.Join(shortTempDir(t), "no-such-dir", "s.sock")
	code, stdout, stderr := runObserverToExit(t, "--socket", missing, "--threshold-ms", "100", "--log-format", "json")
	if code != 1 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Fatalf("exit %d, stdout %q, stderr %q: want exit 1 and one line", code, stdout, stderr)
	}
	m := jsonLogLine(t, strings.TrimSuffix(stderr, "\n"))
	if m["level"] != "ERROR" || m["msg"] != "start failed" {
		t.Errorf("level %v msg %v, want ERROR, start failed", m["level"], m["msg"])
	}
	if e, _ := m["err"].(string); !strings.Contains(e, missing) || !strings.Contains(e, "no such file or directory") {
		t.Errorf("err %q does not name %s and the cause", e, missing)
	}
	code, _, stderr = runObserverToExit(t, "--socket", missing, "--threshold-ms", "100")
	checkStartFailure(t, code, stderr, missing, "no such file or directory")
	if !strings.HasPrefix(stderr, "varta-watch: ") {
		t.Errorf("text start failure %q", stderr)
	}
}

// TestE2EJSONBadCommandLine: once --log-format json has been parsed, the
// line naming a bad flag is JSON; the usage after it stays text, and the
// exit stays 2. A mistake before --log-format json is reported as text (the
// parser stops at the first mistake).
func TestE2EJSONBadCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--log-format", "json", "--socket", "/nonexistent-varta/s", "--threshold-ms", "100", "--prom-addr", "router1:9100"}, "--prom-addr"},
		{[]string{"--log-format=json", "--socket", "/nonexistent-varta/s", "--threshold-ms", "5"}, "--threshold-ms"},
		{[]string{"--log-format", "json", "--threshold-ms", "100"}, "--socket"}, // found after the whole line
		{[]string{"--log-format", "json", "--frobnicate"}, "--frobnicate"},
	} {
		code, stdout, stderr := runObserverToExit(t, tc.args...)
		first, rest, _ := strings.Cut(stderr, "\n")
		if code != 2 || stdout != "" || !strings.Contains(rest, "Usage: varta-watch") {
			t.Errorf("%q: exit %d, stdout %q, stderr:\n%s", tc.args, code, stdout, stderr)
			continue
		}
		m := jsonLogLine(t, first)
		if e, _ := m["err"].(string); m["level"] != "ERROR" || m["msg"] != "bad command line" || !strings.Contains(e, tc.flag) {
			t.Errorf("%q: first line %q: want level ERROR, msg \"bad command line\", err naming %s", tc.args, first, tc.flag)
		}
	}
	code, _, stderr := runObserverToExit(t, "--prom-addr", "router1:9100", "--log-format", "json")
	if first, _, _ := strings.Cut(stderr, "\n"); code != 2 || !strings.HasPrefix(first, "varta-watch: --prom-addr: ") {
		t.Errorf("mistake before --log-format json: exit %d, stderr:\n%s", code, stderr)
	}
}

// TestE2ENotifySocketNamedOnce: a bad NOTIFY_SOCKET is a start failure whose
// line names the variable once ("NOTIFY_SOCKET: NOTIFY_SOCKET relative…"
// before).
func TestE2ENotifySocketNamedOnce(t *testing.T) {
	for _, env := range []string{"NOTIFY_SOCKET=relative/notify", "NOTIFY_SOCKET=@"} {
		socket := filepath.Join(shortTempDir(t), "s.sock")
		code, _, stderr := runObserverEnvToExit(t, []string{env}, "--socket", socket, "--threshold-ms", "100")
		checkStartFailure(t, code, stderr, strings.TrimPrefix(env, "NOTIFY_SOCKET="), "NOTIFY_SOCKET")
		if n := strings.Count(stderr, "NOTIFY_SOCKET"); n != 1 {
			t.Errorf("%s: stderr names NOTIFY_SOCKET %d times: %q", env, n, stderr)
		}
	}
}
