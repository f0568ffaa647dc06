package main

import (
	"math/rand"
	"path"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestGlobMatchTable(t *testing.T) {
	for _, tc := range []struct {
		pat, name string
		want      bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "/usr/sbin/dnsmasq", true},
		{"dnsmasq", "dnsmasq", true},
		{"dnsmasq", "dnsmasq2", false},
		{"dnsmas", "dnsmasq", false},
		{"*/dnsmasq", "/usr/sbin/dnsmasq", true},
		{"/usr/*/dnsmasq", "/usr/local/sbin/dnsmasq", true}, // '*' crosses '/'
		{"/usr/*/dnsmasq", "/usr/sbin/dnsmasq (deleted)", false},
		{"/usr/sbin/hostapd*", "/usr/sbin/hostapd (deleted)", true},
		{"?", "a", true},
		{"?", "", false},
		{"?", "ab", false},
		{"?", "é", true},         // one character, two bytes
		{"caf?", "café", true},   // the same at the end
		{"?", "\xff", true},      // an invalid byte is one character
		{"??", "\xe2\x82", true}, // a truncated sequence: two characters
		{"?", "\xe2\x82", false}, //
		{"a?c", "a/c", true},     // '?' matches '/'
		{"*.sh *", "/bin/sh /etc/cron.sh --daily", true},
		{"*.sh", "/bin/sh /etc/cron.sh --daily", false},
		{"/bin/sh *cron.sh*", "/bin/sh /etc/cron.sh --daily", true},
		{"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
		{"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaab", true},
		{"a*", "a", true},
		{"a**", "a", true},
		{"**a", "a", true},
		{"*?", "", false},
		{"*?", "x", true},
		{"[ab]", "a", false}, // no classes: '[' is itself
		{"[ab]", "[ab]", true},
		{`\*`, `\x`, true}, // no escapes: '\' is itself, '*' still a star
		{"€", "€", true},
		{"\xe2\x82", "€", false}, // a pattern byte never matches part of a character
	} {
		if got := globMatch(tc.pat, []byte(tc.name)); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.pat, tc.name, got, tc.want)
		}
	}
}

// globRegexp is the oracle: the same language as a Go regexp, in which '.'
// is one character (an invalid byte decodes as one U+FFFD of width 1).
func globRegexp(pat string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?s)^`)
	for _, r := range pat {
		switch r {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String())
}

// TestGlobMatchOracles compares globMatch with a regexp built from the
// pattern and, where the two languages coincide (no '/', no '[' or '\'),
// with path.Match, on random patterns and names over a small alphabet that
// makes matches frequent.
func TestGlobMatchOracles(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	patAlpha := []string{"a", "b", "/", "*", "?", "é", "."}
	nameAlpha := []string{"a", "b", "/", "é", ".", "\xff", "\xe2\x82"}
	gen := func(alpha []string, max int) string {
		var b strings.Builder
		for i := rng.Intn(max + 1); i > 0; i-- {
			b.WriteString(alpha[rng.Intn(len(alpha))])
		}
		return b.String()
	}
	matched := 0
	for i := 0; i < 20000; i++ {
		pat, name := gen(patAlpha, 8), gen(nameAlpha, 10)
		got := globMatch(pat, []byte(name))
		if want := globRegexp(pat).MatchString(name); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, regexp oracle says %v", pat, name, got, want)
		}
		if got {
			matched++
		}
		if !strings.Contains(pat, "/") && !strings.Contains(name, "/") && utf8.ValidString(pat) {
			want, err := path.Match(pat, name)
			if err != nil {
				t.Fatalf("path.Match(%q): %v", pat, err)
			}
			if got != want {
				t.Fatalf("globMatch(%q, %q) = %v, path.Match says %v", pat, name, got, want)
			}
		}
	}
	if matched < 500 {
		t.Fatalf("only %d of 20000 random cases matched: the comparison proves little", matched)
	}
}

// TestGlobMatchNoBlowUp: a pattern built to make a backtracking matcher
// exponential is answered, and the answer is right.
func TestGlobMatchNoBlowUp(t *testing.T) {
	pat := strings.Repeat("*a", 100) + "b"
	name := []byte(strings.Repeat("a", 4096))
	if globMatch(pat, name) {
		t.Fatal("matched a name without b")
	}
	if !globMatch(pat, append(name, 'b')) {
		t.Fatal("did not match the name ending in b")
	}
}
