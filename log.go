package main

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// logger writes one line per message to stderr, as text (logfmt) or JSON.
// It formats into a reused buffer, so logging a stall or a recovery from the
// event loop allocates nothing. slog would allocate per record.
//
// When stderr is a pipe, a socket or a terminal (procd's logd, journald, a
// shell), whoever reads it can stop reading, and a write(2) then blocks: the
// event loop would stop draining its socket and surfacing stalls. There the
// loop only appends the line to a bounded buffer and a writer goroutine does
// the blocking writes; lines that find the buffer full are dropped, counted,
// and reported by one line once stderr moves again. A regular file is
// written directly.
type logger struct {
	mu   sync.Mutex
	json bool
	out  *os.File
	buf  []byte

	async   bool
	pend    []byte         // lines waiting for the writer, at most logPendMax bytes
	dropped int64          // lines that found pend full since the last report
	lost    atomic.Uint64  // lines that found pend full since the start
	busy    bool           // the writer holds lines it has not finished writing
	kick    chan struct{}  // capacity 1: pend has lines
	pfd     [1]unix.PollFd // the writer's poll of stderr, see writeOut
}

// logPendMax bounds the log lines waiting for a blocked stderr: ~400 lines.
const logPendMax = 64 << 10

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

// newLogger returns a logger writing to out, asynchronously unless out is
// a regular file.
func newLogger(json bool, out *os.File) *logger {
	l := &logger{json: json, out: out, buf: make([]byte, 0, 512)}
	var st unix.Stat_t
	if err := unix.Fstat(int(out.Fd()), &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		l.async = true
		l.pend = make([]byte, 0, logPendMax)
		l.kick = make(chan struct{}, 1)
		go l.writer()
	}
	return l
}

// setJSON switches the format of the lines logged from now on (a reload).
func (l *logger) setJSON(json bool) {
	l.mu.Lock()
	l.json = json
	l.mu.Unlock()
}

func (l *logger) info(msg string, fs ...field)  { l.log(levelInfo, msg, fs) }
func (l *logger) warn(msg string, fs ...field)  { l.log(levelWarn, msg, fs) }
func (l *logger) error(msg string, fs ...field) { l.log(levelError, msg, fs) }

func (l *logger) log(lv logLevel, msg string, fs []field) {
	if l == nil {
		return
	}
	l.mu.Lock()
	b := l.appendRecord(l.buf[:0], lv, msg, fs)
	l.buf = b
	if !l.async {
		if _, err := l.out.Write(b); err != nil {
			l.lost.Add(1) // a full disk, a stderr closed under us
		}
		l.mu.Unlock()
		return
	}
	if len(l.pend)+len(b) > logPendMax {
		l.dropped++
		l.lost.Add(1)
	} else {
		l.pend = append(l.pend, b...)
	}
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default: // already kicked
	}
}

// writer writes what log queued, for as long as the process lives.
func (l *logger) writer() {
	out := make([]byte, 0, logPendMax+512)
	for range l.kick {
		for {
			l.mu.Lock()
			if len(l.pend) == 0 && l.dropped == 0 {
				l.busy = false
				l.mu.Unlock()
				break
			}
			out = append(out[:0], l.pend...)
			lines := len(out) // the queued lines; a drop report may follow
			l.pend = l.pend[:0]
			if l.dropped > 0 {
				out = l.appendRecord(out, levelWarn, "log lines dropped: stderr was not being read",
					[]field{fInt("lines", l.dropped)})
				l.dropped = 0
			}
			l.busy = true
			l.mu.Unlock()
			if n, err := l.writeOut(out); err != nil && n < lines {
				// The reader went away (EPIPE: with SIGPIPE handled, see
				// guardSignals, a broken pipe is an error, not death), or
				// the file cannot grow. The lines not written are counted;
				// a drop report that was not written is not itself one.
				l.lost.Add(uint64(bytes.Count(out[n:lines], []byte{'\n'})))
			}
		}
	}
}

// writeOut writes b to stderr from the writer goroutine without ever
// blocking in write(2) (writePolled), for as long as stderr takes.
func (l *logger) writeOut(b []byte) (int, error) {
	return writePolled(int(l.out.Fd()), &l.pfd, b, 0)
}

// errWriteStuck: writePolled gave up on an fd that took nothing.
var errWriteStuck = errors.New("not written: nothing was read for too long")

