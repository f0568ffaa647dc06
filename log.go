package main

import (
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// logger writes one line per message to stderr, as text (logfmt) or JSON.
// It formats into a reused buffer, so logging a stall or a recovery from the
// event loop allocates nothing. slog would allocate per record.
type logger struct {
	mu   sync.Mutex
	json bool
	out  *os.File
	buf  []byte
}

type logLevel uint8

const (
	levelInfo logLevel = iota
	levelWarn
	levelError
)

var levelNames = [...]string{"INFO", "WARN", "ERROR"}

// field is one key/value of a log line.
type field struct {
	key   string
	str   string
	num   int64
	isNum bool
}

func fStr(k, v string) field       { return field{key: k, str: v} }
func fInt(k string, v int64) field { return field{key: k, num: v, isNum: true} }

func newLogger(json bool) *logger {
	return &logger{json: json, out: os.Stderr, buf: make([]byte, 0, 512)}
}

func (l *logger) info(msg string, fs ...field)  { l.log(levelInfo, msg, fs) }
func (l *logger) warn(msg string, fs ...field)  { l.log(levelWarn, msg, fs) }
func (l *logger) error(msg string, fs ...field) { l.log(levelError, msg, fs) }

func (l *logger) log(lv logLevel, msg string, fs []field) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf[:0]
	now := time.Now().UTC()
	if l.json {
		b = append(b, `{"time":"`...)
		b = now.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, `","level":"`...)
		b = append(b, levelNames[lv]...)
		b = append(b, `","msg":`...)
		b = appendJSONString(b, msg)
		for _, f := range fs {
			b = append(b, ',')
			b = appendJSONString(b, f.key)
			b = append(b, ':')
			if f.isNum {
				b = strconv.AppendInt(b, f.num, 10)
			} else {
				b = appendJSONString(b, f.str)
			}
		}
		b = append(b, "}\n"...)
	} else {
		b = append(b, "time="...)
		b = now.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, " level="...)
		b = append(b, levelNames[lv]...)
		b = append(b, " msg="...)
		b = appendLogfmtValue(b, msg)
		for _, f := range fs {
			b = append(b, ' ')
			b = append(b, f.key...)
			b = append(b, '=')
			if f.isNum {
				b = strconv.AppendInt(b, f.num, 10)
			} else {
				b = appendLogfmtValue(b, f.str)
			}
		}
		b = append(b, '\n')
	}
	l.buf = b
	l.out.Write(b)
}

// appendLogfmtValue quotes v when it is empty or holds a space, quote,
// equals sign or control character, so every message stays on one line.
func appendLogfmtValue(b []byte, v string) []byte {
	needQuote := v == ""
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c == '"' || c == '=' || c == 0x7f {
			needQuote = true
			break
		}
	}
	if !needQuote {
		return append(b, v...)
	}
	return appendJSONString(b, v)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends v as a JSON string literal; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, v string) []byte {
	b = append(b, '"')
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, v[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
