package main

import (
	"bytes"
	"strconv"

	"golang.org/x/sys/unix"
)

// eventFile appends TSV event lines (contract §5) through a buffer that the
// loop flushes at least every eventFlushInterval and at shutdown.
//
// Only whole lines reach the file: a write is cut at a line end, and a
// short write that ends inside a line (a full disk) is truncated back to
// the last whole line and the rest kept for later. Rotation happens between
// lines, so every line lands whole in exactly one generation.
//
// While the file cannot be written (disk full, I/O error) lines are kept in
// memory up to eventBufMax; past that new lines are dropped and counted
// (varta_export_dropped_events_total), and once the buffer has room again
// an io line records how many were lost at that point of the file. The
// oldest lines are kept rather than the newest so that the file has one
// marked gap instead of a hole before lines already waiting.
type eventFile struct {
	path     string
	fd       int
	size     int64 // bytes in the current generation
	regular  bool  // rotation applies only to a regular file (not /dev/full, a FIFO …)
	maxBytes int64 // rotate past this many bytes; 0 never
	keep     int   // rotated generations kept
	gens     []string

	buf           []byte
	dirtySince    int64 // monotonic ns of the oldest unflushed line, 0 when clean
	failing       bool  // inside a write-error episode (logged once)
	rotateFailing bool  // inside a rotation-error episode (logged once)
	failedOps     int64 // failed writes in this episode
	retryAt       int64 // while failing: next write attempt
	rotateAt      int64 // after a failed rotation: next attempt
	dropped       uint64
	log           *logger
	stats         *observerStats // exportDropped, exportWriteErrors
}

const (
	eventFlushInterval = 100_000_000 // ns: contract §5, "at least every 100 ms"
	eventBufSoftLimit  = 32 << 10    // flush early past this many buffered bytes
	eventWriteChunk    = 64 << 10    // most bytes one write(2) of the loop may take
	eventBufMax        = 1 << 20     // most bytes held while the file cannot take them
	eventLineRoom      = 4 << 10     // headroom past eventBufMax for the line being added
	eventRetryInterval = 1_000_000_000
)

// openEventFile opens the event file at path, rotated past maxBytes (0
// never) with keep generations; failures are logged to log and counted in
// stats.
func openEventFile(path string, maxBytes int64, keep int, log *logger, stats *observerStats) (*eventFile, error) {
	f := &eventFile{path: path, fd: -1, buf: make([]byte, 0, eventBufMax+eventLineRoom), log: log, stats: stats,
		maxBytes: maxBytes, keep: keep}
	if f.maxBytes > 0 {
		for i := 1; i <= f.keep; i++ {
			f.gens = append(f.gens, path+"."+strconv.Itoa(i))
		}
	}
	if err := f.open(); err != nil {
		return nil, err
	}
	return f, nil
}

