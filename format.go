package main

import (
	"errors"
	"strconv"
)

// sprintf and errorf format the observer's messages with the few verbs
// they use (%s %v %d %q %o with a zero-padded width, %w, %%). Package fmt
// would link in its printer and reflection: 0.13 MB of a binary that has
// to fit a router's flash.
func sprintf(format string, args ...any) string {
	b, _ := appendf(nil, format, args)
	return string(b)
}

// errorf is fmt.Errorf for those verbs: a %w argument stays reachable
// through errors.Is/As.
func errorf(format string, args ...any) error {
	b, wrapped := appendf(nil, format, args)
	if wrapped != nil {
		return &wrapError{msg: string(b), err: wrapped}
	}
	return errors.New(string(b))
}

type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg }
func (e *wrapError) Unwrap() error { return e.err }

func appendf(b []byte, format string, args []any) ([]byte, error) {
	var wrapped error
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
		case 'w':
			if err, ok := a.(error); ok {
				wrapped = err
			}
			s = formatValue(a)
		default: // s, v
			s = formatValue(a)
		}
		for pad := width - len(s); pad > 0; pad-- {
			if zero {
				b = append(b, '0')
			} else {
				b = append(b, ' ')
			}
		}
		b = append(b, s...)
	}
	return b, wrapped
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
