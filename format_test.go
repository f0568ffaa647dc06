package main

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

type testStringer struct{}

func (testStringer) String() string { return "str\"inger" }

// TestSprintfMatchesFmt: every verb, flag and argument type format.go
// supports gives what package fmt gives.
func TestSprintfMatchesFmt(t *testing.T) {
	var cases [][2]any // format, argument
	ints := []any{0, -42, int8(-8), int16(1600), int32(-32), int64(-1 << 63), uint(7), uint8(255),
		uint16(65535), uint32(1 << 31), uint64(1<<64 - 1), uintptr(0o755)}
	texts := []any{"", "plain", "tab\tquote\"nl\n\xff", []byte("by\"tes"), errors.New("an error: x"), testStringer{}}
	values := append(append([]any{nil, true, false}, ints...), texts[:3]...)
	values = append(values, texts[4:]...) // not texts[3], the []byte
	for _, v := range []any{0, 7, uint8(255), uint64(1<<64 - 1)} {
		cases = append(cases, [2]any{"%03v", v}, [2]any{"%08v", v})
	}
	for _, v := range ints {
		for _, f := range []string{"%d", "%o", "%v", "%5d", "%05d", "%04o", "%1d", "%20v", "%3o"} {
			cases = append(cases, [2]any{f, v})
		}
	}
	for _, v := range texts {
		for _, f := range []string{"%s", "%v", "%q", "%8s", "%08s", "%12q", "%1s"} {
			if _, isBytes := v.([]byte); isBytes && f == "%v" {
				continue // a list of numbers in fmt
			}
			cases = append(cases, [2]any{f, v})
		}
	}
	for _, v := range values {
		for _, f := range []string{"%v", "<%v> 100%% %v"} {
			cases = append(cases, [2]any{f, v})
		}
	}
	for _, c := range cases {
		format, arg := c[0].(string), c[1]
		args := []any{arg}
		if strings.Count(format, "%v") == 2 {
			args = append(args, arg)
		}
		want := fmt.Sprintf(format, args...)
		if got := sprintf(format, args...); got != want {
			t.Errorf("sprintf(%q, %T %#v) = %q, fmt says %q", format, arg, arg, got, want)
		}
	}
	for _, c := range []struct {
		format string
		args   []any
	}{
		{"", nil},
		{"no verbs", nil},
		{"%%", nil},
		{"%d%%", []any{5}},
		{"missing %d", nil},
		{"missing %s and %d", []any{"one"}},
		{"%s=%d pid %05d mode %04o %q", []any{"k", 1, 42, uint32(0o640), "x y"}},
	} {
		want := fmt.Sprintf(c.format, c.args...)
		if got := sprintf(c.format, c.args...); got != want {
			t.Errorf("sprintf(%q, %v) = %q, fmt says %q", c.format, c.args, got, want)
		}
	}
}

// TestErrorfAndWrapf: errorf's message is fmt.Errorf's; wrapf's is that of
// fmt.Errorf(format+": %w", args..., err), and err stays reachable.
func TestErrorfAndWrapf(t *testing.T) {
	if got, want := errorf("bad %s: %d", "port", 70000).Error(), fmt.Errorf("bad %s: %d", "port", 70000).Error(); got != want {
		t.Errorf("errorf: %q, fmt says %q", got, want)
	}
	inner := &os.PathError{Op: "open", Path: "/x", Err: os.ErrNotExist}
	err := wrapf(inner, "export file %s", "/x")
	if want := fmt.Errorf("export file %s: %w", "/x", inner).Error(); err.Error() != want {
		t.Errorf("wrapf: %q, fmt says %q", err.Error(), want)
	}
	var pe *os.PathError
	if !errors.Is(err, os.ErrNotExist) || !errors.As(err, &pe) || pe != inner {
		t.Error("wrapf lost the wrapped error")
	}
	if errors.Unwrap(errorf("x %s", "y")) != nil {
		t.Error("errorf wraps something")
	}
}

// TestFormatCallsUseSupportedVerbs: go vet checks the callers of sprintf,
// errorf, wrapf and flagErrorf against package fmt, which knows more verbs
// and flags than format.go: every constant format in the package uses only
// what TestSprintfMatchesFmt proves.
func TestFormatCallsUseSupportedVerbs(t *testing.T) {
	printers := map[string]int{"sprintf": 0, "errorf": 0, "flagErrorf": 0, "wrapf": 1} // index of the format
	files, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	calls := 0
	for _, e := range files {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			id, ok := call.Fun.(*ast.Ident)
			if !ok {
				return true
			}
			i, ok := printers[id.Name]
			if !ok || i >= len(call.Args) {
				return true
			}
			lit, ok := call.Args[i].(*ast.BasicLit)
			if !ok {
				return true
			}
			format, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			calls++
			if bad := unsupportedVerb(format); bad != "" {
				t.Errorf("%s: %s(%q) uses %s, which format.go does not support", fset.Position(call.Pos()), id.Name, format, bad)
			}
			return true
		})
	}
	if calls < 20 {
		t.Fatalf("found only %d calls with a constant format: the scan is broken", calls)
	}
	if unsupportedVerb("%x") == "" || unsupportedVerb("%-5s") == "" || unsupportedVerb("%.2d") == "" || unsupportedVerb("%05d %q %s %v %o %%") != "" {
		t.Fatal("unsupportedVerb misjudges")
	}
}

// unsupportedVerb returns the first directive of format that appendf does
// not handle ("" if none): only %%, and %s %v %d %o %q with an optional 0
// flag and width.
func unsupportedVerb(format string) string {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		j := i + 1
		if j < len(format) && format[j] == '0' {
			j++
		}
		for j < len(format) && format[j] >= '0' && format[j] <= '9' {
			j++
		}
		if j >= len(format) || !strings.ContainsRune("svdoq%", rune(format[j])) || format[j] == '%' && j != i+1 {
			return format[i:min(j+1, len(format))]
		}
		i = j
	}
	return ""
}
