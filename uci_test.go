package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

type wantOpt struct {
	key, value string
	list       bool
	line       int
}

type wantSection struct {
	typ, name string
	line      int
	opts      []wantOpt
}

func sectionsOf(ss []confSection) []wantSection {
	var out []wantSection
	for _, s := range ss {
		w := wantSection{typ: s.typ, name: s.name, line: s.line}
		for _, o := range s.options {
			w.opts = append(w.opts, wantOpt{o.key, o.value, o.isList, o.line})
		}
		out = append(out, w)
	}
	return out
}

func TestParseUCISyntax(t *testing.T) {
	for _, tc := range []struct {
		name string
		text string
		want []wantSection
	}{
		{"empty", "", nil},
		{"comments only", "# a\n\n   # b\n\t\n", nil},
		{"the contract example",
			"config varta-watch 'main'\n\toption threshold_ms '2000'\n\toption prom_addr '192.168.1.1:9101'\n\nconfig agent 'dnsmasq'\n\toption comm 'dnsmasq'\n",
			[]wantSection{
				{"varta-watch", "main", 1, []wantOpt{{"threshold_ms", "2000", false, 2}, {"prom_addr", "192.168.1.1:9101", false, 3}}},
				{"agent", "dnsmasq", 5, []wantOpt{{"comm", "dnsmasq", false, 6}}},
			}},
		{"bare and double quotes", "config agent x\n option comm dnsmasq\n option exe \"/usr/sbin/dnsmasq\"\n",
			[]wantSection{{"agent", "x", 1, []wantOpt{{"comm", "dnsmasq", false, 2}, {"exe", "/usr/sbin/dnsmasq", false, 3}}}}},
		{"concatenated pieces", `config a n` + "\n" + `option k 'a'"b"c'd e'`,
			[]wantSection{{"a", "n", 1, []wantOpt{{"k", "abcd e", false, 2}}}}},
		{"uci export's quote escape", `config a n` + "\n" + `option k 'it'\''s'`,
			[]wantSection{{"a", "n", 1, []wantOpt{{"k", "it's", false, 2}}}}},
		{"backslash in double quotes takes the next character", `config a n` + "\n" + `option k "a\"b\\c\n\#"`,
			[]wantSection{{"a", "n", 1, []wantOpt{{"k", `a"b\cn#`, false, 2}}}}},
		{"backslash in single quotes is itself", `config a n` + "\n" + `option k 'a\nb\'`,
			[]wantSection{{"a", "n", 1, []wantOpt{{"k", `a\nb\`, false, 2}}}}},
		{"bare backslash", `config a n` + "\n" + `option k a\ b\#c`,
			[]wantSection{{"a", "n", 1, []wantOpt{{"k", `a b#c`, false, 2}}}}},
		{"hash in quotes, comment after", "config a n\noption k 'x # y' # z\noption j bare#comment 'ignored'\n",
			[]wantSection{{"a", "n", 1, []wantOpt{{"k", "x # y", false, 2}, {"j", "bare", false, 3}}}}},
		{"continuation in a bare word", "config a n\noption k abc\\\ndef\noption j x\n",
			[]wantSection{{"a", "n", 1, []wantOpt{{"k", "abcdef", false, 2}, {"j", "x", false, 4}}}}},
		{"continuation in double quotes", "config a n\noption k \"abc\\\ndef\"\noption j x\n",
			[]wantSection{{"a", "n", 1, []wantOpt{{"k", "abcdef", false, 2}, {"j", "x", false, 4}}}}},
		{"continuation between words", "config a n\noption k \\\n  'v'\noption j x\n",
			[]wantSection{{"a", "n", 1, []wantOpt{{"k", "v", false, 2}, {"j", "x", false, 4}}}}},
		{"semicolons", "config a n; option k v ;option j 'w;x'\n",
			[]wantSection{{"a", "n", 1, []wantOpt{{"k", "v", false, 1}, {"j", "w;x", false, 1}}}}},
		{"abbreviations and package", "package varta-watch\nc a n\no k v\nl m 1\nl m 2\n",
			[]wantSection{{"a", "n", 2, []wantOpt{{"k", "v", false, 3}, {"m", "1", true, 4}, {"m", "2", true, 5}}}}},
		{"anonymous section, empty values", "config a\noption k ''\noption j\nconfig a ''\n",
			[]wantSection{{"a", "", 1, []wantOpt{{"k", "", false, 2}, {"j", "", false, 3}}}, {"a", "", 4, nil}}},
		{"CRLF", "config a 'n'\r\n\toption k 'v'\r\n",
			[]wantSection{{"a", "n", 1, []wantOpt{{"k", "v", false, 2}}}}},
		{"no final newline, tabs in quotes", "config a n\noption k 'a\tb'",
			[]wantSection{{"a", "n", 1, []wantOpt{{"k", "a\tb", false, 2}}}}},
		{"names with . and -", "config agent 'my-agent.1'\n",
			[]wantSection{{"agent", "my-agent.1", 1, nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseUCIText("f", []byte(tc.text))
			if err != nil {
				t.Fatalf("parseUCIText(%q): %v", tc.text, err)
			}
			if g := sectionsOf(got); !reflect.DeepEqual(g, tc.want) {
				t.Fatalf("parseUCIText(%q)\n got %+v\nwant %+v", tc.text, g, tc.want)
			}
		})
	}
}

// badConfigs are files with one mistake each: the line it is on and words
// of the message. e2e_config_test.go runs the binary on them too.
var badConfigs = []struct {
	name, text string
	line       int
	msg        string
}{
	{"unknown command", "config agent a\n\toption comm x\n\toptoin exe y\n", 3, `unknown command "optoin"`},
	{"option before a section", "# x\noption comm x\n", 2, "before the first section"},
	{"list before a section", "list comm x\n", 1, "before the first section"},
	{"single quote not closed", "config agent a\n\toption comm 'x\n\toption exe y\n", 2, "' quote is not closed"},
	{"double quote not closed", "config agent a\n\toption comm x\n\toption exe \"y\n", 3, `" quote is not closed`},
	{"quote not closed at EOF", "config agent a\n\toption comm 'x", 2, "not closed"},
	{"config without type", "config\n", 1, "needs a section type"},
	{"too many words in config", "config agent a b\n", 1, "too many words"},
	{"too many words in option", "config agent a\n\toption comm x y\n", 2, "too many words"},
	{"option without name", "config agent a\n\toption\n", 2, "needs a name"},
	{"invalid option name", "config agent a\n\toption 'co-mm' x\n", 2, "invalid option name"},
	{"name with a bad character", "config agent 'dns masq'\n\toption comm x\n", 1, "invalid section name"},
	{"name too long", "config agent '" + strings.Repeat("a", 33) + "'\n", 1, "invalid section name"},
	{"control character", "config agent a\n\toption comm 'x\x01'\n", 2, "control character"},
	{"package after a section", "config agent a\n\toption comm x\npackage p\n", 3, "package after a section"},
	{"unknown section type", "config agent a\n\toption comm x\nconfig agnet b\n", 3, `unknown section type "agnet"`},
	{"unknown main option", "config varta-watch main\n\toption threshold_ms 100\n\toption threshhold_ms 100\n", 3, `unknown option "threshhold_ms"`},
	{"no option for --config", "config varta-watch main\n\toption config /x\n", 2, `unknown option "config"`},
	{"no option for --version", "config varta-watch main\n\toption version 1\n", 2, `unknown option "version"`},
	{"unknown agent option", "config agent a\n\toption comm x\n\toption treshold_ms 100\n", 3, `unknown option "treshold_ms" in config agent`},
	{"bad main value", "config varta-watch main\n\toption threshold_ms 5\n", 2, "threshold_ms: 5 is out of range (10..86400000)"},
	{"bad main word", "config varta-watch main\n\toption tracker_capacity many\n", 2, `tracker_capacity: "many" is not a whole number (1..65536)`},
	{"bad main mode", "config varta-watch main\n\toption socket_mode 0800\n", 2, "socket_mode"},
	{"bad main kinds", "config varta-watch main\n\toption export_file_kinds 'stall,stalls'\n", 2, `export_file_kinds: "stalls" is not an event kind`},
	{"bad main bool", "config varta-watch main\n\toption prom_pid_series maybe\n", 2, `prom_pid_series: "maybe" is not on or off`},
	{"bad enabled", "config varta-watch main\n\toption enabled 2\n", 2, `enabled: "2"`},
	{"bad agent threshold", "config agent a\n\toption comm x\n\toption threshold_ms 86400001\n", 3, "threshold_ms: 86400001 is out of range (10..86400000)"},
	{"bad agent debounce", "config agent a\n\toption comm x\n\toption recovery_debounce_ms -1\n", 3, "recovery_debounce_ms: -1 is out of range (0..86400000)"},
	{"bad agent timeout", "config agent a\n\toption comm x\n\toption recovery_timeout_ms soon\n", 3, "recovery_timeout_ms"},
	{"bad expected", "config agent a\n\toption comm x\n\toption expected maybe\n", 3, `expected: "maybe" is not on or off`},
	{"bad grace", "config agent a\n\toption comm x\n\toption expected 1\n\toption grace_ms 5\n", 4, "grace_ms: 5 is out of range (10..86400000)"},
	{"bad max_recoveries", "config agent a\n\toption comm x\n\toption max_recoveries 1001\n", 3, "max_recoveries: 1001 is out of range (0..1000)"},
	{"bad window", "config agent a\n\toption comm x\n\toption recovery_window_s 0\n", 3, "recovery_window_s: 0 is out of range (1..604800)"},
	{"bad uptime", "config agent a\n\toption comm x\n\toption give_up_min_uptime_s -1\n", 3, "give_up_min_uptime_s: -1 is out of range (0..31536000)"},
	{"comm too long", "config agent a\n\toption comm 'a-very-long-daemon'\n", 2, "longer than 15 bytes"},
	{"exec of spaces", "config agent a\n\toption comm x\n\toption recovery_exec '   '\n", 3, "names no command"},
	{"missing_exec with {pid}", "config agent a\n\toption comm x\n\toption expected 1\n\toption missing_exec 'kill {pid}'\n", 4, "{pid} cannot be used"},
	{"grace without expected", "config agent a\n\toption comm x\n\toption grace_ms 100\n", 3, "only to an expected agent"},
	{"missing_exec with expected 0", "config agent a\n\toption comm x\n\toption expected off\n\toption missing_exec '/bin/true'\n", 4, "only to an expected agent"},
	{"give_up_exec that never runs", "config agent a\n\toption comm x\n\toption max_recoveries 0\n\toption give_up_exec /sbin/reboot\n", 4, "give_up_exec needs max_recoveries"},
	{"duplicate agent", "config agent a\n\toption comm x\n\nconfig agent a\n\toption comm y\n", 4, `agent "a" is defined twice (first on line 1)`},
	{"second main section", "config varta-watch main\nconfig agent a\n\toption comm x\nconfig varta-watch other\n", 4, "a second config varta-watch section (the first is on line 1)"},
	{"agent without match", "config agent a\n\toption threshold_ms 100\n\nconfig agent b\n\toption comm x\n", 1, `agent "a" has no match option`},
	{"agent with empty match only", "config agent a\n\toption comm ''\n", 1, "has no match option"},
	{"anonymous agent", "config agent\n\toption comm x\n", 1, "needs a name"},
	{"both recoveries in an agent", "config agent a\n\toption comm x\n\toption recovery_exec /bin/true\n\toption recovery_cmd 'true'\n", 4, "exclude each other"},
	{"both recoveries in main", "config varta-watch main\n\toption recovery_cmd 'true'\n\toption recovery_exec /bin/true\n", 3, "exclude each other"},
	{"list for a single value", "config agent a\n\toption comm x\n\tlist threshold_ms 100\n", 3, "threshold_ms takes one value"},
	{"list in main", "config varta-watch main\n\tlist threshold_ms 100\n", 2, "threshold_ms takes one value"},
	{"empty list value", "config agent a\n\tlist comm ''\n", 2, "list comm needs a value"},
	{"duplicate option", "config agent a\n\toption comm x\n\toption threshold_ms 100\n\toption threshold_ms 200\n", 4, "option threshold_ms given twice in this section (first on line 3)"},
	{"option after list", "config agent a\n\tlist comm x\n\toption comm y\n", 3, "given twice"},
	{"too many match values", "config agent a\n" + strings.Repeat("\tlist comm x\n", 33), 34, "more than 32 values"},
	{"too many agents", manyAgents(257), 257*2 - 1, "more than 256 agent sections"},
}

func manyAgents(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(sprintf("config agent 'a%d'\n\toption comm 'c%d'\n", i, i))
	}
	return b.String()
}

func TestParseFileConfigErrors(t *testing.T) {
	for _, tc := range badConfigs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFileConfig("/etc/config/varta-watch", []byte(tc.text))
			var fe *fileError
			if !errors.As(err, &fe) {
				t.Fatalf("parseFileConfig(%q) = %v, want a fileError", tc.text, err)
			}
			prefix := sprintf("/etc/config/varta-watch:%d: ", tc.line)
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tc.msg) || strings.Contains(msg, "\n") {
				t.Fatalf("parseFileConfig(%q):\n got %q\nwant %q…%q on one line", tc.text, msg, prefix, tc.msg)
			}
		})
	}
	if _, err := parseFileConfig("f", []byte(manyAgents(256))); err != nil {
		t.Fatalf("256 agent sections: %v", err)
	}
}

