package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/")

func quietLogger(t testing.TB) *logger {
	t.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	l := newLogger(false, f)
	return l
}

// newRenderServer returns a promServer over an observer with a tracker but
// no sockets: enough to render.
func newRenderServer(t testing.TB, capacity int) *promServer {
	return &promServer{
		env:  partEnv{log: quietLogger(t), stats: &observerStats{}},
		view: metricsView{tr: newTracker(capacity), startWallNs: 1700000000_123_000_000},
	}
}

// addAgent tracks pid as the observer would after its first beat.
func addAgent(p *promServer, pid uint32, beats uint64, status Status, lastBeat int64, comm string) int32 {
	tr := p.view.tr
	s := tr.insert(pid, lastBeat)
	sl := &tr.slots[s]
	sl.beats, sl.status, sl.nonce = beats, status, beats
	sl.commLen = uint8(copy(sl.comm[:], comm))
	if status == StatusStall {
		sl.stalls = 1
		tr.moveTo(s, slotStalled)
	}
	return s
}

// renderAll renders one whole scrape, slice by slice.
func renderAll(p *promServer, now, wallOff int64) string {
	var c renderCursor
	p.startRender(&c, now)
	c.wallOff = wallOff
	var out []byte
	buf := make([]byte, 0, 2*promOutChunk)
	for !c.done() {
		buf = p.renderStep(buf[:0], &c, now)
		out = append(out, buf...)
	}
	return string(out)
}

const testBuildInfo = `varta_build_info{version="test",revision="abc",goversion="go1",goos="linux",goarch="amd64"} 1` + "\n"

func TestExpositionGolden(t *testing.T) {
	p := newRenderServer(t, 8)
	st := p.env.stats
	st.framesReceived, st.beatsAccepted = 1000, 990
	st.decodeErrors[ErrBadCrc], st.decodeErrors[ErrBadNonce] = 3, 1
	st.truncated, st.authFailures, st.outOfOrder = 2, 4, 5
	st.capacityExceeded, st.evictedCapacity, st.evictedRetired = 6, 7, 8
	st.ioErrors, st.exportWriteErrors, st.exportDropped = 9, 10, 11
	st.recovery[recSpawned], st.recovery[recExitNonzero] = 12, 13
	st.stallDelay.observe(300_000)      // 0.3 ms
	st.stallDelay.observe(1_500_000)    // 1.5 ms
	st.stallDelay.observe(2_000_000_00) // 0.2 s
	p.stats.responses[code200], p.stats.responses[code401] = 14, 15
	p.stats.dropped[dropTimeout] = 16
	const mono0 = 5_000_000_000
	wallOff := int64(1_700_000_100_000_000_000) - mono0 // mono0 is Unix 1700000100
	addAgent(p, 4242, 17, StatusOK, mono0, "agent")
	addAgent(p, 4243, 18, StatusDegraded, mono0+1_500_000, "db worker")
	addAgent(p, 4244, 19, StatusStall, mono0-250_000_000, "hung")
	addAgent(p, 4245, 20, StatusCritical, mono0+999_000_000, "we\"ird\\na\nme\xff")
	got := renderAll(p, mono0+1_000_000_000, wallOff)
	got = strings.Replace(got, buildInfoLine, testBuildInfo, 1)

	golden := filepath.Join("testdata", "metrics.golden")
	if *updateGolden {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestExpositionGolden -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("exposition differs from %s (-update to accept):\n%s", golden, lineDiff(string(want), got))
	}
	promtoolCheck(t, got)
}

// lineDiff lists the lines that differ, for a readable failure.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("- " + wl + "\n+ " + gl + "\n")
		}
	}
	return b.String()
}

// promtoolCheck runs promtool check metrics on an exposition body.
func promtoolCheck(t *testing.T, body string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus): exposition not checked by it")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\nbody:\n%s", err, out, body)
	}
}

