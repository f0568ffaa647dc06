package main

import (
	"strings"
	"testing"
)

// TestAppendEventGolden pins the TSV line of every event kind (contract §5).
func TestAppendEventGolden(t *testing.T) {
	for _, tc := range []struct {
		e    event
		want string
	}{
		{event{ns: 123456789, kind: evBeat, pid: 4242, hasNonce: true, nonce: 7, status: "ok", hasPayloadNum: true, payloadNum: 0},
			"123456789\tbeat\t4242\t7\tok\t0\n"},
		{event{ns: 1, kind: evBeat, pid: 4294967295, hasNonce: true, nonce: 18446744073709551615, status: "critical", hasPayloadNum: true, payloadNum: 4294967295},
			"1\tbeat\t4294967295\t18446744073709551615\tcritical\t4294967295\n"},
		{event{ns: 2, kind: evBeat, pid: 2, hasNonce: true, nonce: 0, status: "degraded", hasPayloadNum: true, payloadNum: 3735928559},
			"2\tbeat\t2\t0\tdegraded\t3735928559\n"},
		{event{ns: 9, kind: evStall, pid: 77, hasNonce: true, nonce: 12, status: "stall"},
			"9\tstall\t77\t12\tstall\t-\n"},
		{event{ns: 10, kind: evDecode, payload: "BadCrc"},
			"10\tdecode\t-\t-\t-\tBadCrc\n"},
		{event{ns: 12, kind: evMismatch, pid: 31337, payload: "auth_failure"},
			"12\tmismatch\t31337\t-\t-\tauth_failure\n"},
		{event{ns: 13, kind: evEviction, pid: 5, hasNonce: true, nonce: 99, payload: "capacity"},
			"13\teviction\t5\t99\t-\tcapacity\n"},
		{event{ns: 14, kind: evEviction, pid: 6, hasNonce: true, nonce: 1, payload: "retired"},
			"14\teviction\t6\t1\t-\tretired\n"},
		{event{ns: 15, kind: evRecovery, pid: 8, payload: "exit_3"},
			"15\trecovery\t8\t-\t-\texit_3\n"},
		{event{ns: 16, kind: evIO, payload: "write /x: no space\tleft\non\\device\r"},
			"16\tio\t-\t-\t-\twrite /x: no space\\tleft\\non\\\\device\\r\n"},
		{event{ns: 0, kind: evIO},
			"0\tio\t-\t-\t-\t-\n"},
		{event{ns: -5, kind: evStall, pid: 3, hasNonce: true, status: "sta\tll"},
			"-5\tstall\t3\t0\tsta\\tll\t-\n"},
	} {
		got := string(appendEvent([]byte("prefix|"), &tc.e))
		if got != "prefix|"+tc.want {
			t.Errorf("appendEvent(%+v)\n got %q\nwant %q", tc.e, got, "prefix|"+tc.want)
		}
		if cols := strings.Split(strings.TrimSuffix(strings.TrimPrefix(got, "prefix|"), "\n"), "\t"); len(cols) != 6 {
			t.Errorf("appendEvent(%+v): %d columns", tc.e, len(cols))
		}
	}
}

// TestAppendEventEscapingKeepsShape: whatever bytes a payload holds, the
// line has six columns, one newline, and unescapes to the original.
func TestAppendEventEscapingKeepsShape(t *testing.T) {
	var all []byte
	for c := 0; c < 256; c++ {
		all = append(all, byte(c))
	}
	payload := string(all) + "\\t\\n"
	line := string(appendEvent(nil, &event{kind: evIO, payload: payload}))
	if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") || strings.Count(line, "\t") != 5 {
		t.Fatalf("line shape broken: %q", line)
	}
	if strings.ContainsRune(line, '\r') {
		t.Fatalf("raw carriage return in %q", line)
	}
	field := strings.Split(strings.TrimSuffix(line, "\n"), "\t")[5]
	r := strings.NewReplacer(`\\`, `\`, `\t`, "\t", `\n`, "\n", `\r`, "\r")
	if got := r.Replace(field); got != payload {
		t.Fatalf("unescaped payload differs:\n got %q\nwant %q", got, payload)
	}
}

func TestEventKindNames(t *testing.T) {
	want := map[eventKind]string{evBeat: "beat", evStall: "stall", evDecode: "decode", evMismatch: "mismatch",
		evEviction: "eviction", evRecovery: "recovery", evIO: "io", evMissing: "missing"}
	if len(want) != len(eventKindNames) {
		t.Fatalf("%d kinds named, want %d", len(eventKindNames), len(want))
	}
	for k, name := range want {
		if k.String() != name {
			t.Errorf("kind %d = %q, want %q", k, k.String(), name)
		}
	}
}