func TestParseUCITooLarge(t *testing.T) {
	_, err := parseUCIText("f", make([]byte, maxConfigBytes+1))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("got %v", err)
	}
}

// FuzzParseUCI: the parser never panics, and whatever it accepts
// round-trips: formatUCI writes sections that parse back to the same
// sections, and the same file configuration.
//
// Its seed corpus lives in testdata/fuzz/FuzzParseUCI.
func FuzzParseUCI(f *testing.F) {
	f.Add("config varta-watch 'main'\n\toption threshold_ms '2000'\n\nconfig agent 'dnsmasq'\n\toption comm 'dnsmasq'\n\tlist exe '*/dnsmasq'\n")
	f.Add("c a n; o k 'it'\\''s' \"x\\\"y\"z # c\n")
	f.Add("config agent a\n\toption comm x\n\toption expected yes\n\toption grace_ms 20\n\toption missing_exec '/bin/true'\n")
	f.Fuzz(func(t *testing.T, text string) {
		ss, err := parseUCIText("f", []byte(text))
		if err != nil {
			var fe *fileError
			if !errors.As(err, &fe) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("parseUCIText(%q) error %q is not one PATH:LINE line", text, err)
			}
			return
		}
		canon := formatUCI(ss)
		ss2, err := parseUCIText("f", []byte(canon))
		if err != nil {
			t.Fatalf("parseUCIText(%q) accepted; its canonical form %q fails: %v", text, canon, err)
		}
		if a, b := withoutLines(ss), withoutLines(ss2); !reflect.DeepEqual(a, b) {
			t.Fatalf("parseUCIText(%q) = %+v\ncanonical form %q parses to %+v", text, a, canon, b)
		}
		fc, err := parseFileConfig("f", []byte(text))
		if err != nil {
			return
		}
		fc2, err := parseFileConfig("f", []byte(canon))
		if err != nil {
			t.Fatalf("parseFileConfig(%q) accepted; its canonical form %q fails: %v", text, canon, err)
		}
		if a, b := fileConfigWithoutLines(fc), fileConfigWithoutLines(fc2); !reflect.DeepEqual(a, b) {
			t.Fatalf("parseFileConfig(%q) = %+v\ncanonical form parses to %+v", text, a, b)
		}
	})
}

func withoutLines(ss []confSection) []confSection {
	out := make([]confSection, len(ss))
	for i, s := range ss {
		s.line = 0
		s.options = append([]confOption(nil), s.options...)
		for j := range s.options {
			s.options[j].line = 0
		}
		out[i] = s
	}
	return out
}

func fileConfigWithoutLines(fc *fileConfig) fileConfig {
	c := *fc
	c.mainLine = 0
	c.main = append([]fileOption(nil), fc.main...)
	for i := range c.main {
		c.main[i].line = 0
	}
	c.agents = append([]agentSpec(nil), fc.agents...)
	for i := range c.agents {
		c.agents[i].line = 0
	}
	return c
}