func TestExpositionHasEveryContractFamily(t *testing.T) {
	p := newRenderServer(t, 4)
	if err := p.self.init(); err != nil {
		t.Fatal(err)
	}
	body := renderAll(p, monoNow(), wallAt(0, monoNow()))
	families := []string{
		"varta_beats_total counter", "varta_stalls_total counter", "varta_status gauge",
		"varta_last_beat_timestamp_seconds gauge", "varta_agent_info gauge",
		"varta_decode_errors_total counter", "varta_truncated_datagrams_total counter",
		"varta_frame_auth_failures_total counter", "varta_beats_out_of_order_total counter",
		"varta_tracker_capacity gauge", "varta_tracker_pids gauge", "varta_tracker_evicted_total counter",
		"varta_tracker_capacity_exceeded_total counter", "varta_io_errors_total counter",
		"varta_recovery_total counter", "varta_export_write_errors_total counter",
		"varta_stall_detection_delay_seconds histogram", "varta_build_info gauge", "varta_start_time_seconds gauge",
	}
	if isLinux {
		families = append(families, "process_cpu_seconds_total counter", "process_resident_memory_bytes gauge",
			"process_virtual_memory_bytes gauge", "process_open_fds gauge", "process_max_fds gauge",
			"process_start_time_seconds gauge")
	}
	for _, f := range families {
		name := strings.Fields(f)[0]
		if !strings.Contains(body, "# TYPE "+f+"\n") || !strings.Contains(body, "# HELP "+name+" ") {
			t.Errorf("no HELP/TYPE %s", f)
		}
	}
	for k := DecodeError(1); k < decodeErrorCount; k++ {
		if !strings.Contains(body, `varta_decode_errors_total{kind="`+k.Kind()+`"} 0`+"\n") {
			t.Errorf("decode error kind %s not at 0", k.Kind())
		}
	}
	for _, o := range recoveryOutcomeNames {
		if !strings.Contains(body, `varta_recovery_total{outcome="`+o+`"} 0`+"\n") {
			t.Errorf("recovery outcome %s not at 0", o)
		}
	}
	for _, r := range []string{"capacity", "retired"} {
		if !strings.Contains(body, `varta_tracker_evicted_total{reason="`+r+`"} 0`+"\n") {
			t.Errorf("eviction reason %s not at 0", r)
		}
	}
	promtoolCheck(t, body)
}

// TestProcessMetricsMeaning checks the process_* values against what the
// kernel says by other routes.
func TestProcessMetricsMeaning(t *testing.T) {
	if !isLinux {
		t.Skip("process_* metrics are Linux only")
	}
	p := newRenderServer(t, 1)
	if err := p.self.init(); err != nil {
		t.Fatal(err)
	}
	body := string(p.self.appendMetrics(nil))
	val := func(name string) float64 {
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, name+" "); ok {
				var f float64
				if _, err := fmtSscan(v, &f); err != nil {
					t.Fatalf("%s: %q", name, v)
				}
				return f
			}
		}
		t.Fatalf("no %s in\n%s", name, body)
		return 0
	}
	ents, _ := os.ReadDir("/proc/self/fd")
	if got := val("process_open_fds"); got < float64(len(ents))-2 || got > float64(len(ents))+2 {
		t.Errorf("process_open_fds %v, /proc/self/fd has %d", got, len(ents))
	}
	var rl unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	if got := val("process_max_fds"); got != float64(rl.Cur) {
		t.Errorf("process_max_fds %v, rlimit %d", got, rl.Cur)
	}
	start := val("process_start_time_seconds")
	if d := float64(time.Now().Unix()) - start; d < -2 || d > 3600 {
		t.Errorf("process_start_time_seconds %v is %v s from now", start, d)
	}
	// The same fields read independently: the values must be proc(5)'s
	// utime+stime over USER_HZ, rss × page size and vsize, as client_golang
	// reports them. (Under qemu-user /proc/self/stat is emulated and some
	// fields are 0; the comparison still holds.)
	raw, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	field := func(n int) float64 { // n as numbered in proc(5)
		var f float64
		fmtSscan(fields[n-3], &f)
		return f
	}
	near := func(name string, got, want, tol float64) {
		if got < want-tol || got > want+tol {
			t.Errorf("%s = %v, /proc/self/stat says %v", name, got, want)
		}
	}
	near("process_resident_memory_bytes", val("process_resident_memory_bytes"), field(24)*float64(os.Getpagesize()), field(24)*float64(os.Getpagesize())/4)
	near("process_virtual_memory_bytes", val("process_virtual_memory_bytes"), field(23), field(23)/4)
	near("process_cpu_seconds_total", val("process_cpu_seconds_total"), (field(14)+field(15))/100, 0.5)
}

