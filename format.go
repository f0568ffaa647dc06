package main

import (
	"errors"
	"strconv"
)

// sprintf, errorf and wrapf format the observer's messages with the few
// verbs they use: %s %v %d %o %q, a width (padded with spaces, or with
// zeros by the 0 flag: for %v only when the value is not negative), and
// %%. %d and %o take integers; %s and %q a string, []byte, an error or a
// Stringer; %v any of these, a bool or nil. Package
// fmt would link in its printer and reflection: 0.13 MB of a binary that
// has to fit a router's flash. make test runs go vet's printf check over
// their callers (-printf.funcs), and TestFormatCallsUseSupportedVerbs
// keeps the callers to these verbs.
func sprintf(format string, args ...any) string {
	return string(appendf(nil, format, args))
}

// errorf is fmt.Errorf for those verbs, without %w: see wrapf.
func errorf(format string, args ...any) error {
	return errors.New(string(appendf(nil, format, args)))
}

// wrapf is fmt.Errorf(format+": %w", args..., err): the message, a colon
// and err's; err stays reachable through errors.Is/As. (A %w of errorf's
// own would not pass go vet's printf check, which treats every function
// but fmt.Errorf named by -printf.funcs as a Printf.)
func wrapf(err error, format string, args ...any) error {
	b := appendf(nil, format, args)
	b = append(b, ": "...)
	b = append(b, formatValue(err)...)
	return &wrapError{msg: string(b), err: err}
}

type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg }
func (e *wrapError) Unwrap() error { return e.err }

func appendf(b []byte, format string, args []any) []byte {
	next := 0
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 >= len(format) {
			b = append(b, c)
			continue
		}
		i++
		zero, width := false, 0
		if format[i] == '0' {
			zero = true
			i++
		}
		for i < len(format) && format[i] >= '0' && format[i] <= '9' {
			width = width*10 + int(format[i]-'0')
			i++
		}
		if i >= len(format) {
			break
		}
		verb := format[i]
		if verb == '%' {
			b = append(b, '%')
			continue
		}
		if next >= len(args) {
			b = append(b, "%!"...)
			b = append(b, verb)
			b = append(b, "(MISSING)"...)
			continue
		}
		a := args[next]
		next++
		var s string
		switch verb {
		case 'd':
			s = formatInt(a, 10)
		case 'o':
			s = formatInt(a, 8)
		case 'q':
			s = strconv.Quote(formatValue(a))
		default: // s, v
			s = formatValue(a)
		}
		pad := width - len(s)
		if zero && (verb == 'd' || verb == 'o') && len(s) > 0 && s[0] == '-' {
			b = append(b, '-') // -0042, as fmt writes it
			s = s[1:]
		}
		for ; pad > 0; pad-- {
			if zero {
				b = append(b, '0')
			} else {
				b = append(b, ' ')
			}
		}
		b = append(b, s...)
	}
	return b
}

func formatValue(a any) string {
	switch v := a.(type) {
	case nil:
		return "<nil>"
	case string:
		return v
	case error:
		return v.Error()
	case interface{ String() string }:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case []byte:
		return string(v)
	}
	return formatInt(a, 10)
}

func formatInt(a any, base int) string {
	switch v := a.(type) {
	case int:
		return strconv.FormatInt(int64(v), base)
	case int8:
		return strconv.FormatInt(int64(v), base)
	case int16:
		return strconv.FormatInt(int64(v), base)
	case int32:
		return strconv.FormatInt(int64(v), base)
	case int64:
		return strconv.FormatInt(v, base)
	case uint:
		return strconv.FormatUint(uint64(v), base)
	case uint8:
		return strconv.FormatUint(uint64(v), base)
	case uint16:
		return strconv.FormatUint(uint64(v), base)
	case uint32:
		return strconv.FormatUint(uint64(v), base)
	case uint64:
		return strconv.FormatUint(v, base)
	case uintptr:
		return strconv.FormatUint(uint64(v), base)
	case string:
		return v
	}
	return "?"
}