// writePolled writes b to fd from a goroutine other than the loop's
// without ever blocking in write(2). With one P (setLoopProcs) a goroutine
// blocked in a syscall holds the P until sysmon retakes it, up to ~20 ms
// in which the loop cannot run; a reader of stderr or stdout that falls
// behind would stall the loop at every write. So it writes only what
// poll(2) says fits (a pipe that polls writable has a free page: PIPE_BUF
// bytes go in whole; a socket or terminal takes at least that much), and
// otherwise sleeps, which frees the P, for 1 ms at first and up to 64 ms
// while fd stays full. With giveUp > 0 it stops after that long without
// progress (errWriteStuck). pfd is the caller's, so that a write
// allocates nothing.
func writePolled(fd int, pfd *[1]unix.PollFd, b []byte, giveUp time.Duration) (int, error) {
	const pipeBuf = 4096
	if fd < 0 {
		return 0, os.ErrClosed
	}
	pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLOUT}
	written, backoff := 0, time.Millisecond
	var waited time.Duration
	wait := func() bool {
		if giveUp > 0 && waited >= giveUp {
			return false
		}
		time.Sleep(backoff)
		waited += backoff
		backoff = min(2*backoff, 64*time.Millisecond)
		return true
	}
	for written < len(b) {
		n, err := unix.Poll(pfd[:], 0)
		if err == unix.EINTR {
			continue
		}
		if err == nil && n == 0 {
			if !wait() {
				return written, errWriteStuck
			}
			continue
		}
		m, err := unix.Write(fd, b[written:min(len(b), written+pipeBuf)])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN || err == nil && m == 0 { // non-blocking, set so by another process
			if !wait() {
				return written, errWriteStuck
			}
			continue
		}
		if err != nil {
			return written, err
		}
		written += m
		backoff, waited = time.Millisecond, 0
	}
	return written, nil
}

// droppedLines is how many log lines were lost since the start: to a
// stderr that was not read (the queue was full) or could not be written
// (a broken pipe, a full disk), and stdout lines that could not be
// written (lostLine).
func (l *logger) droppedLines() uint64 {
	if l == nil {
		return 0
	}
	return l.lost.Load()
}

// lostLine counts a line that could not be written elsewhere: the address
// line of --prom-addr on a stdout whose reader is gone.
func (l *logger) lostLine() {
	if l != nil {
		l.lost.Add(1)
	}
}

// flush waits until every queued line has been written, or timeout has
// passed (a stderr nobody reads must not hold up the exit forever).
func (l *logger) flush(timeout time.Duration) {
	if l == nil || !l.async {
		return
	}
	deadline := time.Now().Add(timeout)
	for {
		l.mu.Lock()
		done := len(l.pend) == 0 && l.dropped == 0 && !l.busy
		l.mu.Unlock()
		if done || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// jsonLine formats one JSON log line without a logger, for a bad command
// line: --log-format json was given, but no logger runs yet.
func jsonLine(lv logLevel, msg string, fs ...field) string {
	l := logger{json: true}
	return string(l.appendRecord(nil, lv, msg, fs))
}

// appendRecord appends one formatted line.
func (l *logger) appendRecord(b []byte, lv logLevel, msg string, fs []field) []byte {
	now := time.Now().UnixNano()
	if l.json {
		b = append(b, `{"time":"`...)
		b = appendUTCMillis(b, now)
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
		b = appendUTCMillis(b, now)
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
	return b
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

// appendUTCMillis appends the wall-clock time ns (Unix, nanoseconds) as
// RFC 3339 in UTC with milliseconds, 2006-01-02T15:04:05.000Z. Written out
// rather than time.Time.AppendFormat, which with its layout parser and time
// zone loading costs the ARM build about 20 KB.
func appendUTCMillis(b []byte, ns int64) []byte {
	secs, sub := ns/1_000_000_000, ns%1_000_000_000
	if sub < 0 {
		secs--
		sub += 1_000_000_000
	}
	ms := sub / 1_000_000
	days, sod := secs/86400, secs%86400
	if sod < 0 {
		days--
		sod += 86400
	}
	y, m, d := civilFromDays(days)
	b = appendPadded(b, y, 4)
	b = append(b, '-')
	b = appendPadded(b, m, 2)
	b = append(b, '-')
	b = appendPadded(b, d, 2)
	b = append(b, 'T')
	b = appendPadded(b, sod/3600, 2)
	b = append(b, ':')
	b = appendPadded(b, sod/60%60, 2)
	b = append(b, ':')
	b = appendPadded(b, sod%60, 2)
	b = append(b, '.')
	b = appendPadded(b, ms, 3)
	return append(b, 'Z')
}

// civilFromDays converts days since 1970-01-01 to a proleptic Gregorian
// date (Howard Hinnant's days_from_civil, inverted): eras of 400 years
// that start on March 1st, so the leap day ends a year.
func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097                                  // [0, 146096]
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // [0, 399]
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // [0, 365]
	mp := (5*doy + 2) / 153                                // [0, 11], March = 0
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	y = yoe + era*400
	if m <= 2 {
		y++
	}
	return y, m, d
}

// appendPadded appends n (0 <= n < 10^width) in decimal, zero-padded to
// width digits. Not inlined: seven copies in appendUTCMillis cost 4 KB.
//
//go:noinline
func appendPadded(b []byte, n int64, width int) []byte {
	start := len(b)
	for range width {
		b = append(b, '0')
	}
	for i := len(b) - 1; i >= start && n > 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return b
}