// A pid that leaves the tracker and comes back into a later slot while a
// scrape is under way must not appear twice in one family.
func TestScrapeNeverDuplicatesAPid(t *testing.T) {
	p := newRenderServer(t, 4096)
	now := int64(1_000_000_000)
	slots := make([]int32, 4096)
	for i := range slots {
		slots[i] = addAgent(p, uint32(1000+i), 1, StatusOK, now, "a")
	}
	var c renderCursor
	p.startRender(&c, now)
	out := p.renderStep(nil, &c, now) // observer families and the first agents
	out = append(out, p.renderStep(nil, &c, now)...)
	if c.stage != stageBeats || c.slot < 10 || c.slot > 4000 {
		t.Fatalf("cursor at stage %d slot %d: the test needs a scrape paused inside varta_beats_total", c.stage, c.slot)
	}
	tr := p.view.tr
	early, late := slots[1], slots[4090]
	pid := tr.slots[early].pid
	tr.remove(early)
	tr.remove(late)
	if s := tr.insert(pid, now); s != late {
		t.Fatalf("pid came back in slot %d, want %d", s, late)
	}
	for !c.done() {
		out = append(out, p.renderStep(nil, &c, now)...)
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		series := l[:strings.LastIndexByte(l, ' ')]
		if seen[series] {
			t.Fatalf("series %s twice in one scrape", series)
		}
		seen[series] = true
	}
}