// open opens (creating) the path for appending. A symlink at the path is
// never followed (O_NOFOLLOW): the observer may run as root and the
// directory may be writable by others.
func (f *eventFile) open() error {
	fd, err := unix.Open(f.path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o640)
	if err != nil {
		if err == unix.ELOOP || err == unix.EMLINK {
			return errorf("export file %s: is a symbolic link; refusing to follow it", f.path)
		}
		return errorf("export file %s: %v", f.path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return errorf("export file %s: %v", f.path, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		unix.Close(fd)
		return errorf("export file %s: is a directory", f.path)
	}
	// A regular file with a second name may be another file hard-linked
	// here by whoever can write the directory (fs.protected_hardlinks is
	// off on many routers, and never binds root): appending would clobber
	// it, as a symlink would. Nothing the observer or logrotate does leaves
	// the event file with two names (TestHardLinkAtExportFile).
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink > 1 {
		unix.Close(fd)
		return errorf("export file %s: has %d hard links; refusing to append to a file that has another name", f.path, st.Nlink)
	}
	f.fd = fd
	f.size = st.Size
	f.regular = st.Mode&unix.S_IFMT == unix.S_IFREG
	return nil
}

// emit buffers one event line when the event file is configured (f non-nil).
func (f *eventFile) emit(e *event, now int64) {
	if f != nil {
		f.add(e, now)
	}
}

// add buffers one event line, or drops it when the buffer is full.
func (f *eventFile) add(e *event, now int64) {
	if f.dirtySince == 0 {
		f.dirtySince = now
	}
	if len(f.buf) >= eventBufMax {
		f.dropped++
		f.stats.exportDropped++
		return
	}
	if f.dropped > 0 {
		f.buf = appendDropMarker(f.buf, now, f.dropped)
		f.dropped = 0
	}
	f.buf = appendEvent(f.buf, e)
}

// appendDropMarker appends the io line that marks where lines were lost.
func appendDropMarker(b []byte, now int64, n uint64) []byte {
	b = strconv.AppendInt(b, now, 10)
	b = append(b, "\tio\t-\t-\t-\tevent file buffer full: "...)
	b = strconv.AppendUint(b, n, 10)
	return append(b, " events dropped\n"...)
}

// due reports whether the buffer should be written now.
func (f *eventFile) due(now int64) bool {
	if f.dirtySince == 0 {
		return false
	}
	if f.failing {
		return now >= f.retryAt
	}
	return len(f.buf) >= eventBufSoftLimit || now-f.dirtySince >= eventFlushInterval
}

// nextDeadline returns when the buffer must be written, 0 when clean.
func (f *eventFile) nextDeadline() int64 {
	if f.dirtySince == 0 {
		return 0
	}
	if f.failing {
		return f.retryAt
	}
	return f.dirtySince + eventFlushInterval
}

// flushStep writes at most eventWriteChunk bytes of whole lines so that
// the loop can drain the socket between steps, rotating first when the
// next line would take the file past --export-file-max-bytes. It returns
// true when nothing more can be written now (the buffer is empty, or the
// file is failing).
func (f *eventFile) flushStep(now int64) bool {
	if len(f.buf) == 0 {
		f.dirtySince = 0
		if f.dropped > 0 {
			// Lines were dropped and none came since: mark the gap now.
			f.buf = appendDropMarker(f.buf, now, f.dropped)
			f.dropped = 0
			f.dirtySince = now
			return false
		}
		return true
	}
	n := wholeLines(f.buf, eventWriteChunk)
	if f.maxBytes > 0 && f.regular && f.size+int64(n) > f.maxBytes && now >= f.rotateAt {
		if fit := linesWithin(f.buf[:n], f.maxBytes-f.size); fit > 0 {
			n = fit // the lines that still fit go to this generation
		} else if f.size == 0 {
			n = linesWithin(f.buf[:n], int64(bytes.IndexByte(f.buf[:n], '\n')+1)) // one line longer than the limit: alone, whole
		} else if err := f.rotate(); err != nil {
			f.stats.exportWriteErrors++
			f.rotateAt = now + eventRetryInterval
			if !f.rotateFailing {
				f.rotateFailing = true
				f.log.error("event file rotation failed; writing on past the size limit and retrying every second",
					fStr("path", f.path), fStr("err", err.Error()))
			}
		} else {
			if f.rotateFailing {
				f.rotateFailing = false
				f.log.info("event file rotated again", fStr("path", f.path))
			}
			return false
		}
	}
	w, err := unix.Write(f.fd, f.buf[:n])
	if err == unix.EINTR {
		return false
	}
	if err == unix.EAGAIN {
		return true // a pipe or FIFO that is full: try at the next flush
	}
	if err != nil || w <= 0 {
		if err == nil {
			err = unix.EIO
		}
		f.writeFailed(now, err)
		return true
	}
	if w < n && f.buf[w-1] != '\n' {
		// Short write inside a line (the disk filled up): cut the file back
		// to the last whole line so a reader never sees half of one.
		whole := 0
		for i := w - 1; i >= 0; i-- {
			if f.buf[i] == '\n' {
				whole = i + 1
				break
			}
		}
		if unix.Ftruncate(f.fd, f.size+int64(whole)) == nil {
			w = whole
		}
	}
	f.size += int64(w)
	rest := copy(f.buf, f.buf[w:])
	f.buf = f.buf[:rest]
	if w < n {
		// The disk took only part: a failing episode until a write is whole.
		f.writeFailed(now, unix.ENOSPC)
		return true
	}
	if f.failing {
		f.failing = false
		f.log.info("event file writable again", fStr("path", f.path), fInt("failed_writes", f.failedOps))
		f.failedOps = 0
	}
	if rest == 0 && f.dropped == 0 {
		f.dirtySince = 0
		return true
	}
	return false
}

// wholeLines returns the length of the longest prefix of b, at most limit
// bytes, that ends a line; a single line longer than limit is returned
// whole rather than split.
func wholeLines(b []byte, limit int) int {
	if len(b) <= limit {
		return len(b)
	}
	for n := limit; n > 0; n-- {
		if b[n-1] == '\n' {
			return n
		}
	}
	for n := limit; n < len(b); n++ {
		if b[n] == '\n' {
			return n + 1
		}
	}
	return len(b)
}

// linesWithin returns the length of the longest prefix of b that ends a
// line and is at most room bytes, 0 when the first line is longer.
func linesWithin(b []byte, room int64) int {
	for n := int(min(room, int64(len(b)))); n > 0; n-- {
		if b[n-1] == '\n' {
			return n
		}
	}
	return 0
}

// writeFailed counts a failed write and logs it once per episode; the
// write is retried every eventFlushInterval.
func (f *eventFile) writeFailed(now int64, err error) {
	f.stats.exportWriteErrors++
	f.failedOps++
	if !f.failing {
		f.failing = true
		f.log.error("event file write failed; events are kept in memory (up to 1 MiB) and retried",
			fStr("path", f.path), fStr("err", err.Error()))
	}
	f.retryAt = now + eventFlushInterval
}

// rotate shifts PATH.(keep-1) → PATH.keep, …, PATH → PATH.1 (the oldest
// generation is replaced) and opens a fresh PATH. With --export-file-keep 0
// no generation is kept: the full file is removed and PATH starts empty.
// If the new file cannot be opened, writing goes on into the old one.
func (f *eventFile) rotate() error {
	if f.keep == 0 {
		if err := unix.Unlink(f.path); err != nil && err != unix.ENOENT {
			return errorf("unlink %s: %w", f.path, err)
		}
	} else {
		for i := f.keep - 1; i >= 1; i-- {
			if err := unix.Rename(f.gens[i-1], f.gens[i]); err != nil && err != unix.ENOENT {
				return errorf("rename %s: %w", f.gens[i-1], err)
			}
		}
		if err := unix.Rename(f.path, f.gens[0]); err != nil {
			return errorf("rename %s: %w", f.path, err)
		}
	}
	old := f.fd
	if err := f.open(); err != nil {
		f.fd = old
		return err
	}
	unix.Close(old)
	return nil
}

// flushAll writes everything it can, for shutdown and reopen.
func (f *eventFile) flushAll() {
	for i := 0; i < 1<<16; i++ {
		if f.flushStep(monoNow()) && (len(f.buf) == 0 || f.failing) {
			return
		}
	}
}

// reopen flushes, then closes and reopens the path (SIGHUP, for logrotate).
func (f *eventFile) reopen() error {
	f.flushAll()
	old := f.fd
	if err := f.open(); err != nil {
		f.fd = old
		return err
	}
	unix.Close(old)
	return nil
}

func (f *eventFile) close() {
	f.flushAll()
	if f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
}