func TestLabelValueEscaping(t *testing.T) {
	cases := map[string]string{
		`plain`:       `plain`,
		`a"b`:         `a\"b`,
		`a\b`:         `a\\b`,
		"a\nb":        `a\nb`,
		"tab\there":   "tab\there",
		"caf\xc3\xa9": "caf\xc3\xa9",
		"bad\xffx":    "bad\uFFFDx",
		"cut\xe2\x82": "cut\uFFFD\uFFFD",
	}
	for in, want := range cases {
		if got := string(appendLabelValue(nil, in)); got != want {
			t.Errorf("appendLabelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAppendDecimal(t *testing.T) {
	cases := []struct {
		v     int64
		scale int
		want  string
	}{
		{0, 9, "0"}, {1, 9, "0.000000001"}, {1_500_000_000, 9, "1.5"}, {1700000100123, 3, "1700000100.123"},
		{1700000100100, 3, "1700000100.1"}, {12345, 2, "123.45"}, {-5, 1, "-0.5"}, {7, 0, "7"},
	}
	for _, c := range cases {
		if got := string(appendDecimal(nil, c.v, c.scale)); got != c.want {
			t.Errorf("appendDecimal(%d, %d) = %q, want %q", c.v, c.scale, got, c.want)
		}
	}
}

// TestStallDelayBuckets: a delay equal to a bucket's bound counts in that
// bucket (le is "less or equal"), one nanosecond more in the next, and the
// le labels are the bounds in seconds as Prometheus writes floats.
func TestStallDelayBuckets(t *testing.T) {
	for i, ub := range stallDelayBucketsNs {
		var h histogram
		h.observe(ub)
		h.observe(ub + 1)
		if h.counts[i] != 1 || i+1 < len(h.counts) && h.counts[i+1] != 1 {
			t.Errorf("bound %d ns: counts %v, want one in bucket %d and one in the next", ub, h.counts, i)
		}
		if want := strconv.FormatFloat(float64(ub)/1e9, 'g', -1, 64); stallDelayLe[i] != want {
			t.Errorf("le %q, want %q", stallDelayLe[i], want)
		}
	}
	if stallDelayLe[len(stallDelayBucketsNs)] != "+Inf" {
		t.Errorf("last le %q, want +Inf", stallDelayLe[len(stallDelayBucketsNs)])
	}
	var h histogram
	h.observe(-5) // a clock step back: counted as no delay
	if h.counts[0] != 1 || h.sumNs != 0 || h.count != 1 {
		t.Errorf("negative delay: %+v", h)
	}
}

func TestHeadEnd(t *testing.T) {
	for in, want := range map[string]int{
		"GET / HTTP/1.1\r\n\r\n":               18,
		"GET / HTTP/1.1\r\nHost: x\r\n\r\nxyz": 27,
		"GET / HTTP/1.1\n\n":                   16,
		"GET / HTTP/1.1\r\nHost: x\r\n":        -1,
		"":                                     -1,
	} {
		if got := headEnd([]byte(in)); got != want {
			t.Errorf("headEnd(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestParseRequestLine covers the request line: origin-form, and the
// absolute-form of RFC 9112 §3.2.2 (only http://, any case; the path is
// what follows the authority, "/" when none; the query is dropped).
func TestParseRequestLine(t *testing.T) {
	const bad = "!bad"
	for line, want := range map[string]string{
		"GET /metrics HTTP/1.1\r\nHost: x\r\n":               "GET /metrics",
		"GET /metrics?x=1&y=2 HTTP/1.1\r\n":                  "GET /metrics",
		"HEAD / HTTP/1.0\n":                                  "HEAD /",
		"GET /metrics HTTP/1.1":                              "GET /metrics",
		"GET http://host/metrics HTTP/1.1\r\nHost: host\r\n": "GET /metrics",
		"GET http://127.0.0.1:9100/metrics HTTP/1.1\r\n":     "GET /metrics",
		"GET http://[::1]:9100/metrics?a=b HTTP/1.1\r\n":     "GET /metrics",
		"GET HTTP://HOST/metrics HTTP/1.1\r\n":               "GET /metrics",
		"GET HtTp://host/metrics HTTP/1.1\r\n":               "GET /metrics",
		"GET http://host HTTP/1.1\r\n":                       "GET /",
		"GET http://host?q HTTP/1.1\r\n":                     "GET /",
		"GET http://host/ HTTP/1.1\r\n":                      "GET /",
		"GET http://user@host/metrics/x HTTP/1.1\r\n":        "GET /metrics/x",
		"POST http://host/metrics HTTP/1.1\r\n":              "POST /metrics",
		"GET https://host/metrics HTTP/1.1\r\n":              bad,
		"GET HTTPS://host/metrics HTTP/1.1\r\n":              bad,
		"GET ftp://host/metrics HTTP/1.1\r\n":                bad,
		"GET unix:/metrics HTTP/1.1\r\n":                     bad,
		"GET http:///metrics HTTP/1.1\r\n":                   bad,
		"GET http:// HTTP/1.1\r\n":                           bad,
		"GET http:/metrics HTTP/1.1\r\n":                     bad,
		"GET metrics HTTP/1.1\r\n":                           "GET metrics", // no URI: 404 as before
		"GET * HTTP/1.1\r\n":                                 "GET *",
		"GET /metrics HTTP/2.0\r\n":                          bad,
		"GET /metrics\r\n":                                   bad,
		"GET  HTTP/1.1\r\n":                                  bad,
		" /metrics HTTP/1.1\r\n":                             bad,
		"":                                                   bad,
	} {
		method, path, ok := parseRequestLine([]byte(line))
		got := string(method) + " " + string(path)
		if !ok {
			got = bad
		}
		if got != want {
			t.Errorf("parseRequestLine(%q) = %q, want %q", line, got, want)
		}
	}
}

// TestAbsoluteFormServed sends absolute-form requests over a real loopback
// connection: http:// is served like the path it names, another scheme
// gets 400.
func TestAbsoluteFormServed(t *testing.T) {
	o := newLoopObserver(t, 2, 1000)
	for req, want := range map[string]string{
		"GET http://127.0.0.1/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n": "HTTP/1.1 200 OK\r\nContent-Type: " + promContentType,
		"GET HTTP://x/metrics?y HTTP/1.1\r\n\r\n":                          "HTTP/1.1 200 OK\r\nContent-Type: " + promContentType,
		"GET http://x HTTP/1.1\r\n\r\n":                                    "HTTP/1.1 200 OK\r\nContent-Type: text/html",
		"GET http://x/nope HTTP/1.1\r\n\r\n":                               "HTTP/1.1 404 Not Found\r\n",
		"GET https://x/metrics HTTP/1.1\r\n\r\n":                           "HTTP/1.1 400 Bad Request\r\n",
	} {
		resp := fuzzExchange(t, o, []byte(req))
		if !bytes.HasPrefix(resp, []byte(want)) {
			t.Errorf("%q: response %q, want it to start %q", req, trim(resp), want)
		}
		if strings.HasPrefix(want, "HTTP/1.1 200 OK\r\nContent-Type: "+promContentType) &&
			!bytes.Contains(resp, []byte("\nvarta_build_info{")) {
			t.Errorf("%q: no metrics in %q", req, trim(resp))
		}
	}
}

func TestAuthorizationHeader(t *testing.T) {
	p := &promServer{token: []byte("s3cret")}
	for head, want := range map[string]bool{
		"GET /metrics HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n":   true,
		"GET /metrics HTTP/1.1\r\nauthorization:bearer   s3cret \r\n": true,
		"GET /metrics HTTP/1.1\r\nAUTHORIZATION: BEARER s3cret\r\n":   true,
		"GET /metrics HTTP/1.1\r\nAuthorization: Bearer s3cre\r\n":    false,
		"GET /metrics HTTP/1.1\r\nAuthorization: Bearer s3cretX\r\n":  false,
		"GET /metrics HTTP/1.1\r\nAuthorization: Basic s3cret\r\n":    false,
		"GET /metrics HTTP/1.1\r\nX-Authorization: Bearer s3cret\r\n": false,
		"GET /metrics HTTP/1.1\r\n":                                   false,
	} {
		if got := p.authorized([]byte(head)); got != want {
			t.Errorf("authorized(%q) = %v, want %v", head, got, want)
		}
	}
}

func TestRateLimiterTokenBucket(t *testing.T) {
	var r rateLimiter
	r.init(2, 3) // 2 a second, bursts of 3
	var a, b unix.RawSockaddrAny
	(*unix.RawSockaddrInet4)(unsafePtr(&a)).Family = unix.AF_INET
	(*unix.RawSockaddrInet4)(unsafePtr(&a)).Addr = [4]byte{10, 0, 0, 1}
	(*unix.RawSockaddrInet6)(unsafePtr(&b)).Family = unix.AF_INET6
	(*unix.RawSockaddrInet6)(unsafePtr(&b)).Addr = [16]byte{15: 1}
	now := int64(1e9)
	for i := 0; i < 3; i++ {
		if !r.allow(&a, now) {
			t.Fatalf("burst: connection %d refused", i)
		}
	}
	if r.allow(&a, now) {
		t.Fatal("4th connection of a burst of 3 allowed")
	}
	if !r.allow(&b, now) {
		t.Fatal("another IP shares the bucket")
	}
	if !r.allow(&a, now+500_000_000) || r.allow(&a, now+500_000_000) {
		t.Fatal("after 0.5 s at 2/s exactly one token should have come back")
	}
	// The table stays bounded: thousands of addresses reuse its entries.
	for i := 0; i < 10*promRateTableSize; i++ {
		(*unix.RawSockaddrInet6)(unsafePtr(&b)).Addr[14] = byte(i >> 8)
		(*unix.RawSockaddrInet6)(unsafePtr(&b)).Addr[15] = byte(i)
		r.allow(&b, now)
	}
	if len(r.table) != promRateTableSize {
		t.Fatalf("table grew to %d", len(r.table))
	}
	var off rateLimiter
	off.init(0, 10)
	for i := 0; i < 100; i++ {
		if !off.allow(&a, now) {
			t.Fatal("rate 0 must disable the limit")
		}
	}
}

func TestTokenFileChecks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	good := write("good", "  tok-123\n", 0o600)
	if tok, err := readTokenFile(good); err != nil || string(tok) != "tok-123" {
		t.Fatalf("good token file: %q %v", tok, err)
	}
	for name, tc := range map[string]struct {
		mode os.FileMode
		why  string // "" accepted
	}{
		"group-readable": {0o640, "read it"}, "world-readable": {0o604, "read it"},
		"group-writable": {0o620, "change it"}, "world-writable": {0o602, "change it"},
		"readable and writable": {0o666, "read it"},
		"group-executable":      {0o610, ""}, "world-executable": {0o601, ""}, "owner read only": {0o400, ""},
	} {
		p := write(name, "tok", tc.mode)
		tok, err := readTokenFile(p)
		switch {
		case tc.why == "" && (err != nil || string(tok) != "tok"):
			t.Errorf("%s token file (%04o): %q, %v; want it accepted", name, tc.mode, tok, err)
		case tc.why != "" && (err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), "chmod 600")):
			t.Errorf("%s token file (%04o): %v; want it refused: lets group or others %s", name, tc.mode, err, tc.why)
		}
	}
	if _, err := readTokenFile(write("empty", " \n", 0o600)); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty token file: %v", err)
	}
	if _, err := readTokenFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing token file: %v", err)
	}
	if _, err := readTokenFile(write("two", "a b", 0o600)); err == nil {
		t.Error("a token with inner whitespace was accepted")
	}
	long := strings.Repeat("x", promTokenMaxBytes+1)
	if _, err := readTokenFile(write("long", long, 0o600)); err == nil || !strings.Contains(err.Error(), "longer") {
		t.Errorf("a token of %d bytes: %v", len(long), err)
	}
	if tok, err := readTokenFile(write("max", long[1:], 0o600)); err != nil || len(tok) != promTokenMaxBytes {
		t.Errorf("a token of %d bytes: %d bytes, %v", promTokenMaxBytes, len(tok), err)
	}
	// A FIFO at the path is refused at once: opening it must not wait
	// for a writer.
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := readTokenFile(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("FIFO token file: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO token file hangs")
	}
}

var _ = bytes.Equal

// TestSlowRequestIsDropped: a request head that has not arrived within
// promReadTimeout is dropped, the client sees the connection closed
// without a response, and the drop is counted.
func TestSlowRequestIsDropped(t *testing.T) {
	o := newLoopObserver(t, 4, 10_000)
	p := o.prom
	c := newScrapeClient(t, o, "")
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &c.sa); err != nil {
		t.Fatal(err)
	}
	unix.Write(fd, []byte("GET /metr"))
	now := monoNow()
	for i := 0; i < 100 && p.nconns == 0; i++ {
		p.handle(pollEvent{fd: p.lfd, readable: true}, now)
		time.Sleep(time.Millisecond)
	}
	if p.nconns != 1 {
		t.Fatalf("%d connections", p.nconns)
	}
	if d := p.nextDeadline(); d != now+promReadTimeout {
		t.Fatalf("deadline %d ns away, want %d", d-now, int64(promReadTimeout))
	}
	for _, pc := range p.conns {
		if pc.state != connFree {
			p.handle(pollEvent{fd: pc.fd, readable: true}, now)
		}
	}
	p.fire(now + promReadTimeout - 1)
	if p.nconns != 1 {
		t.Fatal("dropped before its deadline")
	}
	p.fire(now + promReadTimeout)
	if p.nconns != 0 || p.stats.dropped[dropTimeout] != 1 {
		t.Fatalf("after the deadline: %d connections, %d timeouts", p.nconns, p.stats.dropped[dropTimeout])
	}
	var buf [64]byte
	n, err := unix.Read(fd, buf[:])
	if n > 0 {
		t.Fatalf("client got %q", buf[:n])
	}
	_ = err // EOF (0, nil) or ECONNRESET: closed either way
}
